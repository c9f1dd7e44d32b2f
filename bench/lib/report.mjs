// Markdown tables and the targets check for benchmark results.

const fmt = (s, digits = 1) =>
  `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`;

export function l4Markdown(r) {
  const paths = [...new Set(r.measurements.map((m) => m.path))];
  const tests = [...new Set(r.measurements.filter((m) => !m.test.startsWith('http @')).map((m) => m.test))];
  const lines = [`| test | ${paths.join(' | ')} |`, `|---|${paths.map(() => '---').join('|')}|`];
  for (const t of tests) {
    const cells = paths.map((p) => {
      const m = r.measurements.find((x) => x.path === p && x.test === t);
      return m ? `${fmt(m, m.unit === 'MiB/s' ? 0 : 0)} ${m.unit}` : '–';
    });
    lines.push(`| ${t} | ${cells.join(' | ')} |`);
  }
  lines.push(
    '',
    'Latency at fixed request rates (open loop over 50 keep-alive connections; ms, measured from the scheduled send time):',
    '',
  );
  lines.push('| rate | path | achieved req/s | p50 | p90 | p99 | p99.9 |', '|---|---|---|---|---|---|---|');
  for (const l of r.latency) {
    const m = r.measurements.find((x) => x.path === l.path && x.test === l.test);
    lines.push(
      `| ${l.test.replace('http @ ', '')} | ${l.path} | ${m ? m.median.toFixed(0) : '–'} | ${fmt(l.p50, 2)} | ${fmt(l.p90, 2)} | ${fmt(l.p99, 2)} | ${fmt(l.p999, 2)} |`,
    );
  }
  return lines.join('\n');
}

export function costMarkdown(r) {
  const lines = [
    "Cost per proxy role at a fixed 1 000 req/s (HTTP/1.1, 64-byte responses, 50 connections): the pair's proxy processes summed and halved (each path is a client-side and a server-side proxy, whatever number of processes each end runs), normalised to exactly 1 000 req/s achieved. Helpers that are not one of the two ends are listed apart and not charged:",
    '',
    '| path | vCPU per 1 000 req/s per proxy role | RSS MB at 1 000 req/s per role | idle RSS MB per role | RSS MB per role with idle tunnels | helpers (not charged): vCPU per 1 000 req/s, RSS MB |',
    '|---|---|---|---|---|---|',
  ];
  for (const c of r.cost) {
    const helpers = c.processes?.filter((x) => x.helper) ?? [];
    lines.push(
      `| ${c.path} | ${fmt(c.vcpuPer1kRps, 3)} | ${fmt(c.rssMbAt1kRps, 0)} | ${c.idleRssMb.toFixed(0)} | ${c.rssMbWithIdleTunnels !== undefined ? `${c.rssMbWithIdleTunnels.toFixed(0)} (${c.idleTunnels} tunnels)` : '–'} | ${helpers.length ? helpers.map((h) => `${h.role}: ${h.vcpuPer1kRps.median.toFixed(3)}, ${h.rssMbAt1kRps.median.toFixed(0)}`).join('; ') : '–'} |`,
    );
  }
  lines.push(
    '',
    'Every process (medians over the runs; vCPU per 1 000 req/s of that process alone):',
    '',
    '| path | pid | role | charged to the proxy role | vCPU per 1 000 req/s | RSS MB at 1 000 req/s | idle RSS MB |',
    '|---|---|---|---|---|---|---|',
  );
  for (const c of r.cost)
    for (const x of c.processes ?? [])
      lines.push(
        `| ${c.path} | ${x.pid} | ${x.role} | ${x.helper ? 'no (helper)' : 'yes'} | ${fmt(x.vcpuPer1kRps, 3)} | ${fmt(x.rssMbAt1kRps, 0)} | ${x.idleRssMb.toFixed(0)} |`,
      );
  return lines.join('\n');
}

/**
 * ambit next to each ztunnel pair measured in the same run (issue 15): the figure and ambit ÷ ztunnel
 * for every L4 test, the added p99 at 1 000 req/s, and the cost per proxy role. No goals: Istio's
 * own node proxy is the reference, not a threshold. Empty when no ztunnel pair ran.
 */
/** A figure for the comparison tables: '–' when missing, fewer decimals as it grows. */
const v = (x) =>
  x === undefined ? '–' : Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(2) : x.toFixed(3);

