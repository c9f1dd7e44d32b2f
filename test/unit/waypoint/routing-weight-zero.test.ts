// A backendRef of weight 0 to a Service that does not exist (the suite's grpcroute-weight.yaml
// names echo-v3 so) gets no traffic (gateway-api apis/v1/shared_types.go BackendRef.Weight: "If
// weight is set to 0, no traffic should be forwarded for this entry"), so the warning about the
// missing Service must not promise 500s that cannot happen.
import { describe, expect, it } from 'vitest';
import { grpcRoute, httpRoute, outcome, route, table, warningsOf } from './routing-fixtures.js';

describe('a weight-0 backendRef to a missing Service', () => {
  it('is warned about without the 500 its share would get, and takes no traffic', () => {
    const t = table([
      httpRoute('r', [
        {
          backendRefs: [
            { name: 'reviews', port: 80, weight: 1 },
            { name: 'ghost', port: 80, weight: 0 },
          ],
        },
      ]),
    ]);
    expect(warningsOf(t, 'HTTPRoute/shop/r')).toEqual([
      'UNKNOWN_BACKEND spec.rules[0].backendRefs[1]: Service shop/ghost does not exist (its weight is 0, so no request is sent to it)',
    ]);
    for (let i = 0; i < 20; i++) expect(outcome(route(t, '/'))).toBe('reviews');
  });

  it('a weighted one still says its share gets an error (GRPCRoute too)', () => {
    const t = table([grpcRoute('g', [{ backendRefs: [{ name: 'ghost', port: 9090, weight: 30 }] }])]);
    expect(warningsOf(t, 'GRPCRoute/shop/g')).toEqual([
      expect.stringMatching(/ghost does not exist; requests sent to it get 500 \(gRPC: UNAVAILABLE\)/),
    ]);
  });
});
