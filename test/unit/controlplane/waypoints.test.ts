import { describe, expect, it } from 'vitest';
import {
  bindWaypoint,
  planWaypoints,
  requestedWaypoint,
  type WaypointInfo,
} from '../../../src/controlplane/waypoints.js';
import { AmbientIndex } from '../../../src/controlplane/ambient-index.js';
import type { KubeResource, Namespace, Pod, Service } from '../../../src/config/types.js';
import { objectKey } from '../../../src/config/types.js';
import { TYPE_ADDRESS, TYPE_CONFIG_OBJECT } from '../../../src/xds/proto.js';
import { decodeAddress } from '../../../src/xds/resources.js';
import { decodeConfigObject } from '../../../src/xds/config-objects.js';

function gateway(
  name: string,
  ns = 'demo',
  over: {
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    addresses?: string[];
    cls?: string;
  } = {},
): KubeResource {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name, namespace: ns, labels: over.labels, annotations: over.annotations },
    spec: {
      gatewayClassName: over.cls ?? 'istio-waypoint',
      listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }],
      ...(over.addresses ? { addresses: over.addresses.map((value) => ({ type: 'IPAddress', value })) } : {}),
    },
  };
}
const node = (name: string): KubeResource => ({ apiVersion: 'v1', kind: 'Node', metadata: { name } });
const ns = (name: string, labels: Record<string, string> = {}): Namespace => ({
  apiVersion: 'v1',
  kind: 'Namespace',
  metadata: { name, labels },
});
const obj = (labels: Record<string, string> = {}, namespace = 'demo') => ({
  metadata: { namespace, labels },
});

describe('planWaypoints (deployment)', () => {
  it('places a waypoint Gateway: spec address, first node by name, service account = gateway name', () => {
    const { waypoints, problems } = planWaypoints([
      node('node-2'),
      node('node-1'),
      gateway('wp', 'demo', { addresses: ['127.0.9.200'] }),
    ]);
    expect(problems).toEqual([]);
    expect(waypoints).toEqual([
      {
        namespace: 'demo',
        name: 'wp',
        key: 'demo/wp',
        ip: '127.0.9.200',
        addressSource: 'spec',
        node: 'node-1',
        serviceAccount: 'wp',
        waypointFor: 'service',
      },
    ]);
  });

  it('takes the address from status.addresses when spec has none (the Kubernetes controller writes it)', () => {
    const gw = gateway('wp');
    gw.status = {
      addresses: [
        { type: 'Hostname', value: 'wp.demo.svc' },
        { type: 'IPAddress', value: '10.96.0.42' },
      ],
    };
    const [w] = planWaypoints([node('n'), gw], '127.0.200.0/24').waypoints;
    expect(w?.ip).toBe('10.96.0.42');
    // spec wins over status
    gw.spec.addresses = [{ type: 'IPAddress', value: '127.0.9.7' }];
    expect(planWaypoints([node('n'), gw], '127.0.200.0/24').waypoints[0]?.ip).toBe('127.0.9.7');
  });

  it('ignores Gateways of other classes', () => {
    expect(planWaypoints([node('n'), gateway('ingress', 'demo', { cls: 'istio' })]).waypoints).toEqual([]);
  });

  it('allocates from the pool deterministically, whatever the order of objects', () => {
    const objs = [node('n'), gateway('a'), gateway('b'), gateway('c', 'other')];
    const one = planWaypoints(objs, '127.0.200.0/24').waypoints;
    const two = planWaypoints([...objs].reverse(), '127.0.200.0/24').waypoints;
    expect(one).toEqual(two);
    const ips = one.map((w) => w.ip);
    expect(new Set(ips).size).toBe(3);
    for (const ip of ips) expect(ip).toMatch(/^127\.0\.200\.(\d+)$/);
    for (const ip of ips) expect(['127.0.200.0', '127.0.200.255']).not.toContain(ip);
    // Adding a waypoint does not move the others.
    const three = planWaypoints([...objs, gateway('d')], '127.0.200.0/24').waypoints;
    for (const w of one) expect(three.find((x) => x.key === w.key)?.ip).toBe(w.ip);
  });

  it('honours the node annotation and reports an unknown node', () => {
    const ok = planWaypoints([
      node('a'),
      node('b'),
      gateway('wp', 'demo', { annotations: { 'ambit.dev/node': 'b' } }),
    ]);
    expect(ok.waypoints[0]?.node).toBe('b');
    const bad = planWaypoints([
      node('a'),
      gateway('wp', 'demo', { annotations: { 'ambit.dev/node': 'zz' } }),
    ]);
    expect(bad.waypoints).toEqual([]);
    expect(bad.problems[0]?.reason).toMatch(/unknown Node zz/);
  });

  it('reports a waypoint with no node, and two waypoints claiming one address', () => {
    expect(planWaypoints([gateway('wp')]).problems[0]?.reason).toMatch(/no Node/);
    const dup = planWaypoints([
      node('n'),
      gateway('a', 'demo', { addresses: ['127.0.9.9'] }),
      gateway('b', 'demo', { addresses: ['127.0.9.9'] }),
    ]);
    expect(dup.waypoints.map((w) => w.key)).toEqual(['demo/a']);
    expect(dup.problems[0]).toMatchObject({ key: 'demo/b' });
  });

  it.each([
    [undefined, 'service'],
    ['service', 'service'],
    ['workload', 'workload'],
    ['all', 'all'],
    ['none', 'none'],
    ['bogus', 'service'],
  ])('istio.io/waypoint-for %s → %s', (label, want) => {
    const gw = gateway('wp', 'demo', { labels: label ? { 'istio.io/waypoint-for': label } : {} });
    expect(planWaypoints([node('n'), gw]).waypoints[0]?.waypointFor).toBe(want);
  });
});

