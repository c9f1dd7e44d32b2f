import { describe, expect, it } from 'vitest';
import { PassThrough, Writable } from 'node:stream';
import { ReplayBody } from '../../../src/waypoint/http/replay-body.js';

/** A writable that collects what it gets; `hwm` small to exercise backpressure. */
function sink(hwm = 16 * 1024): Writable & { got: () => Buffer; ended: () => boolean } {
  const chunks: Buffer[] = [];
  let ended = false;
  const w = new Writable({
    highWaterMark: hwm,
    write(c: Buffer, _e, cb) {
      chunks.push(c);
      setImmediate(cb); // slow consumer
    },
    final(cb) {
      ended = true;
      cb();
    },
  });
  return Object.assign(w, { got: () => Buffer.concat(chunks), ended: () => ended });
}
const settle = () => new Promise((r) => setTimeout(r, 20));
const pattern = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => i % 251));

describe('ReplayBody', () => {
  it('replays a small body to a second try and hands it to mirrors once complete', async () => {
    const src = new PassThrough();
    const body = new ReplayBody(src, 1024);
    let complete: Buffer | undefined;
    body.onComplete((b) => (complete = b));
    const first = sink();
    body.attach(first);
    src.write(Buffer.from('hello '));
    src.end(Buffer.from('world'));
    await settle();
    expect(first.got().toString()).toBe('hello world');
    expect(first.ended()).toBe(true);
    const second = sink();
    body.attach(second);
    await settle();
    expect(second.got().toString()).toBe('hello world');
    expect(second.ended()).toBe(true);
    expect(complete?.toString()).toBe('hello world');
    expect(body.replayable).toBe(true);
    expect(body.bytes).toBe(11);
  });

  it('keeps every byte that arrives before the first try has a stream, even past the limit', async () => {
    const src = new PassThrough({ highWaterMark: 1024 });
    const body = new ReplayBody(src, 4096);
    const data = pattern(64 * 1024);
    let written = 0;
    const pump = (async () => {
      for (; written < data.length; written += 1000) {
        if (!src.write(data.subarray(written, written + 1000)))
          await new Promise((r) => src.once('drain', r));
      }
      src.end();
    })();
    await settle();
    // Reading ahead stops a little past the limit while no try can take the bytes.
    expect(written).toBeLessThan(data.length);
    expect(body.replayable).toBe(false);
    const target = sink(2048);
    body.attach(target);
    await pump;
    await new Promise((r) => target.once('finish', r));
    expect(target.got().equals(data)).toBe(true);
    expect(() => body.attach(sink())).toThrow(/past the replay buffer/);
  });

  it('follows the try in flight for backpressure and delivers a large body intact', async () => {
    const src = new PassThrough();
    const body = new ReplayBody(src, 1024);
    const target = sink(1024);
    body.attach(target);
    const data = pattern(300 * 1024);
    for (let i = 0; i < data.length; i += 4096) src.write(data.subarray(i, i + 4096));
    src.end();
    await new Promise((r) => target.once('finish', r));
    expect(target.got().equals(data)).toBe(true);
    expect(body.bytes).toBe(data.length);
    expect(body.replayable).toBe(false);
  });
});
