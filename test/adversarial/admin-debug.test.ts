// Attacks on the admin and debug endpoints (issue 12, holes 5 and 7), as written in the issue,
// against a real control plane and real node proxies (child processes) on 127.0.150.0/24:
//  5. POST /logging?level=silent&access_log=off with `Origin: http://evil.example` silencing a node
//     proxy, denials included; POST /quitquitquit?deadline_ms=0 from another node's IP stopping
//     a node proxy. Plus DNS rebinding (a foreign Host), a cross-site Origin on GET, a missing or
//     wrong token, and that `ambit ctl` / `ambit dashboard` still work with the state directory.
//  7. SSRF through the graph scraper: an xDS client holding a real node token sends a node id that
//     names another IP; GET :15014/debug/graph must not make the control plane contact that IP
//     (listeners there record every connection).
// ztunnel binds admin to localhost only (istio/ztunnel src/config.rs, "admin API should only be
// accessible over localhost"); in ambit's local mode every pod is a loopback address too, so here
// the admin token is what must hold (telemetry/admin-guard.ts).
import http from 'node:http';
import type net from 'node:net';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findChromium } from '../support/chromium.js';
import { pino } from 'pino';
import { AMBIT_BIN } from '../../src/cli/mesh-runner.js';
import { XdsClient, controlPlaneConnection } from '../../src/xds/client.js';
import { TYPE_ADDRESS } from '../../src/xds/proto.js';
import { CONTROL_PLANE_SERVER_NAME } from '../../src/controlplane/server.js';
import { DENY_ECHO_7002, TestMesh } from '../support/mesh.js';

const run = promisify(execFile);
const O = 150;
const ip = (n: number) => `127.0.${O}.${n}`;
const NODE1 = ip(1);
const NODE2 = ip(2);
const SLEEP = ip(10);
const ECHO_V2 = ip(12);
const CP = ip(5);
const CP_DEBUG = `${CP}:15014`;
/** Where the SSRF would land: an address no Node, pod or waypoint has. */
const VICTIM = ip(50);
const VICTIM_WP = ip(51);

const m = new TestMesh({ octet: O, extraManifests: DENY_ECHO_7002 });
let token = '';
const contacted: string[] = [];
const victims: net.Server[] = [];

interface Answer {
  status: number;
  body: string;
}

/** One HTTP request with exactly the headers given (Host included), optionally from a chosen source IP. */
function send(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; from?: string } = {},
): Promise<Answer> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method: opts.method ?? 'GET',
        headers: opts.headers,
        localAddress: opts.from,
        agent: false,
        timeout: 5000,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer`)));
    req.on('error', reject);
    req.end();
  });
}

const withToken = (headers: Record<string, string> = {}) => ({
  authorization: `Bearer ${token}`,
  ...headers,
});

async function currentLogging(node: string): Promise<{ level: string; access_log: string }> {
  const r = await send(`http://${node}:15000/logging`, { headers: withToken() });
  expect(r.status).toBe(200);
  return JSON.parse(r.body) as { level: string; access_log: string };
}

/** A listener that records every connection to it and answers like a proxy would. */
async function recordingListener(host: string, port: number): Promise<void> {
  const server = http.createServer((req, res) => {
    contacted.push(`${host}:${port}${req.url ?? ''}`);
    res.writeHead(200, { 'content-type': 'text/plain' }).end(port === 15000 ? '{"denials":[]}' : '');
  });
  server.on('connection', () => contacted.push(`${host}:${port} (tcp)`));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  victims.push(server);
}

beforeAll(async () => {
  await m.start();
  token = (await readFile(path.join(m.stateDir, 'admin.token'), 'utf8')).trim();
  for (const host of [VICTIM, VICTIM_WP])
    for (const port of [15000, 15020]) await recordingListener(host, port);
}, 60_000);

afterAll(async () => {
  for (const s of victims) await new Promise<void>((r) => s.close(() => r()));
  await m.stop();
});

