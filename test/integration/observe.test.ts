// "See the mesh" end to end, on loopback range 127.0.51.0/24: real node proxies and control
// plane as child processes. Istio's L4 metrics on both reporters with exact bytes and the right
// labels, denials counted with their flag, access-log lines and their run-time switch, the node
// admin endpoint (never any key material), control plane metrics and debug, `ambit ctl` against
// the running mesh, the service graph's JSON, and a graceful /quitquitquit.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import net from 'node:net';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findChromium } from '../support/chromium.js';
import { SocksError } from '../../src/cli/socks-client.js';
import { AMBIT_BIN } from '../../src/cli/mesh-runner.js';
import { httpRequest as rawHttpRequest } from '../../src/telemetry/http-util.js';
import { readAdminToken } from '../../src/common/token.js';
import { parsePromText, type Sample } from '../../src/telemetry/prom-text.js';
import { DENY_ECHO_7002, TestMesh, closeServer, listen, readAll, tcpEcho } from '../support/mesh.js';

const run = promisify(execFile);
const O = 51;
const ip = (n: number) => `127.0.${O}.${n}`;
const NODE1 = ip(1);
const NODE2 = ip(2);
const SLEEP = ip(10);
const ECHO_V1 = ip(11);
const ECHO_V2 = ip(12);
const PLAIN = ip(13);
const CP_DEBUG = `${ip(5)}:15014`;
const SLEEP_ID = 'spiffe://cluster.local/ns/demo/sa/sleep';
const ECHO_ID = 'spiffe://cluster.local/ns/demo/sa/echo';

const m = new TestMesh({ octet: O, extraManifests: DENY_ECHO_7002 });
// Admin (15000) and /debug/* ask for the mesh's admin token (telemetry/admin-guard.ts); this file
// acts as the operator and sends it on every request (test/adversarial/admin-debug.test.ts attacks).
const adminToken = () => readAdminToken(m.stateDir) ?? '';
const httpRequest = (url: string, opts: { method?: string } = {}) =>
  rawHttpRequest(url, { ...opts, headers: { authorization: `Bearer ${adminToken()}` } });
const servers: net.Server[] = [];
const SENT = 100_000; // client → server
const ANSWER = 12_345; // server → client

beforeAll(async () => {
  await m.start();
  // 7000: read everything the client sends, then answer ANSWER bytes and close.
  const counted = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.resume();
    s.on('end', () => s.end(Buffer.alloc(ANSWER, 7)));
  });
  servers.push(await listen(counted, ECHO_V2, 7000));
  servers.push(await tcpEcho(ECHO_V2, 7001));
  servers.push(await tcpEcho(ECHO_V2, 7002));
  servers.push(await tcpEcho(ECHO_V1, 7001));
  servers.push(await tcpEcho(PLAIN, 7001));
}, 60_000);

afterAll(async () => {
  await Promise.all(servers.map(closeServer));
  await m.stop();
});

async function scrape(nodeIp: string): Promise<Sample[]> {
  const r = await httpRequest(`http://${nodeIp}:15020/metrics`);
  expect(r.status).toBe(200);
  return parsePromText(r.body);
}

function value(samples: Sample[], name: string, labels: Record<string, string>): number {
  return samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((n, s) => n + s.value, 0);
}

/** Polls until `pred` holds for a node's metrics (connections close asynchronously). */
async function metricsWhen(
  nodeIp: string,
  pred: (s: Sample[]) => boolean,
  timeoutMs = 10_000,
): Promise<Sample[]> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const s = await scrape(nodeIp);
    if (pred(s) || Date.now() > end) return s;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function sendAndReceive(port: number): Promise<Buffer> {
  const s = await m.socks(SLEEP, ECHO_V2, port);
  const answer = readAll(s);
  s.end(Buffer.alloc(SENT, 1));
  return answer;
}

const edge = { source_workload: 'sleep', destination_workload: 'echo-v2' };

