// Properties of the waypoint's header normalization toward the upstream (src/waypoint/
// http-request.ts stripHopByHop), RFC 9110 §7.6.1 and Envoy's behaviour: no hop-by-hop header and
// nothing named in Connection goes upstream, TE only as "trailers" (gRPC), no pseudo-header, and
// every other header passes unchanged.
import { test, fc } from '@fast-check/vitest';
import { expect } from 'vitest';
import { HOP_BY_HOP, stripHopByHop } from '../../src/waypoint/http/http-request.js';
import { runs } from './runs.js';

const names = fc.oneof(
  fc.constantFrom(
    ...HOP_BY_HOP,
    'x-a',
    'x-b',
    'authorization',
    'cookie',
    'x-forwarded-for',
    ':path',
    ':authority',
  ),
  fc.stringMatching(/^[a-z][a-z0-9-]{0,12}$/),
);
const value = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.array(fc.string({ maxLength: 10 }), { minLength: 1, maxLength: 3 }),
);
/** A Connection header naming some of the other headers, in any case and spacing. */
const headers = fc
  .dictionary(names, value, { maxKeys: 12 })
  .chain((h) =>
    fc
      .subarray(Object.keys(h))
      .chain((named) =>
        fc.tuple(
          fc.constant(h),
          fc.constant(named),
          fc.array(fc.boolean(), { minLength: named.length, maxLength: named.length }),
        ),
      ),
  )
  .map(([h, named, upper]) => {
    const out: Record<string, string | string[]> = { ...h };
    if (named.length) out.connection = named.map((n, i) => (upper[i] ? n.toUpperCase() : n)).join(' ,  ');
    return out;
  });

test.prop([headers], runs())('nothing hop-by-hop or named in Connection reaches the upstream', (h) => {
  const out = stripHopByHop(h);
  const named = String(h.connection ?? '')
    .toLowerCase()
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const k of Object.keys(out)) {
    expect(k.startsWith(':'), k).toBe(false);
    if (k === 'te') expect(out.te).toBe('trailers');
    else if (k !== 'host') {
      expect(HOP_BY_HOP.has(k), k).toBe(false);
      expect(named.includes(k), k).toBe(false);
    }
  }
  for (const [k, v] of Object.entries(h)) {
    if (k.startsWith(':') || HOP_BY_HOP.has(k) || named.includes(k)) continue;
    expect(out[k], k).toEqual(v);
  }
});

test.prop([fc.string({ maxLength: 20 })], runs(0.3))('TE other than "trailers" never goes upstream', (te) => {
  const out = stripHopByHop({ te });
  if (te.toLowerCase() === 'trailers') expect(out.te).toBe('trailers');
  else expect(out.te).toBeUndefined();
});
