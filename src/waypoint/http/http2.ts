// HTTP/2 prior knowledge (h2c) and gRPC at the waypoint: the front for the HTTP/2 server's
// streams (malformed fields refused, a bound on downstream streams in flight) and the protocol
// adapter the request pipeline drives (`pipeline.ts`, `http/adapter.ts`). The adapter knows
// framing: each try is a stream on one of the endpoint's upstream HTTP/2 sessions
// (`h2-sessions.ts`, each over one HBONE stream) under the pool's `http2MaxRequests`; the
// request body is streamed to the try in flight and kept (up to 1 MiB) so another try can
// replay it (`replay-body.ts`; past that, no retry, as Envoy); a gRPC trailers-only answer
// carries its grpc-status with the headers, so `unavailable` & co. can be retried; answers are
// relayed with trailers and an upstream RST code is passed on; a gRPC request the waypoint
// answers itself gets a trailers-only grpc-status (Envoy's mapping).
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../common/log.js';
import type { TunnelContext } from '../tunnel-context.js';
import { applyModifier, forwardHeaders, HOP_BY_HOP, rewrittenPath, toL7Request } from './http-request.js';
import type { RequestPipeline } from '../pipeline.js';
import { newExchange, type Exchange } from '../request-record.js';
import type { AttemptResult } from '../resilience/retry.js';
import type { ConnectionPoolLimiter } from '../resilience/pool.js';
import { ReplayBody } from './replay-body.js';
import { UPSTREAM_IDLE_MS } from '../upstream/h1-pool.js';
import { UpstreamH2Sessions } from '../upstream/h2-sessions.js';
import type { UpstreamEndpoint } from '../upstream/upstream.js';
import {
  RETRY_BUFFER_BYTES,
  type LocalAnswer,
  type MirrorTarget,
  type Plan,
  type ProtocolAdapter,
  type UpstreamRequest,
} from './adapter.js';
import type { HttpFailure } from './failure.js';

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

/** One downstream stream, and its `:path` as it arrived (the rewrite starts from it). */
interface H2Down {
  stream: http2.ServerHttp2Stream;
  url: string;
}

/** The upstream request: its headers, and the body streamed to each try and kept for replay. */
class H2Upstream implements UpstreamRequest {
  readonly oneTry = false;
  readonly authority: string;

  constructor(
    readonly headers: http2.OutgoingHttpHeaders,
    readonly body: ReplayBody,
  ) {
    this.authority = String(headers[':authority'] ?? '');
  }

  get replayable(): boolean {
    return this.body.replayable;
  }

  get bytes(): number {
    return this.body.bytes;
  }

  whenBuffered(cb: (body: Buffer) => void): void {
    this.body.onComplete(cb);
  }
}

export class Http2Adapter implements ProtocolAdapter<H2Down, H2Upstream, UpstreamAnswer> {
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

  /** The server's 'stream' event: checks, then the request goes through the pipeline, which answers and records it. */
  onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
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
    void this.pipeline.serve(this, { stream, url }, newExchange(l7, ctx, l7.grpc ? 'grpc' : 'http2'));
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

  // ---- the adapter: what the pipeline calls, in the order it calls it

  watch({ stream }: H2Down): AbortSignal {
    const abort = new AbortController();
    stream.once('close', () => abort.abort(new Error('downstream went away')));
    return abort.signal;
  }

  closed({ stream }: H2Down): boolean {
    return stream.destroyed || stream.closed;
  }

  answer({ stream }: H2Down, x: Exchange, a: LocalAnswer): number {
    if (x.l7.grpc) {
      // The answer's headers (a redirect's Location) stay on the gRPC form too: Envoy's local
      // reply applies its header edits whether or not it turns the reply into a grpc-status
      // (source/common/http/filter_manager.cc, sendDirectLocalReply: modify_headers).
      answerGrpc(stream, x, a.status, a.body.trim(), a.headers);
      return 200; // a gRPC answer is HTTP 200, its grpc-status in the record
    }
    if (!stream.destroyed && !stream.closed) {
      stream.respond({ ':status': a.status, ...a.headers });
      stream.end(a.body);
    }
    return a.status;
  }

  fail({ stream }: H2Down, x: Exchange, f: HttpFailure): number {
    const canAnswer = !stream.headersSent && !stream.destroyed && !stream.closed;
    if (canAnswer && x.l7.grpc) {
      answerGrpc(stream, x, f.status, f.body, f.headers);
      return 200; // a gRPC answer is HTTP 200, its grpc-status in the record
    }
    if (canAnswer) {
      stream.respond({ ':status': f.status, 'content-type': 'text/plain', ...f.headers });
      stream.end(`${f.body}\n`);
    } else if (!stream.destroyed) stream.close(NGHTTP2_INTERNAL_ERROR);
    return f.status;
  }

  /** The upstream headers (hop-by-hop and pseudo-headers rebuilt) and the body as a ReplayBody. */
  readBody({ stream, url }: H2Down, x: Exchange, plan: Plan): Promise<H2Upstream> {
    const { l7 } = x;
    const headers: http2.OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(forwardHeaders(l7.headers, l7, x.ctx, plan.action, 'http')))
      if (!k.startsWith(':') && !HOP_BY_HOP.has(k)) headers[k] = v;
    headers[':method'] = l7.method;
    headers[':path'] = rewrittenPath(url, plan.action, l7.path);
    headers[':authority'] = plan.action.rewrite?.authority ?? l7.authority;
    headers[':scheme'] = 'http';
    return Promise.resolve(new H2Upstream(headers, new ReplayBody(stream, RETRY_BUFFER_BYTES)));
  }

  /**
   * One try: a request slot (http2MaxRequests), a stream on one of the endpoint's sessions
   * (waiting, bounded, while they are full), the body.
   */
  async sendTry(
    { headers, body }: H2Upstream,
    x: Exchange,
    ep: UpstreamEndpoint,
    signal: AbortSignal,
    limiter: ConnectionPoolLimiter | undefined,
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

  /** A retried answer, or one nobody will read: its stream is cancelled. */
  discard(up: UpstreamAnswer): void {
    if (!up.stream.closed) up.stream.close(NGHTTP2_CANCEL);
  }

  /** An answer nobody will read (the client went away): cancelled, as a discarded one. */
  abandon(up: UpstreamAnswer): void {
    if (!up.stream.closed) up.stream.close(NGHTTP2_CANCEL);
  }

  /** Sends the chosen answer down: headers (edited), body, trailers; a reset is passed on. */
  relay(
    { stream }: H2Down,
    x: Exchange,
    plan: Plan,
    up: UpstreamAnswer,
    { body }: H2Upstream,
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

  /** A copy of a fully received, buffered request, on a stream of its own; its answer is discarded. */
  mirror({ headers }: H2Upstream, m: MirrorTarget, buf: Buffer): void {
    const slot = m.limiter.tryAcquireRequest();
    if (!slot.ok) return;
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