describe('L4 metrics', () => {
  it('count opened/closed and exact bytes on both reporters, with identities, app/version and mTLS', async () => {
    const answer = await sendAndReceive(7000);
    expect(answer.length).toBe(ANSWER);
    const closed = (s: Sample[]) =>
      value(s, 'istio_tcp_connections_closed_total', { ...edge, response_flags: '-' });
    const src = await metricsWhen(NODE1, (s) => closed(s) >= 1);
    const dst = await metricsWhen(NODE2, (s) => closed(s) >= 1);
    for (const [samples, reporter] of [
      [src, 'source'],
      [dst, 'destination'],
    ] as const) {
      const l = { reporter, ...edge };
      expect(value(samples, 'istio_tcp_connections_opened_total', l)).toBe(1);
      expect(value(samples, 'istio_tcp_connections_closed_total', l)).toBe(1);
      // Istio's meaning: received = during request (client → server), sent = during response.
      expect(value(samples, 'istio_tcp_received_bytes_total', l)).toBe(SENT);
      expect(value(samples, 'istio_tcp_sent_bytes_total', l)).toBe(ANSWER);
      const series = samples.find(
        (s) => s.name === 'istio_tcp_connections_opened_total' && s.labels.reporter === reporter,
      );
      expect(series?.labels).toMatchObject({
        source_workload_namespace: 'demo',
        source_principal: SLEEP_ID,
        source_app: 'sleep',
        destination_workload_namespace: 'demo',
        destination_principal: ECHO_ID,
        destination_app: 'echo',
        destination_version: 'v2',
        request_protocol: 'tcp',
        connection_security_policy: 'mutual_tls',
      });
      // no per-connection labels: no ports, no addresses
      expect(Object.values(series!.labels).join(' ')).not.toMatch(/127\.0\.|:7000/);
    }
    // The destination guesses the service from the target port, like ztunnel.
    expect(dst.find((s) => s.name === 'istio_tcp_connections_opened_total')?.labels.destination_service).toBe(
      'echo.demo.svc.cluster.local',
    );
    expect(value(dst, 'ambit_authz_allowed_total', {})).toBeGreaterThanOrEqual(1);
  });

  it('show the bytes of a long-lived connection while it is open', async () => {
    const before = value(await scrape(NODE1), 'istio_tcp_received_bytes_total', {
      reporter: 'source',
      ...edge,
    });
    const s = await m.socks(SLEEP, ECHO_V2, 7001);
    const echoed = new Promise<void>((resolve) => {
      let n = 0;
      s.on('data', (c: Buffer) => {
        n += c.length;
        if (n >= 5000) resolve();
      });
    });
    s.write(Buffer.alloc(5000, 2));
    await echoed;
    const during = await scrape(NODE1);
    expect(value(during, 'istio_tcp_received_bytes_total', { reporter: 'source', ...edge }) - before).toBe(
      5000,
    );
    s.end();
    await new Promise((r) => s.once('close', r));
  });

  it('count a denied connection on both reporters with response_flags DENY, and list the denial', async () => {
    const beforeSrc = value(await scrape(NODE1), 'istio_tcp_connections_closed_total', {
      response_flags: 'DENY',
    });
    await expect(m.socks(SLEEP, ECHO_V2, 7002)).rejects.toBeInstanceOf(SocksError);
    const deny = (s: Sample[]) =>
      value(s, 'istio_tcp_connections_closed_total', { ...edge, response_flags: 'DENY' });
    const src = await metricsWhen(NODE1, (s) => deny(s) > beforeSrc);
    expect(
      value(src, 'istio_tcp_connections_closed_total', {
        reporter: 'source',
        ...edge,
        response_flags: 'DENY',
      }),
    ).toBe(beforeSrc + 1);
    const dst = await metricsWhen(NODE2, (s) => deny(s) >= 1);
    expect(
      value(dst, 'istio_tcp_connections_closed_total', {
        reporter: 'destination',
        ...edge,
        response_flags: 'DENY',
      }),
    ).toBe(1);
    expect(value(dst, 'ambit_authz_denied_total', { policy: 'demo/no-7002' })).toBe(1);
    const denials = JSON.parse((await httpRequest(`http://${NODE2}:15000/debug/denials`)).body) as {
      denials: { policy: string; srcIdentity: string; dstPort: number }[];
    };
    expect(denials.denials).toContainEqual(
      expect.objectContaining({ policy: 'demo/no-7002', srcIdentity: SLEEP_ID, dstPort: 7002 }),
    );
  });
});

