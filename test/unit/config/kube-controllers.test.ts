// The control plane's Kubernetes parts one by one, against the fake API server: TokenReview node
// authentication edge cases, leader election when the leader dies without releasing, and the
// waypoint controller's status and ownership rules.
import { afterEach, describe, expect, it } from 'vitest';
import { Metadata } from '@grpc/grpc-js';
import { pino } from 'pino';
import { FakeApiServer } from '../../support/fake-apiserver.js';
import { clientFor, eventually, ns, pod } from '../../support/kube.js';
import {
  TokenReviewAuthenticator,
  identitiesForCaller,
} from '../../../src/controlplane/kube-token-review.js';
import { LeaderElector } from '../../../src/controlplane/kube-leader.js';
import { WaypointController, gatewayStatus } from '../../../src/controlplane/kube-waypoint-controller.js';
import type { ConfigSnapshot, Gateway } from '../../../src/config/types.js';

const HOST = '127.0.55.4';
const silent = pino({ level: 'silent' });
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function fake() {
  const api = await new FakeApiServer({ host: HOST }).start();
  cleanups.push(() => api.stop());
  return api;
}
const bearer = (t: string) => {
  const md = new Metadata();
  md.set('authorization', `Bearer ${t}`);
  return md;
};

describe('TokenReview node authentication', () => {
  it('maps a node account token to its node, and refuses recreated pods and mismatched node bindings', async () => {
    const api = await fake();
    const p = api.put(pod('np', 'ambit-system', 'node-1', '10.0.0.1', { sa: 'ambit-node' }));
    const auth = new TokenReviewAuthenticator({
      client: clientFor(api),
      trustedNodeAccounts: ['ambit-system/ambit-node'],
      cacheMs: 0,
      logger: silent,
    });
    const tok = (extra: { nodeName?: string; uid?: string } = {}) =>
      api.issueToken({
        namespace: 'ambit-system',
        serviceAccount: 'ambit-node',
        audiences: ['istio-ca'],
        pod: { name: 'np', uid: extra.uid ?? p.metadata.uid! },
        ...(extra.nodeName ? { nodeName: extra.nodeName } : {}),
      });
    expect(await auth.authenticate(bearer(tok({ nodeName: 'node-1' })))).toBe('node-1');
    expect(await auth.authenticate(bearer(tok()))).toBe('node-1'); // pre-1.30 token: node from the pod
    expect(await auth.authenticate(bearer(tok({ nodeName: 'node-2' })))).toBeUndefined();
    const stale = tok();
    api.remove('Pod', 'ambit-system', 'np');
    api.put(pod('np', 'ambit-system', 'node-1', '10.0.0.1', { sa: 'ambit-node' })); // same name, new uid
    expect(await auth.authenticate(bearer(stale))).toBeUndefined();
    expect(await auth.authenticate(new Metadata())).toBeUndefined();
  });

  it('lets any other account obtain only its own identity', () => {
    const onNode = () => new Set(['spiffe://td/ns/a/sa/x']);
    expect([...identitiesForCaller('serviceaccount:shop/waypoint', 'td', onNode)]).toEqual([
      'spiffe://td/ns/shop/sa/waypoint',
    ]);
    expect([...identitiesForCaller('node-1', 'td', onNode)]).toEqual(['spiffe://td/ns/a/sa/x']);
  });
});

