// HTTP/1.1 at the waypoint: each request through the shared pipeline (`pipeline.ts`), sent on a
// pooled keep-alive upstream connection (`h1-pool.ts`); a WebSocket `Upgrade` gets a tunnel of
// its own and is spliced only after the upstream's 101, else the connection stays HTTP/1.1
// (http1-upgrade.ts); CONNECT is refused (403); malformed input is answered 400/431 here with
// one log line.
import http from 'node:http';
import { once } from 'node:events';
import type net from 'node:net';
import type { Duplex, Readable } from 'node:stream';
import type { Logger } from '../common/log.js';
import { isAmbitError } from '../common/errors.js';
import type { TunnelContext } from './tunnel-context.js';
import { applyModifier, forwardHeaders, rewrittenPath, stripHopByHop, toL7Request } from './http-request.js';
import { failureOf, RETRY_BUFFER_BYTES, toFailure, type Plan, type RequestPipeline } from './pipeline.js';
import { newExchange, type Exchange } from './request-record.js';
import type { H1Request, UpstreamHttp1Pool } from './h1-pool.js';
import type { AttemptResult } from './resilience/retry.js';
import { defaultRetryPolicy } from './resilience/types.js';
import type { ConnectionPoolLimiter } from './resilience/pool.js';
import type { UpstreamEndpoint } from './upstream.js';
import { socketOf } from './stream-adapter.js';
import {
  hasBody,
  localAnswer,
  plainRequestHead,
  responseHead,
  upgradeKind,
  wantsClose,
  type BodyFraming,
} from './http1-upgrade.js';

export class Http1Handler {
  constructor(
    private readonly pipeline: RequestPipeline,
    private readonly pool: UpstreamHttp1Pool,
    private readonly contextOf: (socket: object) => TunnelContext | undefined,
    private readonly log: Logger,
    /** Hands a socket (back) to the HTTP/1.1 server: after a non-101 answer, or an upgrade it must parse as plain HTTP. */
    private readonly serveAgain: (socket: Duplex) => void,
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
      // The signal ends a CUSTOM (ext_authz) check the client no longer waits for.
      const plan = await this.pipeline.prepare(
        x,
        (status, headers, body) => {
          res.writeHead(status, headers).end(body);
        },
        abort.signal,
      );
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

  /**
   * Upgrade requests (http1-upgrade.ts has Envoy's rules): WebSocket is forwarded on a tunnel of
   * its own and spliced only once the upstream answers 101; any other answer is relayed and the
   * connection goes back to the HTTP server. h2c, and upgrades carrying a body, are handed back
   * as plain requests; other upgrade types get Envoy's 403.
   */
  async onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const ctx = this.contextOf(req.socket);
    if (!ctx) return void socket.destroy();
    const kind = upgradeKind(req.headers);
    if (kind === 'h2c' || (kind === 'websocket' && hasBody(req.headers)))
      return this.serveAsPlain(socket, Buffer.concat([plainRequestHead(req), head]));
    if (!socket.listeners('error').includes(ignoreError)) socket.on('error', ignoreError);
    const l7 = toL7Request(req.method ?? 'GET', req.url ?? '/', req.headers, ctx, req.headers.host ?? '');
    const x = newExchange(l7, ctx, 'http1');
    x.upgrade = String(req.headers.upgrade ?? '');
    if (kind === 'other') {
      socket.end(localAnswer(403, { 'content-type': 'text/plain' }, 'upgrade not allowed\n'));
      x.reason = `upgrade_failed: upgrade type ${JSON.stringify(x.upgrade)} is not enabled (only websocket)`;
      return this.pipeline.record(x, 403);
    }
    let answered: number | undefined;
    try {
      const plan = await this.pipeline.prepare(x, (status, headers, body) => {
        answered = status;
        socket.end(localAnswer(status, headers, body));
      });
      if (!plan) return this.pipeline.record(x, answered ?? 0);
      const ep = this.pipeline.pickOnce(x, plan);
      const tunnel = await this.pipeline.connect(ep, ctx);
      const headers = stripHopByHop(forwardHeaders(req.headers, l7, ctx, plan.action, 'http'));
      headers.connection = 'Upgrade';
      headers.upgrade = 'websocket';
      const upReq = http.request({
        method: req.method,
        path: rewrittenPath(req.url ?? '/', plan.action, l7.path),
        headers,
        // no `agent`: with agent false Node makes a fresh Agent, which ignores createConnection
        createConnection: () => socketOf(tunnel, false) as unknown as net.Socket,
      });
      const onGone = () => upReq.destroy(new Error('downstream went away'));
      const outcome = await new Promise<
        | { kind: '101'; res: http.IncomingMessage; up: Duplex; upHead: Buffer }
        | { kind: 'response'; res: http.IncomingMessage }
        | { kind: 'error'; error: Error }
      >((resolve) => {
        upReq.once('upgrade', (res, up: Duplex, upHead: Buffer) => resolve({ kind: '101', res, up, upHead }));
        upReq.once('response', (res) => resolve({ kind: 'response', res }));
        upReq.once('error', (error) => resolve({ kind: 'error', error }));
        socket.once('close', onGone);
        upReq.end();
      });
      socket.off('close', onGone);
      if (outcome.kind === 'error') {
        tunnel.destroy();
        throw outcome.error;
      }
      const out = stripHopByHop(
        applyModifier(outcome.res.headers, plan.action.responseHeaders, plan.backend?.responseHeaders),
      );
      if (outcome.kind === '101') {
        // The backend switched protocols: from here on the bytes are the upgraded protocol's.
        const { up, upHead } = outcome;
        up.on('error', () => socket.destroy());
        up.once('close', () => socket.destroy());
        socket.once('close', () => up.destroy());
        out.connection = 'Upgrade';
        out.upgrade = String(outcome.res.headers.upgrade ?? 'websocket');
        const { head: resHead } = responseHead(101, out, req.method ?? 'GET', false);
        socket.write(resHead);
        if (upHead.length) socket.write(upHead);
        if (head.length) up.write(head);
        up.pipe(socket).pipe(up);
        return this.pipeline.record(x, 101);
      }
      // Not upgraded: relay the answer, then the connection is HTTP/1.1 again.
      const res = outcome.res;
      const status = res.statusCode ?? 502;
      const close = wantsClose(req);
      const { head: resHead, framing } = responseHead(status, out, req.method ?? 'GET', close);
      socket.once('close', onGone);
      x.responseBytes = await relayRaw(res, socket, resHead, framing);
      socket.off('close', onGone);
      res.socket?.destroy(); // ends the tunnel (an HBONE stream end, not a reset); it carried this exchange only
      this.pipeline.record(x, status);
      if (close || socket.destroyed || !res.complete) return void socket.end();
      this.serveAsPlain(socket, head);
    } catch (err) {
      const f = toFailure(err);
      if (answered === undefined)
        socket.end(localAnswer(f.status, { 'content-type': 'text/plain', ...f.headers }, `${f.body}\n`));
      x.reason = f.reason;
      this.pipeline.record(x, f.status);
    }
  }

