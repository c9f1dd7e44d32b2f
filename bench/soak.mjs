#!/usr/bin/env node
// Soak: `npm run bench -- soak [--minutes N] [--out FILE]` (default 60 minutes; not part of
// `all`, of `npm test` or of CI). A mesh (control plane + two node proxies) on 127.0.185.0/24
// carries 1 000 req/s of HTTP/1.1 (50 keep-alive tunnels, open loop: bench/lib/loadgen.mjs
// `rate`, one window per minute) plus 20 new tunnels per second, while every 3 s the folder
// changes: a pod is replaced (removed, another added: new listeners, certificates, xDS pushes)
// and the AuthorizationPolicies on the server are rewritten (tunnels re-evaluated). Each minute it
// samples every mesh process: RSS (/proc), heap floor and active handles (bench/soak-probe.mjs,
// preloaded), and open tunnels (opened − closed on each node proxy's /metrics, read between two
// load windows, so anything above the few one-shot tunnels in flight is a leak); and the minute's
// load: achieved rate, errors, p99. It reports the growth from the end of warm-up (the first
// fifth of the run, at least one minute) to the end — the goal is under 5 % — and every error.
// Results: bench/results/<date>-soak.{json,md}.
import { fork, spawn } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { progress, rssMb } from './lib/stats.mjs';
import { pod, twoNodeManifests } from './lib/manifests.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const value = (f) => (args.indexOf(f) >= 0 ? args[args.indexOf(f) + 1] : undefined);
const minutes = Number(value('--minutes') ?? 60);
const outFile = value('--out');
if (!(minutes >= 1)) {
  console.error('soak: --minutes must be at least 1');
  process.exit(2);
}
const MINUTE_MS = Number(process.env.AMBIT_SOAK_MINUTE_MS ?? 60_000); // shorter only to test the harness
const RATE = 1000;
const CONNECTIONS = 50;
const NEW_TUNNELS_PER_S = 20;
const CHURN_EVERY_MS = 3000;
const GOAL_GROWTH_PCT = 5;

const O = 185;
const ip = (n) => `127.0.${O}.${n}`;
const ADDR = { node1: ip(1), node2: ip(2), controlPlane: ip(5), client: ip(10), server: ip(11) };
const HTTP_PORT = 8080;

const base = twoNodeManifests('soak', ADDR);

/** Step `k` of the churn: 20 extra pods (one replaced per step) and the server's policies. */
function churn(k) {
  const pods = [];
  for (let i = k; i < k + 20; i++) {
    pods.push(
      pod({
        name: `churn-${i}`,
        namespace: 'soak',
        app: 'churn',
        node: i % 2 ? 'node-1' : 'node-2',
        serviceAccount: `churn-${i % 5}`,
        ip: ip(100 + (i % 100)),
      }),
    );
  }
  // The ALLOW always admits the client (the load must keep flowing); what else it admits and the
  // DENY's target change every step, so every node proxy re-evaluates its open tunnels.
  const policies = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: server-allow, namespace: soak}
