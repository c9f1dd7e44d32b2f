// KubeSource against the fake API server: the list/watch contract (resume, 410 → relist, outage,
// CRDs missing) and the validation contract (same schemas as files, last good kept).
import { afterEach, describe, expect, it } from 'vitest';
import { captureLogger } from '../../support/capture-logger.js';
import { FakeApiServer } from '../../support/fake-apiserver.js';
import {
  clientFor,
  eventually,
  fastKubeSource,
  node,
  ns,
  pod,
  service,
  untilSnapshot,
} from '../../support/kube.js';
import { KubeSource } from '../../../src/config/kube-source.js';
import type { ConfigChange, Pod } from '../../../src/config/types.js';

const HOST = '127.0.55.2';
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(opts: { unservedGroups?: string[]; port?: number } = {}) {
  const api = await new FakeApiServer({ host: HOST, bookmarkIntervalMs: 100, ...opts }).start();
  cleanups.push(() => api.stop());
  api.put(ns('demo'));
  api.put(node('node-1', '127.0.55.101'));
  api.put(pod('a', 'demo', 'node-1', '10.1.0.1'));
  api.put(service('echo', 'demo', '10.96.0.1', { app: 'a' }));
  const { logger, lines } = captureLogger();
  const source = fastKubeSource(api, logger);
  const changes: ConfigChange[] = [];
  source.onChange((c) => changes.push(c));
  cleanups.push(() => source.stop());
  return { api, source, changes, lines };
}

const has = (key: string) => (s: { objects: ReadonlyMap<string, unknown> }) => s.objects.has(key);
const lists = (api: FakeApiServer, path: string) =>
  api.requests.filter((r) => r.path === path && r.query.watch === undefined).length;

describe('KubeSource', () => {
  it('loads every kind, then streams creates, updates and deletes as content changes', async () => {
    const { api, source, changes } = await setup();
    await source.start();
    expect([...source.snapshot().objects.keys()].sort()).toEqual([
      'Namespace/demo',
      'Node/node-1',
      'Pod/demo/a',
      'Service/demo/echo',
    ]);
    expect(changes).toHaveLength(1); // the first load, as one change
    api.put(pod('b', 'demo', 'node-1', '10.1.0.2'));
    await untilSnapshot(source, has('Pod/demo/b'));
    api.put({ ...pod('b', 'demo', 'node-1', '10.1.0.3') });
    await untilSnapshot(
      source,
      (s) => (s.objects.get('Pod/demo/b') as Pod | undefined)?.status?.podIP === '10.1.0.3',
    );
    api.remove('Pod', 'demo', 'b');
    await untilSnapshot(source, (s) => !s.objects.has('Pod/demo/b'));
    expect(changes.at(-1)!.deleted.map((d) => d.metadata.name)).toEqual(['b']);
  });

  it('reports an invalid object with kind, namespace, name and field, and keeps its last good version', async () => {
    const { api, source, lines } = await setup();
    await source.start();
    const pa = {
      apiVersion: 'security.istio.io/v1',
      kind: 'PeerAuthentication',
      metadata: { name: 'strict', namespace: 'demo' },
      spec: { mtls: { mode: 'STRICT' } },
    };
    api.put(pa);
    await untilSnapshot(source, has('PeerAuthentication/demo/strict'));
    api.put({ ...pa, spec: { mtls: { mode: 'STRIKT' } } });
    await eventually(() => source.errors().length > 0);
    expect(String(source.errors()[0])).toMatch(/^PeerAuthentication demo\/strict: spec\.mtls\.mode: /);
    expect(lines.some((l) => l.msg === 'invalid object; its last good version stays in force')).toBe(true);
    const kept = source.snapshot().objects.get('PeerAuthentication/demo/strict') as {
      spec: { mtls: { mode: string } };
    };
    expect(kept.spec.mtls.mode).toBe('STRICT');
    api.put({ ...pa, spec: { mtls: { mode: 'PERMISSIVE' } } });
    await untilSnapshot(
      source,
      (s) => (s.objects.get('PeerAuthentication/demo/strict') as typeof kept).spec.mtls.mode === 'PERMISSIVE',
    );
    expect(source.errors()).toEqual([]);
  });

  it('resumes a dropped watch from its resourceVersion without relisting or losing events', async () => {
    const { api, source } = await setup();
    await source.start();
    const listsBefore = lists(api, '/api/v1/pods');
    api.dropWatches();
    // Changes made while no watch is open must arrive through the resumed watch.
    api.put(pod('c', 'demo', 'node-1', '10.1.0.4'));
    api.remove('Pod', 'demo', 'a');
    await untilSnapshot(source, (s) => s.objects.has('Pod/demo/c') && !s.objects.has('Pod/demo/a'));
    expect(lists(api, '/api/v1/pods')).toBe(listsBefore);
    const resumed = api.requests.filter((r) => r.path === '/api/v1/pods' && r.query.watch === 'true');
    expect(resumed.at(-1)!.query.resourceVersion).not.toBe('');
    expect(resumed.at(-1)!.query.allowWatchBookmarks).toBe('true');
  });

  it('relists after 410 Gone and emits deletes for objects that vanished meanwhile', async () => {
    const { api, source, changes } = await setup();
    await source.start();
    await api.stop(); // down: the watch ends, retries fail
    api.remove('Pod', 'demo', 'a'); // happens while we cannot see
    api.put(pod('d', 'demo', 'node-1', '10.1.0.5'));
    api.compact(); // and the history we would resume from is gone
    expect(source.snapshot().objects.has('Pod/demo/a')).toBe(true); // last state kept while down
    await api.start();
    await untilSnapshot(source, (s) => !s.objects.has('Pod/demo/a') && s.objects.has('Pod/demo/d'));
    expect(changes.some((c) => c.deleted.some((d) => d.metadata.name === 'a'))).toBe(true);
    const podWatches = api.requests.filter((r) => r.path === '/api/v1/pods');
    expect(podWatches.filter((r) => r.query.watch === undefined).length).toBe(2); // first list + relist
  });

  it('treats kinds whose CRDs are not installed as empty, and picks them up once they are', async () => {
    const { source, lines } = await setup({ unservedGroups: ['gateway.networking.k8s.io'] });
    await source.start();
    expect(source.status().find((s) => s.kind === 'Gateway')!.state).toBe('absent');
    expect(lines.some((l) => String(l.msg).includes('Gateway is not served by the API server'))).toBe(true);
    expect(source.snapshot().objects.size).toBe(4);
  });

  it('waits for the API server at start and loads once it is reachable', async () => {
    const api = new FakeApiServer({ host: HOST, port: 0 });
    await api.start();
    const port = Number(new URL(api.url).port);
    await api.stop();
    const client = clientFor(api, 500);
    const { logger } = captureLogger();
    const source = new KubeSource({
      client,
      logger,
      backoff: { initialMs: 50, maxMs: 100 },
      kinds: ['Namespace'],
    });
    cleanups.push(() => source.stop());
    const started = source.start();
    const revived = new FakeApiServer({ host: HOST, port });
    cleanups.push(() => revived.stop());
    revived.put(ns('late'));
    await new Promise((r) => setTimeout(r, 150)); // a few refused attempts first
    await revived.start();
    await started;
    expect(source.snapshot().objects.has('Namespace/late')).toBe(true);
  });
});
