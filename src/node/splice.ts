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
    // ('end') also when the stream was reset, so an 'end' only counts as END_STREAM when the
    // stream carries no error code; otherwise it is the abort it is.
    const forward = (src: Duplex, dst: Duplex, side: 'upstream' | 'downstream') => {
      const onEnd = () => {
        const rst = (src as Partial<http2.Http2Stream>).rstCode;
        if (rst !== undefined && rst !== http2.constants.NGHTTP2_NO_ERROR) abort(side, src);
        else if (!dst.destroyed) dst.end();
      };
      src.pipe(dst, { end: false });
      // A side that ended before the splice began (a sniffer read its END_STREAM) emits no
      // 'end' again: pass its end on now, as pipe() would.
      if (src.readableEnded) process.nextTick(onEnd);
      else src.once('end', onEnd);
    };
    watch(downstream, 'downstream');
    watch(upstream, 'upstream');
    forward(downstream, upstream, 'downstream');
    forward(upstream, downstream, 'upstream');
    coalesceWrites(downstream, upstream);
    coalesceWrites(upstream, downstream);
  });
}

/** Ends a side abortively: TCP RST for a socket, RST_STREAM(CONNECT_ERROR) for an HTTP/2 stream. */
function reset(side: Duplex): void {
  if (side.destroyed) return;
  if (side instanceof net.Socket) {
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

const EMPTY = Buffer.alloc(0);

/**
 * RST_STREAM(code) without a clean END_STREAM first. Node's `stream.close(code)` ends the
 * writable side before it submits the reset, so when nothing is queued the peer receives
 * DATA(END_STREAM) and then RST_STREAM: a peer reading the end first passes on a clean FIN (seen
 * on Node 20: 'end' before 'aborted' at the far side). A write still queued holds the end back
 * until after the reset, so one empty write goes first (test/unit/node/splice.test.ts checks the
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