/** a ÷ b as "1.23×"; no ratio for a missing figure or one at or below zero (an added latency can be, in a noisy run). */
const div = (a, b) =>
  a === undefined || b === undefined || !(a > 0 && b > 0) ? '–' : `${(a / b).toFixed(2)}×`;

export function ztunnelComparisonMarkdown(r) {
  const zts = [
    ...new Set(
      [...r.measurements.map((m) => m.path), ...r.cost.map((c) => c.path)].filter((p) =>
        p.startsWith('ztunnel'),
      ),
    ),
  ];
  if (!zts.length) return '';
  const rows = [];
  const tests = [...new Set(r.measurements.filter((m) => !m.test.startsWith('http @')).map((m) => m.test))];
  for (const t of tests) {
    const unit = r.measurements.find((m) => m.test === t)?.unit ?? '';
    rows.push([`${t} (${unit}, higher is better)`, meas(r, 'ambit', t), zts.map((z) => meas(r, z, t))]);
  }
  const addedP99 = (p, ref) => {
    const a = lat(r, p, 'http @ 1000 req/s');
    const d = lat(r, ref, 'http @ 1000 req/s');
    return a !== undefined && d !== undefined ? a - d : undefined;
  };
  // ztunnel's baseline is direct traffic over the same veth, ambit's over loopback.
  if (r.latency.length)
    rows.push([
      'added p99 at 1 000 req/s over its direct path (ms, lower is better)',
      addedP99('ambit', 'direct'),
      zts.map((z) => addedP99(z, 'direct (netns, veth)')),
    ]);
  const cost = (p, k) => r.cost.find((c) => c.path === p)?.[k]?.median;
  if (r.cost.length) {
    rows.push([
      'vCPU per 1 000 req/s per proxy role (lower is better)',
      cost('ambit', 'vcpuPer1kRps'),
      zts.map((z) => cost(z, 'vcpuPer1kRps')),
    ]);
    rows.push([
      'RSS MB per role at 1 000 req/s (lower is better)',
      cost('ambit', 'rssMbAt1kRps'),
      zts.map((z) => cost(z, 'rssMbAt1kRps')),
    ]);
  }
  return [
    'ambit next to ztunnel (same run, medians):',
    '',
    `| figure | ambit | ${zts.map((z) => `${z} | ambit ÷ ${z.replace('ztunnel pair, ', 'ztunnel ')}`).join(' | ')} |`,
    `|---|---|${zts.map(() => '---|---').join('|')}|`,
    ...rows.map(
      ([name, a, zs]) => `| ${name} | ${v(a)} | ${zs.map((z) => `${v(z)} | ${div(a, z)}`).join(' | ')} |`,
    ),
  ].join('\n');
}

/** The C tunnel pairs of the l4 and cost suites, in the order their columns appear. */
export const C_PAIRS = ['stunnel pair', 'nghttpx pair', 'haproxy pair'];

/**
 * ambit ÷ each C pair measured in the same run (issue 16: the haproxy pair joined stunnel and
 * nghttpx): every L4 test, the added p99 at 1 000 req/s over direct, and the cost per proxy role.
 * Above 1× is better for ambit on a "higher is better" row and worse on a "lower is better" one.
 * Empty when no C pair ran.
 */
export function peerComparisonMarkdown(r) {
  const present = new Set([...r.measurements.map((m) => m.path), ...r.cost.map((c) => c.path)]);
  const pairs = C_PAIRS.filter((p) => present.has(p));
  if (!pairs.length) return '';
  const rows = [];
  for (const t of [
    ...new Set(r.measurements.filter((m) => !m.test.startsWith('http @')).map((m) => m.test)),
  ]) {
    const unit = r.measurements.find((m) => m.test === t)?.unit ?? '';
    rows.push([`${t} (${unit}, higher is better)`, (p) => meas(r, p, t)]);
  }
  if (r.latency.length)
    rows.push([
      'added p99 at 1 000 req/s over direct (ms, lower is better)',
      (p) => {
        const a = lat(r, p, 'http @ 1000 req/s');
        const d = lat(r, 'direct', 'http @ 1000 req/s');
        return a !== undefined && d !== undefined ? a - d : undefined;
      },
    ]);
  const cost = (p, k) => r.cost.find((c) => c.path === p)?.[k]?.median;
  if (r.cost.length) {
    rows.push(['vCPU per 1 000 req/s per proxy role (lower is better)', (p) => cost(p, 'vcpuPer1kRps')]);
    rows.push(['RSS MB per role at 1 000 req/s (lower is better)', (p) => cost(p, 'rssMbAt1kRps')]);
  }
  return [
    'ambit next to the C tunnel pairs (same run, medians):',
    '',
    `| figure | ambit | ${pairs.map((p) => `${p} | ambit ÷ ${p.replace(' pair', '')}`).join(' | ')} |`,
    `|---|---|${pairs.map(() => '---|---').join('|')}|`,
    ...rows.map(([name, get]) => {
      const a = get('ambit');
      return `| ${name} | ${v(a)} | ${pairs.map((p) => `${v(get(p))} | ${div(a, get(p))}`).join(' | ')} |`;
    }),
  ].join('\n');
}