spec:
  selector: {matchLabels: {app: server}}
  action: ALLOW
  rules:
    - from: [{source: {principals: [cluster.local/ns/soak/sa/client, cluster.local/ns/soak/sa/churn-${k % 5}]}}]
      to: [{operation: {ports: ["${HTTP_PORT}"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-churn, namespace: soak}
spec:
  action: DENY
  rules: [{from: [{source: {principals: [cluster.local/ns/soak/sa/churn-${(k + 1) % 5}]}}], to: [{operation: {ports: ["${9000 + (k % 7)}"]}}]}]
`;
  return [...pods, policies].join('---\n');
}

const started = new Date();
const root = await mkdtemp(path.join(tmpdir(), 'ambit-soak-'));
const probeDir = path.join(root, 'probe');
await mkdir(probeDir);
await mkdir(path.join(root, 'config'));
await writeFile(path.join(root, 'config', 'base.yaml'), base);
await writeFile(path.join(root, 'config', 'churn.yaml'), churn(0));
const stops = [];
const errors = [];
const noteError = (what) => {
  if (errors.length < 200) errors.push({ at: new Date().toISOString(), what });
};

try {
  const app = fork(path.join(here, 'lib', 'app.mjs'), [ADDR.server, String(HTTP_PORT), '9000'], {
    stdio: 'inherit',
  });
  await new Promise((r) => app.once('message', r));
  stops.push(async () => app.kill());

  progress(`soak: starting the mesh on 127.0.${O}.0/24 (${minutes} min)`);
  process.env.AMBIT_SOAK_PROBE_DIR = probeDir;
  process.env.AMBIT_NODE_ARGS =
    `${process.env.AMBIT_NODE_ARGS ?? ''} --import ${pathToFileURL(path.join(here, 'soak-probe.mjs')).href}`.trim();
  const { Mesh } = await import(path.join(here, '..', 'dist', 'cli', 'mesh-runner.js'));
  const mesh = await Mesh.start({
    configDir: path.join(root, 'config'),
    stateDir: path.join(root, 'state'),
    controlPlaneAddr: `${ADDR.controlPlane}:15012`,
    env: {
      AMBIT_LOG_LEVEL: process.env.AMBIT_LOG_LEVEL ?? 'warn',
      AMBIT_SOAK_PROBE_DIR: probeDir,
      AMBIT_NODE_ARGS: process.env.AMBIT_NODE_ARGS,
    },
    onLog: (component, line) => {
      // Errors and warnings of the mesh count as the soak's errors (policy churn logs none).
      if (/"level":(50|60)/.test(line)) noteError(`${component}: ${line.slice(0, 300)}`);
    },
  });
  stops.push(() => mesh.stop());
  const components = ['controlplane', 'node/node-1', 'node/node-2'];

  // Churn: the folder changes every CHURN_EVERY_MS.
  let step = 0;
  const churner = setInterval(() => {
    step++;
    writeFile(path.join(root, 'config', 'churn.yaml'), churn(step)).catch((e) =>
      noteError(`churn: ${e.message}`),
    );
  }, CHURN_EVERY_MS);
  stops.push(async () => clearInterval(churner));

  // New tunnels: NEW_TUNNELS_PER_S one-request connections per second.
  const tunnelStats = { ok: 0, failed: 0 };
  const opener = setInterval(() => {
    oneShot().then(
      () => tunnelStats.ok++,
      (e) => {
        tunnelStats.failed++;
        noteError(`new tunnel: ${e.message}`);
      },
    );
  }, 1000 / NEW_TUNNELS_PER_S);
  stops.push(async () => clearInterval(opener));

  const warmupMinutes = Math.max(1, Math.round(minutes / 5));
  const samples = [];
  for (let minute = 1; minute <= minutes; minute++) {
    const before = { ...tunnelStats };
    const load = await loadWindow().catch((e) => {
      noteError(`loadgen: ${e.message}`);
      return undefined;
    });
    const sample = {
      minute,
      load: load && {
        rps: Math.round(load.rps),
        errors: load.errors,
        unfinished: load.unfinished,
        p99ms: load.p99 !== undefined ? Number(load.p99.toFixed(2)) : undefined,
      },
      newTunnels: { ok: tunnelStats.ok - before.ok, failed: tunnelStats.failed - before.failed },
      churnSteps: step,
      processes: {},
    };
    for (const c of components) sample.processes[c] = await sampleProcess(mesh.pid(c));
    for (const n of ['node-1', 'node-2']) sample.processes[`node/${n}`].openTunnels = await openTunnels(n);
    samples.push(sample);
    progress(`soak: minute ${minute}/${minutes} ${JSON.stringify(sample)}`);
  }

  const report = summarize(samples, warmupMinutes);
  const result = {
    suite: 'soak',
    started,
    minutes,
    machine: { cores: cpus().length, cpu: cpus()[0]?.model, node: process.version, kernel: release() },
    load: {
      rate: RATE,
      connections: CONNECTIONS,
      newTunnelsPerSecond: NEW_TUNNELS_PER_S,
      churnEveryMs: CHURN_EVERY_MS,
    },
    warmupMinutes,
    samples,
    growth: report.growth,
    errors,
  };
  const md = markdown(result, report);
  console.log(`\n${md}`);
  if (outFile) await writeFile(outFile, JSON.stringify(result, null, 2));
  else {
    const out = path.join(here, 'results', `${started.toISOString().slice(0, 10)}-soak`);
    await mkdir(path.dirname(out), { recursive: true });
    await writeFile(`${out}.json`, JSON.stringify(result, null, 2));
    await writeFile(`${out}.md`, `${md}\n`);
    progress(`wrote ${path.relative(process.cwd(), out)}.{json,md}`);
  }
} finally {
  for (const s of stops.reverse()) await s().catch(() => {});
  await rm(root, { recursive: true, force: true });
}
process.exit(0);

/** One minute of open-loop load in its own process (its CPU is not the mesh's). */
function loadWindow() {
  const opts = {
    mode: 'rate',
    socks: { host: ADDR.client, port: 15080 },
    host: ADDR.server,
    port: HTTP_PORT,
    rate: RATE,
    connections: CONNECTIONS,
    warmupMs: 0,
    durationMs: MINUTE_MS - 1500, // leaves time to connect and to sample
  };
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [path.join(here, 'lib', 'loadgen.mjs'), JSON.stringify(opts)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    p.stdout.on('data', (c) => (out += c));
    const timer = setTimeout(() => p.kill('SIGKILL'), MINUTE_MS + 60_000);
    p.on('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`loadgen exited ${code}`));
      resolve(JSON.parse(out.trim().split('\n').pop()));
    });
  });
}

/** One request on a new tunnel (SOCKS5 → HBONE), then close. */
function oneShot() {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: ADDR.client, port: 15080 });
    const timer = setTimeout(() => s.destroy(new Error('timeout after 5 s')), 5000);
    let buf = Buffer.alloc(0);
    let stage = 0;
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on('connect', () => s.write(Buffer.from([5, 1, 0])));
    s.on('data', (c) => {
      buf = Buffer.concat([buf, c]);
      if (stage === 0 && buf.length >= 2) {
        buf = buf.subarray(2);
        stage = 1;
        const req = Buffer.from([
          5,
          1,
          0,
          1,
          ...ADDR.server.split('.').map(Number),
          HTTP_PORT >> 8,
          HTTP_PORT & 255,
        ]);
        s.write(req);
      }
      if (stage === 1 && buf.length >= 10) {
        if (buf[1] !== 0) return s.destroy(new Error(`SOCKS reply ${buf[1]}`));
        buf = buf.subarray(10);
        stage = 2;
        s.write(`GET / HTTP/1.1\r\nHost: server\r\nConnection: close\r\n\r\n`);
      }
      if (stage === 2 && /^HTTP\/1\.1 (\d+)/.test(buf.toString('latin1'))) {
        const status = Number(/^HTTP\/1\.1 (\d+)/.exec(buf.toString('latin1'))[1]);
        stage = 3;
        clearTimeout(timer);
        s.destroy();
        if (status === 200) resolve();
        else reject(new Error(`HTTP ${status}`));
      }
    });
    s.on('close', () => {
      clearTimeout(timer);
      if (stage < 3) reject(new Error(`closed at stage ${stage}`));
    });
  });
}

async function sampleProcess(pid) {
  if (!pid) return { running: false };
  const probe = await readFile(path.join(probeDir, `${pid}.json`), 'utf8').then(JSON.parse, () => undefined);
  return {
    pid,
    rssMb: Number((await rssMb(pid)).toFixed(1)),
    // The floor of the last minute (see soak-probe.mjs): a single reading swings with GC.
    heapMb: probe ? Number((probe.heapFloor / 2 ** 20).toFixed(1)) : undefined,
    handles: probe?.handles,
  };
}

/** Tunnels open on a node proxy: connections opened minus closed, summed over its label sets. */
function openTunnels(node) {
  const host = node === 'node-1' ? ADDR.node1 : ADDR.node2;
  return new Promise((resolve) => {
    http
      .get(`http://${host}:15020/metrics`, { timeout: 5000 }, (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => {
          const sum = (name) =>
            text
              .split('\n')
              .filter((l) => l.startsWith(name))
              .reduce((a, l) => a + Number(l.split(' ').pop()), 0);
          resolve(sum('istio_tcp_connections_opened_total') - sum('istio_tcp_connections_closed_total'));
        });
      })
      .on('error', () => resolve(undefined));
  });
}

