// splice(): a cut is passed on as a cut (RFC 9113 §8.5: a stream error becomes a TCP RST, a TCP
// RST becomes RST_STREAM(CONNECT_ERROR)); a clean end stays a clean end (FIN / END_STREAM), and
// every byte arrives. Real sockets and a real HTTP/2 session on loopback (127.0.160.*; the
// node-proxy-death sequences at the end on 127.0.190.*).
import { afterEach, describe, expect, it } from 'vitest';
import http2 from 'node:http2';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { resetStream, splice, type SpliceResult } from '../../../src/proxy/splice.js';
import { isAmbitError } from '../../../src/common/errors.js';
import { responseFlagFor } from '../../../src/telemetry/connection-telemetry.js';

const HOST = '127.0.160.1';
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** What an app socket saw at its end: 'fin' (clean end) or the error code (ECONNRESET). */
function outcome(s: net.Socket): Promise<{ end: string; bytes: number }> {
  return new Promise((resolve) => {
    let bytes = 0;
    s.on('data', (c: Buffer) => (bytes += c.length));
    s.once('end', () => resolve({ end: 'fin', bytes }));
    s.once('error', (e: NodeJS.ErrnoException) => resolve({ end: e.code ?? e.message, bytes }));
  });
}

/**
 * An app connection on one side (accepted socket `proxySide`, client socket `app`) and an h2c
 * CONNECT stream on the other, whose server end the test controls (`far`).
 */
async function socketToStream(
  host = HOST,
  appSideOptions: net.ServerOpts = {},
): Promise<{
  app: net.Socket;
  proxySide: net.Socket;
  stream: http2.ClientHttp2Stream;
  far: http2.ServerHttp2Stream;
  farSession: http2.ServerHttp2Session;
  farSocket: net.Socket;
}> {
  const h2 = http2.createServer();
  const farSocketP = new Promise<net.Socket>((r) => h2.once('connection', r));
  const farP = new Promise<{ far: http2.ServerHttp2Stream; farSession: http2.ServerHttp2Session }>((r) =>
    h2.on('stream', (st) => {
      st.on('error', () => {});
      st.respond({ ':status': 200 });
      r({ far: st, farSession: st.session! });
    }),
  );
  await new Promise<void>((r) => h2.listen(0, host, r));
  const session = http2.connect(`http://${host}:${(h2.address() as AddressInfo).port}`);
  session.on('error', () => {});
  const stream = session.request({ ':method': 'CONNECT', ':authority': `${host}:1` });
  stream.on('error', () => {});
  await new Promise((r) => stream.once('response', r));
  const srv = net.createServer({ allowHalfOpen: true, ...appSideOptions });
  const proxySideP = new Promise<net.Socket>((r) => srv.once('connection', r));
  await new Promise<void>((r) => srv.listen(0, host, r));
  const app = net.connect({ host, port: (srv.address() as AddressInfo).port, allowHalfOpen: true });
  app.on('error', () => {});
  const proxySide = await proxySideP;
  const { far, farSession } = await farP;
  const farSocket = await farSocketP;
  cleanups.push(() => {
    session.destroy();
    h2.close();
    srv.close();
    app.destroy();
  });
  return { app, proxySide, stream, far, farSession, farSocket };
}

