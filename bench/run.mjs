#!/usr/bin/env node
// `npm run bench -- [suite] [--quick]`: benchmarks on loopback, each measurement repeated and
// reported as median (min–max). Suites: l4. Results: bench/results/<date>-<suite>.{json,md}.
import { fork, spawn } from 'node:child_process';
import { mkdtemp, mkdir, writeFile, readFile, rm } from 'node:fs/promises';
import { tmpdir, cpus, release } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const outIdx = args.indexOf('--out');
const outFile = outIdx >= 0 ? args[outIdx + 1] : undefined;
const suite = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--out') ?? 'l4';
const RUNS = 3;
const timing = quick ? { warmupMs: 300, durationMs: 1000 } : { warmupMs: 1000, durationMs: 5000 };

const { Mesh } = await import(path.join(here, '..', 'dist', 'cli', 'mesh-runner.js'));

const O = 60; // loopback range 127.0.60.0/24
const NODE1 = `127.0.${O}.1`,
  NODE2 = `127.0.${O}.2`,
  CLIENT = `127.0.${O}.10`,
  SERVER = `127.0.${O}.11`;
const manifests = `
apiVersion: v1
kind: Namespace
metadata: {name: bench, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
status: {addresses: [{type: InternalIP, address: ${NODE1}}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2}
status: {addresses: [{type: InternalIP, address: ${NODE2}}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: bench, labels: {app: client}}
spec: {nodeName: node-1, serviceAccountName: client}
status: {podIP: ${CLIENT}}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: bench, labels: {app: server}}
spec: {nodeName: node-2, serviceAccountName: server}
status: {podIP: ${SERVER}}
`;

function progress(msg) {
  process.stderr.write(`[bench] ${msg}\n`);
}

function loadgen(opts) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [path.join(here, 'lib', 'loadgen.mjs'), JSON.stringify(opts)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    p.stdout.on('data', (c) => (out += c));
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.warmupMs + opts.durationMs + 30_000);
    p.on('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`loadgen exited ${code}`));
      resolve(JSON.parse(out.trim().split('\n').pop()));
    });
  });
}

async function cpuSeconds(pid) {
  if (!pid) return 0;
  const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ');
  return (Number(stat[11]) + Number(stat[12])) / 100; // utime + stime in clock ticks (100 Hz)
}

async function rssMb(pid) {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)[1]) / 1024;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const stat = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs), runs: xs });

async function measure(name, mesh, opts) {
  const results = [];
  for (let i = 0; i < RUNS; i++) {
    progress(`${name} run ${i + 1}/${RUNS}`);
    const pids = [mesh.pid('node/node-1'), mesh.pid('node/node-2')];
    const before = await Promise.all(pids.map(cpuSeconds));
    const r = await loadgen({ ...timing, ...opts });
    const after = await Promise.all(pids.map(cpuSeconds));
    r.proxyCpuSec = after.reduce((a, b) => a + b, 0) - before.reduce((a, b) => a + b, 0);
    r.proxyRssMb = (await Promise.all(pids.filter(Boolean).map(rssMb))).reduce((a, b) => a + b, 0);
    results.push(r);
  }
  return results;
}

async function l4() {
  const root = await mkdtemp(path.join(tmpdir(), 'ambit-bench-'));
  await mkdir(path.join(root, 'config'));
  await writeFile(path.join(root, 'config', 'bench.yaml'), manifests);
  progress('starting the mesh (control plane + 2 node proxies)');
  const mesh = await Mesh.start({
    configDir: path.join(root, 'config'),
    stateDir: path.join(root, 'state'),
    controlPlaneAddr: `127.0.${O}.5:15012`,
    env: { AMBIT_LOG_LEVEL: 'warn' },
  });
  const app = fork(path.join(here, 'lib', 'app.mjs'), [SERVER, '8080', '9000'], { stdio: 'inherit' });
  await new Promise((r) => app.once('message', r));
  const socks = { host: CLIENT, port: 15080 };
  const rows = {};
  try {
    for (const [label, extra] of [
      ['direct', {}],
      ['ambit (2 node proxies)', { socks }],
    ]) {
      rows[label] = {
        bulk1: await measure(`${label}: bulk, 1 stream`, mesh, {
          mode: 'bulk',
          host: SERVER,
          port: 9000,
          streams: 1,
          ...extra,
        }),
        rps50: await measure(`${label}: HTTP/1.1, 50 keep-alive connections`, mesh, {
          mode: 'rps',
          host: SERVER,
          port: 8080,
          connections: 50,
          ...extra,
        }),
      };
    }
  } finally {
    app.kill();
    await mesh.stop();
    await rm(root, { recursive: true, force: true });
  }
  return rows;
}

