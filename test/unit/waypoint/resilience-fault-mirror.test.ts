import { describe, expect, it } from 'vitest';
import { seeded } from '../../support/random.js';
import { decideFault, hit } from '../../../src/waypoint/resilience/fault.js';
import { shadowAuthority, shouldMirror } from '../../../src/waypoint/resilience/mirror.js';
import type { FaultPolicy } from '../../../src/waypoint/resilience/types.js';

function script(...values: number[]): () => number {
  let i = 0;
  return () => {
    if (i >= values.length) throw new Error('drew more random numbers than expected');
    return values[i++]!;
  };
}

describe('decideFault', () => {
  const both: FaultPolicy = { delay: { percent: 50, ms: 200 }, abort: { percent: 10, status: 503 } };
  it.each<[string, FaultPolicy | undefined, number[], ReturnType<typeof decideFault>]>([
    ['no policy', undefined, [], {}],
    ['empty policy', {}, [], {}],
    ['delay hit', { delay: { percent: 50, ms: 200 } }, [0.49], { delayMs: 200 }],
    ['delay miss', { delay: { percent: 50, ms: 200 } }, [0.5], {}],
    ['delay 100 % draws nothing', { delay: { percent: 100, ms: 5 } }, [], { delayMs: 5 }],
    ['delay 0 % draws nothing', { delay: { percent: 0, ms: 5 } }, [], {}],
    ['zero-length delay is no delay', { delay: { percent: 100, ms: 0 } }, [], {}],
    ['abort hit', { abort: { percent: 10, status: 503 } }, [0.05], { abortStatus: 503 }],
    ['abort miss', { abort: { percent: 10, status: 503 } }, [0.1], {}],
    ['abort 100 %', { abort: { percent: 100, status: 418 } }, [], { abortStatus: 418 }],
    ['fractional percent hit', { abort: { percent: 0.5, status: 500 } }, [0.004], { abortStatus: 500 }],
    ['fractional percent miss', { abort: { percent: 0.5, status: 500 } }, [0.006], {}],
    ['both, drawn independently: both hit', both, [0.1, 0.05], { delayMs: 200, abortStatus: 503 }],
    ['both: delay only', both, [0.1, 0.5], { delayMs: 200 }],
    ['both: abort only', both, [0.9, 0.05], { abortStatus: 503 }],
    ['both: neither', both, [0.9, 0.9], {}],
  ])('%s', (_name, policy, draws, expected) => {
    expect(decideFault(policy, script(...draws))).toEqual(expected);
  });

  it('injects at the configured rates', () => {
    const random = seeded(11);
    let delayed = 0;
    let aborted = 0;
    for (let i = 0; i < 10_000; i++) {
      const d = decideFault({ delay: { percent: 30, ms: 1 }, abort: { percent: 5, status: 500 } }, random);
      if (d.delayMs) delayed++;
      if (d.abortStatus) aborted++;
    }
    expect(delayed / 10_000).toBeCloseTo(0.3, 1);
    expect(aborted / 10_000).toBeCloseTo(0.05, 1);
  });

  it.each([
    [-5, false],
    [Number.NaN, false],
    [150, true],
  ])('treats percent %f as %s', (percent, expected) => {
    expect(hit(percent, () => 0)).toBe(expected);
  });
});

describe('mirroring', () => {
  it.each([
    [100, [], true],
    [0, [], false],
    [25, [0.2], true],
    [25, [0.25], false],
  ])('percent %f with draws %j → %s', (percent, draws, expected) => {
    expect(shouldMirror(percent, script(...draws))).toBe(expected);
  });

  it.each([
    ['echo', 'echo-shadow'],
    ['echo:8080', 'echo-shadow:8080'],
    ['echo.demo.svc.cluster.local:80', 'echo.demo.svc.cluster.local-shadow:80'],
    ['10.0.0.1:8080', '10.0.0.1-shadow:8080'],
    ['[fd00::1]:8080', '[fd00::1]-shadow:8080'],
    ['[fd00::1]', '[fd00::1]-shadow'],
  ])('shadow authority of %s is %s', (authority, expected) => {
    expect(shadowAuthority(authority)).toBe(expected);
  });
});
