// A request body read once from the downstream and offered to each upstream try: streamed to
// the try in flight and kept while it fits in a limit, so a later try can send it again (Envoy
// retries only while the body fits its buffer, too). Used for HTTP/2 and gRPC, whose bodies may
// be streams that never end while a response is expected.
import type { Readable, Writable } from 'node:stream';

/**
 * Read ahead before any try has a stream (a request waiting for an upstream stream): one HTTP/2
 * stream window. Past it the client is held by flow control, so waiting requests cost no more.
 */
export const READ_AHEAD_BYTES = 64 * 1024;

/**
 * The downstream request body, read once: streamed to the try in flight and kept while it fits
 * in `limit`, so a later try can replay it. Backpressure follows the try in flight; before the
 * first try has a stream, at most READ_AHEAD_BYTES (or `limit`, when lower) are read ahead.
 */
export class ReplayBody {
  /** Everything received so far, while it fits in `limit`. */
  private kept: Buffer[] = [];
  private keptBytes = 0;
  /** Received before any try had a stream (only used once `kept` was dropped). */
  private early: Buffer[] = [];
  private earlyBytes = 0;
  private ended = false;
  private target?: Writable;
  private complete?: (buf: Buffer) => void;
  bytes = 0;
  /** False once more than `limit` bytes went by: no copy left to send again. */
  replayable = true;

  constructor(
    private readonly source: Readable,
    private readonly limit: number,
  ) {
    source.on('data', (c: Buffer) => this.onData(c));
    source.once('end', () => {
      this.ended = true;
      this.target?.end();
      if (this.replayable) this.complete?.(Buffer.concat(this.kept));
    });
  }

  /** Called with the whole body once it has been received, if it was kept. */
  onComplete(cb: (buf: Buffer) => void): void {
    this.complete = cb;
  }

  /** Sends what was received so far, then the rest as it comes, to `target` (the previous try is let go). */
  attach(target: Writable): void {
    if (this.target && !this.replayable) throw new Error('request body is past the replay buffer');
    const backlog = this.target === undefined && !this.replayable ? this.early : this.kept;
    this.early = [];
    this.target = target;
    for (const c of backlog) target.write(c);
    if (this.ended) target.end();
    this.source.resume();
  }

  private onData(c: Buffer): void {
    this.bytes += c.length;
    if (this.replayable) {
      this.keptBytes += c.length;
      if (this.keptBytes > this.limit) {
        this.replayable = false;
        if (!this.target) [this.early, this.earlyBytes] = [[...this.kept, c], this.keptBytes];
        this.kept = [];
      } else this.kept.push(c);
    } else if (!this.target) {
      this.early.push(c);
      this.earlyBytes += c.length;
    }
    if (!this.target) {
      if (this.bytes >= READ_AHEAD_BYTES || (!this.replayable && this.earlyBytes > this.limit))
        this.source.pause();
      return;
    }
    if (!this.target.write(c)) {
      this.source.pause();
      this.target.once('drain', () => this.source.resume());
    }
  }
}
