// Suite l4: the L4 path through two node proxies against direct traffic, C tunnel pairs and, when
// AMBIT_ZTUNNEL_BIN is set, a ztunnel pair.
import { loadgen, PORTS } from '../lib/topology.mjs';
import { cpuSeconds, progress, summary } from '../lib/stats.mjs';

export const RATES = [500, 1000, 5000];

export async function runL4(topo, { runs, timing }) {
  const measurements = [];
  const latency = [];
  const skipped = [];
  const repeat = async (label, fn) => {
    const results = [];
    for (let i = 0; i < runs; i++) {
      progress(`${label} (run ${i + 1}/${runs})`);
      results.push(await fn());
    }
    return results;
  };
  const measure = async (p, test, unit, opts, pick) => {
    const pids = p.pids().filter(Boolean);
    const results = await repeat(`${p.name}: ${test}`, async () => {
      const before = await Promise.all(pids.map(cpuSeconds));
      const r = await loadgen({ ...timing, ...opts, ...p.target(opts.port) });
      const after = await Promise.all(pids.map(cpuSeconds));
      r.proxyCpuSec = after.reduce((a, b) => a + b, 0) - before.reduce((a, b) => a + b, 0);
      return r;
    });
    const values = results.map(pick);
    measurements.push({ path: p.name, test, unit, runs: values, ...summary(values), raw: results });
    return results;
  };
  for (const p of topo.paths) {
    // A path started only while measured (the ztunnel pairs); one that fails to start is left
    // out with the reason, as a missing peer is.
    try {
      await p.activate?.();
    } catch (err) {
      progress(`${p.name}: skipped (${err.message})`);
      skipped.push({ path: p.name, reason: err.message });
      continue;
    }
    try {
      await measurePath(p);
    } finally {
      await p.deactivate?.();
    }
  }
  return { measurements, latency, skipped };

  async function measurePath(p) {
    await measure(
      p,
      'bulk 1 stream',
      'MiB/s',
      { mode: 'bulk', port: PORTS.source, streams: 1 },
      (r) => r.bytesPerSec / 1048576,
    );
    await measure(
      p,
      'bulk 8 streams',
      'MiB/s',
      { mode: 'bulk', port: PORTS.source, streams: 8 },
      (r) => r.bytesPerSec / 1048576,
    );
    await measure(
      p,
      'http 50 conns (closed loop)',
      'req/s',
      { mode: 'rps', port: PORTS.http, connections: 50 },
      (r) => r.rps,
    );
    await measure(
      p,
      'new connections',
      'conn/s',
      { mode: 'newconn', port: PORTS.http, concurrency: 20 },
      (r) => r.connPerSec,
    );
    for (const rate of RATES) {
      const results = await measure(
        p,
        `http @ ${rate} req/s`,
        'req/s',
        { mode: 'rate', port: PORTS.http, connections: 50, rate },
        (r) => r.rps,
      );
      latency.push({
        path: p.name,
        test: `http @ ${rate} req/s`,
        p50: summary(results.map((r) => r.p50)),
        p90: summary(results.map((r) => r.p90)),
        p99: summary(results.map((r) => r.p99)),
        p999: summary(results.map((r) => r.p999)),
      });
    }
  }
}