describe('waypoint binding (Istio rules)', () => {
  const W = (
    waypointFor: WaypointInfo['waypointFor'],
    key = 'demo/wp',
    ip = '127.0.9.200',
  ): [string, WaypointInfo] => {
    const [namespace = '', name = ''] = key.split('/');
    return [
      key,
      {
        namespace,
        name,
        key,
        ip: ip as WaypointInfo['ip'],
        addressSource: 'spec',
        node: 'n',
        serviceAccount: name,
        waypointFor,
      },
    ];
  };
  const UW = 'istio.io/use-waypoint';
  const UWNS = 'istio.io/use-waypoint-namespace';

  it.each<[string, Record<string, string>, Record<string, string>, string | undefined]>([
    ['no labels', {}, {}, undefined],
    ['namespace label', {}, { [UW]: 'wp' }, 'demo/wp'],
    ['object label', { [UW]: 'wp' }, {}, 'demo/wp'],
    ['object label beats namespace label', { [UW]: 'other' }, { [UW]: 'wp' }, 'demo/other'],
    ['object none opts out of the namespace waypoint', { [UW]: 'none' }, { [UW]: 'wp' }, undefined],
    ['namespace none', {}, { [UW]: 'none' }, undefined],
    ['object use-waypoint-namespace', { [UW]: 'wp', [UWNS]: 'infra' }, {}, 'infra/wp'],
    ['namespace use-waypoint-namespace', {}, { [UW]: 'wp', [UWNS]: 'infra' }, 'infra/wp'],
    ['empty object label falls back to the namespace', { [UW]: '' }, { [UW]: 'wp' }, 'demo/wp'],
  ])('%s', (_name, objLabels, nsLabels, want) => {
    expect(requestedWaypoint(obj(objLabels), ns('demo', nsLabels))).toBe(want);
  });

  it.each<[WaypointInfo['waypointFor'], 'service' | 'workload', boolean]>([
    ['service', 'service', true],
    ['service', 'workload', false],
    ['workload', 'service', false],
    ['workload', 'workload', true],
    ['all', 'service', true],
    ['all', 'workload', true],
    ['none', 'service', false],
    ['none', 'workload', false],
  ])('waypoint-for %s, binding from a %s → %s', (forWhat, kind, bound) => {
    const got = bindWaypoint(obj({ [UW]: 'wp' }), undefined, kind, new Map([W(forWhat)]));
    expect(got).toEqual(bound ? { network: '', ip: '127.0.9.200', hboneMtlsPort: 15008 } : undefined);
  });

  it('a binding to a waypoint that does not exist has no effect', () => {
    expect(bindWaypoint(obj({ [UW]: 'missing' }), undefined, 'service', new Map([W('all')]))).toBeUndefined();
  });

  it('a cross-namespace binding finds the waypoint in the named namespace', () => {
    const got = bindWaypoint(
      obj({ [UW]: 'wp', [UWNS]: 'infra' }),
      undefined,
      'service',
      new Map([W('service', 'infra/wp', '127.0.9.201')]),
    );
    expect(got?.ip).toBe('127.0.9.201');
  });
});

// ---- the index: published resources, incremental binding, CA identities ----

function pod(name: string, ip: string, labels: Record<string, string> = {}): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'demo', labels },
    spec: { nodeName: 'node-1', serviceAccountName: name },
    status: { podIP: ip },
  };
}
function svc(name: string, labels: Record<string, string> = {}): Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'demo', labels },
    spec: {
      clusterIP: '10.96.0.10',
      selector: { app: 'echo' },
      ports: [{ name: 'http', port: 80, targetPort: 8080 }],
    },
  };
}
function snapshot(objects: KubeResource[]) {
  return { objects: new Map(objects.map((o) => [objectKey(o), o])) };
}
function address(index: AmbientIndex, name: string) {
  const r = index.resources(TYPE_ADDRESS).get(name);
  return r && decodeAddress(name, r.bytes);
}

