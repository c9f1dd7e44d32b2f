// HTTP/2 prior knowledge (h2c) and gRPC at the waypoint: each stream through the shared
// pipeline (`pipeline.ts`) — retries with the budget, per-try and route timeouts, the pool's
// `http2MaxRequests`, outlier recording, mirrors — on the endpoint's upstream HTTP/2 sessions
// (`h2-sessions.ts`, each over one HBONE stream), with a bound on downstream streams in flight.
// The request body is streamed to the try in flight and kept (up to 1 MiB) so another try can
// replay it; past that, no retry (Envoy does the same). A gRPC trailers-only answer carries its
// grpc-status with the headers, so `unavailable` & co. can be retried; a gRPC request the
// waypoint answers itself gets a grpc-status (Envoy's mapping).
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Logger } from '../common/log.js';
import type { TunnelContext } from './tunnel-context.js';
import { applyModifier, forwardHeaders, HOP_BY_HOP, rewrittenPath, toL7Request } from './http-request.js';
import { failureOf, RETRY_BUFFER_BYTES, toFailure, type Plan, type RequestPipeline } from './pipeline.js';
import { newExchange, type Exchange } from './request-record.js';
import type { AttemptResult } from './resilience/retry.js';
import type { ConnectionPoolLimiter } from './resilience/pool.js';
import { defaultRetryPolicy } from './resilience/types.js';
import { ReplayBody } from './replay-body.js';
import { UPSTREAM_IDLE_MS } from './h1-pool.js';
import { UpstreamH2Sessions } from './h2-sessions.js';
import type { UpstreamEndpoint } from './upstream.js';

const NEVER_ABORTED = new AbortController().signal;

/**
 * Downstream HTTP/2 streams handled at once, over all connections, before new ones are refused
 * (RST_STREAM REFUSED_STREAM: not processed, safe to retry; gRPC clients see UNAVAILABLE). Each
 * costs ~25 KB until answered; the per-connection limit (`H2_DOWNSTREAM_MAX_STREAMS`) does not
 * bound a client that opens many connections. Envoy's overload manager plays this part.
 */
export const H2_MAX_STREAMS_IN_FLIGHT = 2048;
/** At most one `streams refused: overload` line per this many ms. */
const REFUSED_LOG_MS = 1000;

const {
  NGHTTP2_CANCEL,
  NGHTTP2_REFUSED_STREAM,
  NGHTTP2_NO_ERROR,
  NGHTTP2_INTERNAL_ERROR,
  NGHTTP2_PROTOCOL_ERROR,
} = http2.constants;

/** An upstream answer whose headers have arrived. */
interface UpstreamAnswer {
  stream: http2.ClientHttp2Stream;
  headers: http2.IncomingHttpHeaders;
  /** Headers-only (for gRPC: trailers-only) answer. */
  endStream: boolean;
  /**
   * Trailers, caught from the start: nghttp2 often hands headers, data and trailers over in one
   * read, so 'trailers' can fire before the relay is set up.
   */
  trailers: http2.IncomingHttpHeaders;
}

export class Http2Handler {
  private readonly sessions: UpstreamH2Sessions;
  private inFlight = 0;
  private refused = 0;
  private refusedLogAt = 0;

  constructor(
    private readonly pipeline: RequestPipeline,
    private readonly contextOf: (session: object) => TunnelContext | undefined,
    dial: (ep: UpstreamEndpoint) => Promise<Duplex>,
    private readonly log: Logger,
    idleMs = UPSTREAM_IDLE_MS,
    private readonly maxInFlight = H2_MAX_STREAMS_IN_FLIGHT,
  ) {
    this.sessions = new UpstreamH2Sessions(dial, log, { idleMs });
  }

