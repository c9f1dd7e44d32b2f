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

export function targetsMarkdown(r) {
  const t = targets(r);
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
