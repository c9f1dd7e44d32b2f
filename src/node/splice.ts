// Byte-exact bidirectional copy between two streams, with backpressure (pipe) and TCP
// half-close in both directions: a FIN from one side ends the other side's writable half only.
// An abort (reset, error) on either side destroys both. Resolves once both sides are closed.
import net from 'node:net';
import type { Duplex } from 'node:stream';

export interface SpliceResult {
  /** The first error seen on either side, if the splice did not end cleanly. */
  error?: Error;
}

export function splice(a: Duplex, b: Duplex): Promise<SpliceResult> {
  return new Promise((resolve) => {
    let error: Error | undefined;
    let closed = 0;
    const abort = (err?: Error) => {
      error ??= err;
      a.destroy();
      b.destroy();
    };
    const onClose = (self: Duplex) => () => {
      // A side that closed without ending its readable half was aborted: propagate the abort.
      if (!self.readableEnded || !self.writableFinished) abort();
      if (++closed === 2) resolve(error ? { error } : {});
    };
    a.on('error', abort);
    b.on('error', abort);
    a.once('close', onClose(a));
    b.once('close', onClose(b));
    a.pipe(b);
    b.pipe(a);
    coalesceWrites(a, b);
    coalesceWrites(b, a);
  });
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