describe('leader election', () => {
  it('takes over a lease whose holder stopped renewing, after the lease duration', async () => {
    const api = await fake();
    api.put(ns('ambit-system', {}));
    const mk = (identity: string) =>
      new LeaderElector({
        client: clientFor(api, 500),
        namespace: 'ambit-system',
        name: 'lead',
        identity,
        leaseDurationMs: 800,
        renewDeadlineMs: 600,
        retryPeriodMs: 100,
        logger: silent,
      });
    const a = mk('a');
    a.start();
    await a.untilLeader();
    const b = mk('b');
    cleanups.push(() => b.stop());
    b.start();
    await new Promise((r) => setTimeout(r, 400)); // b sees a live lease held by a
    expect(b.isLeader()).toBe(false);
    // a "dies": it stops renewing without releasing (no stop(), which would release).
    (a as unknown as { stopped: boolean }).stopped = true;
    const started = Date.now();
    await b.untilLeader();
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    const spec = api.get('Lease', 'ambit-system', 'lead')!.spec as {
      holderIdentity: string;
      leaseTransitions: number;
    };
    expect(spec).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
  });

  it('steps down when it cannot renew (API server unreachable)', async () => {
    const api = await fake();
    api.put(ns('ambit-system', {}));
    const e = new LeaderElector({
      client: clientFor(api, 200),
      namespace: 'ambit-system',
      name: 'lead',
      identity: 'a',
      leaseDurationMs: 800,
      renewDeadlineMs: 500,
      retryPeriodMs: 100,
      logger: silent,
    });
    cleanups.push(() => e.stop());
    e.start();
    await e.untilLeader();
    const stopped = new Promise<void>((r) => e.once('stopped', () => r()));
    await api.stop();
    await stopped;
    expect(e.isLeader()).toBe(false);
  });
});

describe('waypoint controller', () => {
  const gw = (status?: Record<string, unknown>): Gateway => ({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: 'wp', namespace: 'shop', uid: 'u1', generation: 3 },
    spec: { gatewayClassName: 'istio-waypoint' },
    ...(status ? { status } : {}),
  });

  it('writes conditions with observedGeneration and keeps lastTransitionTime while the status holds', () => {
    const t1 = new Date('2026-01-01T00:00:00Z');
    const first = gatewayStatus(gw(), { clusterIP: '10.96.0.9' }, t1);
    expect(first.conditions.map((c) => [c.type, c.status, c.reason, c.observedGeneration])).toEqual([
      ['Accepted', 'True', 'Accepted', 3],
      ['Programmed', 'True', 'Programmed', 3],
    ]);
    const again = gatewayStatus(
      gw(first as unknown as Record<string, unknown>),
      { clusterIP: '10.96.0.9' },
      new Date('2026-02-01T00:00:00Z'),
    );
    expect(again.conditions[1]!.lastTransitionTime).toBe('2026-01-01T00:00:00Z');
    const failed = gatewayStatus(
      gw(first as unknown as Record<string, unknown>),
      { error: 'boom' },
      new Date('2026-03-01T00:00:00Z'),
    );
    expect(failed.conditions[1]).toMatchObject({
      status: 'False',
      reason: 'Invalid',
      lastTransitionTime: '2026-03-01T00:00:00Z',
    });
    expect(failed.addresses).toEqual([]);
    expect(gatewayStatus(gw(), {}, t1).conditions[1]).toMatchObject({
      status: 'False',
      reason: 'AddressNotAssigned',
    });
  });

  it('never overwrites an object it does not own, and says so in the Gateway status', async () => {
    const api = await fake();
    api.put(ns('shop'));
    const g = api.put({ ...gw(), metadata: { name: 'wp', namespace: 'shop' } });
    api.put({
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'wp', namespace: 'shop', labels: { mine: 'yes' } },
    });
    const snapshot = (): ConfigSnapshot => ({
      objects: new Map([['Gateway/shop/wp', api.get('Gateway', 'shop', 'wp') as unknown as Gateway]]),
    });
    const c = new WaypointController({
      client: clientFor(api),
      snapshot,
      values: { image: 'ambit:t', controlPlane: 'cp:15012', trustDomain: 'cluster.local' },
      logger: silent,
    });
    await c.load();
    c.start();
    cleanups.push(() => c.stop());
    const status = await eventually(() => {
      const s = api.get('Gateway', 'shop', 'wp')!.status as
        { conditions?: { type: string; status: string; message: string }[] } | undefined;
      return s?.conditions?.find((x) => x.type === 'Programmed');
    });
    expect(status.status).toBe('False');
    expect(status.message).toMatch(/ServiceAccount shop\/wp exists and is not owned by this Gateway/);
    expect(api.get('ServiceAccount', 'shop', 'wp')!.metadata.labels).toEqual({ mine: 'yes' });
    expect(g.metadata.uid).toBeTruthy();
  });
});
