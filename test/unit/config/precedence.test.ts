// Issue 13 divergence 7: ties across objects go to the oldest metadata.creationTimestamp, then to
// "namespace/name" (Gateway API HTTPRouteRule.Matches "If ties still exist across multiple
// Routes"; Istio pilot/pkg/model sortConfigByCreationTime and the PeerAuthentication reference,
// "the oldest one").
import { describe, expect, it } from 'vitest';
import { byCreationThenName, inPrecedenceOrder } from '../../../src/config/precedence.js';
import { parseManifests } from '../../../src/config/load.js';
import type { PeerAuthentication, Pod } from '../../../src/config/types.js';
import { AmbientIndex } from '../../../src/controlplane/ambient-index.js';
import { httpRoute, outcome, route, table, to } from '../waypoint/routing-fixtures.js';

const m = (namespace: string, name: string, creationTimestamp?: string) => ({
  metadata: { name, namespace, ...(creationTimestamp ? { creationTimestamp } : {}) },
});

describe('byCreationThenName (table)', () => {
  it.each([
    [
      'older timestamp wins over name',
      m('a', 'z', '2020-09-08T01:02:03Z'),
      m('a', 'a', '2020-09-08T01:02:04Z'),
      -1,
    ],
    ['newer loses', m('a', 'a', '2020-09-08T01:02:04Z'), m('a', 'z', '2020-09-08T01:02:03Z'), 1],
    [
      'same time: namespace/name',
      m('foo', 'bar', '2020-09-08T01:02:03Z'),
      m('foo', 'baz', '2020-09-08T01:02:03Z'),
      -1,
    ],
    [
      'same time: namespace before name',
      m('a', 'z', '2020-09-08T01:02:03Z'),
      m('b', 'a', '2020-09-08T01:02:03Z'),
      -1,
    ],
    ['no timestamps: names only', m('foo', 'baz'), m('foo', 'bar'), 1],
    [
      'absent sorts as the zero time (istiod), before a dated one',
      m('a', 'z'),
      m('a', 'a', '2020-09-08T01:02:03Z'),
      -1,
    ],
    [
      'offsets compare as instants',
      m('a', 'z', '2020-09-08T03:00:00+02:00'),
      m('a', 'a', '2020-09-08T01:30:00Z'),
      -1,
    ],
    ['equal', m('a', 'a', '2020-09-08T01:02:03Z'), m('a', 'a', '2020-09-08T01:02:03Z'), 0],
  ])('%s', (_why, a, b, want) => {
    expect(Math.sign(byCreationThenName(a, b))).toBe(want);
  });

  it('inPrecedenceOrder leaves its input alone', () => {
    const input = [m('a', 'b'), m('a', 'a')];
    expect(inPrecedenceOrder(input).map((o) => o.metadata.name)).toEqual(['a', 'b']);
    expect(input.map((o) => o.metadata.name)).toEqual(['b', 'a']);
  });
});

describe('metadata.creationTimestamp is read from manifests', () => {
  const doc = (ts: string) =>
    `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: shop, creationTimestamp: ${ts}}\nspec: {}\n`;
  it('keeps an RFC 3339 time', () => {
    const r = parseManifests(doc('"2020-09-08T01:02:03Z"'), 'routes.yaml');
    expect(r.errors).toEqual([]);
    expect(r.objects[0]!.metadata.creationTimestamp).toBe('2020-09-08T01:02:03Z');
  });
  it('reports a time that is not RFC 3339', () => {
    const r = parseManifests(doc('yesterday'), 'routes.yaml');
    expect(r.errors.map((e) => String(e))).toEqual([expect.stringContaining('metadata.creationTimestamp')]);
  });
});

describe('HTTPRoutes tied on every match criterion', () => {
  const rule = (svc: string) => to(svc, { matches: [{ path: { type: 'PathPrefix', value: '/api' } }] });
  const dated = <T extends { metadata: object }>(o: T, creationTimestamp: string): T => ({
    ...o,
    metadata: { ...o.metadata, creationTimestamp },
  });
  it('the oldest route wins even when its name sorts last', () => {
    const older = dated(httpRoute('zz-old', [rule('reviews')]), '2020-09-08T01:02:03Z');
    const newer = dated(httpRoute('aa-new', [rule('ratings')]), '2020-09-08T01:02:04Z');
    expect(outcome(route(table([newer, older]), '/api/x'))).toBe('reviews');
    expect(outcome(route(table([older, newer]), '/api/x'))).toBe('reviews');
  });
  it('without timestamps, the first by namespace/name wins whatever the file order', () => {
    const a = httpRoute('aa', [rule('ratings')]);
    const z = httpRoute('zz', [rule('reviews')]);
    expect(outcome(route(table([z, a]), '/api/x'))).toBe('ratings');
    expect(outcome(route(table([a, z]), '/api/x'))).toBe('ratings');
  });
  it('a more specific match still beats an older route', () => {
    const older = dated(httpRoute('old', [rule('reviews')]), '2020-09-08T01:02:03Z');
    const longer = dated(
      httpRoute('new', [to('ratings', { matches: [{ path: { type: 'PathPrefix', value: '/api/x' } }] })]),
      '2021-01-01T00:00:00Z',
    );
    expect(outcome(route(table([older, longer]), '/api/x'))).toBe('ratings');
  });
});

describe('PeerAuthentications in conflict at one level', () => {
  const ns = {
    apiVersion: 'v1' as const,
    kind: 'Namespace' as const,
    metadata: { name: 'demo', labels: { 'istio.io/dataplane-mode': 'ambient' } },
  };
  const pod: Pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'echo', namespace: 'demo', labels: { app: 'echo' } },
    spec: { nodeName: 'n1', serviceAccountName: 'echo' },
    status: { podIP: '10.0.0.11' },
  };
  const pa = (name: string, mode: string, ts?: string, selector = false): PeerAuthentication => ({
    apiVersion: 'security.istio.io/v1',
    kind: 'PeerAuthentication',
    metadata: { name, namespace: 'demo', ...(ts ? { creationTimestamp: ts } : {}) },
    spec: { ...(selector ? { selector: { matchLabels: { app: 'echo' } } } : {}), mtls: { mode } },
  });
  const effective = (...pas: PeerAuthentication[]) => {
    const index = new AmbientIndex();
    index.apply({ upserted: [ns, pod, ...pas], deleted: [] });
    return index.effectivePeerAuthentication('demo/echo');
  };
  it.each([
    ['namespace level: the oldest wins over the first name', false],
    ['workload level: the oldest wins over the first name', true],
  ])('%s', (_why, selector) => {
    const got = effective(
      pa('a-new', 'PERMISSIVE', '2024-01-01T00:00:01Z', selector),
      pa('z-old', 'STRICT', '2024-01-01T00:00:00Z', selector),
    );
    expect(got).toMatchObject({ mode: 'STRICT', from: selector ? 'workload' : 'namespace' });
  });
  it('without timestamps the first name wins', () => {
    expect(effective(pa('z', 'STRICT'), pa('a', 'PERMISSIVE'))).toMatchObject({ mode: 'PERMISSIVE' });
  });
});
