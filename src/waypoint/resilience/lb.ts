// Load balancers for the waypoint's upstream picks (DestinationRule `loadBalancer`):
// ROUND_ROBIN, LEAST_REQUEST (power of two choices), RANDOM and CONSISTENT_HASH (a ketama
// ring keyed by header, cookie or source IP). The caller passes the endpoints still in play
// (outlier-ejected ones already removed); a balancer only chooses among them.
import { createHash } from 'node:crypto';
import type { ConsistentHashKey, LbPolicy, RandomSource } from './types.js';

/** What a balancer needs from an endpoint: a stable id ("10.0.0.1:8080") and its load. */
export interface LbEndpoint {
  id: string;
  /** Requests in flight to this endpoint, for LEAST_REQUEST. */
  active: number;
}

/** The request facts a hash can be taken from. */
export interface LbContext {
  headers?: Record<string, string | string[] | undefined>;
  sourceIp?: string;
  /** Source port, so a generated affinity cookie differs per downstream connection. */
  sourcePort?: number;
  cookies?: Record<string, string>;
}

/** A cookie the waypoint must set on the response so the client sticks to its endpoint. */
export interface AffinityCookie {
  name: string;
  value: string;
  ttlMs: number;
}

export interface Balancer<E extends LbEndpoint = LbEndpoint> {
  readonly kind: LbPolicy['kind'];
  /** Choose one of `endpoints`; undefined only when the list is empty. */
  pick(endpoints: readonly E[], ctx?: LbContext): E | undefined;
  /**
   * For a cookie hash with a TTL, when the request has no such cookie: the cookie to set on
   * the response. `pick` already hashed this same value, so the next request lands alike.
   */
  affinityCookie(ctx?: LbContext): AffinityCookie | undefined;
}

/** Virtual nodes per endpoint on the hash ring (ketama's 40 digests × 4 points). */
export const RING_POINTS_PER_ENDPOINT = 160;

export function createBalancer<E extends LbEndpoint = LbEndpoint>(
  policy: LbPolicy,
  random: RandomSource = Math.random,
): Balancer<E> {
  switch (policy.kind) {
    case 'ROUND_ROBIN':
      return roundRobin<E>(random);
    case 'LEAST_REQUEST':
      return leastRequest<E>(random);
    case 'RANDOM':
      return simple<E>('RANDOM', (endpoints) => endpoints[randomIndex(endpoints.length, random)]);
    case 'CONSISTENT_HASH':
      return consistentHash<E>(policy.by, random);
  }
}

function roundRobin<E extends LbEndpoint>(random: RandomSource): Balancer<E> {
  // A random start, as Envoy does, so that many waypoints don't all begin on endpoint 0.
  let next = -1;
  return simple<E>('ROUND_ROBIN', (endpoints) => {
    if (next < 0) next = randomIndex(endpoints.length, random);
    const chosen = endpoints[next % endpoints.length];
    next = (next + 1) % Number.MAX_SAFE_INTEGER;
    return chosen;
  });
}

/** Envoy's default LEAST_REQUEST: two distinct random endpoints, the one with fewer in flight. */
function leastRequest<E extends LbEndpoint>(random: RandomSource): Balancer<E> {
  return simple<E>('LEAST_REQUEST', (endpoints) => {
    const n = endpoints.length;
    if (n === 1) return endpoints[0];
    const i = randomIndex(n, random);
    const j = (i + 1 + randomIndex(n - 1, random)) % n; // distinct from i
    const a = endpoints[i]!;
    const b = endpoints[j]!;
    return b.active < a.active ? b : a;
  });
}

function consistentHash<E extends LbEndpoint>(by: ConsistentHashKey, random: RandomSource): Balancer<E> {
  let ring: HashRing | undefined;
  let lastIds: string[] = [];
  const balancer: Balancer<E> = {
    kind: 'CONSISTENT_HASH',
    pick(endpoints, ctx = {}) {
      if (endpoints.length === 0) return undefined;
      if (endpoints.length === 1) return endpoints[0];
      // Same ids in the same order as last time is the common case: skip the sort.
      if (!ring || !sameIds(lastIds, endpoints)) {
        lastIds = endpoints.map((e) => e.id);
        if (!ring || !ring.matches(lastIds)) ring = new HashRing(lastIds);
      }
      const key = hashKeyOf(by, ctx);
      // No key (header absent, no source IP): Envoy picks at random.
      if (key === undefined) return endpoints[randomIndex(endpoints.length, random)];
      const id = ring.lookup(hash32(key));
      return endpoints.find((e) => e.id === id);
    },
    affinityCookie(ctx = {}) {
      if (!('cookie' in by) || !by.ttlMs || ctx.cookies?.[by.cookie] !== undefined) return undefined;
      return { name: by.cookie, value: generatedCookie(ctx), ttlMs: by.ttlMs };
    },
  };
  return balancer;
}

