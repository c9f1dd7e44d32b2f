// Issue 15, beyond item 2: ambit's waypoint between ztunnel and ambit. Service `web` (VIP
// 10.240.245.101, port 80 → 8080, HTTP) is bound to ambit's waypoint (Gateway istio-waypoint at
// 10.240.245.20) and backed by amb-server (behind ambit's node proxy) and zt-pod (behind
// ztunnel). ztunnel reads the Service's waypoint from ambit's xDS and tunnels to the waypoint;
// the waypoint tunnels on to either backend, ztunnel's inbound included. 10.240.245.0/24; skips,
// saying why, without AMBIT_ZTUNNEL_BIN or root.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SPIFFE, ZtunnelInterop, sharedModeSkipReason, ztunnelSkipReason } from '../support/ztunnel.js';
import { demoService, waypointGateway } from '../support/waypoint-manifests.js';

const skip = ztunnelSkipReason();
if (skip) console.log(`ztunnel waypoint interop skipped: ${skip}`);

const K = 245;
const WAYPOINT = `10.240.${K}.20`;
const WEB_VIP = `10.240.${K}.101`;
const WAYPOINT_ID = SPIFFE('waypoint');
const GET = 'GET / HTTP/1.1\r\nHost: web.demo.svc.cluster.local\r\nConnection: close\r\n\r\n';
/** The backend that answered, from a whole HTTP/1.1 response ("amb-server:8080" or "zt-pod:8080"). */
const backendOf = (data: string) =>
  /^HTTP\/1\.1 200 /.test(data) ? data.split('\r\n\r\n')[1] : `not 200: ${data.slice(0, 80)}`;

const zt = new ZtunnelInterop({
  name: 'wp',
  k: K,
  mode: sharedModeSkipReason() ? 'dedicated' : 'shared',
  accounts: { serverSa: 'server', ztSa: 'zt' },
  appPorts: [],
  httpPorts: [8080],
  hostAddresses: [WAYPOINT],
  extraManifests: [
    waypointGateway(WAYPOINT),
    demoService('web', WEB_VIP, { role: 'target' }, '[{name: http, port: 80, targetPort: 8080}]', true),
  ].join('---\n'),
});

describe.skipIf(!!skip)('ambit’s waypoint between ztunnel and ambit', () => {
  beforeAll(async () => {
    await zt.start();
    await zt.waitFor(
      () =>
        zt.meshLogs.some((l) => l.component === 'waypoint/demo/waypoint' && l.rec.msg === 'waypoint ready'),
      30_000,
      'waypoint ready',
    );
  }, 60_000);
  afterAll(async () => {
    await zt.stop();
  }, 30_000);

  it('ztunnel holds web with ambit’s waypoint as its GatewayAddress', () => {
    const dump = zt.configDump() as { services: { hostname: string; waypoint?: unknown }[] };
    const web = dump.services.find((s) => s.hostname === 'web.demo.svc.cluster.local');
    expect(JSON.stringify(web?.waypoint)).toContain(WAYPOINT);
  });

  it('zt-pod → web goes through ambit’s waypoint (ztunnel verifies the waypoint’s identity) to both backends', async () => {
    const backends = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const from = zt.ztLogs.length;
      const r = await zt.fromZtunnelPod(WEB_VIP, 80, GET);
      backends.add(backendOf(r.data)!);
      await zt.waitFor(
        () => zt.ztLogs.slice(from).some((l) => l.target === 'access' && l.fields.direction === 'outbound'),
        5000,
        'outbound line',
      );
      const out = zt.ztLogs
        .slice(from)
        .find((l) => l.target === 'access' && l.fields.direction === 'outbound')!;
      expect(out.fields['dst.identity']).toBe(WAYPOINT_ID);
    }
    // 12 tries, two backends: both seen unless the waypoint's pick is stuck (2^-11).
    expect([...backends].sort()).toEqual(['amb-server:8080', 'zt-pod:8080']);
  });

  it('amb-client → web: ambit’s waypoint reaches zt-pod through ztunnel’s inbound, which sees the waypoint’s identity', async () => {
    let reachedZt = false;
    for (let i = 0; i < 12 && !reachedZt; i++) {
      const from = zt.ztLogs.length;
      const r = await zt.fromAmbitPod(WEB_VIP, 80, GET);
      const backend = backendOf(r.data);
      expect(backend).toMatch(/^(amb-server|zt-pod):8080$/);
      if (backend !== 'zt-pod:8080') continue;
      reachedZt = true;
      await zt.waitFor(
        () => zt.ztLogs.slice(from).some((l) => l.target === 'access' && l.fields.direction === 'inbound'),
        5000,
        'inbound line',
      );
      const line = zt.ztLogs
        .slice(from)
        .find((l) => l.target === 'access' && l.fields.direction === 'inbound')!;
      expect(line.fields['src.identity']).toBe(WAYPOINT_ID);
    }
    expect(reachedZt).toBe(true);
  });
});
