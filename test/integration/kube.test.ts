// The control plane in Kubernetes mode against the fake API server (the real client library over
// HTTP on 127.0.55.x): objects reach proxies over real xDS/TLS, the CA authenticates nodes with
// TokenReview, survives API outages and its own restarts, elects one leader to write the CA
// Secret, publishes the trust bundle and runs the waypoint controller.
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { captureLogger } from '../support/capture-logger.js';
import { askCert } from '../support/ask-cert.js';
import { FakeApiServer, type Obj } from '../support/fake-apiserver.js';
import { clientFor, eventually, node, nodeProxyTokens, ns, pod, service } from '../support/kube.js';
import { ControlPlane, CONTROL_PLANE_SERVER_NAME } from '../../src/controlplane/server.js';
import { XdsClient, controlPlaneConnection } from '../../src/xds/client.js';
import { TYPE_ADDRESS, TYPE_AUTHORIZATION } from '../../src/xds/proto.js';
import { decodeAddress, type Address } from '../../src/xds/resources.js';
import { isAmbitError } from '../../src/common/errors.js';

const API_HOST = '127.0.55.10';
const CP_HOSTS = ['127.0.55.20', '127.0.55.21'];
const SYSTEM = 'ambit-system';
const FAST_ELECTION = { leaseDurationMs: 1500, renewDeadlineMs: 1000, retryPeriodMs: 200 };

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A cluster: two nodes, an ambient namespace with pods on both, a node proxy pod per node. */
async function cluster(): Promise<{ api: FakeApiServer; tokens: Record<string, string> }> {
  const api = await new FakeApiServer({ host: API_HOST, bookmarkIntervalMs: 200 }).start();
  cleanups.push(() => api.stop());
  api.put(ns(SYSTEM, {}));
  api.put(node('node-1', '127.0.55.101'));
  api.put(node('node-2', '127.0.55.102'));
  api.put(ns('demo'));
  api.put(pod('sleep', 'demo', 'node-1', '10.1.1.10', { sa: 'sleep' }));
  api.put(pod('echo', 'demo', 'node-2', '10.1.2.10', { sa: 'echo' }));
  api.put(service('echo', 'demo', '10.96.100.1', { app: 'echo' }));
  api.put({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'ambit-node', namespace: SYSTEM } });
  const tokens = nodeProxyTokens(api, SYSTEM, { 'node-1': '127.0.55.101', 'node-2': '127.0.55.102' });
  return { api, tokens };
}

async function startControlPlane(api: FakeApiServer, host: string, opts: { podName?: string } = {}) {
  const stateDir = await mkdtemp(path.join(tmpdir(), 'ambit-kube-'));
  const { logger, lines } = captureLogger();
  const cp = new ControlPlane({
    stateDir,
    listen: `${host}:15012`,
    logger,
    kube: {
      client: clientFor(api),
      namespace: SYSTEM,
      podName: opts.podName ?? `cp-${host}`,
      waypointImage: 'ambit:test',
      election: FAST_ELECTION,
      resyncMs: 500,
    },
  });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await cp.stop();
    await rm(stateDir, { recursive: true, force: true });
  };
  cleanups.push(stop);
  return { cp, lines, stop, started: cp.start() };
}

/** A node proxy's view: an XdsClient over TLS authenticated by its projected token. */
function proxy(host: string, rootPem: string, token: string) {
  const state = new Map<string, Address>();
  const waiters = new Set<() => void>();
  const { logger } = captureLogger();
  const client = new XdsClient({
    ...controlPlaneConnection(`${host}:15012`, rootPem, token, CONTROL_PLANE_SERVER_NAME),
    node: { id: 'ambit~node-1', metadata: { NODE_NAME: 'node-1' } },
    types: [
      {
        typeUrl: TYPE_ADDRESS,
        decode: (name: string, bytes: Uint8Array) => decodeAddress(name, bytes),
        apply: (upserted: Map<string, Address>, removed: string[]) => {
          for (const [k, v] of upserted) state.set(k, v);
          for (const k of removed) state.delete(k);
          for (const w of waiters) w();
        },
      },
      { typeUrl: TYPE_AUTHORIZATION, decode: () => null, apply: () => {} },
    ],
    logger,
    backoff: { initialMs: 50, maxMs: 300 },
  });
  client.start();
  cleanups.push(() => client.stop());
  const workloads = () =>
    [...state.values()]
      .flatMap((a) => ('workload' in a ? [`${a.workload.namespace}/${a.workload.name}`] : []))
      .sort();
  /** Resolves when the proxy's workloads satisfy `pred`. */
  const until = (pred: (w: string[]) => boolean, ms = 8000) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (!pred(workloads())) return;
        waiters.delete(check);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`proxy state not reached; has ${workloads().join(', ')}`));
      }, ms);
      waiters.add(check);
      check();
    });
  /** The services a workload is an endpoint of, as the proxy holds it. */
  const servicesOf = (name: string) => {
    for (const a of state.values())
      if ('workload' in a && `${a.workload.namespace}/${a.workload.name}` === name)
        return Object.keys(a.workload.services).sort();
    return [];
  };
  return { workloads, until, servicesOf };
}

