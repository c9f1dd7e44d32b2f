// HTTP/1.1 at the waypoint: the front for the HTTP/1.1 server's events and the protocol adapter
// the request pipeline drives (`pipeline.ts`, `http/adapter.ts`). The adapter knows framing: a
// small body with a known length is buffered (retries and mirrors replay it), a chunked or large
// one streams through once; each try goes on a pooled keep-alive upstream connection
// (`h1-pool.ts`); the answer is relayed with its trailers. Upgrades and CONNECT go to
// `http/h1-upgrade.ts`; malformed input is answered 400/431 here with one log line.
import http from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import type { Logger } from '../../common/log.js';
import { isAmbitError } from '../../common/errors.js';
import type { TunnelContext } from '../tunnel-context.js';
import { applyModifier, forwardHeaders, rewrittenPath, stripHopByHop, toL7Request } from './http-request.js';
import type { RequestPipeline } from '../pipeline.js';
import { newExchange, type Exchange } from '../request-record.js';
import type { H1Request, UpstreamHttp1Pool } from '../upstream/h1-pool.js';
import type { AttemptResult } from '../resilience/retry.js';
import type { ConnectionPoolLimiter } from '../resilience/pool.js';
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
import { Http1Upgrades } from './h1-upgrade.js';

/** One downstream HTTP/1.1 request. */
interface H1Down {
  req: http.IncomingMessage;
  res: http.ServerResponse;
}

/** The upstream request: its head, and the body buffered (retries, mirrors) or the request itself to stream once. */
class H1Upstream implements UpstreamRequest {
  readonly oneTry: boolean;
  readonly replayable = true;
  readonly bytes: number | undefined;
  readonly authority: string;

  constructor(
    readonly head: H1Request,
    readonly body: Buffer | Readable,
  ) {
    const buffered = Buffer.isBuffer(body);
    this.oneTry = !buffered;
    this.bytes = buffered ? body.length : undefined;
    this.authority = String(head.headers.host ?? '');
  }

  whenBuffered(cb: (body: Buffer) => void): void {
    if (Buffer.isBuffer(this.body)) cb(this.body);
  }
}

export class Http1Adapter implements ProtocolAdapter<H1Down, H1Upstream, http.IncomingMessage> {
  private readonly upgrades: Http1Upgrades;

  constructor(
    private readonly pipeline: RequestPipeline,
    private readonly pool: UpstreamHttp1Pool,
    private readonly contextOf: (socket: object) => TunnelContext | undefined,
    private readonly log: Logger,
    /** Hands a socket (back) to the HTTP/1.1 server: after a non-101 answer, or an upgrade it must parse as plain HTTP. */
    serveAgain: (socket: Duplex) => void,
  ) {
    this.upgrades = new Http1Upgrades(pipeline, contextOf, serveAgain);
  }

  /** The server's 'request' event: the request goes through the pipeline, which answers and records it. */
  onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const ctx = this.contextOf(req.socket);
    if (!ctx) return void res.destroy();
    const l7 = toL7Request(req.method ?? 'GET', req.url ?? '/', req.headers, ctx, req.headers.host ?? '');
    void this.pipeline.serve(this, { req, res }, newExchange(l7, ctx, 'http1'));
  }

  /** The server's 'upgrade' event (`http/h1-upgrade.ts`). */
  onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    this.upgrades.onUpgrade(req, socket, head);
  }

  /** The server's 'connect' event: refused with 403 (`http/h1-upgrade.ts`). */
  onConnect(req: http.IncomingMessage, socket: Duplex): void {
    this.upgrades.onConnect(req, socket);
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

  // ---- the adapter: what the pipeline calls, in the order it calls it

  watch({ res }: H1Down): AbortSignal {
    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) abort.abort(new Error('downstream went away'));
    });
    return abort.signal;
  }

  closed({ res }: H1Down): boolean {
    return res.destroyed;
  }

  answer({ res }: H1Down, _x: Exchange, a: LocalAnswer): number {
    res.writeHead(a.status, a.headers).end(a.body);
    return res.statusCode;
  }

  fail({ res }: H1Down, _x: Exchange, f: HttpFailure): number {
    if (!res.headersSent)
      res.writeHead(f.status, { 'content-type': 'text/plain', ...f.headers }).end(`${f.body}\n`);
    else res.destroy();
    return f.status;
  }

  /**
   * The upstream head, and the body: a small one with a known length is buffered so it can be
   * sent again on a retry; a large or chunked one streams, without retries (Envoy stops
   * retrying past its buffer limit too).
   */
  async readBody({ req }: H1Down, x: Exchange, plan: Plan): Promise<H1Upstream> {
    const head: H1Request = {
      method: req.method ?? 'GET',
      path: rewrittenPath(req.url ?? '/', plan.action, x.l7.path),
      headers: stripHopByHop(forwardHeaders(req.headers, x.l7, x.ctx, plan.action, 'http')),
    };
    return new H1Upstream(head, (await bufferSmallBody(req)) ?? req);
  }

  /**
   * One try on a pooled connection. A reused connection that fails before any response byte
   * (the backend closed it while idle) processed nothing: with a buffered body it is sent again
   * once on another connection, and otherwise counts as a connect failure (safe to retry).
   */
  async sendTry(
    { head, body }: H1Upstream,
    x: Exchange,
    ep: UpstreamEndpoint,
    signal: AbortSignal,
    limiter: ConnectionPoolLimiter | undefined,
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

  /** A retried answer: read to its end (or its connection closed), so the pool takes the connection back. */
  discard(res: http.IncomingMessage): Promise<void> {
    return discard(res);
  }

  /** An answer nobody will read (the client went away): its connection is closed, never left half-read. */
  abandon(res: http.IncomingMessage): void {
    res.destroy();
  }

  /** The answer down: headers edited by the route and the backend, hop-by-hop removed, body and trailers. */
  async relay({ res }: H1Down, x: Exchange, plan: Plan, upRes: http.IncomingMessage): Promise<number> {
    const out = applyModifier(upRes.headers, plan.action.responseHeaders, plan.backend?.responseHeaders);
    res.writeHead(upRes.statusCode ?? 502, stripHopByHop(out));
    x.responseBytes = await relay(upRes, res);
    return upRes.statusCode ?? 502;
  }

  /** A copy on a pooled connection of the mirror's destination; its answer is read and dropped. */
  mirror({ head }: H1Upstream, m: MirrorTarget, body: Buffer): void {
    const copy = { ...head, headers: { ...head.headers, host: m.authority } };
    void this.pool.request(m.limiter, m.endpoint, copy).then((ex) => {
      if (!ex.ok) return;
      ex.request.on('response', (r) => r.resume());
      ex.request.on('error', () => {});
      ex.request.end(body);
    });
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
