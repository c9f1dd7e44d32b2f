// Byte-exact bidirectional copy between the downstream (the side that opened the connection)
// and the upstream, with backpressure (pipe) and TCP half-close in both directions: a FIN (or
// END_STREAM) from one side ends the other side's writable half only.
//
// An abort is passed on as an abort, never as a clean close (RFC 9113 §8.5: a proxy treats any
// error on the TCP connection, a RST included, as a stream error CONNECT_ERROR, and MUST send a
// TCP RST when it detects an error with the stream or the HTTP/2 connection; Envoy does the same
// for tunnelled TCP). A side aborts when it errors, or closes before both its halves ended
// cleanly: an HBONE stream reset (RST_STREAM), its session destroyed, a GOAWAY with an error or a
// TLS error under it, or a socket reset. The other side is then reset: a socket with a TCP RST
// (resetAndDestroy), an HTTP/2 stream with RST_STREAM(CONNECT_ERROR). The app thus sees an error
// (ECONNRESET), never a short transfer that looks complete. The result names which side broke
// with a coded error (UPSTREAM_RESET / DOWNSTREAM_RESET) that the one flag mapping
// (telemetry/connection-telemetry.ts responseFlagFor) turns into Envoy's UC / DC.
//
// Two traps, both found by test/adversarial/faults.test.ts (a) (destination node proxy SIGKILLed
// under 100 transfers) and both reproduced in test/unit/proxy/splice.test.ts:
// - Node ends an HTTP/2 stream's readable side ('end', rstCode 0, no 'error') also when its
//   session is destroyed without an error — after a PING timeout, or a connection reset that
//   follows a GOAWAY (Node's socketOnError then calls session.destroy() with no error). Only an
//   'end' on a live stream is END_STREAM; one that comes after the stream was destroyed (its
//   teardown pushes the end) or closed before its end (Node emits 'aborted') is a cut.
// - A socket whose writable half already carried a real END_STREAM as FIN holds a complete
//   transfer, partly still in the kernel's send queue behind that FIN. A TCP RST now would throw
//   those bytes away (SO_LINGER 0), and a Node/libuv app that reads the rest of its receive queue
//   with the RST pending reports a plain EOF (uv__stream_io's POLLHUP short-circuit, libuv#2319): a short
//   transfer that looks complete. libuv also refuses the RST while our shutdown is still pending.
//   So when the other half is cut later, that socket is flushed and closed (its FIN already
//   says all), as Envoy's tcp_proxy closes the downstream with FlushWrite when the upstream
//   closes; the app's own writes after that meet the kernel's RST.
import http2 from 'node:http2';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { AmbitError, errorMessage } from '../common/errors.js';

export interface SpliceResult {
  /** Set when the splice did not end cleanly: an AmbitError UPSTREAM_RESET or DOWNSTREAM_RESET. */
  error?: AmbitError;
}

export function splice(downstream: Duplex, upstream: Duplex): Promise<SpliceResult> {
  return new Promise((resolve) => {
    let error: AmbitError | undefined;
    let closed = 0;
    const abort = (side: 'upstream' | 'downstream', self: Duplex, cause?: Error) => {
      error ??= new AmbitError(
        side === 'upstream' ? 'UPSTREAM_RESET' : 'DOWNSTREAM_RESET',
        `${side} ${describeAbort(self, cause)}`,
        cause ? { cause } : undefined,
      );
      reset(downstream);
      reset(upstream);
    };
    const watch = (self: Duplex, side: 'upstream' | 'downstream') => {
      self.on('error', (err: Error) => abort(side, self, err));
      self.once('close', () => {
        // A side that closed without ending both halves cleanly was aborted: pass the abort on.
        const rst = (self as Partial<http2.Http2Stream>).rstCode;
        const resetCode = rst !== undefined && rst !== http2.constants.NGHTTP2_NO_ERROR;
        if (resetCode || !self.readableEnded || !self.writableFinished) abort(side, self);
        if (++closed === 2) resolve(error ? { error } : {});
      });
    };
    // Ends are passed on by hand, not by pipe(): Node ends an HTTP/2 stream's readable side
    // ('end') also when the stream was reset or its session torn down, so an 'end' only counts
    // as END_STREAM when the stream is live, carries no error code and was not closed before its
    // end arrived (see the header); otherwise it is the abort it is.
    const forward = (src: Duplex, dst: Duplex, side: 'upstream' | 'downstream') => {
      const cut = watchForCut(src);
      const onEnd = (live: boolean) => {
        const rst = (src as Partial<http2.Http2Stream>).rstCode;
        if (rst !== undefined && rst !== http2.constants.NGHTTP2_NO_ERROR) abort(side, src);
        else if (live && (cut.closedBeforeEnd || src.destroyed)) abort(side, src);
        else if (!dst.destroyed) dst.end();
      };
      src.pipe(dst, { end: false });
      // A side that ended before the splice began (a sniffer read its END_STREAM) emits no
      // 'end' again: pass its end on now, as pipe() would. Its end was read as data by the
      // sniffer, so it was END_STREAM; only the error code can still say otherwise.
      if (src.readableEnded) process.nextTick(onEnd, false);
      else src.once('end', () => onEnd(true));
    };
    watch(downstream, 'downstream');
    watch(upstream, 'upstream');
    forward(downstream, upstream, 'downstream');
    forward(upstream, downstream, 'upstream');
    coalesceWrites(downstream, upstream);
    coalesceWrites(upstream, downstream);
  });
}

