// Consumer routes (Gateway API GEP-1294 "Producer and consumer routes", and the mesh overview's
// "Different Namespaces": a route in another namespace than its Service "will only affect
// requests from workloads in the same Namespace as the Route"). Requests from a namespace with
// consumer routes use that namespace's routes instead of the producer's; every other client the
// producer's. The namespace is the one of the verified peer identity (L7Request.sourceIdentity).
// The conformance test MeshConsumerRoute runs the same through a real mesh.
import { describe, expect, it } from 'vitest';
import { matchRoute } from '../../../src/waypoint/routing/index.js';
import { httpRoute, outcome, request, table, to, warningsOf } from './routing-fixtures.js';

const id = (ns: string) => `spiffe://cluster.local/ns/${ns}/sa/default`;
const toShop = (name: string) => ({ backendRefs: [{ name, namespace: 'shop', port: 80 }] });
const CONSUMER = httpRoute('fast-clients', [toShop('ratings')], {
  ns: 'ops',
  parentRefs: [{ group: '', kind: 'Service', name: 'web', namespace: 'shop' }],
});
const PRODUCER = httpRoute('web-route', [to('reviews')]);

function from(t: ReturnType<typeof table>, identity: string | undefined, port = 80): string {
  return outcome(matchRoute(t, { ...request('/', { port }), sourceIdentity: identity }));
}

describe('consumer routes (GEP-1294)', () => {
  it('apply to requests from the route namespace only; other clients take the default route', () => {
    // A backendRef to the Service's namespace needs no ReferenceGrant for a mesh route: no warning.
    const t = table([CONSUMER]);
    expect(from(t, id('ops'))).toBe('ratings');
    expect(from(t, id('shop'))).toBe('web');
    expect(from(t, id('elsewhere'))).toBe('web');
    expect(from(t, undefined)).toBe('web');
    expect(warningsOf(t, 'HTTPRoute/ops/fast-clients')).toEqual([]);
  });

  it('replace the producer routes for their namespace; everyone else keeps the producer routes', () => {
    const t = table([CONSUMER, PRODUCER]);
    expect(from(t, id('ops'))).toBe('ratings');
    expect(from(t, id('shop'))).toBe('reviews');
    expect(from(t, id('other'))).toBe('reviews');
  });

  it('a consumer route narrowed to a port leaves the other ports to the producer routes', () => {
    const narrowed = httpRoute('fast-clients', [toShop('ratings')], {
      ns: 'ops',
      parentRefs: [{ group: '', kind: 'Service', name: 'web', namespace: 'shop', port: 80 }],
    });
    const t = table([narrowed, PRODUCER]);
    expect(from(t, id('ops'), 80)).toBe('ratings');
    expect(from(t, id('ops'), 8080)).toBe('reviews');
  });

  it('takes the namespace from a well-formed SPIFFE id only', () => {
    const t = table([CONSUMER]);
    for (const forged of [
      'ops',
      'spiffe://cluster.local/ns/ops',
      'spiffe://cluster.local/ns/ops/sa/x/extra',
      '',
    ]) {
      expect(from(t, forged)).toBe('web');
    }
  });

  it('does not let a consumer route take part in the producer routes or the VirtualService conflict rule', () => {
    const t = table([CONSUMER]);
    expect(t.routes.size).toBe(0);
    expect(t.consumers?.get('shop/web.shop.svc.cluster.local')?.has('ops')).toBe(true);
  });
});
