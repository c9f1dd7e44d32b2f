import { describe, expect, it } from 'vitest';
import { createDestinationResilience } from '../../../src/waypoint/resilience/destination.js';
import { OutlierDetector, type OutlierEvent } from '../../../src/waypoint/resilience/outlier.js';
import type { AttemptOutcome, OutlierPolicy } from '../../../src/waypoint/resilience/types.js';

const A = '10.0.0.1:8080';
const B = '10.0.0.2:8080';
const C = '10.0.0.3:8080';

/** Istio's defaults: 5 consecutive 5xx, 10 s interval, 30 s base ejection, 10 %. */
const istioDefaults: OutlierPolicy = {
  consecutive5xx: 5,
  intervalMs: 10_000,
  baseEjectionMs: 30_000,
  maxEjectionPercent: 10,
};

function setup(policy: Partial<OutlierPolicy> = {}, ids: string[] = [A, B, C]) {
  let now = 0;
  const events: OutlierEvent[] = [];
  const detector = new OutlierDetector({ ...istioDefaults, ...policy }, () => now);
  detector.on((e) => events.push(e));
  detector.setEndpoints(ids);
  return {
    detector,
    events,
    advance: (ms: number) => {
      now += ms;
    },
    record: (id: string, outcome: AttemptOutcome, times = 1) => {
      for (let i = 0; i < times; i++) detector.record(id, outcome);
    },
  };
}

