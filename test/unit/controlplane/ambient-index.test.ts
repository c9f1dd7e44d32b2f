import { describe, expect, it } from 'vitest';
import { AmbientIndex } from '../../../src/controlplane/ambient-index.js';
import {
  appProtocolOf,
  buildService,
  buildWorkload,
  canonicalName,
  canonicalRevision,
  isAmbientEnrolled,
  podHealth,
  type IndexOptions,
  type IndexUpdate,
} from '../../../src/controlplane/workload-builder.js';
import type { ConfigSnapshot, KubeResource, Namespace, Pod, Service } from '../../../src/config/types.js';
import { objectKey } from '../../../src/config/types.js';
import { TYPE_ADDRESS, TYPE_AUTHORIZATION } from '../../../src/xds/proto.js';
import { decodeAddress } from '../../../src/xds/resources.js';

const OPTS: IndexOptions = { trustDomain: 'cluster.local', clusterId: 'Kubernetes', network: '' };

function ns(name: string, labels: Record<string, string> = {}): Namespace {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } };
}
function pod(
  name: string,
  opts: {
    ns?: string;
    ip?: string;
    labels?: Record<string, string>;
    node?: string;
    sa?: string;
    hostNetwork?: boolean;
    phase?: string;
    ready?: string;
    ports?: { name: string; containerPort: number }[];
  } = {},
): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: opts.ns ?? 'demo', labels: opts.labels ?? {} },
    spec: {
      nodeName: opts.node ?? 'node-1',
      serviceAccountName: opts.sa,
      hostNetwork: opts.hostNetwork,
      containers: [{ name: 'app', ports: opts.ports ?? [] }],
    },
    status: {
      podIP: opts.ip ?? '10.0.0.1',
      phase: opts.phase,
      conditions: opts.ready ? [{ type: 'Ready', status: opts.ready }] : undefined,
    },
  };
}
function svc(
  name: string,
  selector: Record<string, string> | undefined,
  ports: Service['spec']['ports'] = [{ port: 80, targetPort: 8080 }],
  clusterIP = '10.96.0.10',
  namespace = 'demo',
): Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace },
    spec: { clusterIP, selector, ports },
  };
}
function snapshot(objs: KubeResource[]): ConfigSnapshot {
  return { objects: new Map(objs.map((o) => [objectKey(o), o])) };
}
function recorder(index: AmbientIndex): IndexUpdate[] {
  const updates: IndexUpdate[] = [];
  index.on('update', (u) => updates.push(u));
  return updates;
}

describe('enrollment', () => {
  const ambientNs = ns('demo', { 'istio.io/dataplane-mode': 'ambient' });
  const plainNs = ns('demo');
  it.each([
    ['pod in an ambient namespace', pod('a'), ambientNs, true],
    ['pod in a plain namespace', pod('a'), plainNs, false],
    [
      'pod opting out in an ambient namespace',
      pod('a', { labels: { 'istio.io/dataplane-mode': 'none' } }),
      ambientNs,
      false,
    ],
    [
      'pod opting in in a plain namespace',
      pod('a', { labels: { 'istio.io/dataplane-mode': 'ambient' } }),
      plainNs,
      true,
    ],
    [
      'pod opting in without a namespace object',
      pod('a', { labels: { 'istio.io/dataplane-mode': 'ambient' } }),
      undefined,
      true,
    ],
    ['hostNetwork pod in an ambient namespace', pod('a', { hostNetwork: true }), ambientNs, false],
    [
      'hostNetwork pod opting in',
      pod('a', { hostNetwork: true, labels: { 'istio.io/dataplane-mode': 'ambient' } }),
      plainNs,
      false,
    ],
  ])('%s → enrolled %s', (_name, p, n, enrolled) => {
    expect(isAmbientEnrolled(p, n)).toBe(enrolled);
    expect(buildWorkload(p, n, [], OPTS)?.tunnelProtocol).toBe(enrolled ? 'HBONE' : 'NONE');
  });
});