/** Paths left out of a run, each with the reason (a peer that failed to start, nothing got through). */
export function skippedMarkdown(r) {
  const s = r.skipped ?? [];
  if (!s.length) return '';
  return ['Left out of this run:', '', ...s.map((x) => `- ${x.path}: ${x.reason}`)].join('\n');
}

const meas = (r, path, test) => r.measurements.find((m) => m.path === path && m.test === test)?.median;
const lat = (r, path, test) => r.latency.find((l) => l.path === path && l.test === test)?.p99.median;

/** The benchmark issue's targets, each with the measured ratio and PASS/MISS (or "n/a" when a peer is missing). */
export function targets(r) {
  const out = [];
  const ratio = (name, a, b, goal, higherIsBetter = true) => {
    const lowerIsBetter = !higherIsBetter;
    if (a === undefined || b === undefined || b === 0)
      return out.push({ name, value: 'n/a', goal, ok: undefined, lowerIsBetter });
    const v = a / b;
    out.push({
      name,
      value: `${v.toFixed(2)}×`,
      goal,
      ok: higherIsBetter ? v >= goal : v <= goal,
      lowerIsBetter,
    });
  };
  if (r.measurements.length) {
    ratio(
      'L4 throughput vs stunnel pair',
      meas(r, 'ambit', 'bulk 1 stream'),
      meas(r, 'stunnel pair', 'bulk 1 stream'),
      0.6,
    );
    ratio(
      'L4 throughput vs nghttpx pair',
      meas(r, 'ambit', 'bulk 1 stream'),
      meas(r, 'nghttpx pair', 'bulk 1 stream'),
      1.0,
    );
    ratio(
      'small requests (50 conns) vs stunnel pair',
      meas(r, 'ambit', 'http 50 conns (closed loop)'),
      meas(r, 'stunnel pair', 'http 50 conns (closed loop)'),
      0.8,
    );
    const direct = lat(r, 'direct', 'http @ 1000 req/s');
    const added = (p) =>
      lat(r, p, 'http @ 1000 req/s') !== undefined && direct !== undefined
        ? Math.max(0.001, lat(r, p, 'http @ 1000 req/s') - direct)
        : undefined;
    ratio('added p99 at 1 000 req/s vs stunnel pair', added('ambit'), added('stunnel pair'), 1.2, false);
    ratio(
      'new tunnels/s vs stunnel pair',
      meas(r, 'ambit', 'new connections'),
      meas(r, 'stunnel pair', 'new connections'),
      3,
    );
  }
  const c = r.cost.find((x) => x.path === 'ambit');
  if (c) {
    // Issue 16: per proxy role, against the C proxy doing the same HTTP/2 CONNECT work.
    ratio(
      'node proxy vCPU per 1 000 req/s per role vs nghttpx pair',
      c.vcpuPer1kRps.median,
      r.cost.find((x) => x.path === 'nghttpx pair')?.vcpuPer1kRps.median,
      1.3,
      false,
    );
    out.push({
      name: 'node proxy vCPU per 1 000 req/s',
      value: c.vcpuPer1kRps.median.toFixed(3),
      goal: '≤ 0.05',
      ok: c.vcpuPer1kRps.median <= 0.05,
    });
    out.push({
      name: 'node proxy MB per 1 000 req/s (RSS at that load)',
      value: c.rssMbAt1kRps.median.toFixed(0),
      goal: '≤ 12',
      ok: c.rssMbAt1kRps.median <= 12,
    });
  }
  return out;
}

