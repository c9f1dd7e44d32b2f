import { describe, expect, it } from 'vitest';
import { seeded } from '../../support/random.js';
import { createBalancer, hashKeyOf, type LbEndpoint } from '../../../src/waypoint/resilience/lb.js';
import type { LbPolicy } from '../../../src/waypoint/resilience/types.js';

function endpoints(n: number, active: number[] = []): LbEndpoint[] {
  return Array.from({ length: n }, (_, i) => ({ id: `10.0.0.${i + 1}:8080`, active: active[i] ?? 0 }));
}

/** Returns the given numbers in turn, then repeats the last. */
function script(...values: number[]): () => number {
  let i = 0;
  return () => values[Math.min(i++, values.length - 1)]!;
}

function counts(picks: (LbEndpoint | undefined)[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const p of picks) m.set(p!.id, (m.get(p!.id) ?? 0) + 1);
  return m;
}

const byHeader: LbPolicy = { kind: 'CONSISTENT_HASH', by: { header: 'x-user' } };

describe('every balancer', () => {
  it.each<LbPolicy>([
    { kind: 'ROUND_ROBIN' },
    { kind: 'LEAST_REQUEST' },
    { kind: 'RANDOM' },
    byHeader,
    { kind: 'CONSISTENT_HASH', by: { sourceIp: true } },
  ])('$kind picks nothing from an empty list and the only endpoint from a list of one', (policy) => {
    const lb = createBalancer(policy);
    expect(lb.kind).toBe(policy.kind);
    expect(lb.pick([], { headers: { 'x-user': 'a' }, sourceIp: '10.1.1.1' })).toBeUndefined();
    const [only] = endpoints(1);
    expect(lb.pick([only!], { headers: { 'x-user': 'a' }, sourceIp: '10.1.1.1' })).toBe(only);
  });
});

describe('ROUND_ROBIN', () => {
  it('cycles through the endpoints from a random start', () => {
    const eps = endpoints(3);
    const lb = createBalancer({ kind: 'ROUND_ROBIN' }, () => 0.5); // start at index 1
    const ids = Array.from({ length: 6 }, () => lb.pick(eps)!.id);
    expect(ids).toEqual([eps[1], eps[2], eps[0], eps[1], eps[2], eps[0]].map((e) => e!.id));
  });

  it('keeps spreading evenly when the endpoint list changes', () => {
    const lb = createBalancer({ kind: 'ROUND_ROBIN' }, () => 0);
    lb.pick(endpoints(3));
    const picks = Array.from({ length: 400 }, () => lb.pick(endpoints(4)));
    expect([...counts(picks).values()]).toEqual([100, 100, 100, 100]);
  });
});

describe('LEAST_REQUEST (power of two choices)', () => {
  it.each([
    // active counts, random draws, expected index
    [[5, 1, 9], [0, 0], 1], // candidates 0 and 1 → 1 has fewer
    [[5, 1, 9], [0, 0.99], 0], // candidates 0 and 2 → 0
    [[5, 1, 9], [0.99, 0.99], 1], // candidates 2 and 1 → 1
    [[3, 3, 3], [0.5, 0], 1], // tie: the first drawn wins
    [[0, 7], [0.7, 0.1], 0], // two endpoints: always compares both
  ])('active %j with draws %j picks endpoint %i', (active, draws, expected) => {
    const eps = endpoints(active.length, active);
    const lb = createBalancer({ kind: 'LEAST_REQUEST' }, script(...draws));
    expect(lb.pick(eps)).toBe(eps[expected]);
  });

  it('never compares an endpoint with itself', () => {
    const eps = endpoints(2, [9, 0]);
    const lb = createBalancer({ kind: 'LEAST_REQUEST' }, seeded(1));
    for (let i = 0; i < 100; i++) expect(lb.pick(eps)).toBe(eps[1]);
  });

  it('sends less to a loaded endpoint', () => {
    const eps = endpoints(4, [0, 0, 0, 50]);
    const lb = createBalancer({ kind: 'LEAST_REQUEST' }, seeded(3));
    const c = counts(Array.from({ length: 4000 }, () => lb.pick(eps)));
    // The loaded one wins no comparison, so it is never chosen; the others share evenly.
    expect(c.get(eps[3]!.id) ?? 0).toBe(0);
    for (const e of eps.slice(0, 3)) expect(c.get(e.id)!).toBeGreaterThan(1100);
  });
});

describe('RANDOM', () => {
  it.each([
    [0, 0],
    [0.34, 1],
    [0.9999, 2],
  ])('draw %f picks endpoint %i of 3', (r, expected) => {
    const eps = endpoints(3);
    expect(createBalancer({ kind: 'RANDOM' }, () => r).pick(eps)).toBe(eps[expected]);
  });

  it('spreads evenly', () => {
    const eps = endpoints(4);
    const lb = createBalancer({ kind: 'RANDOM' }, seeded(9));
    const c = counts(Array.from({ length: 8000 }, () => lb.pick(eps)));
    for (const e of eps) expect(c.get(e.id)!).toBeGreaterThan(1800);
  });
});