/**
 * An HTTP/2 stream that closes while its readable side has not received its end yet emits
 * 'aborted' (Node's closeStream); an 'end' after that is Node's, not the peer's END_STREAM.
 */
function watchForCut(src: Duplex): { closedBeforeEnd: boolean } {
  const state = { closedBeforeEnd: false };
  if (src instanceof net.Socket) return state; // a socket's 'end' is a FIN; a reset is an 'error'
  src.once('aborted', () => {
    if (!(src as Duplex & { _readableState?: { ended?: boolean } })._readableState?.ended)
      state.closedBeforeEnd = true;
  });
  return state;
}

/** How long a socket that already carried a clean FIN may take to flush before it is reset. */
export const FLUSH_AFTER_FIN_MS = 30_000;

/** Ends a side abortively: TCP RST for a socket, RST_STREAM(CONNECT_ERROR) for an HTTP/2 stream. */
function reset(side: Duplex): void {
  if (side.destroyed) return;
  if (side instanceof net.Socket) {
    if (side.writableEnded) return closeAfterFlush(side);
    try {
      side.resetAndDestroy();
    } catch {
      side.destroy(); // not a TCP handle (cannot RST): the best we can do is close it
    }
    return;
  }
  const stream = side as Partial<http2.Http2Stream> & Duplex;
  if (typeof stream.close === 'function') {
    resetStream(stream as http2.Http2Stream, http2.constants.NGHTTP2_CONNECT_ERROR);
    return;
  }
  side.destroy();
}

/**
 * A socket whose writable half already ended with a clean FIN (a real END_STREAM passed on):
 * its bytes are complete, so they are delivered, not discarded by a RST (see the header). Once
 * Node has handed them and the FIN to the kernel ('finish'), a plain close lets the kernel send
 * the rest. An app that does not read for FLUSH_AFTER_FIN_MS is reset while Node still holds
 * bytes (the shutdown is then not yet issued, so libuv allows the RST), or closed otherwise.
 * What it sends meanwhile is read and dropped, so unread input does not turn the close into a RST.
 */
function closeAfterFlush(socket: net.Socket): void {
  socket.on('data', () => {});
  socket.resume();
  if (socket.writableFinished) {
    socket.destroy();
    return;
  }
  const timer = setTimeout(() => {
    if (socket.writableLength > 0) {
      try {
        socket.resetAndDestroy();
        return;
      } catch {
        // not a TCP handle: close below
      }
    }
    socket.destroy();
  }, FLUSH_AFTER_FIN_MS);
  timer.unref();
  socket.once('finish', () => {
    clearTimeout(timer);
    socket.destroy();
  });
  socket.once('close', () => clearTimeout(timer));
}

const EMPTY = Buffer.alloc(0);

/**
 * RST_STREAM(code) without a clean END_STREAM first. Node's `stream.close(code)` ends the
 * writable side before it submits the reset, so when nothing is queued the peer receives
 * DATA(END_STREAM) and then RST_STREAM: a peer reading the end first passes on a clean FIN (seen
 * on Node 20: 'end' before 'aborted' at the far side). A write still queued holds the end back
 * until after the reset, so one empty write goes first (test/unit/proxy/splice.test.ts checks the
 * far side sees no END_STREAM).
 */
export function resetStream(stream: http2.Http2Stream, code: number): void {
  if (stream.destroyed || stream.closed) return;
  if (!stream.writableEnded) stream.write(EMPTY);
  stream.close(code);
}

function describeAbort(self: Duplex, cause?: Error): string {
  if (cause) return `failed: ${errorMessage(cause)}`;
  const rst = (self as Partial<http2.Http2Stream>).rstCode;
  if (rst !== undefined && rst !== http2.constants.NGHTTP2_NO_ERROR)
    return `stream reset (HTTP/2 error code ${rst})`;
  if (!self.readableEnded) return 'closed before its end (no FIN / END_STREAM)';
  return 'closed before our data was delivered';
}

/**
 * An HTTP/2 stream hands over a DATA frame in pieces: a 16 KiB frame does not fit one 16 KiB TLS
 * record, so every frame arrives as two chunks (16 375 + 9 bytes, …) and pipe() would make two
 * write(2) calls per frame — eight per 64 KiB read, half of them tiny. Corking the socket for the
 * rest of this event-loop turn turns everything one read delivered into a single writev(2).
 * Only from a non-socket (the HBONE stream) into a plain socket: socket reads are already whole.
 * Bulk single stream, node proxy writing to the client: 1.64–1.72 → 1.21–1.31 CPU-s per GiB.
 */
const COALESCE_MIN_CHUNK = 4096;

function coalesceWrites(src: Duplex, dst: Duplex): void {
  if (src instanceof net.Socket || !(dst instanceof net.Socket)) return;
  let corked = false;
  const flush = () => {
    corked = false;
    dst.uncork();
  };
  // Runs before pipe's own 'data' handler, so the write it makes is buffered by the cork. A small
  // chunk (a request, a short response) is written at once: the cork would only add work.
  src.prependListener('data', (chunk: Buffer) => {
    if (corked || chunk.length < COALESCE_MIN_CHUNK || dst.writableEnded) return;
    corked = true;
    dst.cork();
    setImmediate(flush);
  });
}