export function targetsMarkdown(r, t = targets(r)) {
  if (!t.length) return '';
  return [
    '| target | measured | goal | |',
    '|---|---|---|---|',
    ...t.map(
      (x) =>
        `| ${x.name} | ${x.value} | ${typeof x.goal === 'number' ? (x.lowerIsBetter || x.name.includes('added') ? `≤ ${x.goal}×` : `≥ ${x.goal}×`) : x.goal} | ${x.ok === undefined ? 'n/a' : x.ok ? 'met' : '**missed**'} |`,
    ),
  ].join('\n');
}

// ---- l7 suite ----

const num0 = (v) => Math.round(v).toLocaleString('en-US').replace(/,/g, ' ');
const fmt0 = (s) => `${num0(s.median)} (${num0(s.min)}–${num0(s.max)})`;
const ms = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
const fmtMs = (s) => (s ? `${ms(s.median)} (${ms(s.min)}–${ms(s.max)})` : '–');

/** Istio's published waypoint cost (istio.io, Performance and Scalability, ambient). */
export const ISTIO_WAYPOINT = { vcpuPer1kRps: 0.25, mbPer1kRps: 60 };

export function l7Markdown(r) {
  const paths = [...new Set(r.measurements.map((m) => m.path))];
  const closed = r.measurements.filter((m) => m.rate === undefined);
  const tests = [...new Set(closed.map((m) => m.test))];
  const lines = [
    'Maximum requests per second (closed loop; 64-byte responses; median (min–max)):',
    '',
    `| test | ${paths.join(' | ')} |`,
    `|---|${paths.map(() => '---').join('|')}|`,
  ];
  for (const t of tests)
    lines.push(
      `| ${t} | ${paths
        .map((p) => {
          const m = closed.find((x) => x.path === p && x.test === t);
          return m ? fmt0(m) : '–';
        })
        .join(' | ')} |`,
    );
  lines.push(
    '',
    'Where the CPU went at the maximum rate (vCPU = CPU seconds per second, from /proc, medians; the backend and the load generator are their own processes, not charged to any path; the machine has 2 cores and other work ran on it):',
    '',
    '| test | path | per process vCPU | peak RSS MB | backend vCPU | load generator vCPU | machine load average |',
    '|---|---|---|---|---|---|---|',
  );
  for (const m of closed)
    lines.push(
      `| ${m.test} | ${m.path} | ${m.processes.map((x) => `${x.role} ${x.vcpu.median.toFixed(2)}`).join(', ') || '–'} | ${m.processes.map((x) => `${x.role} ${x.rssMb.median.toFixed(0)}`).join(', ') || '–'} | ${m.backendVcpu ? m.backendVcpu.median.toFixed(2) : '–'} | ${m.loadgenVcpu.median.toFixed(2)} | ${m.loadAvg ? m.loadAvg.median.toFixed(1) : '–'} |`,
    );

  lines.push(
    '',
    'Latency at fixed request rates (open loop; HTTP/1.1 over 50 keep-alive connections, h2c over 5; ms; added = path − direct, medians):',
    '',
    '| test | path | achieved req/s | p50 | p90 | p99 | p99.9 | added p50 | added p99 |',
    '|---|---|---|---|---|---|---|---|---|',
  );
  for (const l of r.latency) {
    const m = r.measurements.find((x) => x.path === l.path && x.test === l.test);
    const d = r.latency.find((x) => x.path === 'direct' && x.test === l.test);
    const added = (k) => (d && l.path !== 'direct' ? ms(l[k].median - d[k].median) : '–');
    const short = m && m.median < 0.95 * l.rate ? ' (**short**)' : '';
    lines.push(
      `| ${l.test} | ${l.path} | ${m ? num0(m.median) : '–'}${short} | ${fmtMs(l.p50)} | ${fmtMs(l.p90)} | ${fmtMs(l.p99)} | ${fmtMs(l.p999)} | ${added('p50')} | ${added('p99')} |`,
    );
  }
  lines.push('', l7CostMarkdown(r));
  const slow = r.measurements.filter((m) => m.settleMs && m.settleMs.max > 1000);
  if (slow.length)
    lines.push(
      '',
      `Busy after the load stopped (work left queued in the path; the next run waited until it was idle): ${slow.map((m) => `${m.path} / ${m.test}: up to ${(m.settleMs.max / 1000).toFixed(1)} s`).join('; ')}.`,
    );
  const failed = r.measurements.filter((m) => m.failed?.length);
  if (failed.length)
    lines.push(
      '',
      `Failed runs (counted as 0 req/s): ${failed.map((m) => `${m.path} / ${m.test}: ${m.failed.join('; ')}`).join('; ')}.`,
    );
  if (r.events?.length)
    lines.push(
      '',
      'Errors and exits logged by mesh processes during the run:',
      '',
      ...r.events.map((e) => `- ${e}`),
    );
  const errs = r.measurements.filter((m) => m.errors > 0);
  if (errs.length)
    lines.push(
      '',
      `Non-2xx or unanswered requests: ${errs.map((m) => `${m.path} / ${m.test}: ${m.errors}`).join('; ')}.`,
    );
  return lines.join('\n');
}

