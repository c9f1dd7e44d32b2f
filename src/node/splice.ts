// Byte-exact bidirectional copy between two streams, with backpressure (pipe) and TCP
// half-close in both directions: a FIN from one side ends the other side's writable half only.
// An abort (reset, error) on either side destroys both. Resolves once both sides are closed.
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
  });
}
