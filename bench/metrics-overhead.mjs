#!/usr/bin/env node
// Metrics cost: requests/s through the node proxies (sleep on node-1 → echo on node-2, real
// HBONE/mTLS) with metrics on and off, access logs off in both so only metrics differ. Each
// request is a new connection (64 bytes there and back), the worst case for per-connection
// metrics work. Runs alternate off/on ROUNDS times, each with a fresh mesh, to spread machine
// noise evenly; the verdict compares the medians. Usage:
//   npm run build && node bench/metrics-overhead.mjs [--seconds 6] [--rounds 2] [--concurrency 16]
// Uses loopback range 127.0.52.0/24. Target: on/off ≥ 0.95.
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { Mesh } from '../dist/cli/mesh-runner.js';
import { socksConnect } from '../dist/cli/socks-client.js';
import { L4Metrics } from '../dist/telemetry/metrics.js';
import { Registry } from 'prom-client';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '6' },
    rounds: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '16' },
  },
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const CONCURRENCY = Number(values.concurrency);
const O = 52;
const ip = (n) => `127.0.${O}.${n}`;
// Each run gets its own addresses: thousands of short connections per run leave TIME_WAIT sockets
// on the bound pod IPs, and reusing them would slow the next run's connects (kernel port search).
let runBase = 0;
const host = (n) => ip(runBase + n);
const manifests = () =>
  [
    `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n  labels:\n    istio.io/dataplane-mode: ambient\n`,
    `apiVersion: v1\nkind: Node\nmetadata:\n  name: node-1\nstatus:\n  addresses: [{type: InternalIP, address: ${host(1)}}]\n`,
    `apiVersion: v1\nkind: Node\nmetadata:\n  name: node-2\nstatus:\n  addresses: [{type: InternalIP, address: ${host(2)}}]\n`,
    `apiVersion: v1\nkind: Pod\nmetadata:\n  name: sleep\n  namespace: demo\n  labels: {app: sleep}\nspec:\n  nodeName: node-1\n  serviceAccountName: sleep\nstatus:\n  podIP: ${host(3)}\n`,
    `apiVersion: v1\nkind: Pod\nmetadata:\n  name: echo\n  namespace: demo\n  labels: {app: echo}\nspec:\n  nodeName: node-2\n  serviceAccountName: echo\nstatus:\n  podIP: ${host(4)}\n`,
  ].join('---\n');

const PAYLOAD = Buffer.alloc(64, 1);

/** CPU seconds (user + system) a process has used so far (Linux /proc; clock ticks of 10 ms). */
function cpuSeconds(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

function oneRequest() {
  return socksConnect({ host: host(3), port: 15080 }, host(4), 7000).then(
    (s) =>
      new Promise((resolve, reject) => {
        let n = 0;
        s.on('data', (c) => {
          n += c.length;
        });
        s.once('end', () => s.end());
        s.once('close', () => (n >= PAYLOAD.length ? resolve() : reject(new Error('short answer'))));
        s.once('error', reject);
        s.write(PAYLOAD);
      }),
  );
}

async function measure(metrics, run) {
  runBase = 10 + run * 10;
  const root = await mkdtemp(path.join(tmpdir(), 'ambit-bench-metrics-'));
  await mkdir(path.join(root, 'config'));
  await writeFile(path.join(root, 'config', 'mesh.yaml'), manifests());
  const mesh = await Mesh.start({
    configDir: path.join(root, 'config'),
    stateDir: path.join(root, 'state'),
    controlPlaneAddr: `${host(5)}:15012`,
    env: { AMBIT_LOG_LEVEL: 'warn', AMBIT_ACCESS_LOG: 'off', AMBIT_METRICS: metrics ? 'on' : 'off' },
  });
  // The server answers and closes first, as request/response servers do: the TIME_WAIT sockets
  // then sit on the listening ports, not on the ephemeral ports the proxies bind (which would slow
  // every later connect as thousands accumulate, and skew later runs).
  const echo = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    let got = 0;
    s.on('data', (c) => {
      got += c.length;
      if (got >= PAYLOAD.length) s.end(PAYLOAD);
    });
  });
  await new Promise((r) => echo.listen(7000, host(4), r));
  try {
    // warm up: certificates, pooled HBONE connection, JIT
    const warmEnd = Date.now() + 1000;
    while (Date.now() < warmEnd) await oneRequest();
    const pids = [mesh.pid('node/node-1'), mesh.pid('node/node-2')];
    const cpu0 = pids.map(cpuSeconds);
    let done = 0;
    let errors = 0;
    const end = Date.now() + SECONDS * 1000;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (Date.now() < end) {
          try {
            await oneRequest();
            done++;
          } catch {
            errors++;
          }
        }
      }),
    );
    const cpu = pids.map(cpuSeconds).reduce((n, c, i) => n + c - cpu0[i], 0);
    return { rps: done / SECONDS, errors, cpuUsPerRequest: (cpu * 1e6) / Math.max(1, done) };
  } finally {
    await new Promise((r) => echo.close(r));
    await mesh.stop();
    await rm(root, { recursive: true, force: true });
  }
}

