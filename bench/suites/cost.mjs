// Suite cost: what a proxy costs, expressed as Istio publishes it (vCPU and MB per 1 000 req/s),
// plus idle memory and memory with many open idle tunnels. Per proxy role: the pair's two ends
// summed and halved, every process listed, helpers apart (lib/cost-accounting.mjs).
import { loadgen, PORTS } from '../lib/topology.mjs';
import { accountRun, idlePerRole } from '../lib/cost-accounting.mjs';
import { cpuSeconds, progress, rssMb, summary } from '../lib/stats.mjs';

export async function runCost(topo, { runs, timing, quick }) {
  const cost = [];
  const skipped = [];
  const idleTunnels = quick ? 1000 : 10_000;
  for (const p of topo.paths.filter((x) => x.kind !== 'baseline')) {
    try {
      await p.activate?.();
    } catch (err) {
      progress(`${p.name}: skipped (${err.message})`);
      skipped.push({ path: p.name, reason: err.message });
      continue;
    }
    try {
      cost.push(await costOf(p));
    } catch (err) {
      // A path that got nothing through has no cost per request: say so instead of a figure.
      progress(`${p.name}: no cost figures (${err.message})`);
      skipped.push({ path: p.name, reason: err.message });
    } finally {
      await p.deactivate?.();
    }
  }
  return { cost, skipped };

  async function costOf(p) {
    // Only the processes that carry the HTTP target count for this path.
    const procs = p.processes(PORTS.http).filter((x) => x.pid);
    const withRss = async () => Promise.all(procs.map(async (x) => ({ ...x, rssMb: await rssMb(x.pid) })));
    const idle = await withRss();
    const accounted = [];
    for (let i = 0; i < runs; i++) {
      progress(`${p.name}: cost at 1000 req/s (run ${i + 1}/${runs})`);
      const before = await Promise.all(procs.map((x) => cpuSeconds(x.pid)));
      const t0 = Date.now();
      const r = await loadgen({
        ...timing,
        ...p.target(PORTS.http),
        mode: 'rate',
        connections: 50,
        rate: 1000,
      });
      const seconds = (Date.now() - t0) / 1000;
      const after = await Promise.all(procs.map((x) => cpuSeconds(x.pid)));
      const rss = await withRss();
      // Normalised to exactly 1 000 req/s achieved (accountRun refuses a run where nothing got through).
      accounted.push({
        achievedRps: r.rps,
        ...accountRun({
          processes: rss.map((x, j) => ({ ...x, cpuSec: after[j] - before[j] })),
          seconds,
          achievedRps: r.rps,
        }),
      });
    }
    let tunnelRss;
    if (p.idleTunnels) {
      progress(`${p.name}: RSS with ${idleTunnels} idle tunnels`);
      const holdProcs = p.processes(PORTS.hold).filter((x) => x.pid);
      tunnelRss = await new Promise((resolve, reject) => {
        loadgen({
          ...p.target(PORTS.hold),
          mode: 'idle',
          count: idleTunnels,
          onOpen: async (_info, release) => {
            await new Promise((r) => setTimeout(r, 1000));
            const v = await Promise.all(holdProcs.map(async (x) => ({ ...x, rssMb: await rssMb(x.pid) })));
            release();
            resolve(idlePerRole(v).perRole);
          },
        }).catch(reject);
      });
    }
    const idleRole = idlePerRole(idle);
    return {
      path: p.name,
      // Per proxy role (pair total ÷ 2, helpers excluded), as Istio quotes ztunnel's cost.
      vcpuPer1kRps: summary(accounted.map((a) => a.perRole.vcpuPer1kRps)),
      rssMbAt1kRps: summary(accounted.map((a) => a.perRole.rssMb)),
      idleRssMb: idleRole.perRole,
      achievedRps: summary(accounted.map((a) => a.achievedRps)),
      helpers: {
        vcpuPer1kRps: summary(accounted.map((a) => a.helpers.vcpuPer1kRps)),
        rssMbAt1kRps: summary(accounted.map((a) => a.helpers.rssMb)),
        idleRssMb: idleRole.helpers,
      },
      // Every process, with its role and whether it was charged to the proxy role.
      processes: procs.map((x, j) => ({
        pid: x.pid,
        role: x.role,
        helper: Boolean(x.helper),
        vcpuPer1kRps: summary(accounted.map((a) => a.processes[j].vcpuPer1kRps)),
        rssMbAt1kRps: summary(accounted.map((a) => a.processes[j].rssMb)),
        idleRssMb: idle[j].rssMb,
      })),
      ...(tunnelRss !== undefined ? { idleTunnels, rssMbWithIdleTunnels: tunnelRss } : {}),
    };
  }
}