describe('splice passes an abort on as an abort', () => {
  it('a clean END_STREAM from the tunnel reaches the app as FIN with every byte, and no error', async () => {
    const t = await socketToStream();
    const result = splice(t.proxySide, t.stream);
    const seen = outcome(t.app);
    t.far.end(Buffer.alloc(100_000, 7));
    t.app.end();
    expect(await seen).toEqual({ end: 'fin', bytes: 100_000 });
    expect((await result).error).toBeUndefined();
  });

  it('the HBONE session destroyed mid-transfer (peer proxy died) reaches the app as ECONNRESET, flagged UC', async () => {
    const t = await socketToStream();
    const result = splice(t.proxySide, t.stream);
    const seen = outcome(t.app);
    t.far.write(Buffer.alloc(50_000, 1));
    await new Promise((r) => setTimeout(r, 50));
    t.farSocket.destroy(); // the far proxy's process is gone: the kernel closes its socket
    const o = await seen;
    expect(o.end).toBe('ECONNRESET');
    const r: SpliceResult = await result;
    expect(isAmbitError(r.error, 'UPSTREAM_RESET')).toBe(true);
    expect(responseFlagFor(r.error)).toBe('UC');
  });

  it('an RST_STREAM from the far side reaches the app as ECONNRESET', async () => {
    const t = await socketToStream();
    const result = splice(t.proxySide, t.stream);
    const seen = outcome(t.app);
    resetStream(t.far, http2.constants.NGHTTP2_CONNECT_ERROR);
    expect((await seen).end).toBe('ECONNRESET');
    expect(isAmbitError((await result).error, 'UPSTREAM_RESET')).toBe(true);
  });

  it('an app that resets its connection makes the peer see RST_STREAM(CONNECT_ERROR), not END_STREAM, flagged DC', async () => {
    const t = await socketToStream();
    const result = splice(t.proxySide, t.stream);
    const farClosed = new Promise<{ rst: number; ended: boolean }>((r) => {
      let ended = false;
      t.far.on('end', () => (ended = true));
      t.far.resume();
      t.far.once('close', () => r({ rst: t.far.rstCode ?? -1, ended }));
    });
    t.app.write('some bytes');
    await new Promise((r) => setTimeout(r, 30));
    t.app.resetAndDestroy();
    expect(await farClosed).toEqual({ rst: http2.constants.NGHTTP2_CONNECT_ERROR, ended: false });
    const r = await result;
    expect(isAmbitError(r.error, 'DOWNSTREAM_RESET')).toBe(true);
    expect(responseFlagFor(r.error)).toBe('DC');
  });

  it('a GOAWAY with an error code mid-transfer reaches the app as ECONNRESET', async () => {
    const t = await socketToStream();
    const result = splice(t.proxySide, t.stream);
    const seen = outcome(t.app);
    t.far.write(Buffer.alloc(10_000, 2));
    await new Promise((r) => setTimeout(r, 30));
    t.farSession.goaway(http2.constants.NGHTTP2_INTERNAL_ERROR);
    t.farSession.destroy();
    expect((await seen).end).toBe('ECONNRESET');
    expect(isAmbitError((await result).error, 'UPSTREAM_RESET')).toBe(true);
  });

  it('a graceful GOAWAY (NO_ERROR) lets the open stream finish cleanly: FIN, every byte', async () => {
    const t = await socketToStream();
    const result = splice(t.proxySide, t.stream);
    const seen = outcome(t.app);
    t.farSession.close(); // GOAWAY(NO_ERROR): no new streams, open ones continue
    await new Promise((r) => setTimeout(r, 30));
    t.far.end(Buffer.alloc(30_000, 3));
    t.app.end();
    expect(await seen).toEqual({ end: 'fin', bytes: 30_000 });
    expect((await result).error).toBeUndefined();
  });

  it('a connection error (TCP RST) under the session reaches the app as ECONNRESET', async () => {
    const t = await socketToStream();
    const result = splice(t.proxySide, t.stream);
    const seen = outcome(t.app);
    t.farSocket.resetAndDestroy(); // the client's connection gets ECONNRESET
    expect((await seen).end).toBe('ECONNRESET');
    expect(isAmbitError((await result).error, 'UPSTREAM_RESET')).toBe(true);
  });

  it('socket to socket: an upstream reset reaches the downstream as a reset', async () => {
    const up = net.createServer();
    const upConn = new Promise<net.Socket>((r) => up.once('connection', r));
    await new Promise<void>((r) => up.listen(0, HOST, r));
    const down = net.createServer({ allowHalfOpen: true });
    const downConn = new Promise<net.Socket>((r) => down.once('connection', r));
    await new Promise<void>((r) => down.listen(0, HOST, r));
    const app = net.connect((down.address() as AddressInfo).port, HOST);
    app.on('error', () => {});
    const upstream = net.connect({
      port: (up.address() as AddressInfo).port,
      host: HOST,
      allowHalfOpen: true,
    });
    cleanups.push(() => {
      up.close();
      down.close();
      app.destroy();
    });
    const result = splice(await downConn, upstream);
    const seen = outcome(app);
    const u = await upConn;
    u.write('partial');
    await new Promise((r) => setTimeout(r, 30));
    u.resetAndDestroy();
    expect(await seen).toEqual({ end: 'ECONNRESET', bytes: 7 });
    expect(isAmbitError((await result).error, 'UPSTREAM_RESET')).toBe(true);
  });
});