describe('L4 metrics, error and passthrough', () => {
  it('count a connection the app refuses with response_flags CONNECT on both reporters', async () => {
    await expect(m.socks(SLEEP, ECHO_V2, 7999)).rejects.toBeInstanceOf(SocksError);
    const flagged = (s: Sample[], reporter: string) =>
      value(s, 'istio_tcp_connections_closed_total', { reporter, ...edge, response_flags: 'CONNECT' });
    expect(flagged(await metricsWhen(NODE1, (s) => flagged(s, 'source') >= 1), 'source')).toBe(1);
    expect(flagged(await metricsWhen(NODE2, (s) => flagged(s, 'destination') >= 1), 'destination')).toBe(1);
  });

  it('count plain TCP to a pod outside the mesh at the source only, security policy unknown, bytes exact', async () => {
    const s = await m.socks(SLEEP, PLAIN, 7001);
    const back = readAll(s);
    s.end(Buffer.alloc(3000, 5));
    expect((await back).length).toBe(3000);
    const l = { reporter: 'source', source_workload: 'sleep', destination_workload: 'plain' };
    const closed = (x: Sample[]) => value(x, 'istio_tcp_connections_closed_total', l);
    const src = await metricsWhen(NODE1, (x) => closed(x) >= 1);
    expect(closed(src)).toBe(1);
    expect(value(src, 'istio_tcp_received_bytes_total', l)).toBe(3000);
    expect(value(src, 'istio_tcp_sent_bytes_total', l)).toBe(3000);
    const series = src.find(
      (x) => x.name === 'istio_tcp_connections_opened_total' && x.labels.destination_workload === 'plain',
    );
    expect(series?.labels).toMatchObject({
      connection_security_policy: 'unknown',
      destination_principal: 'unknown',
      destination_workload_namespace: 'legacy',
    });
    // node-2 hosts plain but is not in its path: nothing reported there
    expect(
      value(await scrape(NODE2), 'istio_tcp_connections_opened_total', { destination_workload: 'plain' }),
    ).toBe(0);
  });
});

describe('access log', () => {
  it('writes one line per connection with the fields operators expect', async () => {
    const from = m.logs.length;
    await sendAndReceive(7000);
    const rec = (
      await m.waitForLog(
        (l) =>
          l.component === 'node/node-2' &&
          l.rec.msg === 'connection complete' &&
          l.rec['dst.addr'] === `${ECHO_V2}:7000`,
        10_000,
        from,
      )
    ).rec;
    expect(rec).toMatchObject({
      direction: 'inbound',
      'src.identity': SLEEP_ID,
      'dst.workload': 'echo-v2',
      'authz.decision': 'allow',
      response_flags: '-',
      connection_security_policy: 'mutual_tls',
      bytes_recv: SENT,
      bytes_sent: ANSWER,
    });
    expect(typeof rec.start_time).toBe('string');
    expect(rec.trace_id).toMatch(/^[0-9a-f]{32}$/);
    expect(typeof rec.duration_ms).toBe('number');
  });

  it('is switched off and the log level changed at run time through admin /logging', async () => {
    const set = await httpRequest(`http://${NODE2}:15000/logging?level=debug&access_log=off`, {
      method: 'POST',
    });
    expect(set.status).toBe(200);
    expect(JSON.parse(set.body)).toEqual({ level: 'debug', access_log: 'off' });
    const from = m.logs.length;
    await sendAndReceive(7000);
    await metricsWhen(NODE2, () => true);
    await new Promise((r) => setTimeout(r, 300));
    const lines = m.logs
      .slice(from)
      .filter((l) => l.component === 'node/node-2' && l.rec.msg === 'connection complete');
    expect(lines).toEqual([]);
    await httpRequest(`http://${NODE2}:15000/logging?level=info&access_log=full`, { method: 'POST' });
    const bad = await httpRequest(`http://${NODE2}:15000/logging?level=loud`, { method: 'POST' });
    expect(bad.status).toBe(400);
  });
});