  /**
   * HTTP/1.1 CONNECT inside a tunnel to the waypoint: refused with 403, as Envoy does when CONNECT
   * is not enabled on the connection manager (Istio does not enable it on waypoints).
   */
  onConnect(req: http.IncomingMessage, socket: Duplex): void {
    const ctx = this.contextOf(req.socket);
    socket.on('error', ignoreError);
    if (!ctx) return void socket.destroy();
    const l7 = toL7Request('CONNECT', req.url ?? '', req.headers, ctx, req.headers.host ?? req.url ?? '');
    const x = newExchange(l7, ctx, 'http1');
    socket.end(localAnswer(403, { 'content-type': 'text/plain' }, 'CONNECT not allowed\n'));
    x.reason = 'upgrade_failed: CONNECT is not enabled on the waypoint';
    this.pipeline.record(x, 403);
  }

  /**
   * Gives a socket back to the HTTP server with `bytes` in front (a request it must parse itself).
   * Not while the previous answer on it is still being written: the client can send its next
   * request before that answer's 'finish' (its bytes are out, the callback is not), and a new
   * server connection would queue its first answer behind a response only the old connection
   * state tracks — that answer would never be sent (seen as a rare hang of the h2c test).
   * `_httpMessage` is Node's own field for the response that holds the socket.
   */
  private serveAsPlain(socket: Duplex, bytes: Buffer): void {
    if (socket.destroyed) return;
    const pending = (socket as { _httpMessage?: http.ServerResponse | null })._httpMessage;
    // Not `writableFinished`: it turns true once the bytes are handed on, before 'finish' (which
    // is what releases the socket) is emitted.
    if (pending) {
      let done = false;
      const again = () => {
        if (done) return;
        done = true;
        setImmediate(() => this.serveAsPlain(socket, bytes)); // after Node's own 'finish' handling
      };
      pending.once('finish', again);
      pending.once('close', again);
      return;
    }
    if (bytes.length) socket.unshift(bytes);
    this.serveAgain(socket);
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

const ignoreError = () => {};

/**
 * Writes an upstream answer down a socket the HTTP server does not own (after an upgrade that
 * did not happen), framed as `framing` says; resolves with the body bytes once it is all written.
 */
async function relayRaw(
  res: http.IncomingMessage,
  socket: Duplex,
  head: Buffer,
  framing: BodyFraming,
): Promise<number> {
  let bytes = 0;
  const write = async (b: Buffer | string) => {
    if (!socket.write(b)) await Promise.race([once(socket, 'drain'), once(socket, 'close')]);
  };
  await write(head);
  try {
    for await (const chunk of res) {
      const c = chunk as Buffer;
      bytes += c.length;
      if (framing === 'none' || socket.destroyed) continue;
      if (framing === 'chunked') await write(`${c.length.toString(16)}\r\n`);
      await write(c);
      if (framing === 'chunked') await write('\r\n');
    }
    if (framing === 'chunked' && !socket.destroyed) await write('0\r\n\r\n');
  } catch {
    socket.destroy(); // the answer was cut: the client must see the connection fail, not a short body
  }
  return bytes;
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
