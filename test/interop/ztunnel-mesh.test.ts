// Issue 15 items 1 and 2: Istio's ztunnel (AMBIT_ZTUNNEL_BIN) as a client of `ambit controlplane`
// and as an HBONE peer of ambit's node proxy, in its own network namespace on 10.240.240.0/24
// (test/support/ztunnel.ts draws the topology). Skips, saying why, without the binary or root.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SPIFFE, ZT_NODE, ZtunnelInterop, ztunnelSkipReason } from '../support/ztunnel.js';

const skip = ztunnelSkipReason();
if (skip) console.log(`ztunnel interop skipped: ${skip}`);

const K = 240;
// Three identities (client, server, zt), so that each side's check of the other's shows in the logs.
/** DENY port 7001 on both destinations (label role: target), whoever enforces. */
const DENY_7001 = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-7001, namespace: demo}
spec:
  selector: {matchLabels: {role: target}}
  action: DENY
  rules:
  - to: [{operation: {ports: ["7001"]}}]
`;

const zt = new ZtunnelInterop({
  name: 'mesh',
  k: K,
  accounts: { serverSa: 'server', ztSa: 'zt' },
  appPorts: [7000, 7001],
});

describe.skipIf(!!skip)('ztunnel against ambit', () => {
  beforeAll(async () => {
    await zt.start();
    await zt.setPolicies('deny-7001', DENY_7001);
  }, 60_000);
  afterAll(async () => {
    await zt.stop();
  }, 30_000);

  describe('item 1: ztunnel is a client of ambit controlplane', () => {
    it('its Delta xDS stream (node token) holds both of Istio types, every response ACKed, none NACKed', async () => {
      const entry = (await zt.syncz()).find((e) => e.proxy === ZT_NODE);
      expect(entry, 'ztunnel authenticated as node zt-node').toBeDefined();
      expect(entry!.types.map((t) => t.type).sort()).toEqual(['wads', 'wds']);
      for (const t of entry!.types) {
        expect(t.nack).toBeUndefined();
        expect(t.acked).toBe(t.sent);
      }
      const connected = zt.meshLogs.find(
        (l) => l.rec.msg === 'xDS client connected' && l.rec['node.name'] === ZT_NODE,
      );
      expect(String(connected?.rec['node.id'])).toMatch(/^ztunnel~10\.240\.240\.2~/);
    });

    it('ztunnel decoded every workload and the policy as ambit sent them', () => {
      const dump = zt.configDump() as {
        workloads: { uid: string; serviceAccount: string; protocol: string }[];
        policies: { name: string; action: string }[];
      };
      const byUid = Object.fromEntries(dump.workloads.map((w) => [w.uid, w]));
      expect(Object.keys(byUid).sort()).toEqual(
        [
          'Kubernetes//Pod/demo/amb-client',
          'Kubernetes//Pod/demo/amb-server',
          'Kubernetes//Pod/demo/zt-pod',
        ].sort(),
      );
      expect(byUid['Kubernetes//Pod/demo/amb-server']!.serviceAccount).toBe('server');
      expect(byUid['Kubernetes//Pod/demo/zt-pod']!.protocol).toBe('HBONE');
      expect(dump.policies.map((p) => `${p.name}:${p.action}`)).toContain('deny-7001:Deny');
    });

    it('ztunnel obtains its workload certificate from ambit’s CA on first use (CSR, node token, chain to ambit’s root)', async () => {
      // Dedicated mode fetches on demand (ztunnel cert_fetcher.rs: only shared mode prefetches).
      expect((await zt.fromZtunnelPod(zt.ip.ambServer, 7000)).ok).toBe(true);
      const issued = zt.meshLogs.find(
        (l) => l.component === 'controlplane' && l.rec.msg === 'certificate issued' && l.rec.node === ZT_NODE,
      );
      expect(issued?.rec.identity).toBe(SPIFFE('zt'));
      const dump = zt.configDump() as { certificates: { identity: string; state: string }[] };
      expect(dump.certificates.find((c) => c.identity === SPIFFE('zt'))?.state).toBe('Available');
    });
  });

  describe('item 2: HBONE both ways, identities verified, L4 policy enforced by the destination', () => {
    it('ambit → ztunnel, allowed port: the app behind ztunnel answers; ztunnel saw ambit’s identity', async () => {
      const from = zt.ztLogs.length;
      const r = await zt.fromAmbitPod(zt.ip.ztunnelPod, 7000);
      expect(r).toMatchObject({ ok: true });
      expect(r.data).toMatch(/^zt-pod:7000 /);
      await zt.waitFor(
        () => zt.ztLogs.slice(from).some((l) => l.target === 'access' && l.fields.direction === 'inbound'),
        5000,
        'access line',
      );
      const line = zt.ztLogs
        .slice(from)
        .find((l) => l.target === 'access' && l.fields.direction === 'inbound')!;
      expect(line.fields['src.identity']).toBe(SPIFFE('client'));
      expect(line.fields['dst.identity']).toBe(SPIFFE('zt'));
      expect(line.fields.error).toBeUndefined();
    });

    it('ambit → ztunnel, denied port: ztunnel refuses on policy, the app sees nothing', async () => {
      const from = zt.ztLogs.length;
      const r = await zt.fromAmbitPod(zt.ip.ztunnelPod, 7001);
      expect(r.ok).toBe(false);
      expect(r.data).not.toContain('zt-pod');
      await zt.waitFor(
        () => zt.ztLogs.slice(from).some((l) => /policy rejection/.test(l.fields.error ?? '')),
        5000,
        'ztunnel denial',
      );
      const line = zt.ztLogs.slice(from).find((l) => /policy rejection/.test(l.fields.error ?? ''))!;
      expect(line.fields['src.identity']).toBe(SPIFFE('client'));
    });

    it('ztunnel → ambit, allowed port: the ambit app answers; each side names the other’s identity', async () => {
      const from = zt.ztLogs.length;
      const fromMesh = zt.meshLogs.length;
      const r = await zt.fromZtunnelPod(zt.ip.ambServer, 7000);
      expect(r).toMatchObject({ ok: true });
      expect(r.data).toMatch(/^amb-server:7000 /);
      await zt.waitFor(
        () => zt.ztLogs.slice(from).some((l) => l.target === 'access' && l.fields.direction === 'outbound'),
        5000,
        'access line',
      );
      const out = zt.ztLogs
        .slice(from)
        .find((l) => l.target === 'access' && l.fields.direction === 'outbound')!;
      // ztunnel verified ambit's server certificate as the destination workload's identity.
      expect(out.fields['dst.identity']).toBe(SPIFFE('server'));
      expect(out.fields['src.identity']).toBe(SPIFFE('zt'));
      await zt.waitFor(
        () =>
          zt.meshLogs
            .slice(fromMesh)
            .some(
              (l) =>
                l.component === 'node/node-a' &&
                l.rec.msg === 'connection complete' &&
                l.rec['src.identity'] === SPIFFE('zt'),
            ),
        5000,
        'ambit inbound line',
      );
    });

    it('ztunnel → ambit, denied port: ambit’s node proxy refuses on policy, naming ztunnel’s identity', async () => {
      const fromMesh = zt.meshLogs.length;
      const r = await zt.fromZtunnelPod(zt.ip.ambServer, 7001);
      expect(r.ok).toBe(false);
      expect(r.data).not.toContain('amb-server');
      await zt.waitFor(
        () =>
          zt.meshLogs
            .slice(fromMesh)
            .some((l) => l.component === 'node/node-a' && l.rec.msg === 'connection denied by policy'),
        5000,
        'ambit denial',
      );
      const line = zt.meshLogs.slice(fromMesh).find((l) => l.rec.msg === 'connection denied by policy')!;
      expect(line.rec['src.identity']).toBe(SPIFFE('zt'));
    });
  });

  describe('a Service ambit publishes, resolved by both proxies', () => {
    it('ztunnel and ambit both send the VIP’s port 80 to an endpoint’s 7000, and each reaches both endpoints', async () => {
      const seen = { ztunnel: new Set<string>(), ambit: new Set<string>() };
      for (let i = 0; i < 12; i++) {
        for (const [who, r] of [
          ['ztunnel', await zt.fromZtunnelPod(zt.ip.vip, 80)],
          ['ambit', await zt.fromAmbitPod(zt.ip.vip, 80)],
        ] as const) {
          expect(r, who).toMatchObject({ ok: true });
          seen[who].add(r.data.split(' ')[0]!);
        }
      }
      // 12 tries each, two endpoints: both seen unless the pick is stuck (chance 2^-11 per proxy).
      expect([...seen.ztunnel].sort()).toEqual(['amb-server:7000', 'zt-pod:7000']);
      expect([...seen.ambit].sort()).toEqual(['amb-server:7000', 'zt-pod:7000']);
      const dump = zt.configDump() as {
        services: { hostname: string; endpoints: Record<string, unknown> }[];
      };
      const svc = dump.services.find((x) => x.hostname === 'target.demo.svc.cluster.local');
      expect(Object.keys(svc?.endpoints ?? {}).length).toBe(2);
    });
  });

  it('ztunnel logged no warning or error about ambit’s config, certificates or streams (its access lines aside)', () => {
    const complaints = zt.ztLogs.filter((l) => /warn|error/.test(l.level) && l.target !== 'access');
    expect(complaints).toEqual([]);
  });
});
