// Suite cost: what a proxy costs, expressed as Istio publishes it (vCPU and MB per 1 000 req/s),
// plus idle memory and memory with many open idle tunnels.
import { loadgen, PORTS } from '../lib/topology.mjs';
import { cpuSeconds, progress, rssMb, summary } from '../lib/stats.mjs';

export async function runCost(topo, { runs, timing, quick }) {
  const cost = [];
  const idleTunnels = quick ? 1000 : 10_000;
  for (const p of topo.paths.filter((x) => x.kind !== 'baseline')) {
    // Only the processes that carry the HTTP target count for this path.
    const pids = (p.pidsFor ? p.pidsFor(PORTS.http) : p.pids()).filter(Boolean);
    const idleRss = await Promise.all(pids.map(rssMb));
    const vcpu = [];
    const rss = [];
    for (let i = 0; i < runs; i++) {
      progress(`${p.name}: cost at 1000 req/s (run ${i + 1}/${runs})`);
      const before = await Promise.all(pids.map(cpuSeconds));
      const t0 = Date.now();
      const r = await loadgen({
        ...timing,
        ...p.target(PORTS.http),
        mode: 'rate',
        connections: 50,
        rate: 1000,
      });
      const secs = (Date.now() - t0) / 1000;
      const after = await Promise.all(pids.map(cpuSeconds));
      const perProc = after.map((a, j) => (a - before[j]) / secs);
      // Per proxy (the two ends of a pair averaged), normalised to exactly 1 000 req/s achieved.
      const perProxy = perProc.reduce((a, b) => a + b, 0) / pids.length;
      vcpu.push((perProxy * 1000) / Math.max(1, r.rps));
      rss.push((await Promise.all(pids.map(rssMb))).reduce((a, b) => a + b, 0) / pids.length);
    }
    let tunnelRss;
    if (p.kind === 'ambit') {
      progress(`${p.name}: RSS with ${idleTunnels} idle tunnels`);
      const holdPids = p.pids().filter(Boolean);
      tunnelRss = await new Promise((resolve, reject) => {
        loadgen({
          ...p.target(PORTS.hold),
          mode: 'idle',
          count: idleTunnels,
          onOpen: async (_info, release) => {
            await new Promise((r) => setTimeout(r, 1000));
            const v = await Promise.all(holdPids.map(rssMb));
            release();
            resolve(v.reduce((a, b) => a + b, 0) / v.length);
          },
        }).catch(reject);
      });
    }
    cost.push({
      path: p.name,
      processes: pids.length,
      vcpuPer1kRps: summary(vcpu),
      rssMbAt1kRps: summary(rss),
      idleRssMb: idleRss.reduce((a, b) => a + b, 0) / Math.max(1, idleRss.length),
      ...(tunnelRss !== undefined ? { idleTunnels, rssMbWithIdleTunnels: tunnelRss } : {}),
    });
  }
  return { cost };
}
