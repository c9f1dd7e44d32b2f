// Issue 15 item 1, the attacker's side: a ztunnel is authenticated exactly as ambit's node proxy is,
// and no more. With no valid node token it gets neither configuration nor a certificate; with
// another node's token it gets that node's view but no certificate for a pod that node does not
// run; naming another cluster (CLUSTER_ID → `clusterid` header) is refused as istiod refuses it.
// Real ztunnel (AMBIT_ZTUNNEL_BIN, dedicated mode) relaunched against one ambit mesh on
// 10.240.244.0/24; skips, saying why, without the binary or root.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readNodeToken } from '../../src/controlplane/node-auth.js';
import { ZT_NODE, ZtunnelInterop, ztunnelSkipReason } from '../support/ztunnel.js';

const skip = ztunnelSkipReason();
if (skip) console.log(`ztunnel auth interop skipped: ${skip}`);

const zt = new ZtunnelInterop({
  name: 'auth',
  k: 244,
  accounts: { serverSa: 'server', ztSa: 'zt' },
  appPorts: [7000],
});
const ZT_PEER = '10.240.244.2';

/** Control plane lines since `from` about a caller at ztunnel's address. */
const cpLines = (from: number) =>
  zt.meshLogs
    .slice(from)
    .filter((l) => l.component === 'controlplane' && String(l.rec.peer ?? '').startsWith(`${ZT_PEER}:`));

describe.skipIf(!!skip)('ztunnel gets what its node token allows, nothing more', () => {
  beforeAll(async () => {
    await zt.start();
  }, 60_000);
  afterAll(async () => {
    await zt.stop();
  }, 30_000);

  it('an unknown token: the xDS stream is refused and no certificate is issued', async () => {
    const from = zt.meshLogs.length;
    await zt.relaunchZtunnel({ token: randomBytes(32).toString('hex') });
    await zt.waitFor(
      () => cpLines(from).some((l) => l.rec.msg === 'xDS client refused: not authenticated'),
      10_000,
      'refusal line',
    );
    expect((await zt.fromZtunnelPod(zt.ip.ambServer, 7000)).ok).toBe(false);
    expect((await zt.syncz()).some((e) => e.kind === 'ztunnel')).toBe(false);
    expect(zt.meshLogs.slice(from).some((l) => l.rec.msg === 'certificate issued')).toBe(false);
  });

  it('another node’s token: that node’s view, but no certificate for zt-pod (not on that node)', async () => {
    const from = zt.meshLogs.length;
    const nodeA = await readNodeToken(zt.stateDir, 'node-a');
    await zt.relaunchZtunnel({ token: nodeA! });
    await zt.waitFor(
      async () => (await zt.syncz()).some((e) => e.kind === 'ztunnel' && e.proxy === 'node-a'),
      10_000,
      'stream as node-a',
    );
    expect((await zt.fromZtunnelPod(zt.ip.ambServer, 7000)).ok).toBe(false);
    await zt.waitFor(
      () =>
        zt.meshLogs
          .slice(from)
          .some((l) => l.rec.msg === 'certificate request refused' && l.rec.node === 'node-a'),
      10_000,
      'CA refusal',
    );
    const refusal = zt.meshLogs.slice(from).find((l) => l.rec.msg === 'certificate request refused')!;
    expect(refusal.rec['grpc.status']).toBe('PERMISSION_DENIED');
    expect(refusal.rec.identity).toBe('spiffe://cluster.local/ns/demo/sa/zt');
    expect(zt.meshLogs.slice(from).some((l) => l.rec.msg === 'certificate issued')).toBe(false);
  });

  it('its own token but CLUSTER_ID=east: refused before the token is read (istiod kube_jwt.go)', async () => {
    const from = zt.meshLogs.length;
    const own = await readNodeToken(zt.stateDir, ZT_NODE);
    await zt.relaunchZtunnel({ token: own!, env: { CLUSTER_ID: 'east' } });
    await zt.waitFor(
      () =>
        zt.meshLogs
          .slice(from)
          .some((l) => String(l.rec.msg).includes('client claims to be in cluster "east"')),
      10_000,
      'cluster refusal',
    );
    expect((await zt.fromZtunnelPod(zt.ip.ambServer, 7000)).ok).toBe(false);
    expect(zt.meshLogs.slice(from).some((l) => l.rec.msg === 'certificate issued')).toBe(false);
  });

  it('and with its own token and cluster it is served again (the refusals were not the setup)', async () => {
    const own = await readNodeToken(zt.stateDir, ZT_NODE);
    await zt.relaunchZtunnel({ token: own! });
    await zt.waitFor(
      async () => (await zt.syncz()).some((e) => e.proxy === ZT_NODE),
      10_000,
      'stream as zt-node',
    );
    await zt.waitFor(async () => (await zt.fromZtunnelPod(zt.ip.ambServer, 7000)).ok, 10_000, 'traffic');
  });
});
