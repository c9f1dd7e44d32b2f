// The cost suite's accounting, kept pure so it can be tested on a made-up process table: how the
// CPU and memory of a path's processes become "vCPU and MB per proxy role per 1 000 req/s".
//
// The rule (issue 16): a path is a pair of proxies, one on each end of the tunnel, so the cost of
// one proxy role is the pair's total ÷ 2, whatever number of processes each end happens to run
// (nghttpx runs an idle master beside each worker; ztunnel is one process per end with threads).
// Dividing by the process count instead made a five-process pair look cheaper than it is.
// Helpers that are not one of the two ends (tinyproxy, the last CONNECT hop the nghttpx pair
// needs; the CA a ztunnel pair asks for its certificates) are listed and summed apart, never
// charged to the proxy role.

/** The two ends of a tunnel: every L4 path in the suite is a client-side and a server-side proxy. */
export const ENDS = 2;

/**
 * One measured run of one path.
 * @param {{ processes: { pid: number, role: string, helper?: boolean, cpuSec: number, rssMb: number }[],
 *           seconds: number, achievedRps: number, ends?: number }} run
 *   `cpuSec`: CPU seconds (utime + stime) the process spent during the run; `seconds`: the run's
 *   wall-clock length; `achievedRps`: 2xx responses per second the load generator completed.
 * @returns {{ perRole: { vcpuPer1kRps: number, rssMb: number }, helpers: { vcpuPer1kRps: number, rssMb: number },
 *             processes: { pid: number, role: string, helper: boolean, vcpu: number, vcpuPer1kRps: number, rssMb: number }[] }}
 */
export function accountRun({ processes, seconds, achievedRps, ends = ENDS }) {
  if (!(seconds > 0)) throw new RangeError(`run length must be positive (got ${seconds})`);
  // Normalising by a rate of (almost) nothing would turn idle CPU into an enormous per-request
  // cost: refuse rather than publish it.
  if (!(achievedRps > 0)) throw new RangeError(`no request completed (achieved ${achievedRps} req/s)`);
  if (!Number.isInteger(ends) || ends < 1)
    throw new RangeError(`ends must be a positive integer (got ${ends})`);
  const proxies = processes.filter((p) => !p.helper);
  if (!proxies.length) throw new RangeError('a path needs at least one proxy process');
  const seen = new Set();
  const rows = processes.map((p) => {
    if (seen.has(p.pid)) throw new RangeError(`pid ${p.pid} listed twice`);
    seen.add(p.pid);
    // A negative CPU delta means the pid now names another process (the proxy restarted).
    if (!(p.cpuSec >= 0))
      throw new RangeError(`pid ${p.pid} (${p.role}): CPU time went backwards (${p.cpuSec} s)`);
    const vcpu = p.cpuSec / seconds;
    return {
      pid: p.pid,
      role: p.role,
      helper: Boolean(p.helper),
      vcpu,
      vcpuPer1kRps: (vcpu * 1000) / achievedRps,
      rssMb: p.rssMb,
    };
  });
  const sum = (xs, k) => xs.reduce((a, x) => a + x[k], 0);
  const proxyRows = rows.filter((r) => !r.helper);
  const helperRows = rows.filter((r) => r.helper);
  return {
    perRole: { vcpuPer1kRps: sum(proxyRows, 'vcpuPer1kRps') / ends, rssMb: sum(proxyRows, 'rssMb') / ends },
    helpers: { vcpuPer1kRps: sum(helperRows, 'vcpuPer1kRps'), rssMb: sum(helperRows, 'rssMb') },
    processes: rows,
  };
}

/** Idle memory of one proxy role: the pair's proxy processes' RSS ÷ ends (helpers apart). */
export function idlePerRole(processes, ends = ENDS) {
  const proxies = processes.filter((p) => !p.helper);
  return {
    perRole: proxies.reduce((a, p) => a + p.rssMb, 0) / ends,
    helpers: processes.filter((p) => p.helper).reduce((a, p) => a + p.rssMb, 0),
  };
}