/** The string a request hashes on, or undefined when the request does not carry it. */
export function hashKeyOf(by: ConsistentHashKey, ctx: LbContext): string | undefined {
  if ('header' in by) {
    const value = ctx.headers?.[by.header.toLowerCase()];
    if (value === undefined) return undefined;
    return Array.isArray(value) ? value.join(',') : value;
  }
  if ('cookie' in by) {
    const value = ctx.cookies?.[by.cookie];
    if (value !== undefined) return value;
    // Envoy generates the cookie (and hashes its value) only when a TTL is configured.
    return by.ttlMs ? generatedCookie(ctx) : undefined;
  }
  return ctx.sourceIp;
}

/** Envoy's generated cookie value: a hash of the downstream connection's addresses, in hex. */
function generatedCookie(ctx: LbContext): string {
  return createHash('sha256')
    .update(`${ctx.sourceIp ?? ''}:${ctx.sourcePort ?? ''}`)
    .digest('hex')
    .slice(0, 16);
}

/**
 * A ketama ring over endpoint ids: each id owns RING_POINTS_PER_ENDPOINT points from md5 of
 * "id-d"; a key goes to the first point at or after its hash, wrapping. Points depend only on
 * the endpoint's own id, so when one of n endpoints leaves only the keys it owned (about 1/n)
 * move, and every other key stays where it was.
 */
export class HashRing {
  readonly #points: Uint32Array;
  readonly #owners: string[];
  readonly #signature: string;

  constructor(ids: readonly string[]) {
    const raw: { point: number; owner: string }[] = [];
    for (const id of ids) {
      for (let d = 0; d < RING_POINTS_PER_ENDPOINT / 4; d++) {
        const digest = createHash('md5').update(`${id}-${d}`).digest();
        for (let k = 0; k < 4; k++) raw.push({ point: digest.readUInt32LE(k * 4), owner: id });
      }
    }
    // Ties are broken by id so the ring does not depend on the order endpoints arrive in.
    raw.sort((x, y) => x.point - y.point || (x.owner < y.owner ? -1 : x.owner > y.owner ? 1 : 0));
    this.#points = Uint32Array.from(raw, (r) => r.point);
    this.#owners = raw.map((r) => r.owner);
    this.#signature = signatureOf(ids);
  }

  /** Whether this ring was built for the same ids (in any order). */
  matches(ids: readonly string[]): boolean {
    return signatureOf(ids) === this.#signature;
  }

  /** The id owning `hash`, or undefined for an empty ring. */
  lookup(hash: number): string | undefined {
    const points = this.#points;
    if (points.length === 0) return undefined;
    let lo = 0;
    let hi = points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid]! < hash) lo = mid + 1;
      else hi = mid;
    }
    return this.#owners[lo === points.length ? 0 : lo];
  }
}

function sameIds(ids: readonly string[], endpoints: readonly LbEndpoint[]): boolean {
  if (ids.length !== endpoints.length) return false;
  for (let i = 0; i < ids.length; i++) if (ids[i] !== endpoints[i]!.id) return false;
  return true;
}

function signatureOf(ids: readonly string[]): string {
  return [...ids].sort().join('\n');
}

/** A well-spread 32-bit hash of a request key (first four bytes of md5, as ketama). */
export function hash32(key: string): number {
  return createHash('md5').update(key).digest().readUInt32LE(0);
}

function simple<E extends LbEndpoint>(
  kind: LbPolicy['kind'],
  choose: (endpoints: readonly E[]) => E | undefined,
): Balancer<E> {
  return {
    kind,
    pick: (endpoints) => (endpoints.length === 0 ? undefined : choose(endpoints)),
    affinityCookie: () => undefined,
  };
}

function randomIndex(n: number, random: RandomSource): number {
  return Math.min(n - 1, Math.floor(random() * n));
}