describe('hole 5: unauthenticated, cross-site-callable admin actions', () => {
  it('the admin token exists, 0600, in the state directory', async () => {
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    const { stat } = await import('node:fs/promises');
    expect((await stat(path.join(m.stateDir, 'admin.token'))).mode & 0o777).toBe(0o600);
  });

  it('POST /logging?level=silent&access_log=off with Origin evil.example is refused, and denials are still logged', async () => {
    const before = await currentLogging(NODE2);
    const attack = await send(`http://${NODE2}:15000/logging?level=silent&access_log=off`, {
      method: 'POST',
      headers: { origin: 'http://evil.example' },
    });
    expect(attack.status).toBe(403);
    // The same cross-site request with the real token (a leaked token in a page) is refused too.
    const withTok = await send(`http://${NODE2}:15000/logging?level=silent&access_log=off`, {
      method: 'POST',
      headers: withToken({ origin: 'http://evil.example' }),
    });
    expect(withTok.status).toBe(403);
    // And without any Origin (curl from a pod): no token, no change.
    const fromPod = await send(`http://${NODE2}:15000/logging?level=silent&access_log=off`, {
      method: 'POST',
      from: SLEEP,
    });
    expect(fromPod.status).toBe(401);
    expect(await currentLogging(NODE2)).toEqual(before);
    await m.waitForLog(
      (l) =>
        l.component === 'node/node-2' &&
        l.rec['admin.refusal'] === 'cross-origin' &&
        l.rec['http.origin'] === 'http://evil.example',
    );
    // The node proxy still reports denials: a connection to the denied port is logged with its policy.
    const from = m.logs.length;
    await m.socks(SLEEP, ECHO_V2, 7002).then(
      (s) => new Promise<void>((r) => s.once('close', () => r()).resume()),
      () => undefined,
    );
    const denial = await m.waitForLog(
      (l) => l.component === 'node/node-2' && l.rec.msg === 'connection denied by policy',
      10_000,
      from,
    );
    expect(denial.rec.policy ?? denial.rec['authz.policy']).toBe('demo/no-7002');
  });

  it("POST /quitquitquit?deadline_ms=0 from another node's IP is refused and the node proxy keeps running", async () => {
    const pid = m.mesh.pid('node/node-2');
    expect(pid).toBeGreaterThan(0);
    const attack = await send(`http://${NODE2}:15000/quitquitquit?deadline_ms=0`, {
      method: 'POST',
      from: NODE1,
    });
    expect(attack.status).toBe(401);
    const wrong = await send(`http://${NODE2}:15000/quitquitquit?deadline_ms=0`, {
      method: 'POST',
      from: NODE1,
      headers: { authorization: `Bearer ${'0'.repeat(64)}` },
    });
    expect(wrong.status).toBe(401);
    await new Promise((r) => setTimeout(r, 500)); // a drain with deadline 0 would have exited by now
    expect(() => process.kill(pid!, 0)).not.toThrow();
    expect((await send(`http://${NODE2}:15021/healthz/ready`)).status).toBe(200);
    expect(
      m.logs.some((l) => l.component === 'node/node-2' && /quitquitquit, draining/.test(String(l.rec.msg))),
    ).toBe(false);
    await m.waitForLog(
      (l) =>
        l.component === 'node/node-2' &&
        l.rec['admin.refusal'] === 'token-wrong' &&
        l.rec['http.path'] === '/quitquitquit',
    );
  });

  it('DNS rebinding: a foreign Host is refused even with the token, on the node and the control plane', async () => {
    for (const url of [`http://${NODE1}:15000/config_dump`, `http://${CP_DEBUG}/debug/workloads`]) {
      const r = await send(url, { headers: withToken({ host: 'evil.example:15000' }) });
      expect(r.status, url).toBe(403);
      expect(r.body).not.toMatch(/spiffe|workload/i);
    }
  });

  it('a cross-site Origin or Sec-Fetch-Site on GET is refused, token or not', async () => {
    for (const url of [`http://${NODE1}:15000/certs`, `http://${CP_DEBUG}/debug/graph`]) {
      expect((await send(url, { headers: withToken({ origin: 'http://evil.example' }) })).status, url).toBe(
        403,
      );
      expect((await send(url, { headers: withToken({ 'sec-fetch-site': 'cross-site' }) })).status, url).toBe(
        403,
      );
    }
  });

  it('every endpoint that shows the mesh wants the token; metrics and readiness stay open as in Istio', async () => {
    const mesh = [
      ...['/config_dump', '/certs', '/debug/denials', '/logging'].map((p) => `http://${NODE1}:15000${p}`),
      ...[
        '/debug/syncz',
        '/debug/workloads',
        '/debug/services',
        '/debug/policies',
        '/debug/waypoints',
        '/debug/ca',
        '/debug/graph',
      ].map((p) => `http://${CP_DEBUG}${p}`),
    ];
    for (const url of mesh) {
      const none = await send(url, { from: SLEEP });
      expect(none.status, url).toBe(401);
      expect(none.body, url).not.toMatch(/spiffe:|sleep|echo/);
      expect((await send(url, { headers: { authorization: 'Bearer wrong' } })).status, url).toBe(401);
      expect((await send(url, { headers: withToken() })).status, url).toBe(200);
    }
    for (const url of [
      `http://${NODE1}:15020/metrics`,
      `http://${NODE1}:15021/healthz/ready`,
      `http://${CP_DEBUG}/metrics`,
    ])
      expect((await send(url, { from: SLEEP })).status, url).toBe(200);
  });

  it('ambit ctl and ambit dashboard still work with the state directory, and say what is missing without it', async () => {
    const ctl = (...args: string[]) =>
      run(process.execPath, [AMBIT_BIN, 'ctl', ...args, '--controlplane', CP_DEBUG, '--state', m.stateDir]);
    expect((await ctl('status')).stdout).toMatch(
      new RegExp(`node-2\\s+node\\s+${NODE2.replace(/\./g, '\\.')}\\s+SYNCED`),
    );
    expect((await ctl('certs')).stdout).toMatch(
      /node-1\s+spiffe:\/\/cluster\.local\/ns\/demo\/sa\/sleep\s+[0-9A-F]+/,
    );
    const dump = JSON.parse((await ctl('config-dump', '--node', 'node-2')).stdout) as { node: string };
    expect(dump.node).toBe('node-2');
    const { stdout } = await run(process.execPath, [
      AMBIT_BIN,
      'dashboard',
      '--controlplane',
      CP_DEBUG,
      '--state',
      m.stateDir,
    ]);
    expect(stdout.trim()).toBe(`http://${CP_DEBUG}/dashboard#token=${token}`);
    // From a directory without a mesh state and no AMBIT_ADMIN_TOKEN: a clear message, exit 2.
    const empty = await mkdtemp(path.join(tmpdir(), 'ambit-no-state-'));
    try {
      const env = { ...process.env };
      delete env.AMBIT_ADMIN_TOKEN;
      await expect(
        run(process.execPath, [AMBIT_BIN, 'ctl', 'workloads', '--controlplane', CP_DEBUG], {
          cwd: empty,
          env,
        }),
      ).rejects.toMatchObject({
        code: 2,
        stderr: expect.stringMatching(/401[\s\S]*no admin token: set AMBIT_ADMIN_TOKEN/),
      });
      const viaEnv = await run(
        process.execPath,
        [AMBIT_BIN, 'ctl', 'workloads', '--controlplane', CP_DEBUG],
        {
          cwd: empty,
          env: { ...env, AMBIT_ADMIN_TOKEN: token },
        },
      );
      expect(viaEnv.stdout).toMatch(/demo\s+sleep/);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });
});

describe('hole 7: SSRF through the graph scraper', () => {
  it('an xDS client with a node token and a node id naming another IP does not make /debug/graph contact that IP', async () => {
    const rootPem = await readFile(path.join(m.stateDir, 'ca', 'root-cert.pem'), 'utf8');
    const nodeToken = (await readFile(path.join(m.stateDir, 'nodes', 'node-1.token'), 'utf8')).trim();
    const logger = pino({ level: 'silent' });
    const attacker = (id: string) =>
      new XdsClient({
        ...controlPlaneConnection(`${CP}:15012`, rootPem, nodeToken, CONTROL_PLANE_SERVER_NAME),
        node: { id, metadata: { NODE_NAME: 'node-1' } },
        types: [{ typeUrl: TYPE_ADDRESS, decode: (_n: string, b: Uint8Array) => b, apply: () => {} }],
        logger,
      });
    const clients = [
      attacker(`ambit~${VICTIM}~node-1~cluster.local`),
      attacker(`waypoint~${VICTIM_WP}~evil.demo~cluster.local`),
    ];
    try {
      for (const c of clients) c.start();
      await Promise.all(clients.map((c) => c.ready()));
      // Without the token the graph is not even computed.
      expect((await send(`http://${CP_DEBUG}/debug/graph`)).status).toBe(401);
      await new Promise((r) => setTimeout(r, 2100)); // past the graph's 2 s cache: the next ask scrapes
      const graph = await send(`http://${CP_DEBUG}/debug/graph`, { headers: withToken() });
      expect(graph.status).toBe(200);
      const g = JSON.parse(graph.body) as { scrapeErrors: { target: string; error: string }[] };
      // The real nodes were scraped (and answered), so the scraper did run with these streams connected.
      expect(g.scrapeErrors).toEqual([]);
      expect(contacted).toEqual([]);
      // syncz shows what the client claimed, but lists the Node's own address as the one to use.
      const syncz = JSON.parse(
        (await send(`http://${CP_DEBUG}/debug/syncz`, { headers: withToken() })).body,
      ) as {
        nodeId: string;
        ip?: string;
        claimedIp?: string;
      }[];
      const rogue = syncz.find((e) => e.nodeId.startsWith(`ambit~${VICTIM}~`));
      expect(rogue).toMatchObject({ ip: NODE1, claimedIp: VICTIM });
      const rogueWp = syncz.find((e) => e.nodeId.startsWith(`waypoint~${VICTIM_WP}~`));
      expect(rogueWp?.ip).toBeUndefined();
      // `ambit ctl certs` (which sends the admin token to each node it lists) never goes there either.
      await run(process.execPath, [
        AMBIT_BIN,
        'ctl',
        'certs',
        '--controlplane',
        CP_DEBUG,
        '--state',
        m.stateDir,
      ]);
      expect(contacted).toEqual([]);
    } finally {
      for (const c of clients) c.stop();
    }
    // The recording listeners do record: a direct request shows up (so the empty list above means something).
    await send(`http://${VICTIM}:15020/metrics`);
    expect(contacted).toContain(`${VICTIM}:15020/metrics`);
  }, 30_000);
});

const CHROMIUM = findChromium('admin-debug: browser attacks');

describe('hole 5 from a real browser (headless Chromium)', () => {
  const EVIL = ip(60);

  it.skipIf(!CHROMIUM)(
    'a page on another origin cannot re-level or drain a node proxy (fetch no-cors and a form POST)',
    async () => {
      const page = `<!doctype html><iframe name="sink"></iframe>
<form id="f" method="POST" target="sink" action="http://${NODE2}:15000/quitquitquit?deadline_ms=0"></form>
<script>
fetch('http://${NODE2}:15000/logging?level=silent&access_log=off', { method: 'POST', mode: 'no-cors' })
  .finally(() => { document.getElementById('f').submit(); document.body.dataset.done = '1'; });
</script>`;
      const evil = http.createServer((_req, res) =>
        res.writeHead(200, { 'content-type': 'text/html' }).end(page),
      );
      await new Promise<void>((r) => evil.listen(8080, EVIL, r));
      const before = await currentLogging(NODE2);
      const from = m.logs.length;
      const { chromium } = await import('playwright-core');
      const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
      try {
        const tab = await browser.newPage();
        await tab.goto(`http://${EVIL}:8080/`);
        await tab.waitForSelector('body[data-done="1"]', { timeout: 10_000 });
        const origin = `http://${EVIL}:8080`;
        for (const p of ['/logging', '/quitquitquit'])
          await m.waitForLog(
            (l) =>
              l.component === 'node/node-2' &&
              l.rec['admin.refusal'] === 'cross-origin' &&
              l.rec['http.path'] === p &&
              l.rec['http.origin'] === origin,
            10_000,
            from,
          );
      } finally {
        await browser.close();
        await new Promise<void>((r) => evil.close(() => r()));
      }
      expect(await currentLogging(NODE2)).toEqual(before);
      expect((await send(`http://${NODE2}:15021/healthz/ready`)).status).toBe(200);
    },
  );

  it.skipIf(!CHROMIUM)(
    'DNS rebinding: a page whose name resolves to the node IP cannot read the config dump',
    async () => {
      const { chromium } = await import('playwright-core');
      const browser = await chromium.launch({
        executablePath: CHROMIUM,
        // evil.example "rebinds" to node-1's address, as a DNS answer with a short TTL would.
        args: ['--no-sandbox', `--host-resolver-rules=MAP evil.example ${NODE1}`],
      });
      try {
        const tab = await browser.newPage();
        // The open index is served (it shows nothing of the mesh)...
        const index = await tab.goto('http://evil.example:15000/');
        expect(index?.status()).toBe(200);
        // ...but a same-origin read of the mesh is refused on its Host.
        const r = await tab.evaluate(async () => {
          const res = await fetch('/config_dump');
          return { status: res.status, body: await res.text() };
        });
        expect(r.status).toBe(403);
        expect(r.body).toMatch(/Host evil\.example:15000/);
        expect(r.body).not.toMatch(/spiffe:/);
      } finally {
        await browser.close();
      }
      await m.waitForLog(
        (l) => l.component === 'node/node-1' && l.rec['admin.refusal'] === 'host-not-allowed',
      );
    },
  );
});
