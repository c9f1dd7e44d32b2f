// HTTP/1.1 at the waypoint: each request through the shared pipeline (`pipeline.ts`), sent on a
// pooled keep-alive upstream connection (`h1-pool.ts`); `Upgrade` requests get a tunnel of
// their own and are spliced; malformed input is answered 400/431 here with one log line.
import http from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import type { Logger } from '../common/log.js';
import { isAmbitError } from '../common/errors.js';
import type { TunnelContext } from './http-proxy.js';
import { applyModifier, forwardHeaders, rewrittenPath, stripHopByHop, toL7Request } from './http-request.js';
import { failureOf, RETRY_BUFFER_BYTES, toFailure, type Plan, type RequestPipeline } from './pipeline.js';
import { newExchange, type Exchange } from './request-record.js';
import type { H1Request, UpstreamHttp1Pool } from './h1-pool.js';
import type { AttemptResult } from './resilience/retry.js';
import { defaultRetryPolicy } from './resilience/types.js';
import type { ConnectionPoolLimiter } from './resilience/pool.js';
import type { UpstreamEndpoint } from './upstream.js';

export class Http1Handler {
  constructor(
    private readonly pipeline: RequestPipeline,
    private readonly pool: UpstreamHttp1Pool,
    private readonly contextOf: (socket: object) => TunnelContext | undefined,
    private readonly log: Logger,
  ) {}