describe('canonical names and revisions', () => {
  it.each([
    [{ 'service.istio.io/canonical-name': 'c', 'app.kubernetes.io/name': 'k', app: 'a' }, 'c'],
    [{ 'app.kubernetes.io/name': 'k', app: 'a' }, 'k'],
    [{ app: 'a' }, 'a'],
    [{}, 'echo-0'],
  ])('labels %j → name %s', (labels, expected) => {
    expect(canonicalName(pod('echo-0', { labels }))).toBe(expected);
  });
  it.each([
    [{ 'service.istio.io/canonical-revision': 'r', 'app.kubernetes.io/version': 'k', version: 'v' }, 'r'],
    [{ 'app.kubernetes.io/version': 'k', version: 'v' }, 'k'],
    [{ version: 'v' }, 'v'],
    [{}, 'latest'],
  ])('labels %j → revision %s', (labels, expected) => {
    expect(canonicalRevision(pod('echo-0', { labels }))).toBe(expected);
  });
});

describe('workload health and identity fields', () => {
  it.each([
    [undefined, undefined, 'HEALTHY'],
    ['Running', 'True', 'HEALTHY'],
    ['Running', 'False', 'UNHEALTHY'],
    ['Pending', undefined, 'UNHEALTHY'],
    [undefined, 'False', 'UNHEALTHY'],
  ])('phase %s, Ready %s → %s', (phase, ready, status) => {
    expect(podHealth(pod('a', { phase, ready }))).toBe(status);
  });

  it('fills uid, service account default, node and workload name', () => {
    const w = buildWorkload(pod('echo-0', { ip: '10.1.2.3', node: 'n7' }), ns('demo'), [], OPTS)!;
    expect(w).toMatchObject({
      uid: 'Kubernetes//Pod/demo/echo-0',
      addresses: ['10.1.2.3'],
      node: 'n7',
      serviceAccount: 'default',
      workloadName: 'echo-0',
      trustDomain: 'cluster.local',
      clusterId: 'Kubernetes',
    });
  });

  it.each([
    ['no pod IP', { ...pod('a'), status: {} }],
    ['a Succeeded pod', pod('a', { phase: 'Succeeded' })],
    ['a Failed pod', pod('a', { phase: 'Failed' })],
  ])('builds no workload for %s', (_n, p) => {
    expect(buildWorkload(p, undefined, [], OPTS)).toBeUndefined();
  });
});

describe('services', () => {
  it.each([
    [{ port: 80, name: 'http' }, 'HTTP11'],
    [{ port: 80, name: 'http-web' }, 'HTTP11'],
    [{ port: 80, name: 'http2-x' }, 'HTTP2'],
    [{ port: 80, name: 'grpc' }, 'GRPC'],
    // istiod (pkg/config/kube/conversion.go ConvertProtocol + ambient toAppProtocolFromProtocol):
    [{ port: 80, name: 'grpc-web' }, undefined], // GRPCWeb has no AppProtocol: UNKNOWN
    [{ port: 80, name: 'grpc-web-x' }, undefined],
    [{ port: 80, name: 'tcp' }, 'TCP'],
    [{ port: 80, name: 'tcp-db' }, 'TCP'],
    [{ port: 443, name: 'https' }, 'TLS'],
    [{ port: 443, name: 'tls-x' }, 'TLS'],
    [{ port: 80, name: 'httpx' }, undefined],
    [{ port: 3306, name: 'db' }, 'TCP'], // a well-known port with an unknown name
    [{ port: 3306, name: 'mysql' }, undefined], // MySQL is known, and has no AppProtocol
    [{ port: 80, name: 'http', protocol: 'UDP' }, undefined],
    [{ port: 80, appProtocol: 'http' }, 'HTTP11'],
    [{ port: 80, appProtocol: 'kubernetes.io/h2c', name: 'tcp' }, 'HTTP2'],
    [{ port: 80, appProtocol: 'kubernetes.io/ws' }, 'HTTP11'],
    [{ port: 80, appProtocol: 'kubernetes.io/wss' }, 'TLS'],
    [{ port: 80, appProtocol: 'GRPC' }, 'GRPC'],
    [{ port: 80, appProtocol: 'mysql', name: 'http' }, undefined],
    [{ port: 80, appProtocol: '', name: 'http' }, undefined], // set, even empty, it replaces the name
  ])('port %j → appProtocol %s', (port, expected) => {
    expect(appProtocolOf(port)).toBe(expected);
  });

  it('names the service and maps numeric, absent and named target ports', () => {
    const s = buildService(
      svc('echo', { app: 'echo' }, [
        { port: 80, targetPort: 8080, name: 'http' },
        { port: 90 },
        { port: 91, targetPort: 'metrics' },
      ]),
      OPTS,
    )!;
    expect(s.hostname).toBe('echo.demo.svc.cluster.local');
    expect(s.addresses).toEqual([{ network: '', address: '10.96.0.10' }]);
    expect(s.ports).toEqual([
      { servicePort: 80, targetPort: 8080, appProtocol: 'HTTP11' },
      { servicePort: 90, targetPort: 90 },
      { servicePort: 91, targetPort: 0 },
    ]);
  });

  it.each([['None'], [''], [undefined]])('skips a service with clusterIP %j', (ip) => {
    expect(buildService({ ...svc('h', {}), spec: { clusterIP: ip, ports: [] } }, OPTS)).toBeUndefined();
  });

  it('resolves a named target port per pod and drops it for pods without that port', () => {
    const s = svc('echo', { app: 'echo' }, [
      { port: 80, targetPort: 'web' },
      { port: 81, targetPort: 9000 },
    ]);
    const named = pod('a', { labels: { app: 'echo' }, ports: [{ name: 'web', containerPort: 8081 }] });
    const unnamed = pod('b', { labels: { app: 'echo' } });
    expect(buildWorkload(named, undefined, [s], OPTS)!.services).toEqual({
      'demo/echo.demo.svc.cluster.local': [
        { servicePort: 80, targetPort: 8081 },
        { servicePort: 81, targetPort: 9000 },
      ],
    });
    expect(buildWorkload(unnamed, undefined, [s], OPTS)!.services).toEqual({
      'demo/echo.demo.svc.cluster.local': [{ servicePort: 81, targetPort: 9000 }],
    });
  });

  it('lists a service without a selector that the index passes (its EndpointSlices name the pod)', () => {
    const s = svc('s', undefined, [{ port: 80, targetPort: 8080 }]);
    expect(buildWorkload(pod('a', {}), undefined, [s], OPTS)!.services).toEqual({
      'demo/s.demo.svc.cluster.local': [{ servicePort: 80, targetPort: 8080 }],
    });
  });

  it.each([
    ['a selector the pod does not match', svc('s', { app: 'other' })],
    ['another namespace', svc('s', { app: 'echo' }, undefined, '10.96.0.1', 'other')],
    ['a headless service', svc('s', { app: 'echo' }, undefined, 'None')],
  ])('a workload is not listed by a service with %s', (_n, s) => {
    expect(buildWorkload(pod('a', { labels: { app: 'echo' } }), undefined, [s], OPTS)!.services).toEqual({});
  });
});