export function l7CostMarkdown(r) {
  const lines = [
    `Cost per process at a fixed ${num0(1000)} req/s (CPU seconds from /proc over the whole run, normalised to exactly 1 000 req/s achieved; peak RSS during the run):`,
    '',
    '| path | protocol | process | vCPU per 1 000 req/s | RSS MB at 1 000 req/s | idle RSS MB | achieved req/s |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const c of r.cost) {
    // Normalising a rate the path did not reach overstates its cost per request: say so.
    const a = c.achievedRps;
    const achieved = a
      ? `${num0(a.median)}${a.median < 950 ? ' (**short**: the path did not keep up)' : ''}`
      : '–';
    lines.push(
      `| ${c.path} | ${c.protocol} | ${c.process} | ${fmt(c.vcpuPer1kRps, 3)} | ${fmt(c.rssMbAt1kRps, 0)} | ${c.idleRssMb.toFixed(0)} | ${achieved} |`,
    );
  }
  lines.push(
    `| Istio waypoint (Envoy), as published | HTTP | waypoint | ${ISTIO_WAYPOINT.vcpuPer1kRps} | ${ISTIO_WAYPOINT.mbPer1kRps} | – | 1 000 |`,
  );
  return lines.join('\n');
}

/** The l7 targets: waypoint ≥ 0.5× haproxy's req/s; waypoint cost next to Istio's published one. */
export function l7Targets(r) {
  const out = [];
  const closed = r.measurements.filter((m) => m.rate === undefined);
  for (const test of [...new Set(closed.map((m) => m.test))])
    for (const rules of ['1 rule', '1 000 rules']) {
      const w = closed.find((m) => m.test === test && m.path === `ambit waypoint, ${rules}`)?.median;
      const h = closed.find((m) => m.test === test && m.path === `haproxy, ${rules}`)?.median;
      const name = `waypoint req/s vs haproxy, ${test}, ${rules}`;
      if (w === undefined || !h) out.push({ name, value: 'n/a', goal: 0.5, ok: undefined });
      else out.push({ name, value: `${(w / h).toFixed(2)}×`, goal: 0.5, ok: w / h >= 0.5 });
    }
  for (const proto of ['HTTP/1.1', 'h2c']) {
    const c = r.cost.find(
      (x) => x.path === 'ambit waypoint, 1 rule' && x.protocol === proto && x.process === 'waypoint',
    );
    if (!c) continue;
    out.push({
      name: `waypoint process vCPU per 1 000 req/s (${proto}) vs Istio's`,
      value: c.vcpuPer1kRps.median.toFixed(3),
      goal: `≤ ${ISTIO_WAYPOINT.vcpuPer1kRps}`,
      ok: c.vcpuPer1kRps.median <= ISTIO_WAYPOINT.vcpuPer1kRps,
    });
    out.push({
      name: `waypoint process MB at 1 000 req/s (${proto}) vs Istio's`,
      value: c.rssMbAt1kRps.median.toFixed(0),
      goal: `≤ ${ISTIO_WAYPOINT.mbPer1kRps}`,
      ok: c.rssMbAt1kRps.median <= ISTIO_WAYPOINT.mbPer1kRps,
    });
  }
  return out;
}