/** In-process: what recording one connection (open, bytes, close) costs a proxy, in µs. */
function microCost() {
  const m = new L4Metrics(new Registry());
  const w = (n) => ({
    workloadName: n,
    name: n,
    namespace: 'demo',
    canonicalName: n,
    canonicalRevision: 'v1',
    clusterId: 'Kubernetes',
  });
  const src = Array.from({ length: 20 }, (_, i) => w(`src${i}`));
  const dst = w('echo');
  const svc = { hostname: 'echo.demo.svc.cluster.local', name: 'echo', namespace: 'demo' };
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    const n = 100_000;
    const t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      const c = m.connectionOpened({
        reporter: 'source',
        source: src[i % 20],
        sourcePrincipal: 'spiffe://cluster.local/ns/demo/sa/sleep',
        destination: dst,
        destinationPrincipal: 'spiffe://cluster.local/ns/demo/sa/echo',
        destinationService: svc,
        securityPolicy: 'mutual_tls',
      });
      c.trackBytes(() => ({ received: 64, sent: 64 }));
      c.close('-');
    }
    best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e3 / n);
  }
  return best;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const off = [];
const on = [];
const offCpu = [];
const onCpu = [];
for (let i = 0; i < ROUNDS; i++) {
  for (const metrics of i % 2 === 0 ? [false, true] : [true, false]) {
    const r = await measure(metrics, off.length + on.length);
    (metrics ? on : off).push(r.rps);
    (metrics ? onCpu : offCpu).push(r.cpuUsPerRequest);
    console.log(
      `round ${i + 1} metrics ${metrics ? 'on ' : 'off'}: ${r.rps.toFixed(0)} req/s, ` +
        `${r.cpuUsPerRequest.toFixed(0)} µs proxy CPU per request (${r.errors} errors)`,
    );
  }
}
const ratio = median(on) / median(off);
const micro = microCost();
const result = {
  concurrency: CONCURRENCY,
  seconds: SECONDS,
  rounds: ROUNDS,
  offRps: off.map((x) => Math.round(x)),
  onRps: on.map((x) => Math.round(x)),
  ratio: Number(ratio.toFixed(3)),
  overheadPercent: Number(((1 - ratio) * 100).toFixed(1)),
  // Less sensitive to other load on the machine than req/s: what both proxies spend per request.
  offCpuUsPerRequest: offCpu.map((x) => Math.round(x)),
  onCpuUsPerRequest: onCpu.map((x) => Math.round(x)),
  cpuOverheadPercent: Number(((median(onCpu) / median(offCpu) - 1) * 100).toFixed(1)),
  // Two proxies record each connection; against the cheapest CPU per request seen with metrics off.
  metricsUsPerConnectionPerProxy: Number(micro.toFixed(2)),
  microOverheadPercent: Number(((2 * micro * 100) / Math.min(...offCpu)).toFixed(2)),
  target: 'overhead < 5 %',
};
console.log(JSON.stringify(result, null, 2));
process.exit(0);