const has = (name: string) => (w: string[]) => w.includes(name);

describe('control plane on the Kubernetes API', () => {
  it('streams pods created, changed and deleted through the API server to a node proxy', async () => {
    const { api, tokens } = await cluster();
    const { cp, started } = await startControlPlane(api, CP_HOSTS[0]!);
    await started;
    const p = proxy(CP_HOSTS[0]!, cp.ca!.rootCertPem, tokens['node-1']!);
    await p.until((w) => w.includes('demo/sleep') && w.includes('demo/echo'));
    const client = clientFor(api);
    await client.create({ kind: 'Pod', apiVersion: 'v1', plural: 'pods', namespaced: true }, 'demo', {
      metadata: { name: 'new', namespace: 'demo', labels: { app: 'echo' } },
      spec: { nodeName: 'node-1', serviceAccountName: 'echo', containers: [{ name: 'app' }] },
    });
    // The kubelet reports the IP through the status subresource; only then is it a workload.
    api.put({ ...api.get('Pod', 'demo', 'new')!, status: { phase: 'Running', podIP: '10.1.1.11' } });
    await p.until(has('demo/new'));
    api.remove('Pod', 'demo', 'sleep');
    await p.until((w) => !w.includes('demo/sleep'));
  });

  it('takes the endpoints of a Service without a selector from its EndpointSlices', async () => {
    const { api, tokens } = await cluster();
    const { cp, started } = await startControlPlane(api, CP_HOSTS[0]!);
    await started;
    const p = proxy(CP_HOSTS[0]!, cp.ca!.rootCertPem, tokens['node-1']!);
    await p.until(has('demo/echo'));
    api.put(service('external-db', 'demo', '10.96.100.9', {}, 5432));
    api.put({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: 'external-db-1',
        namespace: 'demo',
        labels: { 'kubernetes.io/service-name': 'external-db' },
      },
      addressType: 'IPv4',
      endpoints: [{ addresses: ['10.1.2.10'], conditions: { ready: true } }],
      ports: [{ name: 'tcp', port: 5432 }],
    });
    await eventually(
      () => p.servicesOf('demo/echo').includes('demo/external-db.demo.svc.cluster.local') || undefined,
    );
    api.remove('EndpointSlice', 'demo', 'external-db-1');
    await eventually(
      () => !p.servicesOf('demo/echo').includes('demo/external-db.demo.svc.cluster.local') || undefined,
    );
  });

  it('keeps serving through an API server outage, then converges (410 → relist) without losing deletes', async () => {
    const { api, tokens } = await cluster();
    const { cp, lines, started } = await startControlPlane(api, CP_HOSTS[0]!);
    await started;
    const p = proxy(CP_HOSTS[0]!, cp.ca!.rootCertPem, tokens['node-1']!);
    await p.until(has('demo/echo'));
    await api.stop();
    api.remove('Pod', 'demo', 'echo');
    api.put(pod('late', 'demo', 'node-2', '10.1.2.11'));
    api.compact();
    // While the API server is down, certificates still need TokenReview, so they fail; but the
    // proxy keeps the state it has and the control plane keeps its index.
    await eventually(() =>
      lines.some((l) => String(l.msg).includes('list/watch failed; keeping the last config')),
    );
    expect(p.workloads()).toContain('demo/echo');
    await api.start();
    await p.until((w) => !w.includes('demo/echo') && w.includes('demo/late'), 10_000);
  });

  it('restarted mid-stream, comes back with the same CA root and the proxy catches up', async () => {
    const { api, tokens } = await cluster();
    const first = await startControlPlane(api, CP_HOSTS[0]!);
    await first.started;
    const root = first.cp.ca!.rootCertPem;
    const p = proxy(CP_HOSTS[0]!, root, tokens['node-1']!);
    await p.until(has('demo/echo'));
    await first.stop();
    api.put(pod('during', 'demo', 'node-1', '10.1.1.12'));
    const second = await startControlPlane(api, CP_HOSTS[0]!, { podName: 'cp-restarted' });
    await second.started;
    expect(second.cp.ca!.rootCertPem).toBe(root); // from the Secret, not a new root
    await p.until(has('demo/during'));
  });

  it('signs only for pods on the caller node; refuses another node pod identity and unbound tokens', async () => {
    const { api, tokens } = await cluster();
    const { cp, lines, started } = await startControlPlane(api, CP_HOSTS[0]!);
    await started;
    const root = cp.ca!.rootCertPem;
    const chain = await askCert(CP_HOSTS[0]!, root, tokens['node-1']!, 'demo', 'sleep');
    expect(chain).toHaveLength(2);
    const refused = await askCert(CP_HOSTS[0]!, root, tokens['node-1']!, 'demo', 'echo').catch(
      (e: unknown) => e,
    );
    expect(isAmbitError(refused, 'CA_PERMISSION_DENIED')).toBe(true);
    expect(String((refused as Error).message)).toMatch(
      /node node-1 may not obtain a certificate for spiffe:\/\/cluster.local\/ns\/demo\/sa\/echo/,
    );
    // A token for another audience, or not bound to a pod, is not a node credential.
    const wrongAudience = api.issueToken({
      namespace: SYSTEM,
      serviceAccount: 'ambit-node',
      audiences: ['https://kubernetes.default.svc'],
    });
    const unbound = api.issueToken({
      namespace: SYSTEM,
      serviceAccount: 'ambit-node',
      audiences: ['istio-ca'],
    });
    for (const t of [wrongAudience, unbound, 'forged']) {
      const e = await askCert(CP_HOSTS[0]!, root, t, 'demo', 'sleep').catch((x: unknown) => x);
      expect(isAmbitError(e, 'CA_UNAUTHENTICATED')).toBe(true);
    }
    expect(lines.some((l) => String(l.reason).includes('not bound to a pod'))).toBe(true);
    // A workload (waypoint) token obtains its own identity only.
    const wp = api.put(pod('wp-0', 'demo', 'node-2', '10.1.2.20', { sa: 'waypoint' }));
    const wpToken = api.issueToken({
      namespace: 'demo',
      serviceAccount: 'waypoint',
      audiences: ['istio-ca'],
      pod: { name: 'wp-0', uid: wp.metadata.uid! },
    });
    expect(await askCert(CP_HOSTS[0]!, root, wpToken, 'demo', 'waypoint')).toHaveLength(2);
    const other = await askCert(CP_HOSTS[0]!, root, wpToken, 'demo', 'sleep').catch((e: unknown) => e);
    expect(isAmbitError(other, 'CA_PERMISSION_DENIED')).toBe(true);
  });

  it('elects one leader: one CA Secret written, both replicas sign with it, the standby takes over', async () => {
    const { api } = await cluster();
    const a = await startControlPlane(api, CP_HOSTS[0]!, { podName: 'cp-a' });
    const b = await startControlPlane(api, CP_HOSTS[1]!, { podName: 'cp-b' });
    await Promise.all([a.started, b.started]);
    const secretEvents: string[] = [];
    // Exactly one create of the Secret ever happened (the history holds every write so far).
    for (const e of api.store.eventsSince(api.type('Secret'), 1000))
      secretEvents.push(`${e.type} ${e.object.metadata.name}`);
    expect(secretEvents).toEqual(['ADDED istio-ca-secret']);
    expect(a.cp.ca!.rootCertPem).toBe(b.cp.ca!.rootCertPem);
    const lease = api.get('Lease', SYSTEM, 'ambit-controlplane')!;
    const holder = (lease.spec as { holderIdentity: string }).holderIdentity;
    expect(['cp-a', 'cp-b']).toContain(holder);
    const [leader, standby] = holder === 'cp-a' ? [a, b] : [b, a];
    await leader.stop(); // releases the Lease
    await eventually(() => standby.lines.some((l) => l.msg === 'became leader'), 5000, 'standby leading');
    const next = api.get('Lease', SYSTEM, 'ambit-controlplane')!.spec as {
      holderIdentity: string;
      leaseTransitions: number;
    };
    expect(next.holderIdentity).toBe(holder === 'cp-a' ? 'cp-b' : 'cp-a');
  });

  it('publishes the trust bundle in ambient namespaces and follows namespaces coming and going', async () => {
    const { api } = await cluster();
    const { cp, started } = await startControlPlane(api, CP_HOSTS[0]!);
    await started;
    const bundle = (n: string) =>
      (api.get('ConfigMap', n, 'istio-ca-root-cert')?.data as Record<string, string> | undefined)?.[
        'root-cert.pem'
      ];
    await eventually(() => bundle('demo') && bundle(SYSTEM));
    expect(bundle('demo')).toBe(cp.ca!.rootCertPem);
    api.put(ns('shop'));
    await eventually(() => bundle('shop'), 5000, 'bundle in new namespace');
    api.put(ns('shop', {})); // label removed: no longer ambient
    await eventually(() => !bundle('shop'), 5000, 'bundle removed');
    api.put({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'istio-ca-root-cert', namespace: 'demo' },
      data: { 'root-cert.pem': 'tampered' },
    });
    await eventually(() => bundle('demo') === cp.ca!.rootCertPem, 5000, 'bundle repaired');
  });

  it('deploys a waypoint for an istio-waypoint Gateway, writes its status, and cleans up with it', async () => {
    const { api } = await cluster();
    api.put({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'GatewayClass',
      metadata: { name: 'istio-waypoint' },
      spec: { controllerName: 'istio.io/mesh-controller' },
    });
    const { started } = await startControlPlane(api, CP_HOSTS[0]!);
    await started;
    const gw = api.put({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name: 'waypoint', namespace: 'demo', labels: { 'istio.io/waypoint-for': 'service' } },
      spec: {
        gatewayClassName: 'istio-waypoint',
        listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }],
      },
    });
    const owned = (kind: string) => {
      const o = api.get(kind, 'demo', 'waypoint');
      return o?.metadata.ownerReferences?.[0]?.uid === gw.metadata.uid ? o : undefined;
    };
    await eventually(
      () => owned('ServiceAccount') && owned('Deployment') && owned('Service'),
      5000,
      'waypoint objects',
    );
    const dep = owned('Deployment')!;
    const container = (
      dep.spec as { template: { spec: { containers: { image: string; args: string[] }[] } } }
    ).template.spec.containers[0]!;
    expect(container.image).toBe('ambit:test');
    expect(container.args).toContain('demo/waypoint');
    const svcIp = (owned('Service')!.spec as { clusterIP: string }).clusterIP;
    const status = await eventually(
      () => {
        const s = api.get('Gateway', 'demo', 'waypoint')!.status as
          { addresses?: { value: string }[]; conditions?: Obj[] } | undefined;
        return s?.conditions?.some((c) => c.type === 'Programmed' && c.status === 'True') ? s : undefined;
      },
      5000,
      'Gateway programmed',
    );
    expect(status.addresses!.map((a) => a.value)).toEqual([svcIp, 'waypoint.demo.svc.cluster.local']);
    expect(
      status.conditions!.map((c) => `${String(c.type)}=${String(c.status)}/${String(c.reason)}`),
    ).toEqual(['Accepted=True/Accepted', 'Programmed=True/Programmed']);
    const gc = api.get('GatewayClass', undefined, 'istio-waypoint')!.status as { conditions: Obj[] };
    expect(gc.conditions.map((c) => `${String(c.type)}=${String(c.status)}`)).toEqual(['Accepted=True']);
    // A hand-deleted Deployment comes back at the next resync.
    api.remove('Deployment', 'demo', 'waypoint');
    await eventually(() => owned('Deployment'), 5000, 'Deployment restored');
    api.remove('Gateway', 'demo', 'waypoint');
    await eventually(
      () =>
        !api.get('Deployment', 'demo', 'waypoint') &&
        !api.get('Service', 'demo', 'waypoint') &&
        !api.get('ServiceAccount', 'demo', 'waypoint'),
      5000,
      'garbage collected',
    );
  });
});
