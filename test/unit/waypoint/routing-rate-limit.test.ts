// The local rate limit annotation on a DestinationRule (ambit's stand-in for Istio's EnvoyFilter
// local_ratelimit): parsed into the destination policy, or warned about and left off.
import { describe, expect, it } from 'vitest';
import { destinationPolicy } from '../../../src/waypoint/routing/index.js';
import { ANNOTATION_LOCAL_RATE_LIMIT } from '../../../src/waypoint/routing/destination-rule.js';
import { destinationRule, table, warningsOf } from './routing-fixtures.js';

const svc = { namespace: 'shop', hostname: 'reviews.shop.svc.cluster.local' };

function limited(value: string, spec: Record<string, unknown> = {}) {
  const dr = destinationRule('d', { host: 'reviews', ...spec });
  dr.metadata.annotations = { [ANNOTATION_LOCAL_RATE_LIMIT]: value };
  return table([dr]);
}

describe('ambit.dev/local-rate-limit', () => {
  it.each<[string, { tokensPerFill: number; fillIntervalMs: number; maxTokens: number }]>([
    ['100/1s', { tokensPerFill: 100, fillIntervalMs: 1000, maxTokens: 100 }],
    ['10/1s burst 20', { tokensPerFill: 10, fillIntervalMs: 1000, maxTokens: 20 }],
    [' 5 / 250ms ', { tokensPerFill: 5, fillIntervalMs: 250, maxTokens: 5 }],
    ['1/1m30s', { tokensPerFill: 1, fillIntervalMs: 90_000, maxTokens: 1 }],
  ])('%j', (value, expected) => {
    const t = limited(value);
    expect(destinationPolicy(t, svc).rateLimit).toEqual(expected);
    expect(warningsOf(t, 'DestinationRule/shop/d')).toEqual([]);
  });

  it('applies to every port and subset of the host, next to the rest of the traffic policy', () => {
    const t = limited('3/1s', {
      trafficPolicy: { loadBalancer: { simple: 'RANDOM' } },
      subsets: [{ name: 'v1', labels: { version: 'v1' } }],
    });
    expect(destinationPolicy(t, svc, 9080, 'v1')).toEqual({
      lb: { kind: 'RANDOM' },
      rateLimit: { tokensPerFill: 3, fillIntervalMs: 1000, maxTokens: 3 },
    });
  });

  it.each(['', 'fast', '0/1s', '10/0s', '10/soon', '10/1s burst 5', '-1/1s', '10 per second'])(
    'rejects %j with a warning naming the annotation, and applies no limit',
    (value) => {
      const t = limited(value);
      expect(destinationPolicy(t, svc).rateLimit).toBeUndefined();
      const [w] = warningsOf(t, 'DestinationRule/shop/d');
      expect(w).toContain(`INVALID_VALUE metadata.annotations["${ANNOTATION_LOCAL_RATE_LIMIT}"]`);
    },
  );
});
