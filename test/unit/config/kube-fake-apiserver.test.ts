// The fake API server itself: it must behave like the real one, or every Kubernetes test above
// it proves nothing. Driven through the real client library (KubeConfig + Watch) and raw HTTP.
import { afterEach, describe, expect, it } from 'vitest';
import { KubeConfig, Watch } from '@kubernetes/client-node';
import { FakeApiServer } from '../../support/fake-apiserver.js';
import { KubeApiError, KubeClient } from '../../../src/config/kube-client.js';
import {
  WATCHED_TYPES,
  DEPLOYMENT,
  SERVICE_ACCOUNT,
  TOKEN_REVIEW,
} from '../../../src/config/kube-resources.js';

const HOST = '127.0.55.1';
const servers: FakeApiServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});

async function start(opts: Partial<ConstructorParameters<typeof FakeApiServer>[0]> = {}) {
  const api = await new FakeApiServer({ host: HOST, ...opts }).start();
  servers.push(api);
  const kc = new KubeConfig();
  kc.loadFromString(api.kubeconfig());
  return { api, kc, client: new KubeClient(kc, { timeoutMs: 2000 }) };
}

const POD = WATCHED_TYPES.Pod;
const pod = (name: string, ns = 'demo') => ({
  metadata: { name, namespace: ns, labels: { app: 'a' } },
  spec: { nodeName: 'n1' },
});

interface Ev {
  type: string;
  object: { metadata: { name?: string; resourceVersion?: string }; code?: number };
}

/** Opens a watch with the real client and collects its events until `until` says stop. */
function watch(kc: KubeConfig, path: string, query: Record<string, unknown>, until: (evs: Ev[]) => boolean) {
  const events: Ev[] = [];
  return new Promise<{ events: Ev[]; err: unknown }>((resolve) => {
    let ctl: AbortController | undefined;
    let done = false;
    const finish = (err: unknown) => {
      if (done) return;
      done = true;
      ctl?.abort();
      resolve({ events, err });
    };
    void new Watch(kc)
      .watch(
        path,
        query,
        (type, object) => {
          events.push({ type, object: object as Ev['object'] });
          if (until(events)) finish(null);
        },
        (err) => finish(err),
      )
      .then((c) => {
        ctl = c;
        if (done) c.abort();
      });
  });
}