describe('OutlierDetector', () => {
  it('ejects an endpoint after 5 consecutive 5xx and returns it after the ejection time', () => {
    const t = setup();
    t.record(A, { status: 500 }, 4);
    expect(t.detector.isEjected(A)).toBe(false);
    t.record(A, { status: 503 });
    expect(t.detector.isEjected(A)).toBe(true);
    expect(t.detector.healthy([A, B, C], (id) => id)).toEqual([B, C]);
    expect(t.events).toEqual([
      { type: 'ejected', endpoint: A, reason: 'consecutive-5xx', ejectionMs: 30_000, times: 1 },
    ]);

    t.advance(29_999);
    expect(t.detector.isEjected(A)).toBe(true);
    t.advance(1);
    expect(t.detector.isEjected(A)).toBe(false);
    expect(t.detector.healthy([A, B, C], (id) => id)).toEqual([A, B, C]);
    expect(t.events.at(-1)).toEqual({ type: 'returned', endpoint: A, ejectedForMs: 30_000 });
  });

  it.each<[string, AttemptOutcome[], boolean]>([
    ['five 500s', Array(5).fill({ status: 500 }), true],
    ['four 500s', Array(4).fill({ status: 500 }), false],
    [
      'four 500s, a 200, four 500s',
      [...Array(4).fill({ status: 500 }), { status: 200 }, ...Array(4).fill({ status: 500 })],
      false,
    ],
    ['a 404 breaks the run', [...Array(4).fill({ status: 500 }), { status: 404 }, { status: 500 }], false],
    ['connect failures count as 5xx', Array(5).fill({ error: 'connect-failure' }), true],
    [
      'resets and timeouts count',
      [...Array(3).fill({ error: 'reset' }), ...Array(2).fill({ error: 'timeout' })],
      true,
    ],
    [
      'local overflows are ignored',
      [...Array(4).fill({ status: 502 }), { error: 'overflow' }, { status: 502 }],
      true,
    ],
    ['overflows alone never eject', Array(10).fill({ error: 'overflow' }), false],
  ])('consecutive5xx = 5: %s → ejected %s', (_name, outcomes, ejected) => {
    const t = setup();
    for (const o of outcomes) t.record(A, o);
    expect(t.detector.isEjected(A)).toBe(ejected);
  });

  it.each<[string, AttemptOutcome[], boolean]>([
    ['three 502/503/504', [{ status: 502 }, { status: 503 }, { status: 504 }], true],
    [
      'connect failure counts as a gateway error',
      [{ status: 503 }, { error: 'connect-failure' }, { status: 503 }],
      true,
    ],
    [
      'a 500 resets the gateway count',
      [{ status: 503 }, { status: 503 }, { status: 500 }, { status: 503 }],
      false,
    ],
    ['a 200 resets it', [{ status: 503 }, { status: 503 }, { status: 200 }, { status: 503 }], false],
  ])('consecutiveGatewayErrors = 3 alone: %s → ejected %s', (_name, outcomes, ejected) => {
    const t = setup({ consecutive5xx: undefined, consecutiveGatewayErrors: 3 });
    for (const o of outcomes) t.record(A, o);
    expect(t.detector.isEjected(A)).toBe(ejected);
    if (ejected) expect(t.events[0]).toMatchObject({ type: 'ejected', reason: 'consecutive-gateway-errors' });
  });

  it('with both thresholds, mixed 500s and 503s still reach consecutive5xx', () => {
    const t = setup({ consecutive5xx: 4, consecutiveGatewayErrors: 3 });
    t.record(A, { status: 503 });
    t.record(A, { status: 500 });
    t.record(A, { status: 503 });
    t.record(A, { status: 500 });
    expect(t.events).toEqual([expect.objectContaining({ type: 'ejected', reason: 'consecutive-5xx' })]);
  });

  it('does not eject with no thresholds (0 or absent disable them)', () => {
    const t = setup({ consecutive5xx: 0 });
    t.record(A, { status: 503 }, 50);
    expect(t.detector.isEjected(A)).toBe(false);
  });

  it('ejects for base × times ejected, and the multiplier shrinks while the endpoint is healthy', () => {
    const t = setup({ maxEjectionPercent: 100 });
    t.record(A, { status: 500 }, 5);
    t.advance(30_000);
    expect(t.detector.isEjected(A)).toBe(false);
    t.record(A, { status: 500 }, 5); // ejected again at once: 60 s this time
    expect(t.events.at(-1)).toMatchObject({ type: 'ejected', ejectionMs: 60_000, times: 2 });
    t.advance(59_999);
    expect(t.detector.isEjected(A)).toBe(true);
    t.advance(1);
    expect(t.detector.isEjected(A)).toBe(false);
    // Healthy for two intervals: the multiplier goes back from 2 to 0, so the next is 30 s.
    t.advance(20_000);
    expect(t.detector.isEjected(A)).toBe(false);
    t.record(A, { status: 500 }, 5);
    expect(t.events.at(-1)).toMatchObject({ type: 'ejected', ejectionMs: 30_000, times: 1 });
  });

  it('caps the ejection time at 300 s (Envoy max_ejection_time)', () => {
    const t = setup({ maxEjectionPercent: 100, baseEjectionMs: 100_000 });
    const lengths: number[] = [];
    t.detector.on((e) => e.type === 'ejected' && lengths.push(e.ejectionMs));
    for (let i = 0; i < 5; i++) {
      t.record(A, { status: 500 }, 5);
      t.advance(300_000);
      t.detector.isEjected(A);
    }
    expect(lengths).toEqual([100_000, 200_000, 300_000, 300_000, 300_000]);
  });

  it('never ejects more than maxEjectionPercent, but always allows one', () => {
    const ids = Array.from({ length: 10 }, (_, i) => `10.0.1.${i}:80`);
    const t = setup({ maxEjectionPercent: 30 }, ids);
    for (const id of ids) t.record(id, { status: 503 }, 5);
    expect(t.detector.ejected()).toEqual(ids.slice(0, 3));
    expect(t.events.filter((e) => e.type === 'ejection-skipped')).toHaveLength(7);
    expect(t.events.find((e) => e.type === 'ejection-skipped')).toEqual({
      type: 'ejection-skipped',
      endpoint: ids[3],
      reason: 'consecutive-5xx',
      ejected: 3,
      total: 10,
    });

    const small = setup({ maxEjectionPercent: 10 }); // 10 % of 3 is under one endpoint
    small.record(A, { status: 503 }, 5);
    small.record(B, { status: 503 }, 5);
    expect(small.detector.ejected()).toEqual([A]);
  });

  it('keeps at least one endpoint even at 100 %', () => {
    const t = setup({ maxEjectionPercent: 100 }, [A, B]);
    t.record(A, { status: 503 }, 5);
    t.record(B, { status: 503 }, 5);
    expect(t.detector.ejected()).toEqual([A]);
    const single = setup({ maxEjectionPercent: 100 }, [A]);
    single.record(A, { status: 503 }, 50);
    expect(single.detector.isEjected(A)).toBe(false);
  });

  it('lets an endpoint skipped for the percentage be ejected once there is room', () => {
    const t = setup({ maxEjectionPercent: 50 }, [A, B, C]);
    t.record(A, { status: 503 }, 5);
    t.record(B, { status: 503 }, 5); // 2 of 3 = 67 % > 50 %: skipped
    expect(t.detector.ejected()).toEqual([A]);
    t.advance(30_000);
    t.record(B, { status: 503 }); // its run continues; A is back, so there is room
    expect(t.detector.ejected()).toEqual([B]);
  });

  it('resets the counters when an endpoint returns', () => {
    const t = setup({ maxEjectionPercent: 100 });
    t.record(A, { status: 503 }, 5);
    t.record(A, { status: 503 }, 3); // answers still arriving while ejected
    t.advance(30_000);
    t.record(A, { status: 503 }, 4);
    expect(t.detector.isEjected(A)).toBe(false);
  });

  it('healthy() learns the endpoint set, forgets departed ones and is never empty', () => {
    const t = setup({ maxEjectionPercent: 100 }, []);
    expect(t.detector.healthy([A, B], (id) => id)).toEqual([A, B]);
    t.record(A, { status: 503 }, 5);
    expect(t.detector.healthy([A, B], (id) => id)).toEqual([B]);
    // B is removed from the service: only the ejected A is left, so A is used anyway.
    expect(t.detector.healthy([A], (id) => id)).toEqual([A]);
    expect(t.detector.ejected()).toEqual([A]);
    t.detector.setEndpoints([B, C]);
    expect(t.detector.ejected()).toEqual([]);
    t.record(B, { status: 503 }, 5);
    expect(t.detector.ejected()).toEqual([B]); // the count of ejected followed A's removal
  });

  it('works on endpoint objects through idOf', () => {
    const t = setup();
    const eps = [A, B, C].map((id) => ({ id, active: 0 }));
    t.record(B, { error: 'connect-failure' }, 5);
    expect(t.detector.healthy(eps, (e) => e.id)).toEqual([eps[0], eps[2]]);
  });

  it('stops calling a listener after unsubscribe', () => {
    const t = setup();
    const seen: OutlierEvent[] = [];
    const off = t.detector.on((e) => seen.push(e));
    off();
    t.record(A, { status: 500 }, 5);
    expect(seen).toEqual([]);
    expect(t.events).toHaveLength(1);
  });
});

