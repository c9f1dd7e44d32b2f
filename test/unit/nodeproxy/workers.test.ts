// How many workers `ambit node --workers` runs (src/nodeproxy/workers.ts chooseWorkers): bad
// counts are usage errors; netns capture and a missing native addon fall back to 1 with a reason.
import { describe, expect, it } from 'vitest';
import { availableParallelism } from 'node:os';
import {
  chooseWorkers,
  MAX_AUTO_WORKERS,
  WorkersError,
  usableCores,
} from '../../../src/nodeproxy/workers.js';
import { nativeStatus } from '../../../src/redirect/native.js';

describe('chooseWorkers', () => {
  it('defaults to one worker, with no reason to log', () => {
    expect(chooseWorkers(undefined, { netnsCapture: false })).toEqual({ count: 1 });
    expect(chooseWorkers('1', { netnsCapture: false })).toEqual({ count: 1 });
  });

  it('refuses counts that are not an integer from 1 to 64', () => {
    for (const bad of ['0', '-1', '1.5', 'two', '65'])
      expect(() => chooseWorkers(bad, { netnsCapture: false }), bad).toThrow(WorkersError);
  });

  it('runs one worker with netns capture, and says why', () => {
    const c = chooseWorkers('4', { netnsCapture: true });
    expect(c.count).toBe(1);
    expect(c.reason).toMatch(/netns capture/);
  });

  it('auto is the usable cores, capped; several workers only with the native addon', () => {
    const auto = Math.min(availableParallelism(), MAX_AUTO_WORKERS);
    const c = chooseWorkers('auto', { netnsCapture: false, cpuLimit: '' });
    if (auto === 1) expect(c).toEqual({ count: 1 });
    else if (nativeStatus().ok) expect(c).toEqual({ count: auto });
    else expect(c.reason).toMatch(/native addon/);
    const two = chooseWorkers('2', { netnsCapture: false });
    expect(two.count).toBe(nativeStatus().ok ? 2 : 1);
  });

  it('takes the CPU limit from the downward API when it is a whole number of cores', () => {
    expect(usableCores('3')).toBe(3);
    expect(usableCores('0')).toBe(availableParallelism());
    expect(usableCores('1.5')).toBe(availableParallelism());
    expect(usableCores('lots')).toBe(availableParallelism());
    if (nativeStatus().ok)
      expect(chooseWorkers('auto', { netnsCapture: false, cpuLimit: '64' }).count).toBe(MAX_AUTO_WORKERS);
  });
});