  async onRequest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const ctx = this.contextOf(req.socket);
    if (!ctx) return void res.destroy();
    const l7 = toL7Request(req.method ?? 'GET', req.url ?? '/', req.headers, ctx, req.headers.host ?? '');
    const x = newExchange(l7, ctx, 'http1');
    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) abort.abort(new Error('downstream went away'));
    });
    try {
      const plan = await this.pipeline.prepare(x, (status, headers, body) => {
        res.writeHead(status, headers).end(body);
      });
      if (!plan) return this.pipeline.record(x, res.statusCode);
      const head: H1Request = {
        method: req.method ?? 'GET',
        path: rewrittenPath(req.url ?? '/', plan.action, l7.path),
        headers: stripHopByHop(forwardHeaders(req.headers, l7, ctx, plan.action, 'http')),
      };
      // A small body is buffered so it can be sent again on a retry; a large or unknown one
      // streams, without retries (Envoy stops retrying past its buffer limit too).
      const body = await bufferSmallBody(req);
      if (body !== undefined) {
        x.requestBytes = body.length;
        this.mirror(plan, head, body);
      }
      let previous: http.IncomingMessage | undefined;
      const result = await this.pipeline.forward<http.IncomingMessage>(
        x,
        plan,
        body === undefined ? undefined : (plan.action.retry ?? defaultRetryPolicy()),
        abort.signal,
        async (ep, signal, limiter) => {
          // A retried answer is discarded, and its exchange must be over before this try takes a
          // slot of the pool limit (http2MaxRequests), or a limit of 1 overflows on every retry.
          if (previous) await discard(previous);
          const outcome = await this.send(x, limiter, ep, head, body ?? req, signal);
          previous = outcome.response;
          return outcome;
        },
      );
      const upRes = result.outcome.response;
      if (result.stop === 'cancelled' || res.destroyed) {
        upRes?.destroy(); // nobody to answer: the connection is not left half-read
        x.reason = 'downstream went away';
        return this.pipeline.record(x, 0);
      }
      if (!upRes) throw failureOf(result.outcome.error ?? 'reset', result.stop);
      const out = applyModifier(upRes.headers, plan.action.responseHeaders, plan.backend?.responseHeaders);
      res.writeHead(upRes.statusCode ?? 502, stripHopByHop(out));
      x.responseBytes = await relay(upRes, res);
      this.pipeline.record(x, upRes.statusCode ?? 502);
    } catch (err) {
      const f = toFailure(err);
      if (!res.headersSent)
        res.writeHead(f.status, { 'content-type': 'text/plain', ...f.headers }).end(`${f.body}\n`);
      else res.destroy();
      x.reason = f.reason;
      this.pipeline.record(x, f.status);
    }
  }

  /** Upgrade (WebSocket and friends): the request head is forwarded and the bytes spliced. */
  async onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const ctx = this.contextOf(req.socket);
    if (!ctx) return void socket.destroy();
    socket.on('error', () => {});
    const l7 = toL7Request(req.method ?? 'GET', req.url ?? '/', req.headers, ctx, req.headers.host ?? '');
    const x = newExchange(l7, ctx, 'http1');
    x.upgrade = String(req.headers.upgrade ?? '');
    try {
      const plan = await this.pipeline.prepare(x, (status, headers, body) => {
        const lines = Object.entries(headers)
          .map(([k, v]) => `${k}: ${v}\r\n`)
          .join('');
        socket.end(
          `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\n${lines}connection: close\r\n\r\n${body}`,
        );
      });
      if (!plan) return this.pipeline.record(x, 0);
      const ep = this.pipeline.pickOnce(x, plan);
      const tunnel = await this.pipeline.connect(ep, ctx);
      const headers = forwardHeaders(req.headers, l7, ctx, plan.action, 'http');
      let headText = `${req.method} ${rewrittenPath(req.url ?? '/', plan.action, l7.path)} HTTP/1.1\r\n`;
      for (const [k, v] of Object.entries(headers)) {
        for (const one of Array.isArray(v) ? v : [v]) if (one !== undefined) headText += `${k}: ${one}\r\n`;
      }
      tunnel.write(`${headText}\r\n`, 'latin1');
      if (head.length) tunnel.write(head);
      tunnel.pipe(socket).pipe(tunnel);
      socket.on('error', () => tunnel.destroy());
      tunnel.on('error', () => socket.destroy());
      this.pipeline.record(x, 101);
    } catch (err) {
      const f = toFailure(err);
      socket.end(
        `HTTP/1.1 ${f.status} ${http.STATUS_CODES[f.status] ?? ''}\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(f.body) + 1}\r\n\r\n${f.body}\n`,
      );
      x.reason = f.reason;
      this.pipeline.record(x, f.status);
    }
  }

  onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    const status =
      err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const ctx = this.contextOf(socket);
    this.log.warn(
      {
        'src.identity': ctx?.peerIdentity,
        'dst.addr': ctx && `${ctx.target.host}:${ctx.target.port}`,
        status,
        reason: `${err.code ?? 'error'}: ${err.message}`,
      },
      'request refused: malformed HTTP',
    );
    if (socket.writable) {
      const body = `${http.STATUS_CODES[status]}: ${err.code ?? err.message}\n`;
      socket.end(
        `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
      );
    } else socket.destroy();
  }

  /**
   * One try on a pooled connection. A reused connection that fails before any response byte
   * (the backend closed it while idle) processed nothing: with a buffered body it is sent again
   * once on another connection, and otherwise counts as a connect failure (safe to retry).
   */
  private async send(
    x: Exchange,
    limiter: ConnectionPoolLimiter | undefined,
    ep: UpstreamEndpoint,
    head: H1Request,
    body: Buffer | Readable,
    signal: AbortSignal,
  ): Promise<AttemptResult<http.IncomingMessage>> {
    for (let stale = 0; ; stale++) {
      const ex = await this.pool.request(limiter, ep, head, signal);
      if (!ex.ok) {
        if (ex.error === 'overflow') x.overflow = ex.reason;
        return { error: ex.error };
      }
      const upReq = ex.request;
      const outcome = await new Promise<AttemptResult<http.IncomingMessage>>((resolve) => {
        upReq.once('response', (r) => resolve({ status: r.statusCode ?? 502, response: r }));
        upReq.once('error', (err) =>
          resolve({ error: isAmbitError(err) || ex.reused ? 'connect-failure' : 'reset' }),
        );
        if (signal.aborted) upReq.destroy();
        else signal.addEventListener('abort', () => upReq.destroy(), { once: true });
        if (Buffer.isBuffer(body)) upReq.end(body);
        else body.pipe(upReq);
      });
      const staleConnection = outcome.error === 'connect-failure' && ex.reused && !signal.aborted;
      if (!staleConnection || stale > 0 || !Buffer.isBuffer(body)) return outcome;
      this.log.debug({ 'upstream.addr': ep.authority }, 'pooled connection was closed; sending again');
    }
  }

  /** Fire-and-forget copies (with a buffered body); responses and failures are discarded. */
  private mirror(plan: Plan, head: H1Request, body: Buffer): void {
    const host = String(head.headers.host ?? '');
    for (const m of this.pipeline.mirrorTargets(plan, host)) {
      const copy = { ...head, headers: { ...head.headers, host: m.authority } };
      void this.pool.request(m.limiter, m.endpoint, copy).then((ex) => {
        if (!ex.ok) return;
        ex.request.on('response', (r) => r.resume());
        ex.request.on('error', () => {});
        ex.request.end(body);
      });
    }
  }
}

/**
 * Pipes the upstream response down and resolves with the body bytes; ends early (destroying the
 * other side) if either goes away, so an upstream connection is never left half-read.
 */
function relay(upRes: http.IncomingMessage, res: http.ServerResponse): Promise<number> {
  let bytes = 0;
  return new Promise<number>((resolve) => {
    upRes.once('end', () => {
      if (Object.keys(upRes.trailers).length) res.addTrailers(upRes.trailers);
      resolve(bytes);
    });
    upRes.once('close', () => {
      if (!upRes.complete) res.destroy();
      resolve(bytes);
    });
    res.once('close', () => {
      if (!upRes.complete) upRes.destroy();
      resolve(bytes);
    });
    upRes.on('error', () => {});
    upRes.pipe(res);
    upRes.on('data', (c: Buffer) => (bytes += c.length));
  });
}

/** The body of a request when it is small and its length is known (so it can be retried), else undefined. */
async function bufferSmallBody(req: http.IncomingMessage): Promise<Buffer | undefined> {
  const te = req.headers['transfer-encoding'];
  const length = req.headers['content-length'];
  if (te === undefined && length === undefined) return Buffer.alloc(0);
  if (te !== undefined || Number(length) > RETRY_BUFFER_BYTES) return undefined;
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** How long a discarded answer may take to drain before its connection is closed instead. */
const DISCARD_DRAIN_MS = 1000;

/** Reads an answer nobody will see to its end (or closes its connection), then lets the pool take the connection back. */
async function discard(res: http.IncomingMessage): Promise<void> {
  if (!res.readableEnded && !res.destroyed) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => res.destroy(), DISCARD_DRAIN_MS);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      res.once('end', done);
      res.once('close', done);
      res.resume();
    });
  }
  // The socket's 'free' (which returns the lease) follows the end on a later tick.
  await new Promise((r) => setImmediate(r));
}