describe('CONSISTENT_HASH', () => {
  const keys = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);

  function mapping(eps: LbEndpoint[], policy: LbPolicy = byHeader): Map<string, string> {
    const lb = createBalancer(policy, () => {
      throw new Error('a hashed pick must not draw a random number');
    });
    return new Map(keys.map((k) => [k, lb.pick(eps, { headers: { 'x-user': k } })!.id]));
  }

  it('sends the same key to the same endpoint', () => {
    const eps = endpoints(5);
    const lb = createBalancer(byHeader);
    const first = lb.pick(eps, { headers: { 'x-user': 'alice' } });
    for (let i = 0; i < 20; i++) expect(lb.pick(eps, { headers: { 'x-user': 'alice' } })).toBe(first);
  });

  it('spreads keys about evenly over the endpoints', () => {
    const c = new Map<string, number>();
    for (const id of mapping(endpoints(10)).values()) c.set(id, (c.get(id) ?? 0) + 1);
    expect(c.size).toBe(10);
    for (const n of c.values()) {
      expect(n).toBeGreaterThan(500);
      expect(n).toBeLessThan(1500);
    }
  });

  it('moves only the departed endpoint’s keys (about 1/n) when one leaves', () => {
    const eps = endpoints(10);
    const before = mapping(eps);
    const gone = eps[3]!.id;
    const after = mapping(eps.filter((e) => e.id !== gone));
    let moved = 0;
    for (const [key, id] of before) {
      if (after.get(key) !== id) {
        moved++;
        expect(id).toBe(gone); // only keys of the departed endpoint move
      }
    }
    expect(moved / keys.length).toBeGreaterThan(0.05);
    expect(moved / keys.length).toBeLessThan(0.15);
  });

  it('moves about 1/(n+1) of the keys, all to the newcomer, when one joins', () => {
    const eps = endpoints(11);
    const before = mapping(eps.slice(0, 10));
    const after = mapping(eps);
    let moved = 0;
    for (const [key, id] of before) {
      if (after.get(key) !== id) {
        moved++;
        expect(after.get(key)).toBe(eps[10]!.id);
      }
    }
    expect(moved / keys.length).toBeGreaterThan(0.045);
    expect(moved / keys.length).toBeLessThan(0.14);
  });

  it('does not depend on the order the endpoints come in', () => {
    const eps = endpoints(6);
    expect(mapping([...eps].reverse())).toEqual(mapping(eps));
  });

  it('returns the caller’s endpoint objects, not ones it cached', () => {
    const lb = createBalancer(byHeader);
    lb.pick(endpoints(3), { headers: { 'x-user': 'bob' } });
    const fresh = endpoints(3, [4, 4, 4]);
    expect(fresh).toContain(lb.pick(fresh, { headers: { 'x-user': 'bob' } }));
  });

  it('rebuilds when an array it has seen is changed in place', () => {
    const eps = endpoints(5);
    const lb = createBalancer(byHeader);
    const owner = lb.pick(eps, { headers: { 'x-user': 'carol' } })!;
    eps.splice(eps.indexOf(owner), 1);
    const next = lb.pick(eps, { headers: { 'x-user': 'carol' } });
    expect(next).toBeDefined();
    expect(next).not.toBe(owner);
  });

  it('picks at random when the request has no hash key (header absent)', () => {
    const eps = endpoints(3);
    expect(createBalancer(byHeader, () => 0.9999).pick(eps, { headers: {} })).toBe(eps[2]);
    expect(createBalancer(byHeader, () => 0).pick(eps, {})).toBe(eps[0]);
  });

  it('hashes on the source IP', () => {
    const eps = endpoints(8);
    const lb = createBalancer({ kind: 'CONSISTENT_HASH', by: { sourceIp: true } });
    const seen = new Set<string>();
    for (let i = 1; i <= 50; i++) {
      const a = lb.pick(eps, { sourceIp: `10.9.0.${i}` });
      expect(lb.pick(eps, { sourceIp: `10.9.0.${i}`, headers: { 'x-other': 'x' } })).toBe(a);
      seen.add(a!.id);
    }
    expect(seen.size).toBeGreaterThan(4);
  });

  it('hashes on a cookie, and without a TTL picks at random when it is absent', () => {
    const eps = endpoints(5);
    const lb = createBalancer({ kind: 'CONSISTENT_HASH', by: { cookie: 'session' } }, () => 0);
    const a = lb.pick(eps, { cookies: { session: 's-123' } });
    expect(lb.pick(eps, { cookies: { session: 's-123', other: '1' } })).toBe(a);
    expect(lb.pick(eps, { cookies: {} })).toBe(eps[0]);
    expect(lb.affinityCookie({ cookies: {} })).toBeUndefined();
  });

  it('with a cookie TTL, asks for the cookie to be set and the cookie leads back to the same endpoint', () => {
    const eps = endpoints(7);
    const lb = createBalancer({ kind: 'CONSISTENT_HASH', by: { cookie: 'session', ttlMs: 60_000 } });
    for (let port = 40_000; port < 40_020; port++) {
      const ctx = { sourceIp: '10.2.0.5', sourcePort: port, cookies: {} };
      const first = lb.pick(eps, ctx);
      const cookie = lb.affinityCookie(ctx);
      expect(cookie).toMatchObject({ name: 'session', ttlMs: 60_000 });
      expect(cookie!.value).toMatch(/^[0-9a-f]{16}$/);
      expect(lb.pick(eps, { cookies: { session: cookie!.value } })).toBe(first);
      expect(lb.affinityCookie({ cookies: { session: cookie!.value } })).toBeUndefined();
    }
  });

  it.each([
    [{ header: 'X-User' }, { headers: { 'x-user': 'a' } }, 'a'],
    [{ header: 'x-user' }, { headers: { 'x-user': ['a', 'b'] } }, 'a,b'],
    [{ header: 'x-user' }, { headers: {} }, undefined],
    [{ cookie: 'c' }, { cookies: { c: 'v' } }, 'v'],
    [{ cookie: 'c' }, { cookies: {} }, undefined],
    [{ sourceIp: true as const }, { sourceIp: '10.0.0.9' }, '10.0.0.9'],
    [{ sourceIp: true as const }, {}, undefined],
  ])('hash key for %j from %j is %j', (by, ctx, expected) => {
    expect(hashKeyOf(by, ctx)).toBe(expected);
  });
});
