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
    "Cost per proxy process (a pair's two ends averaged), at a fixed 1 000 req/s (HTTP/1.1, 64-byte responses, 50 connections):",
    '',
    '| path | vCPU per 1 000 req/s | RSS MB at 1 000 req/s | idle RSS MB | RSS MB with idle tunnels |',
    '|---|---|---|---|---|',
  ];
  for (const c of r.cost) {
    lines.push(
      `| ${c.path} | ${fmt(c.vcpuPer1kRps, 3)} | ${fmt(c.rssMbAt1kRps, 0)} | ${c.idleRssMb.toFixed(0)} | ${c.rssMbWithIdleTunnels !== undefined ? `${c.rssMbWithIdleTunnels.toFixed(0)} (${c.idleTunnels} tunnels)` : '–'} |`,
    );
  }
  return lines.join('\n');
}

const meas = (r, path, test) => r.measurements.find((m) => m.path === path && m.test === test)?.median;
const lat = (r, path, test) => r.latency.find((l) => l.path === path && l.test === test)?.p99.median;

/** The benchmark issue's targets, each with the measured ratio and PASS/MISS (or "n/a" when a peer is missing). */
export function targets(r) {
  const out = [];
  const ratio = (name, a, b, goal, higherIsBetter = true) => {
    if (a === undefined || b === undefined || b === 0)
      return out.push({ name, value: 'n/a', goal, ok: undefined });
    const v = a / b;
    out.push({ name, value: `${v.toFixed(2)}×`, goal, ok: higherIsBetter ? v >= goal : v <= goal });
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
        `| ${x.name} | ${x.value} | ${typeof x.goal === 'number' ? (x.name.includes('added') ? `≤ ${x.goal}×` : `≥ ${x.goal}×`) : x.goal} | ${x.ok === undefined ? 'n/a' : x.ok ? 'met' : '**missed**'} |`,
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