function growthPct(from, to) {
  if (from === undefined || to === undefined || from === 0) return undefined;
  return Number((((to - from) / from) * 100).toFixed(1));
}

function summarize(samples, warmupMinutes) {
  const first = samples[Math.min(warmupMinutes, samples.length) - 1];
  const last = samples[samples.length - 1];
  const growth = {};
  for (const c of Object.keys(last.processes)) {
    const a = first.processes[c];
    const b = last.processes[c];
    growth[c] = {
      rssPct: growthPct(a.rssMb, b.rssMb),
      heapPct: growthPct(a.heapMb, b.heapMb),
      handles: b.handles !== undefined && a.handles !== undefined ? b.handles - a.handles : undefined,
      openTunnels:
        b.openTunnels !== undefined && a.openTunnels !== undefined
          ? b.openTunnels - a.openTunnels
          : undefined,
    };
  }
  return { growth, from: first.minute, to: last.minute };
}

function markdown(result, report) {
  const comps = Object.keys(result.samples[0].processes);
  const head = [
    `# ambit soak — ${result.started.toISOString()}`,
    '',
    `machine: ${result.machine.cores} cores (${result.machine.cpu}), Node ${result.machine.node}, Linux ${result.machine.kernel}, load average ${loadavg()[0].toFixed(1)} at the end.`,
    `load: ${RATE} req/s over ${CONNECTIONS} keep-alive tunnels + ${NEW_TUNNELS_PER_S} new tunnels/s; every ${CHURN_EVERY_MS / 1000} s a pod replaced and the server's policies rewritten. ${result.minutes} min, warm-up ${result.warmupMinutes} min.`,
    '',
    `| min | req/s | errors | p99 ms | new tunnels ok/failed | ${comps.map((c) => `${c} RSS MB / heap MB / handles`).join(' | ')} | open tunnels node-1 / node-2 |`,
    `| --- | --- | --- | --- | --- | ${comps.map(() => '---').join(' | ')} | --- |`,
  ];
  const rows = result.samples.map((s) => {
    const p = (c) =>
      `${s.processes[c].rssMb ?? '-'} / ${s.processes[c].heapMb ?? '-'} / ${s.processes[c].handles ?? '-'}`;
    return `| ${s.minute} | ${s.load?.rps ?? '-'} | ${s.load ? s.load.errors + s.load.unfinished : '-'} | ${s.load?.p99ms ?? '-'} | ${s.newTunnels.ok}/${s.newTunnels.failed} | ${comps.map(p).join(' | ')} | ${s.processes['node/node-1'].openTunnels ?? '-'} / ${s.processes['node/node-2'].openTunnels ?? '-'} |`;
  });
  const growth = comps.map((c) => {
    const g = report.growth[c];
    const over = [g.rssPct, g.heapPct].some((v) => v !== undefined && v >= GOAL_GROWTH_PCT);
    return `- ${c}: RSS ${fmtPct(g.rssPct)}, heap ${fmtPct(g.heapPct)}, handles ${fmtDelta(g.handles)}${g.openTunnels !== undefined ? `, open tunnels ${fmtDelta(g.openTunnels)}` : ''} — ${over ? `OVER the ${GOAL_GROWTH_PCT} % goal` : `within the ${GOAL_GROWTH_PCT} % goal`}`;
  });
  return [
    ...head,
    ...rows,
    '',
    `Growth from minute ${report.from} (end of warm-up) to minute ${report.to}:`,
    ...growth,
    '',
    result.errors.length ? `Errors (${result.errors.length}, first 10):` : 'Errors: none.',
    ...result.errors.slice(0, 10).map((e) => `- ${e.at} ${e.what}`),
  ].join('\n');
}

function fmtPct(v) {
  return v === undefined ? 'n/a' : `${v > 0 ? '+' : ''}${v} %`;
}
function fmtDelta(v) {
  return v === undefined ? 'n/a' : `${v > 0 ? '+' : ''}${v}`;
}
