// L4 authorization end to end, through real HBONE between real node proxy processes, on
// loopback range 127.0.47.0/24: ALLOW/DENY at the destination proxy, the 401 and the one denial
// log line, policy changes applied to new connections and closing open ones, and a forged
// `forwarded` header that must not count.
import { writeFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpGetOver } from '../support/mesh-http.js';
import { startEcho } from '../../src/cli/echo.js';
import { SocksError } from '../../src/cli/socks-client.js';
import { HbonePool } from '../../src/hbone/pool.js';
import { isAmbitError } from '../../src/common/errors.js';
import { componentLogger } from '../../src/common/log.js';
import type { SocketAddr } from '../../src/common/addr.js';
import { TestMesh, closeServer, tcpEcho } from '../support/mesh.js';
import { meshSignedCert } from '../support/certs.js';
import { explain, offlineView, onlineView } from '../../src/cli/authz.js';

const O = 47;
const ip = (n: number) => `127.0.${O}.${n}`;
const SLEEP = ip(10);
const ECHO_V1 = ip(11);
const ECHO_V2 = ip(12);
const SLEEP_ID = 'cluster.local/ns/demo/sa/sleep';

// echo-v1: only sleep, only ports 8080 and 7000. echo-v2: only from sleep's pod IP, any port.
const POLICIES = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo-v1-from-sleep, namespace: demo}
spec:
  selector: {matchLabels: {app: echo, version: v1}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["${SLEEP_ID}"]}}]
    to: [{operation: {ports: ["8080", "7000"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo-v2-from-sleep-ip, namespace: demo}
spec:
  selector: {matchLabels: {version: v2}}
  rules:
  - from: [{source: {ipBlocks: ["${SLEEP}/32"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: l7-only, namespace: demo}
spec:
  selector: {matchLabels: {app: echo}}
  action: DENY
  rules:
  - to: [{operation: {methods: ["DELETE"]}}]
`;

const m = new TestMesh({ octet: O, extraManifests: POLICIES });
const servers: net.Server[] = [];

beforeAll(async () => {
  await m.start();
  servers.push(await startEcho({ host: ECHO_V1, port: 8080, pod: 'demo/echo-v1' }));
  servers.push(await startEcho({ host: ECHO_V2, port: 8080, pod: 'demo/echo-v2' }));
  for (const port of [7000, 7001, 9000]) {
    servers.push(await tcpEcho(ECHO_V1, port));
    servers.push(await tcpEcho(ECHO_V2, port));
  }
}, 60_000);

afterAll(async () => {
  await Promise.all(servers.map(closeServer));
  await m.stop();
});

/** Opens a TCP connection through the mesh as sleep and checks one round trip. */
async function echoRoundTrip(host: string, port: number): Promise<net.Socket> {
  const s = await m.socks(SLEEP, host, port);
  s.write('ping');
  await new Promise<void>((resolve, reject) => {
    s.once('data', (d: Buffer) =>
      d.toString() === 'ping' ? resolve() : reject(new Error(`got ${d.toString()}`)),
    );
    s.once('error', reject);
  });
  return s;
}

const isDenial = (l: { rec: Record<string, unknown> }) => l.rec.msg === 'connection denied by policy';

async function writePolicy(name: string, yaml: string): Promise<void> {
  await writeFile(path.join(m.configDir, `${name}.yaml`), yaml);
}

async function waitForPolicies(from: number): Promise<void> {
  // Both node proxies log when their policy set changes.
  await m.waitForLog(
    (l) => l.component === 'node/node-1' && l.rec.msg === 'authorization policies updated',
    5000,
    from,
  );
  await m.waitForLog(
    (l) => l.component === 'node/node-2' && l.rec.msg === 'authorization policies updated',
    5000,
    from,
  );
}

describe('L4 AuthorizationPolicy in the destination node proxy', () => {
  it('allows what an ALLOW policy matches', async () => {
    expect(await httpGetOver(await m.socks(SLEEP, ECHO_V1, 8080), ECHO_V1, 8080)).toBe(200);
    const s = await echoRoundTrip(ECHO_V1, 7000);
    s.destroy();
  });

  it('denies a port the ALLOW policy does not list: 401, one log line naming source, destination, port', async () => {
    const from = m.logs.length;
    await expect(m.socks(SLEEP, ECHO_V1, 9000)).rejects.toBeInstanceOf(SocksError);
    const line = await m.waitForLog(isDenial, 5000, from);
    expect(line.component).toBe('node/node-1');
    expect(line.rec).toMatchObject({
      'src.identity': `spiffe://${SLEEP_ID}`,
      'dst.workload': 'echo-v1',
      'dst.port': 9000,
      status: 401,
      policy: null,
    });
    expect(String(line.rec.reason)).toContain('no ALLOW policy matched');
    // The source side saw the 401 for what it is.
    await m.waitForLog(
      (l) => l.component === 'node/node-1' && JSON.stringify(l.rec).includes('answered 401'),
      5000,
      from,
    );
    expect(m.logs.slice(from).filter(isDenial)).toHaveLength(1);
  });

  it('applies an ipBlocks policy to the verified TCP peer address (echo-v2 on the other node)', async () => {
    expect(
      await httpGetOver(
        await m.socks(SLEEP, 'echo-v2.demo', 8080).catch(() => m.socks(SLEEP, ECHO_V2, 8080)),
        ECHO_V2,
        8080,
      ),
    ).toBe(200);
  });

  it('a DENY with only HTTP attributes has no effect at L4', async () => {
    const s = await echoRoundTrip(ECHO_V1, 7000);
    s.destroy();
    const warn = await m.waitForLog(
      (l) => l.component === 'controlplane' && String(l.rec.msg).includes('demo/l7-only'),
      5000,
    );
    expect(String(warn.rec.msg)).toContain('will have no effect');
  });

  it('ignores a forged `forwarded` header: authorization uses the TCP peer and the certificate', async () => {
    const cert = await meshSignedCert(m.stateDir, {
      trustDomain: 'cluster.local',
      namespace: 'demo',
      serviceAccount: 'sleep',
    });
    const pool = new HbonePool(componentLogger('test'));
    const tunnel = (sourceIp: string, forged: string) =>
      pool.connect({
        source: cert,
        sourceIp,
        clientAddr: { host: forged, port: 1234 },
        hboneAddr: { host: ECHO_V2, port: 15008 },
        expectedIdentity: 'spiffe://cluster.local/ns/demo/sa/echo',
        authority: `${ECHO_V2}:7001` as SocketAddr,
      });
    try {
      // From another address, claiming to be sleep's IP: denied.
      const from = m.logs.length;
      const err = await tunnel(ip(30), SLEEP).catch((e: unknown) => e);
      expect(isAmbitError(err, 'HBONE_POLICY_DENIED')).toBe(true);
      const line = await m.waitForLog(isDenial, 5000, from);
      expect(line.rec['src.ip']).toBe(ip(30));
      // From sleep's IP, claiming to be someone else: allowed.
      const ok = await tunnel(SLEEP, '10.9.9.9');
      ok.close();
    } finally {
      pool.close();
    }
  });

  it('a new DENY policy applies to new connections within a second, naming policy and rule', async () => {
    const from = m.logs.length;
    await writePolicy(
      'deny-7001',
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-7001, namespace: demo}
spec:
  action: DENY
  rules:
  - from: [{source: {namespaces: ["legacy"]}}]
  - to: [{operation: {ports: ["7001"]}}]
`,
    );
    await waitForPolicies(from);
    await expect(m.socks(SLEEP, ECHO_V2, 7001)).rejects.toBeInstanceOf(SocksError);
    const line = await m.waitForLog(isDenial, 5000, from);
    expect(line.rec).toMatchObject({ policy: 'demo/deny-7001', 'policy.rule': 1, 'dst.workload': 'echo-v2' });
    // Other ports are unaffected.
    const s = await echoRoundTrip(ECHO_V2, 7000);
    s.destroy();
  });

  it('closes an open connection when a policy change no longer allows it', { timeout: 15_000 }, async () => {
    const s = await echoRoundTrip(ECHO_V1, 7000);
    // The SOCKS socket is half-open capable: the tunnel's reset reaches the app as end of stream.
    const closed = new Promise<void>((resolve) => {
      s.once('end', () => resolve());
      s.once('close', () => resolve());
    });
    s.on('error', () => {});
    const from = m.logs.length;
    await writePolicy(
      'deny-sleep-7000',
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-sleep-7000, namespace: demo}
spec:
  selector: {matchLabels: {app: echo}}
  action: DENY
  rules:
  - from: [{source: {principals: ["*/sa/sleep"]}}]
    to: [{operation: {ports: ["7000"]}}]
`,
    );
    await closed;
    const line = await m.waitForLog(
      (l) => l.rec.msg === 'connection closed: policy no longer allows it',
      5000,
      from,
    );
    expect(line.rec).toMatchObject({
      policy: 'demo/deny-sleep-7000',
      'policy.rule': 0,
      'dst.workload': 'echo-v1',
    });
    await expect(m.socks(SLEEP, ECHO_V1, 7000)).rejects.toBeInstanceOf(SocksError);
    // Removing the policy lets new connections through again.
    const from2 = m.logs.length;
    await rm(path.join(m.configDir, 'deny-sleep-7000.yaml'));
    await waitForPolicies(from2);
    (await echoRoundTrip(ECHO_V1, 7000)).destroy();
  });

  it('keeps connections a policy change still allows', async () => {
    const s = await echoRoundTrip(ECHO_V2, 7000);
    const from = m.logs.length;
    await writePolicy(
      'unrelated',
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: unrelated, namespace: demo}
spec:
  action: DENY
  rules: [{from: [{source: {namespaces: ["legacy"]}}]}]
`,
    );
    await waitForPolicies(from);
    s.write('still here');
    const d = await new Promise<Buffer>((resolve) => s.once('data', resolve));
    expect(d.length).toBeGreaterThan(0);
    s.destroy();
  });

  it('a root-namespace DENY applies mesh-wide', async () => {
    const from = m.logs.length;
    await writePolicy(
      'mesh-deny',
      `apiVersion: v1
kind: Namespace
metadata: {name: istio-system}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-9000, namespace: istio-system}
spec:
  action: DENY
  rules: [{to: [{operation: {ports: ["9000"]}}]}]
`,
    );
    await waitForPolicies(from);
    await expect(m.socks(SLEEP, ECHO_V2, 9000)).rejects.toBeInstanceOf(SocksError);
    const line = await m.waitForLog(isDenial, 5000, from);
    expect(line.rec).toMatchObject({ policy: 'istio-system/no-9000', 'policy.rule': 0 });
  });

  it('`authz explain` online (xDS, node token) and offline agree with what the proxy enforced', async () => {
    const online = explain(await onlineView(`${ip(5)}:15012`, m.stateDir), 'demo/sleep', `${ECHO_V2}:9000`);
    expect(online.decisions.map((d) => d.allow)).toEqual([false]);
    expect(online.text).toContain('istio-system/no-9000');
    expect(online.text).toContain('✘ DENIED');
    const offline = explain(await offlineView(m.configDir), 'demo/sleep', 'echo.demo:8080');
    expect(offline.decisions.map((d) => d.allow)).toEqual([true, true]);
    expect(offline.text).toContain('demo/l7-only');
    expect(offline.text).toContain('will have no effect');
  });
});
