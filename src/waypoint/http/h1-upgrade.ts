// HTTP/1.1 `Upgrade` and CONNECT at the waypoint, the I/O half (`http1-upgrade.ts` has the pure
// rules and Envoy's meaning): the front for the HTTP server's 'upgrade' and 'connect' events and
// the `UpgradeAdapter` the pipeline drives (`RequestPipeline.serveUpgrade`). A WebSocket request
// is forwarded on a tunnel of its own and spliced only once the upstream answers 101; any other
// answer is relayed down the raw socket and the connection goes back to the HTTP server. h2c,
// and upgrades carrying a body, are handed back as plain requests; other upgrade types and
// CONNECT get Envoy's local 403.
import http from 'node:http';
import { once } from 'node:events';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { TunnelContext } from '../tunnel-context.js';
import { applyModifier, forwardHeaders, rewrittenPath, stripHopByHop, toL7Request } from './http-request.js';
import type { RequestPipeline } from '../pipeline.js';
import { newExchange, type Exchange } from '../request-record.js';
import { socketOf, type SocketLike } from './stream-adapter.js';
import {
  hasBody,
  localAnswer,
  plainRequestHead,
  responseHead,
  upgradeKind,
  wantsClose,
  type BodyFraming,
} from './http1-upgrade.js';
import type { LocalAnswer, Plan, UpgradeAdapter } from './adapter.js';
import { HttpFailure } from './failure.js';

/** One upgrade (or CONNECT) request: the parsed head, the raw socket, bytes read past the head. */
interface UpgradeDown {
  req: http.IncomingMessage;
  socket: Duplex;
  head: Buffer;
}

/** What a WebSocket upgrade sent upstream came back as. */
type UpgradeOutcome =
  | { kind: '101'; res: http.IncomingMessage; up: Duplex; upHead: Buffer }
  | { kind: 'response'; res: http.IncomingMessage }
  | { kind: 'error'; error: Error };

export class Http1Upgrades implements UpgradeAdapter<UpgradeDown> {
  constructor(
    private readonly pipeline: RequestPipeline,
    private readonly contextOf: (socket: object) => TunnelContext | undefined,
    /** Hands a socket (back) to the HTTP/1.1 server: after a non-101 answer, or an upgrade it must parse as plain HTTP. */
    private readonly serveAgain: (socket: Duplex) => void,
  ) {}

  /** The HTTP server's 'upgrade' event (http1-upgrade.ts has Envoy's rules). */
  onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const ctx = this.contextOf(req.socket);
    if (!ctx) return void socket.destroy();
    const kind = upgradeKind(req.headers);
    if (kind === 'h2c' || (kind === 'websocket' && hasBody(req.headers)))
      return this.serveAsPlain(socket, Buffer.concat([plainRequestHead(req), head]));
    if (!socket.listeners('error').includes(ignoreError)) socket.on('error', ignoreError);
    const l7 = toL7Request(req.method ?? 'GET', req.url ?? '/', req.headers, ctx, req.headers.host ?? '');
    const x = newExchange(l7, ctx, 'http1');
    x.upgrade = String(req.headers.upgrade ?? '');
    const down: UpgradeDown = { req, socket, head };
    if (kind === 'other')
      return this.pipeline.refuse(
        this,
        down,
        x,
        new HttpFailure(
          403,
          `upgrade_failed: upgrade type ${JSON.stringify(x.upgrade)} is not enabled (only websocket)`,
          'upgrade not allowed',
        ),
      );
    void this.pipeline.serveUpgrade(this, down, x);
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
    this.pipeline.refuse(
      this,
      { req, socket, head: EMPTY },
      x,
      new HttpFailure(403, 'upgrade_failed: CONNECT is not enabled on the waypoint', 'CONNECT not allowed'),
    );
  }

  /**
   * Gone once the tunnel is torn down or the client's FIN arrived: Envoy's downstream connections
   * run with half-close disabled, where "a remote FIN means the remote intends a full close"
   * (source/common/network/connection_impl.cc, readDisable and onReadReady), even while reads
   * are disabled (early close detection). The socket is not read while the waypoint decides, so
   * its own 'end' has not fired; the adapter under it (stream-adapter.ts) knows.
   */
  closed({ socket }: UpgradeDown): boolean {
    return socket.destroyed || (socket as Partial<SocketLike>).remoteEnded === true;
  }

  answer({ socket }: UpgradeDown, _x: Exchange, a: LocalAnswer): number {
    socket.end(localAnswer(a.status, a.headers, a.body));
    return a.status;
  }

  fail({ socket }: UpgradeDown, _x: Exchange, f: HttpFailure): number {
    // Once an answer went down (a local one, or a relayed head), nothing more is written.
    if (!socket.writableEnded)
      socket.end(localAnswer(f.status, { 'content-type': 'text/plain', ...f.headers }, `${f.body}\n`));
    return f.status;
  }

  async upgrade(down: UpgradeDown, x: Exchange, plan: Plan, tunnel: Duplex): Promise<number> {
    const { req, socket, head } = down;
    const headers = stripHopByHop(forwardHeaders(req.headers, x.l7, x.ctx, plan.action, 'http'));
    headers.connection = 'Upgrade';
    headers.upgrade = 'websocket';
    const upReq = http.request({
      method: req.method,
      path: rewrittenPath(req.url ?? '/', plan.action, x.l7.path),
      headers,
      // no `agent`: with agent false Node makes a fresh Agent, which ignores createConnection
      createConnection: () => socketOf(tunnel, false) as unknown as net.Socket,
    });
    const onGone = () => upReq.destroy(new Error('downstream went away'));
    const outcome = await new Promise<UpgradeOutcome>((resolve) => {
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
      return 101;
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
    if (close || socket.destroyed || !res.complete) socket.end();
    else this.serveAsPlain(socket, head);
    return status;
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
}

const EMPTY = Buffer.alloc(0);

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
