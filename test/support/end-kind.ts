// Tells a real FIN from a reset that Node reported as a plain end.
//
// libuv 1.46 (Node 20) reports a TCP RST that arrives while unread bytes still wait in the socket
// as EOF (libuv/libuv#2319), so an app's 'end' alone cannot tell a cut connection from a clean
// close. The kernel still knows: after a FIN the connection is half-open and a write succeeds;
// after a RST the next write fails with ECONNRESET (or EPIPE). Tests that must tell the two apart
// call `keepHalfOpen` when the socket is made and `endKind` when it emits 'end'.
import type net from 'node:net';

/** Keeps Node from ending our half on 'end', so `endKind` can still write. */
export function keepHalfOpen(sock: net.Socket): void {
  sock.allowHalfOpen = true;
}

/** After 'end': 'FIN' if the peer only half-closed, 'RST' if the connection was reset. */
export function endKind(sock: net.Socket, waitMs = 300): Promise<'FIN' | 'RST'> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (k: 'FIN' | 'RST') => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(k);
    };
    const onError = (err: NodeJS.ErrnoException) =>
      settle(err.code === 'ECONNRESET' || err.code === 'EPIPE' ? 'RST' : 'FIN');
    sock.once('error', onError);
    const timer = setTimeout(() => settle('FIN'), waitMs);
    if (sock.destroyed || sock.writableEnded) return settle('FIN');
    sock.write(Buffer.from([0]), (err) => err && onError(err as NodeJS.ErrnoException));
  });
}