describe('AmbientIndex incremental updates', () => {
  function seeded() {
    const index = new AmbientIndex();
    index.rebuild(
      snapshot([
        ns('demo', { 'istio.io/dataplane-mode': 'ambient' }),
        ns('other'),
        pod('a', { ip: '10.0.0.1', labels: { app: 'echo' } }),
        pod('b', { ip: '10.0.0.2', labels: { app: 'echo' } }),
        pod('c', { ip: '10.0.0.3', labels: { app: 'db' } }),
        pod('x', { ip: '10.0.1.1', ns: 'other', labels: { app: 'echo' } }),
        svc('echo', { app: 'echo' }),
      ]),
    );
    return { index, updates: recorder(index) };
  }
  const uid = (n: string, namespace = 'demo') => `Kubernetes//Pod/${namespace}/${n}`;
  const ECHO = 'demo/echo.demo.svc.cluster.local';

  it('holds one encoded, decodable resource per pod and service with aliases', () => {
    const { index } = seeded();
    const res = index.resources(TYPE_ADDRESS);
    expect([...res.keys()].sort()).toEqual([ECHO, uid('a'), uid('b'), uid('c'), uid('x', 'other')].sort());
    const a = res.get(uid('a'))!;
    expect(a.aliases).toEqual(['/10.0.0.1']);
    const decoded = decodeAddress(a.name, a.bytes);
    expect('workload' in decoded && decoded.workload.services[ECHO]).toEqual([
      { servicePort: 80, targetPort: 8080, appProtocol: 'UNKNOWN' },
    ]);
    expect([...index.resources(TYPE_AUTHORIZATION).keys()]).toEqual([
      'istio-system/istio_converted_static_strict',
    ]);
  });

  it('re-applying the same state emits nothing', () => {
    const { index, updates } = seeded();
    index.rebuild(
      snapshot([
        ns('demo', { 'istio.io/dataplane-mode': 'ambient' }),
        ns('other'),
        pod('a', { ip: '10.0.0.1', labels: { app: 'echo' } }),
        pod('b', { ip: '10.0.0.2', labels: { app: 'echo' } }),
        pod('c', { ip: '10.0.0.3', labels: { app: 'db' } }),
        pod('x', { ip: '10.0.1.1', ns: 'other', labels: { app: 'echo' } }),
        svc('echo', { app: 'echo' }),
      ]),
    );
    index.apply({ upserted: [pod('a', { ip: '10.0.0.1', labels: { app: 'echo' } })], deleted: [] });
    expect(updates).toEqual([]);
  });

  it('a Service without a selector takes its members from EndpointSlices (ready endpoints only)', () => {
    const { index, updates } = seeded();
    const slice = (name: string, ips: string[], ready = true): KubeResource =>
      ({
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name, namespace: 'demo', labels: { 'kubernetes.io/service-name': 'manual' } },
        addressType: 'IPv4',
        endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready } })),
      }) as KubeResource;
    const MANUAL = 'demo/manual.demo.svc.cluster.local';
    const servicesOf = (n: string) => {
      const r = index.resources(TYPE_ADDRESS).get(uid(n))!;
      const d = decodeAddress(r.name, r.bytes);
      return 'workload' in d ? Object.keys(d.workload.services).sort() : [];
    };
    index.apply({ upserted: [svc('manual', undefined, undefined, '10.96.0.9')], deleted: [] });
    expect(servicesOf('c')).toEqual([]);
    updates.length = 0;
    index.apply({ upserted: [slice('manual-1', ['10.0.0.3'])], deleted: [] });
    expect(servicesOf('c')).toEqual([MANUAL]);
    // Membership lives on the workload (Istio's workload API): only c is pushed, not the Service.
    expect(updates.flatMap((u) => u.upserted)).toEqual([uid('c')]);
    // A second slice adds b; an endpoint that is not ready does not count.
    index.apply({
      upserted: [slice('manual-2', ['10.0.0.2']), slice('manual-3', ['10.0.0.1'], false)],
      deleted: [],
    });
    expect(servicesOf('b')).toEqual([ECHO, MANUAL]);
    expect(servicesOf('a')).toEqual([ECHO]);
    // Deleting the first slice releases c only.
    index.apply({ upserted: [], deleted: [slice('manual-1', [])] });
    expect(servicesOf('c')).toEqual([]);
    expect(servicesOf('b')).toEqual([ECHO, MANUAL]);
    // A pod that takes a listed IP later joins too.
    index.apply({ upserted: [pod('d', { ip: '10.0.0.2', labels: {} })], deleted: [] });
    expect(servicesOf('d')).toEqual([MANUAL]);
  });

  it("changing one pod's label emits exactly that pod", () => {
    const { index, updates } = seeded();
    const before = index.resources(TYPE_ADDRESS).get(uid('b'))!.version;
    index.apply({
      upserted: [pod('a', { ip: '10.0.0.1', labels: { app: 'echo', version: 'v2' } })],
      deleted: [],
    });
    expect(updates).toEqual([{ typeUrl: TYPE_ADDRESS, upserted: [uid('a')], removed: [] }]);
    expect(index.resources(TYPE_ADDRESS).get(uid('b'))!.version).toBe(before);
  });

  it('a pod leaving a service by label change updates only that pod', () => {
    const { index, updates } = seeded();
    index.apply({ upserted: [pod('a', { ip: '10.0.0.1', labels: { app: 'db' } })], deleted: [] });
    expect(updates).toEqual([{ typeUrl: TYPE_ADDRESS, upserted: [uid('a')], removed: [] }]);
    expect(index.workloads().find((w) => w.name === 'a')!.services).toEqual({});
  });

  it('a namespace label flip emits its pods only', () => {
    const { index, updates } = seeded();
    index.apply({ upserted: [ns('demo')], deleted: [] });
    expect(updates).toHaveLength(1);
    expect(updates[0]!.upserted.sort()).toEqual([uid('a'), uid('b'), uid('c')]);
    expect(index.workloads().every((w) => w.tunnelProtocol === 'NONE')).toBe(true);
  });

  it('a namespace annotation change emits nothing', () => {
    const { index, updates } = seeded();
    const n = ns('demo', { 'istio.io/dataplane-mode': 'ambient' });
    n.metadata.annotations = { note: 'x' };
    index.apply({ upserted: [n], deleted: [] });
    expect(updates).toEqual([]);
  });

  it("deleting a service emits its removal and the selected pods' updates", () => {
    const { index, updates } = seeded();
    index.apply({
      upserted: [],
      deleted: [{ kind: 'Service', metadata: { name: 'echo', namespace: 'demo' } }],
    });
    expect(updates).toHaveLength(1);
    expect(updates[0]!.removed).toEqual([ECHO]);
    expect(updates[0]!.upserted.sort()).toEqual([uid('a'), uid('b')]);
  });

  it('adding a service emits it and the pods it selects', () => {
    const { index, updates } = seeded();
    index.apply({ upserted: [svc('db', { app: 'db' }, [{ port: 5432 }], '10.96.0.11')], deleted: [] });
    expect(updates[0]!.upserted.sort()).toEqual(['demo/db.demo.svc.cluster.local', uid('c')].sort());
  });

  it('changing a service port updates the service and its members', () => {
    const { index, updates } = seeded();
    index.apply({ upserted: [svc('echo', { app: 'echo' }, [{ port: 80, targetPort: 9090 }])], deleted: [] });
    expect(updates[0]!.upserted.sort()).toEqual([ECHO, uid('a'), uid('b')].sort());
  });

  it('deleting a pod emits its removal', () => {
    const { index, updates } = seeded();
    index.apply({ upserted: [], deleted: [{ kind: 'Pod', metadata: { name: 'c', namespace: 'demo' } }] });
    expect(updates).toEqual([{ typeUrl: TYPE_ADDRESS, upserted: [], removed: [uid('c')] }]);
  });

  it('rebuild with an object gone emits its removal', () => {
    const { index, updates } = seeded();
    index.rebuild(snapshot([ns('demo'), pod('a', { ip: '10.0.0.1', labels: { app: 'echo' } })]));
    const u = updates[0]!;
    expect(u.removed.sort()).toEqual([ECHO, uid('b'), uid('c'), uid('x', 'other')].sort());
    expect(u.upserted).toEqual([uid('a')]);
  });

  it('bumps the version only when something changed', () => {
    const { index } = seeded();
    const v = index.version();
    index.apply({ upserted: [ns('other')], deleted: [] });
    expect(index.version()).toBe(v);
    index.apply({ upserted: [ns('other', { 'istio.io/dataplane-mode': 'ambient' })], deleted: [] });
    expect(index.version()).not.toBe(v);
  });
});

