// Suite l7: HTTP through the ambit waypoint (node proxy → waypoint → node proxy) against direct
// traffic, the L4-only ambit path and haproxy in HTTP mode, for HTTP/1.1 and h2c, with one route
// rule and with 1 000. Closed-loop maximum req/s and latency at fixed rates; CPU seconds and RSS
// of every proxy process from /proc, the load generator's CPU reported apart.
import { loadavg } from 'node:os';
import { loadgen } from '../lib/topology.mjs';
import { REQUEST_PATH } from '../lib/l7-topology.mjs';
import { cpuSeconds, progress, rssMb, summary } from '../lib/stats.mjs';

export const L7_RATES = [500, 1000, 5000];
/** The fixed rate at which cost (vCPU and MB per 1 000 req/s) is taken. */
export const COST_RATE = 1000;

export const PROTOCOLS = [
  {
    key: 'h1',
    label: 'HTTP/1.1',
    closedTest: 'HTTP/1.1 closed loop (50 conns)',
    closed: { mode: 'rps', connections: 50 },
    rate: { mode: 'rate', connections: 50 },
  },
  {
    key: 'h2c',
    label: 'h2c',
    closedTest: 'h2c closed loop (5 conns × 10 streams)',
    closed: { mode: 'h2rps', connections: 5, streams: 10 },
    rate: { mode: 'h2rate', connections: 5 },
  },
];
export const rateTest = (proto, rate) => `${proto.label} @ ${rate} req/s`;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until the path answers 200 for REQUEST_PATH (the waypoint needs its config and certificate). */
async function ready(p, proto, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  for (;;) {
    try {
      const r = await loadgen({
        mode: 'probe',
        h2: proto.key === 'h2c',
        path: REQUEST_PATH,
        ...p.target(proto.key),
      });
      if (r.status === 200) return;
      last = `status ${r.status}`;
    } catch (err) {
      last = err.message;
    }
    if (Date.now() > deadline)
      throw new Error(`${p.name} (${proto.label}) never answered 200 for ${REQUEST_PATH}: ${last}`);
    await sleep(300);
  }
}