  async onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): Promise<void> {
    stream.on('error', () => {});
    const ctx = stream.session ? this.contextOf(stream.session) : undefined;
    if (!ctx) return void stream.close(NGHTTP2_REFUSED_STREAM);
    const malformed = malformedField(headers);
    if (malformed) {
      // nghttp2 as Node configures it lets these through; Envoy's codec refuses them (RFC 9113
      // §8.2.1: a malformed request is a stream error), and an HTTP/1.1 hop behind us could
      // read a CR LF as a new header (request smuggling).
      this.log.warn(
        {
          'src.identity': ctx.peerIdentity,
          'dst.addr': `${ctx.target.host}:${ctx.target.port}`,
          reason: malformed,
        },
        'request refused: malformed HTTP/2 header',
      );
      return void stream.close(NGHTTP2_PROTOCOL_ERROR);
    }
    if (this.inFlight >= this.maxInFlight) return this.refuse(stream);
    this.inFlight++;
    stream.once('close', () => this.inFlight--);
    const authority = String(headers[':authority'] ?? headers.host ?? '');
    const url = String(headers[':path'] ?? '/');
    const l7 = toL7Request(String(headers[':method'] ?? 'GET'), url, headers, ctx, authority, false);
    const grpc = l7.grpc;
    const x = newExchange(l7, ctx, grpc ? 'grpc' : 'http2');
    const abort = new AbortController();
    stream.once('close', () => abort.abort(new Error('downstream went away')));
    try {
      let answered = 0;
      const plan = await this.pipeline.prepare(
        x,
        (status, hdrs, body) => {
          answered = status;
          if (grpc) answerGrpc(stream, x, status, body.trim(), {});
          else if (!stream.destroyed && !stream.closed) {
            stream.respond({ ':status': status, ...hdrs });
            stream.end(body);
          }
        },
        abort.signal,
      );
      if (!plan) return this.pipeline.record(x, grpc ? 200 : answered);
      // A stream reset by the client while we decided costs no upstream work (rapid reset).
      if (stream.destroyed || stream.closed) {
        x.reason = 'reset by client';
        return this.pipeline.record(x, 0);
      }
      const reqHeaders: http2.OutgoingHttpHeaders = {};
      for (const [k, v] of Object.entries(forwardHeaders(headers, l7, ctx, plan.action, 'http')))
        if (!k.startsWith(':') && !HOP_BY_HOP.has(k)) reqHeaders[k] = v;
      reqHeaders[':method'] = l7.method;
      reqHeaders[':path'] = rewrittenPath(url, plan.action, l7.path);
      reqHeaders[':authority'] = plan.action.rewrite?.authority ?? l7.authority;
      reqHeaders[':scheme'] = 'http';
      const body = new ReplayBody(stream, RETRY_BUFFER_BYTES);
      body.onComplete((buf) => this.mirror(plan, reqHeaders, buf));
      let previous: UpstreamAnswer | undefined;
      const result = await this.pipeline.forward<UpstreamAnswer>(
        x,
        plan,
        plan.action.retry ?? defaultRetryPolicy(),
        abort.signal,
        async (ep, signal, limiter) => {
          if (previous && !previous.stream.closed) previous.stream.close(NGHTTP2_CANCEL); // discarded
          const outcome = await this.send(x, ep, limiter, reqHeaders, body, signal);
          previous = outcome.response;
          return outcome;
        },
        () => body.replayable,
      );
      x.requestBytes = body.bytes;
      const up = result.outcome.response;
      if (result.stop === 'cancelled' || stream.destroyed || stream.closed) {
        if (up && !up.stream.closed) up.stream.close(NGHTTP2_CANCEL);
        x.reason = 'downstream went away';
        return this.pipeline.record(x, 0);
      }
      if (!up) throw failureOf(result.outcome.error ?? 'reset', result.stop);
      const status = await this.relay(x, plan, stream, up, body);
      this.pipeline.record(x, status);
    } catch (err) {
      const f = toFailure(err);
      x.reason = f.reason;
      const canAnswer = !stream.headersSent && !stream.destroyed && !stream.closed;
      if (canAnswer && grpc) answerGrpc(stream, x, f.status, f.body, f.headers);
      else if (canAnswer) {
        stream.respond({ ':status': f.status, 'content-type': 'text/plain', ...f.headers });
        stream.end(`${f.body}\n`);
      } else if (!stream.destroyed) stream.close(NGHTTP2_INTERNAL_ERROR);
      // A gRPC answer is HTTP 200 with the grpc-status in the record.
      this.pipeline.record(x, canAnswer && grpc ? 200 : f.status);
    }
  }

  close(): void {
    this.sessions.close();
  }

  /** Over H2_MAX_STREAMS_IN_FLIGHT: refused before any work, logged at most once a second. */
  private refuse(stream: http2.ServerHttp2Stream): void {
    stream.close(NGHTTP2_REFUSED_STREAM);
    this.refused++;
    const now = Date.now();
    if (now - this.refusedLogAt < REFUSED_LOG_MS) return;
    this.log.warn(
      { refused: this.refused, 'streams.in_flight': this.inFlight, limit: this.maxInFlight },
      'streams refused: overload',
    );
    this.refused = 0;
    this.refusedLogAt = now;
  }

  /**
   * One try: a request slot (http2MaxRequests), a stream on one of the endpoint's sessions
   * (waiting, bounded, while they are full), the body.
   */
  private async send(
    x: Exchange,
    ep: UpstreamEndpoint,
    limiter: ConnectionPoolLimiter | undefined,
    headers: http2.OutgoingHttpHeaders,
    body: ReplayBody,
    signal: AbortSignal,
  ): Promise<AttemptResult<UpstreamAnswer>> {
    const slot = limiter?.tryAcquireRequest();
    if (slot && !slot.ok) {
      x.overflow = slot.reason;
      return { error: 'overflow' };
    }
    const h2 = await this.sessions.acquire(ep, signal);
    const release = (): void => {
      if (slot?.ok) slot.release();
      if (h2.ok) h2.release();
    };
    if (!h2.ok) {
      release();
      if (h2.error === 'overflow') x.overflow = h2.reason;
      // Cancelled while waiting: the downstream is gone, nothing was sent; the outcome is unused.
      return { error: h2.error === 'cancelled' ? 'reset' : h2.error };
    }
    if (signal.aborted) {
      release();
      return { error: 'reset' };
    }
    let upStream: http2.ClientHttp2Stream;
    try {
      upStream = h2.session.request(headers, { endStream: false });
    } catch {
      release();
      return { error: 'connect-failure' };
    }
    upStream.on('error', () => {});
    upStream.once('close', release);
    signal.addEventListener('abort', () => upStream.close(NGHTTP2_CANCEL), { once: true });
    const answer: UpstreamAnswer = { stream: upStream, headers: {}, endStream: false, trailers: {} };
    upStream.once('trailers', (t) => (answer.trailers = t));
    return new Promise((resolve) => {
      upStream.once('response', (h, flags) => {
        answer.headers = h;
        answer.endStream = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
        const grpcStatus = answer.endStream ? grpcStatusIn(h) : undefined;
        resolve({
          status: Number(h[':status'] ?? 502),
          ...(grpcStatus !== undefined ? { grpcStatus } : {}),
          response: answer,
        });
      });
      upStream.once('close', () =>
        resolve({ error: upStream.rstCode === NGHTTP2_REFUSED_STREAM ? 'refused-stream' : 'reset' }),
      );
      body.attach(upStream);
    });
  }

  /** Sends the chosen answer down: headers (edited), body, trailers; a reset is passed on. */
  private relay(
    x: Exchange,
    plan: Plan,
    stream: http2.ServerHttp2Stream,
    up: UpstreamAnswer,
    body: ReplayBody,
  ): Promise<number> {
    const code = Number(up.headers[':status'] ?? 502);
    const edited = applyModifier(up.headers, plan.action.responseHeaders, plan.backend?.responseHeaders);
    const out: http2.OutgoingHttpHeaders = { ':status': code };
    for (const [k, v] of Object.entries(edited)) if (!k.startsWith(':') && !HOP_BY_HOP.has(k)) out[k] = v;
    const grpcStatus = grpcStatusIn(up.headers);
    if (grpcStatus !== undefined) x.grpcStatus = grpcStatus;
    if (up.endStream) {
      stream.respond(out, { endStream: true });
      return Promise.resolve(code);
    }
    return new Promise((resolve) => {
      let bytes = 0;
      const done = (): void => {
        x.responseBytes = bytes;
        x.requestBytes = body.bytes;
        resolve(code);
      };
      stream.respond(out, { waitForTrailers: true });
      stream.once('wantTrailers', () => {
        const t: http2.OutgoingHttpHeaders = {};
        for (const [k, v] of Object.entries(up.trailers)) if (!k.startsWith(':')) t[k] = v;
        const s = grpcStatusIn(up.trailers);
        if (s !== undefined) x.grpcStatus = s;
        if (!stream.destroyed) stream.sendTrailers(t);
      });
      up.stream.on('data', (c: Buffer) => (bytes += c.length));
      up.stream.pipe(stream);
      up.stream.once('close', () => {
        const rst = up.stream.rstCode;
        if (rst && rst !== NGHTTP2_NO_ERROR && !stream.destroyed) stream.close(rst);
        done();
      });
      stream.once('close', () => {
        if (!up.stream.closed) up.stream.close(NGHTTP2_CANCEL);
        done();
      });
    });
  }

  /** Fire-and-forget copies of a fully received, buffered request; answers are discarded. */
  private mirror(plan: Plan, headers: http2.OutgoingHttpHeaders, buf: Buffer): void {
    for (const m of this.pipeline.mirrorTargets(plan, String(headers[':authority'] ?? ''))) {
      const slot = m.limiter.tryAcquireRequest();
      if (!slot.ok) continue;
      void this.sessions.acquire(m.endpoint, NEVER_ABORTED).then((h2) => {
        if (!h2.ok) return slot.release();
        const done = (): void => {
          h2.release();
          slot.release();
        };
        let copy: http2.ClientHttp2Stream;
        try {
          copy = h2.session.request({ ...headers, ':authority': m.authority }, { endStream: false });
        } catch {
          return done();
        }
        copy.on('error', () => {});
        copy.once('close', done);
        copy.resume();
        copy.end(buf);
      });
    }
  }
}