describe('fake API server', () => {
  it('lists with a resourceVersion; built-in items carry no kind, custom resources do', async () => {
    const { api, client } = await start();
    api.put({ apiVersion: 'v1', kind: 'Pod', ...pod('a') });
    api.put({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name: 'w', namespace: 'demo' },
      spec: { gatewayClassName: 'istio-waypoint' },
    });
    const pods = await client.list(POD);
    expect(Number(pods.metadata?.resourceVersion)).toBe(api.store.rv);
    expect(pods.items.map((p) => [p.metadata.name, p.kind])).toEqual([['a', undefined]]);
    const gws = await client.list(WATCHED_TYPES.Gateway, 'demo');
    expect(gws.items[0]).toMatchObject({ kind: 'Gateway', apiVersion: 'gateway.networking.k8s.io/v1' });
    const none = await client.list(POD, undefined, { labelSelector: 'app notin (a)' });
    expect(none.items).toEqual([]);
    const byNode = await client.list(POD, undefined, { fieldSelector: 'spec.nodeName=n1' });
    expect(byNode.items).toHaveLength(1);
  });

  it('watches from a resourceVersion, sends bookmarks, and answers a compacted version with 410 in-band', async () => {
    const { api, kc, client } = await start({ bookmarkIntervalMs: 50 });
    await client.create(WATCHED_TYPES.Namespace, undefined, { metadata: { name: 'demo' } });
    const a = await client.create(POD, 'demo', pod('a'));
    const from = a.metadata.resourceVersion!;
    await client.create(POD, 'demo', pod('b'));
    await client.delete(POD, 'demo', 'a');
    const resumed = await watch(
      kc,
      '/api/v1/pods',
      { resourceVersion: from, allowWatchBookmarks: true },
      (e) => e.some((x) => x.type === 'BOOKMARK'),
    );
    expect(resumed.events.map((e) => `${e.type} ${e.object.metadata.name ?? ''}`)).toEqual([
      'ADDED b',
      'DELETED a',
      'BOOKMARK ',
    ]);
    expect(resumed.events[2]!.object.metadata.resourceVersion).toBe(String(api.store.rv));
    api.compact();
    const stale = await watch(kc, '/api/v1/pods', { resourceVersion: from }, () => false);
    expect(stale.events).toHaveLength(1);
    expect(stale.events[0]).toMatchObject({ type: 'ERROR', object: { code: 410, reason: 'Expired' } });
    expect(stale.err).toBeNull(); // the stream simply ends after the ERROR event
  });

  it('refuses a stale update with 409 Conflict, merges patches, keeps status out of the main resource', async () => {
    const { api, client } = await start();
    api.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'demo' } });
    const created = await client.create(POD, 'demo', { ...pod('a'), status: { podIP: '10.0.0.1' } });
    expect(created.status).toBeUndefined();
    const patched = await client.mergePatch(POD, 'demo', 'a', {
      metadata: { labels: { app: null, v: '2' } },
    });
    expect(patched.metadata.labels).toEqual({ v: '2' });
    await expect(client.replace(POD, 'demo', 'a', created)).rejects.toMatchObject({
      statusCode: 409,
      reason: 'Conflict',
    });
    await client.mergePatch(
      POD,
      'demo',
      'a',
      { status: { podIP: '10.0.0.9' }, spec: { nodeName: 'x' } },
      'status',
    );
    const now = api.get('Pod', 'demo', 'a')!;
    expect(now.status).toEqual({ podIP: '10.0.0.9' });
    expect((now.spec as { nodeName: string }).nodeName).toBe('n1');
    await expect(client.create(POD, 'demo', pod('a'))).rejects.toMatchObject({
      statusCode: 409,
      reason: 'AlreadyExists',
    });
    await expect(client.create(POD, 'nowhere', pod('z', 'nowhere'))).rejects.toMatchObject({
      statusCode: 404,
    });
    const err = await client.replace(POD, 'demo', 'ghost', pod('ghost')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubeApiError);
    expect((err as KubeApiError).statusCode).toBe(404);
  });

  it('garbage-collects objects whose owner is deleted', async () => {
    const { api, client } = await start();
    api.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'demo' } });
    const gw = api.put({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name: 'w', namespace: 'demo' },
      spec: {},
    });
    const owner = [
      {
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'Gateway',
        name: 'w',
        uid: gw.metadata.uid!,
        controller: true,
      },
    ];
    await client.create(SERVICE_ACCOUNT, 'demo', { metadata: { name: 'w', ownerReferences: owner } });
    await client.create(DEPLOYMENT, 'demo', { metadata: { name: 'w', ownerReferences: owner }, spec: {} });
    await client.create(SERVICE_ACCOUNT, 'demo', { metadata: { name: 'unowned' } });
    await client.delete(WATCHED_TYPES.Gateway, 'demo', 'w');
    expect(api.list('ServiceAccount', 'demo').map((o) => o.metadata.name)).toEqual(['unowned']);
    expect(api.list('Deployment', 'demo')).toEqual([]);
  });

  it('reviews tokens: audience, bound pod still present, node binding in extra', async () => {
    const { api, client } = await start();
    const p = api.put({ apiVersion: 'v1', kind: 'Pod', ...pod('np', 'ambit-system') });
    const token = api.issueToken({
      namespace: 'ambit-system',
      serviceAccount: 'ambit-node',
      audiences: ['istio-ca'],
      pod: { name: 'np', uid: p.metadata.uid! },
      nodeName: 'n1',
    });
    const review = (tok: string, aud = ['istio-ca']) =>
      client.create<{
        status: { authenticated: boolean; user?: { username: string; extra: Record<string, string[]> } };
      }>(TOKEN_REVIEW, undefined, {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        spec: { token: tok, audiences: aud },
      });
    const ok = await review(token);
    expect(ok.status.authenticated).toBe(true);
    expect(ok.status.user!.username).toBe('system:serviceaccount:ambit-system:ambit-node');
    expect(ok.status.user!.extra['authentication.kubernetes.io/node-name']).toEqual(['n1']);
    expect((await review(token, ['other'])).status.authenticated).toBe(false);
    expect((await review('forged')).status.authenticated).toBe(false);
    api.remove('Pod', 'ambit-system', 'np');
    expect((await review(token)).status.authenticated).toBe(false);
  });
});