export async function runL7(topo, { runs, timing, rates = L7_RATES, settleMaxMs = 20_000 }) {
  const measurements = [];
  const latency = [];
  const cost = [];
  const paths = topo.paths;

  /**
   * Waits until the path's processes are idle again (under 8 % of a core over 250 ms, at most
   * settleMaxMs): a run the path could not keep up with leaves work queued in it, which must not be
   * charged to the next run. Returns how long that took, in ms.
   */
  const settle = async (procs) => {
    const t0 = Date.now();
    if (!procs.length) return 0;
    while (Date.now() - t0 < settleMaxMs) {
      const before = await Promise.all(procs.map(([, pid]) => cpuSeconds(pid)));
      await sleep(250);
      const after = await Promise.all(procs.map(([, pid]) => cpuSeconds(pid)));
      if (after.reduce((a, b) => a + b, 0) - before.reduce((a, b) => a + b, 0) <= 0.02) break;
    }
    return Date.now() - t0;
  };

  /** One loadgen run with CPU (utime+stime) and peak RSS (sampled every 200 ms) of every process of the path. */
  const once = async (p, opts) => {
    const procs = p.procs().filter(([, pid]) => pid);
    const peak = procs.map(() => 0);
    const sample = async () => {
      const v = await Promise.all(procs.map(([, pid]) => rssMb(pid)));
      v.forEach((x, j) => (peak[j] = Math.max(peak[j], x)));
    };
    const sampler = setInterval(sample, 200);
    const before = await Promise.all(procs.map(([, pid]) => cpuSeconds(pid)));
    const backendBefore = await cpuSeconds(topo.backendPid);
    const t0 = Date.now();
    let r;
    try {
      r = await loadgen({ ...timing, ...opts, path: REQUEST_PATH });
    } catch (err) {
      // A run that fails (the path refused the connection, the load generator died) counts as
      // 0 req/s with its reason; the suite goes on.
      progress(`${p.name}: run failed (${err.message})`);
      r = { rps: 0, failed: err.message, loadgenCpuSec: 0 };
    } finally {
      clearInterval(sampler);
    }
    const secs = (Date.now() - t0) / 1000;
    const after = await Promise.all(procs.map(([, pid]) => cpuSeconds(pid)));
    r.backendVcpu = ((await cpuSeconds(topo.backendPid)) - backendBefore) / secs;
    await sample();
    r.wallSec = secs;
    r.processes = procs.map(([role, pid], j) => ({
      role,
      pid,
      cpuSec: after[j] - before[j],
      vcpu: (after[j] - before[j]) / secs,
      rssMb: peak[j],
    }));
    r.loadgenVcpu = r.loadgenCpuSec / secs;
    r.loadAvg = loadavg()[0]; // other work on the machine (1-minute load average after the run)
    r.settleMs = await settle(procs);
    return r;
  };

  const measure = async (p, proto, test, opts, extra = {}) => {
    const results = [];
    for (let i = 0; i < runs; i++) {
      progress(`${p.name}: ${test} (run ${i + 1}/${runs})`);
      results.push(await once(p, { ...opts, ...p.target(proto.key) }));
    }
    const values = results.map((r) => r.rps);
    const roles = [...new Set(results.flatMap((r) => r.processes.map((x) => x.role)))];
    const ok = results.filter((r) => !r.failed);
    const ofRole = (r, role) => r.processes.find((x) => x.role === role);
    const m = {
      path: p.name,
      test,
      unit: 'req/s',
      protocol: proto.label,
      ...extra,
      runs: values,
      ...summary(values),
      errors: results.reduce((a, r) => a + (r.errors ?? 0) + (r.unfinished ?? 0), 0),
      failed: results.filter((r) => r.failed).map((r) => r.failed),
      loadgenVcpu: summary(results.map((r) => r.loadgenVcpu)),
      backendVcpu: summary(results.map((r) => r.backendVcpu)),
      loadAvg: summary(results.map((r) => r.loadAvg)),
      settleMs: summary(results.map((r) => r.settleMs)),
      processes: roles.map((role) => ({
        role,
        vcpu: summary(results.filter((r) => ofRole(r, role)).map((r) => ofRole(r, role).vcpu)),
        rssMb: summary(results.filter((r) => ofRole(r, role)).map((r) => ofRole(r, role).rssMb)),
      })),
      raw: results,
    };
    measurements.push(m);
    return { m, results: ok };
  };

  // Per path: the closed loops, then the fixed rates from low to high, both protocols at each, so
  // a rate the path cannot keep up with comes last. Paths with `prepare` (the waypoint) start
  // each in a fresh process: the two rule sets share the waypoint, and an overload must not carry
  // over from one to the other.
  for (const p of paths) {
    try {
      if (p.prepare) {
        progress(`${p.name}: fresh process`);
        await p.prepare();
      }
      for (const proto of PROTOCOLS) await ready(p, proto);
    } catch (err) {
      progress(`${p.name}: skipped (${err.message})`);
      topo.events?.push(`${p.name}: skipped, not ready (${err.message})`);
      continue;
    }
    const idle = new Map();
    for (const [role, pid] of p.procs()) if (pid) idle.set(role, await rssMb(pid));
    for (const proto of PROTOCOLS) await measure(p, proto, proto.closedTest, proto.closed);
    for (const rate of rates)
      for (const proto of PROTOCOLS) {
        const test = rateTest(proto, rate);
        const { results } = await measure(p, proto, test, { ...proto.rate, rate }, { rate });
        if (!results.length) continue; // every run failed: the measurement says why
        latency.push({
          path: p.name,
          test,
          protocol: proto.label,
          rate,
          p50: summary(results.map((r) => r.p50)),
          p90: summary(results.map((r) => r.p90)),
          p99: summary(results.map((r) => r.p99)),
          p999: summary(results.map((r) => r.p999)),
        });
        if (rate !== COST_RATE || p.kind === 'baseline') continue;
        // Cost per process, normalised to exactly 1 000 req/s achieved (as the cost suite does).
        const ofRole = (r, role) => r.processes.find((x) => x.role === role) ?? { vcpu: NaN, rssMb: NaN };
        results[0].processes.forEach(({ role }) =>
          cost.push({
            path: p.name,
            protocol: proto.label,
            process: role,
            vcpuPer1kRps: summary(results.map((r) => (ofRole(r, role).vcpu * 1000) / Math.max(1, r.rps))),
            rssMbAt1kRps: summary(results.map((r) => ofRole(r, role).rssMb)),
            achievedRps: summary(results.map((r) => r.rps)),
            idleRssMb: idle.get(role) ?? 0,
          }),
        );
      }
  }
  // Tables read by protocol, then rate (closed loop first), then path.
  const rank = (x) => [
    PROTOCOLS.findIndex((q) => q.label === x.protocol),
    x.rate ?? 0,
    paths.findIndex((q) => q.name === x.path),
  ];
  const byRank = (a, b) => {
    const [x, y] = [rank(a), rank(b)];
    return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
  };
  measurements.sort(byRank);
  latency.sort(byRank);
  const pathIndex = (x) => paths.findIndex((q) => q.name === x.path);
  cost.sort((a, b) => pathIndex(a) - pathIndex(b) || byRank(a, b));
  return { measurements, latency, cost, events: topo.events ?? [] };
}