describe('node admin on 15000', () => {
  it('dumps workloads, services, policies and certificates as the proxy sees them', async () => {
    const dump = JSON.parse((await httpRequest(`http://${NODE1}:15000/config_dump`)).body) as {
      node: string;
      workloads: { name: string }[];
      services: { hostname: string }[];
      policies: { key: string }[];
      certificates: { identity: string }[];
      xds: { type: string; updates: number }[];
      xdsResponses: {
        typeUrl: string;
        nonce: string;
        systemVersion: string;
        acked: boolean;
        resources: number;
      }[];
    };
    expect(dump.node).toBe('node-1');
    // The last response of each type, as acknowledged to the control plane (ztunnel's config dump shows the same).
    expect(dump.xdsResponses.map((r) => r.typeUrl.split('.').pop()).sort()).toEqual([
      'Address',
      'Authorization',
    ]);
    for (const r of dump.xdsResponses) {
      expect(r.acked).toBe(true);
      expect(r.nonce).not.toBe('');
      expect(Number(r.systemVersion)).toBeGreaterThan(0);
    }
    expect(dump.workloads.map((w) => w.name)).toEqual(
      expect.arrayContaining(['sleep', 'echo-v1', 'echo-v2']),
    );
    expect(dump.services.map((s) => s.hostname)).toContain('echo.demo.svc.cluster.local');
    expect(dump.policies.map((p) => p.key)).toContain('demo/no-7002');
    expect(dump.certificates.map((c) => c.identity)).toContain(SLEEP_ID);
    expect(dump.xds.map((x) => x.type).sort()).toEqual(['Address', 'Authorization']);
  });

  it('lists certificates with serial and expiry', async () => {
    const certs = JSON.parse((await httpRequest(`http://${NODE1}:15000/certs`)).body) as {
      certificates: { identity: string; serial: string; notAfter: string; chain: unknown[] }[];
    };
    const sleep = certs.certificates.find((c) => c.identity === SLEEP_ID);
    expect(sleep?.serial).toMatch(/^[0-9A-F]+$/);
    expect(new Date(sleep!.notAfter).getTime()).toBeGreaterThan(Date.now());
  });

  it('never returns key material, on any endpoint of the node or the control plane', async () => {
    const urls = [
      ...['/', '/config_dump', '/certs', '/logging', '/debug/denials'].flatMap((p) =>
        [NODE1, NODE2].map((n) => `http://${n}:15000${p}`),
      ),
      ...[
        '/metrics',
        '/debug/syncz',
        '/debug/workloads',
        '/debug/services',
        '/debug/policies',
        '/debug/ca',
        '/debug/graph',
      ].map((p) => `http://${CP_DEBUG}${p}`),
      `http://${NODE1}:15020/metrics`,
    ];
    for (const u of urls) {
      const r = await httpRequest(u);
      expect(r.status, u).toBe(200);
      expect(r.body, u).not.toMatch(/PRIVATE KEY|BEGIN EC|keyPem/);
    }
  });

  it('redirects /stats to the metrics port', async () => {
    const r = await httpRequest(`http://${NODE1}:15000/stats`);
    expect(r.status).toBe(302);
    expect(r.headers.location).toBe(`http://${NODE1}:15020/metrics`);
  });
});

describe('control plane on 15014', () => {
  it('serves pushes, connected proxies, CSRs and root expiry', async () => {
    const s = parsePromText((await httpRequest(`http://${CP_DEBUG}/metrics`)).body);
    expect(value(s, 'pilot_xds', {})).toBe(2);
    expect(value(s, 'pilot_xds_pushes', { type: 'wds' })).toBeGreaterThanOrEqual(2);
    expect(value(s, 'citadel_server_csr_count', {})).toBeGreaterThanOrEqual(3);
    expect(value(s, 'citadel_server_success_cert_issuance_count', {})).toBeGreaterThanOrEqual(3);
    expect(value(s, 'citadel_server_root_cert_expiry_timestamp', {})).toBeGreaterThan(Date.now() / 1000);
  });

  it('draws the live graph: sleep → echo-v2 with a lock', async () => {
    const g = JSON.parse((await httpRequest(`http://${CP_DEBUG}/debug/graph`)).body) as {
      edges: { source: string; destination: string; mtls: boolean; denied: number }[];
      denials: { policy: string }[];
    };
    expect(g.edges).toContainEqual(
      expect.objectContaining({ source: 'demo/sleep', destination: 'demo/echo-v2', mtls: true }),
    );
    expect(g.denials.map((d) => d.policy)).toContain('demo/no-7002');
    const page = await httpRequest(`http://${CP_DEBUG}/dashboard`);
    expect(page.body).toContain('/debug/graph');
  });
});