describe('AmbientIndex with waypoints', () => {
  const base = (): KubeResource[] => [
    ns('demo', { 'istio.io/dataplane-mode': 'ambient' }),
    node('node-1'),
    gateway('wp', 'demo', { addresses: ['127.0.9.200'], labels: { 'istio.io/waypoint-for': 'all' } }),
    pod('echo', '10.0.0.2', { app: 'echo' }),
    svc('echo'),
  ];

  it('publishes the waypoint as a native-HBONE Workload and a Service on 15008, and reports it programmed', () => {
    const index = new AmbientIndex();
    const statuses: unknown[] = [];
    index.on('waypoint', (s) => statuses.push(s));
    index.rebuild(snapshot(base()));
    const w = address(index, 'Kubernetes//Gateway/demo/wp');
    expect(w && 'workload' in w && w.workload).toMatchObject({
      addresses: ['127.0.9.200'],
      tunnelProtocol: 'HBONE',
      nativeTunnel: true,
      serviceAccount: 'wp',
      node: 'node-1',
    });
    const s = address(index, 'demo/wp.demo.svc.cluster.local');
    expect(s && 'service' in s && s.service.ports).toEqual([
      { servicePort: 15008, targetPort: 15008, appProtocol: 'UNKNOWN' },
    ]);
    expect(statuses).toEqual([
      expect.objectContaining({
        key: 'demo/wp',
        programmed: true,
        address: '127.0.9.200',
        identity: 'spiffe://cluster.local/ns/demo/sa/wp',
      }),
    ]);
    expect(index.waypointStatuses()).toHaveLength(1);
    expect(index.identitiesOnNode('node-1').has('spiffe://cluster.local/ns/demo/sa/wp')).toBe(true);
    expect(index.identitiesOnNode('node-2').has('spiffe://cluster.local/ns/demo/sa/wp')).toBe(false);
    // Kubernetes mode (issue 12, hole 4): the placement is no grant; no node signs for a waypoint.
    expect(index.podIdentitiesOnNode('node-1').has('spiffe://cluster.local/ns/demo/sa/wp')).toBe(false);
    expect(index.isWaypointIdentity('spiffe://cluster.local/ns/demo/sa/wp')).toBe(true);
  });

  it('binds a service by its label and a pod by the namespace label, and unbinds on removal', () => {
    const index = new AmbientIndex();
    const objs = base();
    objs[4] = svc('echo', { 'istio.io/use-waypoint': 'wp' });
    index.rebuild(snapshot(objs));
    const s = address(index, 'demo/echo.demo.svc.cluster.local');
    expect(s && 'service' in s && s.service.waypoint).toEqual({
      network: '',
      ip: '127.0.9.200',
      hboneMtlsPort: 15008,
    });
    const p = address(index, 'Kubernetes//Pod/demo/echo');
    expect(p && 'workload' in p && p.workload.waypoint).toBeUndefined();

    // Namespace label: the pod (waypoint-for all) is bound too.
    const updates: string[][] = [];
    index.on('update', (u) => updates.push(u.upserted));
    index.apply({
      upserted: [ns('demo', { 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': 'wp' })],
      deleted: [],
    });
    const p2 = address(index, 'Kubernetes//Pod/demo/echo');
    expect(p2 && 'workload' in p2 && p2.workload.waypoint?.ip).toBe('127.0.9.200');

    // The Gateway goes away: everything bound to it is unbound, and its resources removed.
    const removed: string[][] = [];
    index.on('update', (u) => removed.push(u.removed));
    index.apply({ upserted: [], deleted: [objs[2]!] });
    const s3 = address(index, 'demo/echo.demo.svc.cluster.local');
    expect(s3 && 'service' in s3 && s3.service.waypoint).toBeUndefined();
    expect(removed.flat()).toContain('Kubernetes//Gateway/demo/wp');
    expect(index.identitiesOnNode('node-1').has('spiffe://cluster.local/ns/demo/sa/wp')).toBe(false);
  });

  it('publishes L7 objects for waypoints, but only targetRefs AuthorizationPolicies', () => {
    const index = new AmbientIndex();
    const route: KubeResource = {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'r', namespace: 'demo' },
      spec: { parentRefs: [{ kind: 'Service', group: '', name: 'echo' }] },
    };
    const l7: KubeResource = {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'l7', namespace: 'demo' },
      spec: { targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'wp' }] },
    };
    const l4: KubeResource = {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'l4', namespace: 'demo' },
      spec: {},
    };
    index.rebuild(snapshot([...base(), route, l7, l4]));
    const names = [...index.resources(TYPE_CONFIG_OBJECT).keys()].sort();
    expect(names).toEqual(['AuthorizationPolicy/demo/l7', 'HTTPRoute/demo/r']);
    const r = index.resources(TYPE_CONFIG_OBJECT).get('HTTPRoute/demo/r')!;
    expect(decodeConfigObject('HTTPRoute/demo/r', r.bytes)).toMatchObject({
      kind: 'HTTPRoute',
      metadata: { name: 'r', namespace: 'demo' },
    });
    index.rebuild(snapshot(base()));
    expect(index.resources(TYPE_CONFIG_OBJECT).size).toBe(0);
  });
});