/** Polls `cond` every 5 ms; fails (never hangs) after `ms`. */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Everything an app socket reads (resumed now) until its end or error, with a SHA-256. */
function drain(s: net.Socket): Promise<{ end: string; bytes: number; sha: string }> {
  const hash = createHash('sha256');
  return new Promise((resolve) => {
    let bytes = 0;
    s.on('data', (c: Buffer) => {
      bytes += c.length;
      hash.update(c);
    });
    s.once('end', () => resolve({ end: 'fin', bytes, sha: hash.digest('hex') }));
    s.once('error', (e: NodeJS.ErrnoException) =>
      resolve({ end: e.code ?? e.message, bytes, sha: hash.digest('hex') }),
    );
    s.resume();
  });
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

// The sequence behind test/adversarial/faults.test.ts (a) "2 of 100 apps see a clean FIN with
// missing bytes": the far side sent everything and END_STREAM (a real one, from a live peer),
// the node proxy passed it on as FIN while the app was still reading, and then the far node
// proxy was SIGKILLed while the app's half of the tunnel was still open. The splice used to
// answer that cut with a TCP RST to the app, which threw away the complete response still in
// the kernel's send queue behind the FIN, and the app's libuv, reading the rest of its receive
// queue with the RST pending, reported a plain EOF. Envoy closes the downstream with FlushWrite
// when the upstream goes away (tcp_proxy onUpstreamEvent); so do we once FIN was passed on.
describe('a node proxy death never reaches the app as a short clean FIN', () => {
  it('END_STREAM passed on as FIN, then the session dies (app half open, bytes still in the kernel): every byte and the FIN arrive', async () => {
    const t = await socketToStream('127.0.190.1');
    t.app.pause(); // a slow app: the response waits in the kernel's queues
    t.far.resume(); // the far proxy reads the app's half, as inbound.ts does (never ended here)
    const result = splice(t.proxySide, t.stream);
    const body = randomBytes(1024 * 1024); // < the ~3.8 MB loopback queues hold, > the app's 128 KiB receive buffer
    t.far.end(body);
    // The real END_STREAM has been passed on: FIN handed to the kernel, behind unsent bytes.
    await until(() => t.proxySide.writableFinished, 5000, 'the FIN to be handed to the kernel');
    t.farSocket.resetAndDestroy(); // the far node proxy is gone: its kernel resets the connection
    const r = await result;
    expect(isAmbitError(r.error, 'UPSTREAM_RESET'), 'the cut is still recorded, flagged UC').toBe(true);
    expect(await drain(t.app)).toEqual({ end: 'fin', bytes: body.length, sha: sha(body) });
  });

  it('END_STREAM passed on while bytes are still in the proxy (not yet flushed), then the session dies: every byte and the FIN arrive', async () => {
    // A socket buffer larger than the kernel's queues, so END_STREAM is read while Node still
    // holds bytes for the app (the libuv shutdown is not issued yet).
    const t = await socketToStream('127.0.190.2', { highWaterMark: 8 * 1024 * 1024 });
    t.app.pause();
    t.far.resume();
    const result = splice(t.proxySide, t.stream);
    const body = randomBytes(6 * 1024 * 1024);
    t.far.end(body);
    await until(() => t.proxySide.writableEnded, 10_000, 'END_STREAM to be passed on');
    expect(t.proxySide.writableFinished, 'precondition: bytes still held by the proxy').toBe(false);
    t.farSocket.resetAndDestroy();
    await until(() => t.stream.destroyed, 5000, 'the tunnel to be cut');
    expect(await drain(t.app)).toEqual({ end: 'fin', bytes: body.length, sha: sha(body) });
    expect(isAmbitError((await result).error, 'UPSTREAM_RESET')).toBe(true);
  });

  it('a session destroyed without an error (PING timeout; a reset after GOAWAY) ends its streams with code 0: the app sees ECONNRESET, not FIN', async () => {
    const t = await socketToStream('127.0.190.3');
    const result = splice(t.proxySide, t.stream);
    const seen = outcome(t.app);
    t.far.write(Buffer.alloc(20_000, 4));
    await new Promise((r) => setTimeout(r, 50));
    // What Node does itself on ECONNRESET after a GOAWAY (socketOnError → session.destroy()),
    // and what the pool did on a PING timeout: every stream is closed with code 0 and its
    // readable side ended by Node, with no 'error'.
    t.stream.session!.destroy();
    expect((await seen).end).toBe('ECONNRESET');
    expect(isAmbitError((await result).error, 'UPSTREAM_RESET')).toBe(true);
  });

  it('the same after the app half-closed (no "aborted" from Node): the app sees ECONNRESET, not FIN', async () => {
    const t = await socketToStream('127.0.190.4');
    const result = splice(t.proxySide, t.stream);
    const seen = outcome(t.app);
    t.far.resume();
    t.far.write(Buffer.alloc(20_000, 5));
    t.app.end(); // END_STREAM to the far side: our writable half of the stream is ended
    await until(() => t.stream.writableFinished, 5000, 'our END_STREAM to be sent');
    t.stream.session!.destroy();
    expect((await seen).end).toBe('ECONNRESET');
    expect(isAmbitError((await result).error, 'UPSTREAM_RESET')).toBe(true);
  });
});