/** Answers a gRPC request from the waypoint: trailers-only, grpc-status from the HTTP status (Envoy). */
function answerGrpc(
  stream: http2.ServerHttp2Stream,
  x: Exchange,
  status: number,
  message: string,
  headers: Record<string, string>,
): void {
  if (stream.destroyed || stream.closed) return;
  const grpcStatus = grpcStatusOf(status);
  x.grpcStatus = grpcStatus;
  const extra = { ...headers };
  delete extra['content-type'];
  stream.respond(
    {
      ':status': 200,
      ...extra,
      'content-type': 'application/grpc',
      'grpc-status': String(grpcStatus),
      'grpc-message': encodeURIComponent(message),
    },
    { endStream: true },
  );
}

function grpcStatusIn(h: http2.IncomingHttpHeaders): number | undefined {
  const v = h['grpc-status'];
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isInteger(n) && n >= 0 ? n : undefined;
}

/** HTTP status → gRPC status, as Envoy maps them (grpc/doc/http-grpc-status-mapping.md). */
export function grpcStatusOf(status: number): number {
  if (status === 400) return 13;
  if (status === 401) return 16;
  if (status === 403) return 7;
  if (status === 404) return 12;
  if (status === 429 || status === 502 || status === 503 || status === 504) return 14;
  return 2;
}

/** RFC 9110 token, lower case (RFC 9113 §8.2.1 forbids upper case in HTTP/2 field names). */
const FIELD_NAME = /^:?[!#$%&'*+\-.^_`|~0-9a-z]+$/;

/**
 * Why a request's fields are malformed under RFC 9113 §8.2.1 (what Envoy's codec refuses), or
 * undefined: a name that is not a lower-case token, a value with CR, LF or NUL, or with leading
 * or trailing whitespace.
 */
export function malformedField(headers: http2.IncomingHttpHeaders): string | undefined {
  for (const [name, v] of Object.entries(headers)) {
    if (!FIELD_NAME.test(name))
      return `field name ${JSON.stringify(name.slice(0, 64))} is not a lower-case token`;
    for (const one of Array.isArray(v) ? v : [v]) {
      if (one === undefined) continue;
      if (/[\r\n\0]/.test(one)) return `field ${name} has CR, LF or NUL in its value`;
      if (/^[ \t]|[ \t]$/.test(one)) return `field ${name} has leading or trailing whitespace`;
    }
  }
  return undefined;
}