describe('createDestinationResilience', () => {
  it('builds only the parts the policy asks for', () => {
    const plain = createDestinationResilience({ lb: { kind: 'ROUND_ROBIN' } });
    expect(plain.balancer.kind).toBe('ROUND_ROBIN');
    expect(plain.retryBudget.limit()).toBe(3);
    expect(plain.outlier).toBeUndefined();
    expect(plain.pool.policy).toEqual({}); // always there: it keys the upstream connection pool
    expect(plain.rateLimit).toBeUndefined();

    let now = 0;
    const full = createDestinationResilience(
      {
        lb: { kind: 'LEAST_REQUEST' },
        outlier: istioDefaults,
        pool: { http2MaxRequests: 1 },
        rateLimit: { maxTokens: 1, tokensPerFill: 1, fillIntervalMs: 1000 },
      },
      { clock: () => now, retryBudget: { budgetPercent: 50 } },
    );
    expect(full.retryBudget.budgetPercent).toBe(50);
    expect(full.pool.tryAcquire()).toMatchObject({ ok: true });
    expect(full.pool.tryAcquire()).toEqual({ ok: false, reason: 'max requests overflow' });
    expect(full.rateLimit?.take()).toMatchObject({ allowed: true });
    expect(full.rateLimit?.take()).toEqual({ allowed: false, resetMs: 1000 });
    now += 1000;
    expect(full.rateLimit?.take()).toMatchObject({ allowed: true }); // shares the injected clock
    full.outlier?.setEndpoints([A, B]);
    for (let i = 0; i < 5; i++) full.outlier?.record(A, { status: 503 });
    expect(full.outlier?.ejected()).toEqual([A]);
  });
});