describe('ambit ctl against the running mesh', () => {
  it('dashboard prints the URL of the live graph', async () => {
    const { stdout } = await run(process.execPath, [
      AMBIT_BIN,
      'dashboard',
      '--controlplane',
      CP_DEBUG,
      '--state',
      m.stateDir,
    ]);
    expect(stdout.trim()).toBe(`http://${CP_DEBUG}/dashboard#token=${adminToken()}`);
  });

  it('analyze warns about a missing waypoint and a protocol-less port, and fails on an invalid manifest', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'ambit-analyze-'));
    try {
      await writeFile(
        path.join(dir, 'a.yaml'),
        'apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop, labels: {istio.io/use-waypoint: wp}}\nspec:\n  ports: [{port: 80}]\n',
      );
      const ok = await run(process.execPath, [AMBIT_BIN, 'ctl', 'analyze', dir]);
      expect(ok.stdout).toMatch(
        /Warning \[IST0167\] \(Service shop\/web\) istio\.io\/use-waypoint=wp names Gateway shop\/wp/,
      );
      expect(ok.stdout).toMatch(/Warning \[IST0118\] \(Service shop\/web\) port 80 has no name/);
      const json = JSON.parse(
        (await run(process.execPath, [AMBIT_BIN, 'ctl', 'analyze', dir, '-o', 'json'])).stdout,
      ) as unknown[];
      expect(json).toHaveLength(2);
      await writeFile(
        path.join(dir, 'b.yaml'),
        'apiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec:\n  ports: [{port: 99999}]\n',
      );
      await expect(run(process.execPath, [AMBIT_BIN, 'ctl', 'analyze', dir])).rejects.toMatchObject({
        code: 1,
        stdout: expect.stringMatching(/Error .*b\.yaml/),
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  const ctl = async (...args: string[]) =>
    (
      await run(process.execPath, [
        AMBIT_BIN,
        'ctl',
        ...args,
        '--controlplane',
        CP_DEBUG,
        '--state',
        m.stateDir,
      ])
    ).stdout;

  it('workloads, services and policies as tables and JSON', async () => {
    const table = await ctl('workloads');
    expect(table.split('\n')[0]).toMatch(/^NAMESPACE\s+NAME\s+IP\s+NODE/);
    expect(table).toMatch(/demo\s+sleep\s+127\.0\.51\.10\s+node-1\s+HBONE/);
    expect(table).toMatch(/legacy\s+plain\s+127\.0\.51\.13\s+node-2\s+TCP/);
    const json = JSON.parse(await ctl('workloads', '-o', 'json')) as { name: string }[];
    expect(json.map((w) => w.name)).toContain('echo-v2');
    expect(await ctl('services')).toMatch(/demo\s+echo\s+127\.0\.51\.100\s+8080→8080.*\s2\s/);
    expect(await ctl('waypoints')).toMatch(/^WAYPOINT\s+PROGRAMMED.*\n\(none\)/);
    expect(await ctl('policies')).toMatch(/demo\/no-7002\s+\S+\s+DENY/);
  });

  it('status: every proxy SYNCED', async () => {
    const out = await ctl('status');
    expect(out).toMatch(/node-1\s+node\s+127\.0\.51\.1\s+SYNCED/);
    expect(out).toMatch(/node-2\s+node\s+127\.0\.51\.2\s+SYNCED/);
  });

  it('certs and config-dump reach the nodes at the addresses the control plane lists', async () => {
    const certs = await ctl('certs');
    expect(certs).toMatch(/node-1\s+spiffe:\/\/cluster\.local\/ns\/demo\/sa\/sleep\s+[0-9A-F]+/);
    expect(certs).not.toMatch(/PRIVATE KEY/);
    const dump = JSON.parse(await ctl('config-dump', '--node', 'node-2')) as {
      node: string;
      xdsSync: { status: string };
    };
    expect(dump.node).toBe('node-2');
    expect(dump.xdsSync.status).toBe('SYNCED');
  });

  it('names a node that is not connected', async () => {
    await expect(ctl('config-dump', '--node', 'nope')).rejects.toMatchObject({
      stderr: expect.stringContaining('node nope is not connected'),
    });
  });
});

const CHROMIUM = findChromium('observe: dashboard browser test');

describe('service graph page in headless Chromium', () => {
  it.skipIf(!CHROMIUM)('draws the quickstart edges, a lock on mTLS ones, and the denial', async () => {
    // sleep → echo-v1 and echo-v2 through HBONE; sleep → legacy/plain is plain TCP (no lock)
    for (const [host, port] of [
      [ECHO_V1, 7001],
      [PLAIN, 7001],
    ] as const) {
      const s = await m.socks(SLEEP, host, port);
      s.end('hello');
      await readAll(s);
    }
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
      // The URL `ambit dashboard` prints: the token rides in the fragment, never sent to the server.
      await page.goto(`http://${CP_DEBUG}/dashboard#token=${adminToken()}`);
      const edgeSel = (src: string, dst: string) => `g.edge[data-source="${src}"][data-destination="${dst}"]`;
      await page.waitForSelector(edgeSel('demo/sleep', 'demo/echo-v2'), { timeout: 15_000 });
      await page.waitForSelector(edgeSel('demo/sleep', 'demo/echo-v1'), { timeout: 15_000 });
      await page.waitForSelector(edgeSel('demo/sleep', 'legacy/plain'), { timeout: 15_000 });
      expect(await page.getAttribute(edgeSel('demo/sleep', 'demo/echo-v2'), 'data-mtls')).toBe('true');
      expect(await page.getAttribute(edgeSel('demo/sleep', 'legacy/plain'), 'data-mtls')).toBe('false');
      expect(await page.locator(`${edgeSel('demo/sleep', 'demo/echo-v2')} .lock`).count()).toBe(1);
      expect(await page.locator(`${edgeSel('demo/sleep', 'legacy/plain')} .lock`).count()).toBe(0);
      expect(await page.textContent('#denials')).toContain('demo/no-7002');
      const dir = fileURLToPath(new URL('../artifacts/', import.meta.url));
      await mkdir(dir, { recursive: true });
      await page.screenshot({ path: `${dir}dashboard.png`, fullPage: true });
      expect(existsSync(`${dir}dashboard.png`)).toBe(true);
    } finally {
      await browser.close();
    }
  });
});

describe('/quitquitquit', () => {
  it('drains: open connections finish, new ones are refused, the process exits', async () => {
    const pid = m.mesh.pid('node/node-1')!;
    const open = await m.socks(SLEEP, ECHO_V2, 7001);
    const r = await httpRequest(`http://${NODE1}:15000/quitquitquit?deadline_ms=3000`, { method: 'POST' });
    expect(r.status).toBe(200);
    // New connections are refused at once...
    await expect(m.socks(SLEEP, ECHO_V2, 7001)).rejects.toThrow();
    // ...while the open one still works during the drain.
    const back = new Promise<Buffer>((resolve) => open.once('data', resolve));
    open.write('still here');
    expect((await back).toString()).toBe('still here');
    open.end();
    await m.waitForLog((l) => l.component === 'node/node-1' && l.rec.msg === 'node proxy stopped', 15_000);
    const end = Date.now() + 10_000;
    while (Date.now() < end) {
      try {
        process.kill(pid, 0);
      } catch {
        break;
      }
      await new Promise((res) => setTimeout(res, 100));
    }
    expect(() => process.kill(pid, 0)).toThrow();
  });
});