function table(rows) {
  const d = rows['direct'];
  const lines = [
    '| path | 1-stream throughput (MiB/s) | req/s (50 conns) | p50 ms | p99 ms | proxy CPU s/run | proxy RSS MB |',
    '|---|---|---|---|---|---|---|',
  ];
  const fmt = (s, f = (x) => x.toFixed(1)) => `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
  for (const [label, r] of Object.entries(rows)) {
    const mib = stat(r.bulk1.map((x) => x.bytesPerSec / 1048576));
    const rps = stat(r.rps50.map((x) => x.rps));
    lines.push(
      `| ${label} | ${fmt(mib)} | ${fmt(rps, (x) => x.toFixed(0))} | ${fmt(stat(r.rps50.map((x) => x.p50)), (x) => x.toFixed(2))} | ${fmt(stat(r.rps50.map((x) => x.p99)), (x) => x.toFixed(2))} | ${median(r.rps50.map((x) => x.proxyCpuSec)).toFixed(2)} | ${median(r.rps50.map((x) => x.proxyRssMb)).toFixed(0)} |`,
    );
  }
  const a = rows['ambit (2 node proxies)'];
  if (d && a) {
    const thr = median(a.bulk1.map((x) => x.bytesPerSec)) / median(d.bulk1.map((x) => x.bytesPerSec));
    const rr = median(a.rps50.map((x) => x.rps)) / median(d.rps50.map((x) => x.rps));
    const p50 = median(a.rps50.map((x) => x.p50)) - median(d.rps50.map((x) => x.p50));
    const p99 = median(a.rps50.map((x) => x.p99)) - median(d.rps50.map((x) => x.p99));
    lines.push(
      '',
      `ratio ambit/direct: throughput ${thr.toFixed(2)}×, req/s ${rr.toFixed(2)}×; added latency p50 +${p50.toFixed(2)} ms, p99 +${p99.toFixed(2)} ms`,
    );
  }
  return lines.join('\n');
}

if (suite !== 'l4') {
  console.error(`unknown suite ${suite} (available: l4)`);
  process.exit(2);
}
const started = new Date();
const rows = await l4();
const machine = { cores: cpus().length, cpu: cpus()[0]?.model, node: process.version, kernel: release() };
const md = `# ${suite} — ${started.toISOString()}${quick ? ' (quick)' : ''}\n\nmachine: ${machine.cores} cores (${machine.cpu}), Node ${machine.node}, Linux ${machine.kernel}; ${RUNS} runs each, median (min–max); ${timing.durationMs / 1000} s per run after ${timing.warmupMs / 1000} s warm-up.\n\n${table(rows)}\n`;
console.log('\n' + md);
const result = { suite, quick, started, machine, timing, runs: RUNS, rows };
if (outFile) {
  await writeFile(outFile, JSON.stringify(result, null, 2));
} else {
  const stamp = started.toISOString().slice(0, 10);
  await mkdir(path.join(here, 'results'), { recursive: true });
  const base = path.join(here, 'results', `${stamp}-${suite}${quick ? '-quick' : ''}`);
  await writeFile(
    `${base}.json`,
    JSON.stringify({ suite, quick, started, machine, timing, runs: RUNS, rows }, null, 2),
  );
  await writeFile(`${base}.md`, md);
  progress(`wrote ${path.relative(process.cwd(), base)}.{json,md}`);
}
process.exit(0);
