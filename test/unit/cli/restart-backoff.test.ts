// The restart back-off of supervised mesh components: delays, reset after a stable run, and the
// bound on log noise in a crash loop.
import { describe, expect, it } from 'vitest';
import { RestartBackoff, restartMessage } from '../../../src/cli/restart-backoff.js';

describe('RestartBackoff', () => {
  it('doubles the delay from 100 ms and caps it at 5 s by default', () => {
    const b = new RestartBackoff();
    const delays: number[] = [];
    let now = 0;
    for (let i = 0; i < 9; i++) {
      b.started(now);
      now += 50; // crashes at once
      delays.push(b.exited(now).delayMs);
      now += delays.at(-1)!;
    }
    expect(delays).toEqual([100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
  });

  it('starts a new loop after a run that lasted stableMs (the kubelet resets after a good run too)', () => {
    const b = new RestartBackoff({ stableMs: 1000 });
    b.started(0);
    expect(b.exited(10).restart).toBe(1);
    b.started(110);
    expect(b.exited(120).restart).toBe(2);
    b.started(320);
    expect(b.ranStably(900)).toBeUndefined(); // not yet
    expect(b.ranStably(1320)).toBe(2); // back after 2 restarts
    const d = b.exited(5000);
    expect(d.restart).toBe(1);
    expect(d.delayMs).toBe(100);
  });

  it('logs the first restarts of a loop, then one per summary interval with what it did not show', () => {
    const b = new RestartBackoff({ loudRestarts: 2, summaryEveryMs: 10_000, maxMs: 1000 });
    let now = 0;
    const loud: boolean[] = [];
    let summary: ReturnType<RestartBackoff['exited']> | undefined;
    for (let i = 0; i < 30; i++) {
      b.started(now);
      if (!b.loud) b.countQuietLine(); // the quiet run printed one line
      now += 10;
      const d = b.exited(now);
      loud.push(d.loud);
      if (d.loud && d.quietRestarts > 0) summary ??= d;
      now += d.delayMs;
    }
    // 2 loud, then quiet until 10 s have passed since the last loud one.
    expect(loud.slice(0, 3)).toEqual([true, true, false]);
    expect(loud.filter(Boolean).length).toBeLessThanOrEqual(2 + Math.ceil(now / 10_000));
    expect(summary).toBeDefined();
    expect(summary!.quietLines).toBe(summary!.quietRestarts);
    expect(restartMessage('node/node-1', summary!, { code: 1, signal: null })).toMatch(
      /^restarting node\/node-1 in 1000ms \(exit code 1, restart \d+; crash loop: \d+ restarts and \d+ log lines not shown/,
    );
  });

  it('words the log line as the issue asks', () => {
    const d = { delayMs: 400, restart: 3, loud: true, quietRestarts: 0, quietLines: 0 };
    expect(restartMessage('node/node-1', d, { code: 1, signal: null })).toBe(
      'restarting node/node-1 in 400ms (exit code 1, restart 3)',
    );
    expect(restartMessage('controlplane', d, { code: null, signal: 'SIGKILL' })).toBe(
      'restarting controlplane in 400ms (signal SIGKILL, restart 3)',
    );
  });
});
