// An HBONE tunnel stream (an HTTP/2 stream) seen as a plain socket-like Duplex, so Node's HTTP/1.1
// server and client can run over it. Needed because http's corked writev of latin1 strings is
// garbled by Http2Stream's writev; here every chunk reaches the tunnel as a Buffer. Backpressure
// and half-close are passed through both ways; closing without an error ends the stream rather
// than resetting it.
import { Duplex } from 'node:stream';

export interface TunnelLike extends Duplex {
  setTimeout?(ms: number, cb?: () => void): unknown;
}

export interface SocketLike extends Duplex {
  setTimeout(ms: number, cb?: () => void): this;
  setNoDelay(noDelay?: boolean): this;
  setKeepAlive(enable?: boolean, delay?: number): this;
  ref(): this;
  unref(): this;
  /**
   * The peer ended its side of the tunnel (its FIN arrived), read or not yet: an upgrade socket
   * the HTTP server handed over is not read while the waypoint decides, so its 'end' waits.
   */
  remoteEnded: boolean;
}

/** How long a half-closed tunnel may wait for the peer's end before it is reset. */
const CLOSE_GRACE_MS = 5000;

function gracefulClose(inner: TunnelLike): void {
  if (!inner.writableEnded) inner.end();
  inner.resume(); // drain whatever the peer still sends, so its end arrives
  const timer = setTimeout(() => inner.destroy(), CLOSE_GRACE_MS);
  timer.unref();
  inner.once('close', () => clearTimeout(timer));
}

/**
 * `allowHalfOpen: false` (client sockets, as net.Socket's default): the peer's end closes the
 * socket, so a pooled keep-alive connection the backend closed leaves the agent's pool at once.
 */
export function socketOf(inner: TunnelLike, allowHalfOpen = true): SocketLike {
  // Idle timeout as net.Socket has it: 'timeout' after `ms` without a read or a write. The HTTP
  // server uses it for keep-alive and header timeouts, the agent to drop idle pooled sockets.
  const idleMs = 0;
  let idleTimer: NodeJS.Timeout | undefined;
  const touch = () => {
    if (idleTimer) clearTimeout(idleTimer);
    idleTimer = undefined;
    if (idleMs > 0 && !d.destroyed) {
      idleTimer = setTimeout(() => d.emit('timeout'), idleMs);
      idleTimer.unref();
    }
  };
  const d = new Duplex({
    allowHalfOpen,
    write(chunk: Buffer, _enc, cb) {
      touch();
      inner.write(chunk, cb);
    },
    final(cb) {
      inner.end();
      cb();
    },
    read() {
      inner.resume();
    },
    destroy(err, cb) {
      // A clean destroy (HTTP/1.1 done with the connection) ends the stream instead of resetting
      // it: a RST_STREAM per request would trip the peer's rapid-reset limit (nghttp2 answers a
      // burst of resets with GOAWAY, killing every stream on the connection).
      if (err) inner.destroy(err);
      else if (!inner.destroyed) gracefulClose(inner);
      cb(err);
    },
  }) as SocketLike;
  inner.on('data', (c: Buffer) => {
    touch();
    if (!d.push(c)) inner.pause();
  });
  inner.on('end', () => {
    d.remoteEnded = true;
    d.push(null);
  });
  inner.on('error', (e) => d.destroy(e));
  inner.on('close', () => {
    if (idleTimer) clearTimeout(idleTimer);
    if (!d.destroyed) d.destroy();
  });
  d.setTimeout = (ms, cb) => {
    // Delegated to the HTTP/2 stream, as before the idle-timer experiment (see README).
    inner.setTimeout?.(ms, cb);
    return d;
  };
  d.setNoDelay = () => d;
  d.setKeepAlive = () => d;
  d.ref = () => d;
  d.unref = () => d;
  d.remoteEnded = false;
  return d;
}