describe('identitiesOnNode', () => {
  it('lists the SPIFFE ids of ambient-enrolled pods on that node only', () => {
    const index = new AmbientIndex({ trustDomain: 'example.org' });
    index.rebuild(
      snapshot([
        ns('demo', { 'istio.io/dataplane-mode': 'ambient' }),
        ns('plain'),
        pod('a', { node: 'n1', sa: 'echo' }),
        pod('b', { node: 'n1', sa: 'echo' }),
        pod('c', { node: 'n1', sa: 'db', hostNetwork: true }),
        pod('d', { node: 'n1', sa: 'out', labels: { 'istio.io/dataplane-mode': 'none' } }),
        pod('e', { node: 'n1', ns: 'plain', sa: 'p' }),
        pod('f', { node: 'n1', ns: 'plain', sa: 'in', labels: { 'istio.io/dataplane-mode': 'ambient' } }),
        pod('g', { node: 'n2', sa: 'other' }),
        pod('h', { node: 'n1', sa: 'done', phase: 'Succeeded' }),
      ]),
    );
    expect([...index.identitiesOnNode('n1')].sort()).toEqual([
      'spiffe://example.org/ns/demo/sa/echo',
      'spiffe://example.org/ns/plain/sa/in',
    ]);
    expect([...index.identitiesOnNode('n2')]).toEqual(['spiffe://example.org/ns/demo/sa/other']);
    expect(index.identitiesOnNode('n3').size).toBe(0);

    index.apply({ upserted: [ns('demo')], deleted: [] });
    expect([...index.identitiesOnNode('n1')]).toEqual(['spiffe://example.org/ns/plain/sa/in']);
    index.apply({
      upserted: [
        pod('f', { node: 'n2', ns: 'plain', sa: 'in', labels: { 'istio.io/dataplane-mode': 'ambient' } }),
      ],
      deleted: [],
    });
    expect(index.identitiesOnNode('n1').size).toBe(0);
    expect([...index.identitiesOnNode('n2')]).toEqual(['spiffe://example.org/ns/plain/sa/in']);
  });
});
