#!/usr/bin/env node
// `npm run bench -- [l4|cost|l7|controlplane|all] [--quick] [--out FILE] [--no-peers] [--only a,b]`
// (--only: l4/cost paths whose names contain one of the parts, e.g. `--only ztunnel`; direct always)
// AMBIT_ZTUNNEL_BIN=/path/to/ztunnel adds the ztunnel pairs to l4 and cost (bench/lib/ztunnel.mjs).
// `npm run bench -- soak [--minutes N] [--out FILE]` (bench/soak.mjs; never part of `all`)
// Benchmarks on loopback; every measurement repeated (median, min–max), every run bounded in
// time. Results: bench/results/<date>-<suite>.{json,md,png} (or --out FILE for the JSON).
import { spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startTopology } from './lib/topology.mjs';
import { progress } from './lib/stats.mjs';
import { runL4 } from './suites/l4.mjs';
import { runCost } from './suites/cost.mjs';
import { runL7, L7_RATES } from './suites/l7.mjs';
import { startL7Topology } from './lib/l7-topology.mjs';
import {
  l4Markdown,
  costMarkdown,
  targetsMarkdown,
  l7Markdown,
  l7Targets,
  skippedMarkdown,
  ztunnelComparisonMarkdown,
  peerComparisonMarkdown,
} from './lib/report.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const flag = (f) => args.includes(f);
const value = (f) => (args.indexOf(f) >= 0 ? args[args.indexOf(f) + 1] : undefined);
const quick = flag('--quick');
const outFile = value('--out');
const only = value('--only');
const suite = args.find((a, i) => !a.startsWith('--') && !['--out', '--only'].includes(args[i - 1])) ?? 'l4';
const RUNS = 3;
const timing = quick ? { warmupMs: 200, durationMs: 500 } : { warmupMs: 1000, durationMs: 5000 };
const SUITES = ['l4', 'cost', 'l7', 'controlplane', 'all', 'soak'];
if (!SUITES.includes(suite)) {
  console.error(`unknown suite ${suite} (available: ${SUITES.join(', ')})`);
  process.exit(2);
}
if (suite === 'soak') {
  // An hour by default: its own runner, and not in `all` (nor in npm test or CI).
  const r = spawnSync(process.execPath, [path.join(here, 'soak.mjs'), ...args.filter((a) => a !== 'soak')], {
    stdio: 'inherit',
  });
  process.exit(r.status ?? 1);
}

const started = new Date();
const machine = {
  cores: cpus().length,
  cpu: cpus()[0]?.model,
  node: process.version,
  kernel: release(),
  loadAvgAtStart: loadavg()[0],
};
const result = {
  suite,
  started,
  quick,
  machine,
  runs: RUNS,
  timing,
  measurements: [],
  latency: [],
  cost: [],
};
const md = [
  `# ambit benchmarks: ${suite} — ${started.toISOString()}${quick ? ' (quick)' : ''}`,
  '',
  `machine: ${machine.cores} cores (${machine.cpu}), Node ${machine.node}, Linux ${machine.kernel}, load average ${machine.loadAvgAtStart.toFixed(1)} at start${suite === 'l7' ? '.' : `; ${RUNS} runs each, median (min–max); ${timing.durationMs / 1000} s per run after ${timing.warmupMs / 1000} s warm-up.`}`,
  '',
];

if (suite === 'l4' || suite === 'cost' || suite === 'all') {
  const topo = await startTopology({ withPeers: !flag('--no-peers'), only });
  // The ztunnel binary measured (its commit and build, from `ztunnel version`), or why none was.
  result.ztunnel = topo.ztunnel;
  md.push(
    topo.ztunnel.line
      ? `${topo.ztunnel.line}, from \`${topo.ztunnel.bin} version\`.`
      : `ztunnel: not measured (${topo.ztunnel.skip}).`,
    '',
  );
  if (only) md.push(`Paths restricted with --only ${only}.`, '');
  result.skipped = [];
  try {
    if (suite !== 'cost') {
      const l4 = await runL4(topo, { runs: RUNS, timing });
      Object.assign(result, { measurements: l4.measurements, latency: l4.latency });
      result.skipped.push(...l4.skipped.map((x) => ({ ...x, suite: 'l4' })));
    }
    if (suite !== 'l4') {
      const c = await runCost(topo, {
        runs: RUNS,
        timing: quick ? timing : { warmupMs: 1000, durationMs: 10_000 },
        quick,
      });
      result.cost = c.cost;
      result.skipped.push(...c.skipped.map((x) => ({ ...x, suite: 'cost' })));
    }
  } finally {
    await topo.stop();
  }
  if (result.measurements.length) md.push(l4Markdown(result), '');
  if (result.cost.length) md.push(costMarkdown(result), '');
  const peersCmp = peerComparisonMarkdown(result);
  if (peersCmp) md.push(peersCmp, '');
  const cmp = ztunnelComparisonMarkdown(result);
  if (cmp) md.push(cmp, '');
  md.push(targetsMarkdown(result), '');
  const left = skippedMarkdown(result);
  if (left) md.push(left, '');
}
if (suite === 'l7' || suite === 'all') {
  // In `all` the l7 figures go under result.l7 (result.measurements/latency/cost are l4's and
  // cost's); run alone they are the result's own, so the chart and the tests read them as usual.
  // --quick: one run per measurement and the 1 000 req/s rate only, to stay under a minute.
  const t7 = quick ? { warmupMs: 200, durationMs: 400 } : timing;
  const topo = await startL7Topology({ withPeers: !flag('--no-peers') });
  let l7;
  try {
    l7 = await runL7(topo, {
      runs: quick ? 1 : RUNS,
      timing: t7,
      rates: quick ? [1000] : L7_RATES,
      settleMaxMs: quick ? 3000 : 20_000,
    });
  } finally {
    await topo.stop();
  }
  const r7 = { ...result, ...l7, runs: quick ? 1 : RUNS };
  if (suite === 'l7') Object.assign(result, l7, { runs: r7.runs });
  else result.l7 = l7;
  md.push(
    '## l7: HTTP through the waypoint',
    '',
    `${r7.runs} run${r7.runs > 1 ? 's' : ''} each, median (min–max); ${t7.durationMs / 1000} s per run after ${t7.warmupMs / 1000} s warm-up; load average ${loadavg()[0].toFixed(1)} at the end.`,
    '',
    l7Markdown(r7),
    '',
    targetsMarkdown(r7, l7Targets(r7)),
    '',
  );
}
if (suite === 'controlplane' || suite === 'all') {
  progress('controlplane suite (bench/controlplane.mjs)');
  const cpOut = path.join(here, 'results', `.controlplane-${process.pid}.json`);
  await mkdir(path.dirname(cpOut), { recursive: true });
  const r = spawnSync(
    process.execPath,
    [path.join(here, 'controlplane.mjs'), ...(quick ? ['--quick'] : []), '--out', cpOut],
    { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`controlplane suite failed (exit ${r.status})`);
  md.push(r.stdout.trim(), '');
  result.controlplane = JSON.parse(await (await import('node:fs/promises')).readFile(cpOut, 'utf8'));
  await (await import('node:fs/promises')).rm(cpOut, { force: true });
}

const text = md.join('\n');
console.log('\n' + text);
if (outFile) {
  await writeFile(outFile, JSON.stringify(result, null, 2));
} else {
  const base = path.join(
    here,
    'results',
    `${started.toISOString().slice(0, 10)}-${suite}${quick ? '-quick' : ''}`,
  );
  await mkdir(path.dirname(base), { recursive: true });
  await writeFile(`${base}.json`, JSON.stringify(result, null, 2));
  await writeFile(`${base}.md`, text + '\n');
  // Fixed-rate runs achieve their rate by design; the chart shows their latency instead.
  const fixedRate = (m) => m.test.startsWith('http @') || / @ \d+ req\/s$/.test(m.test);
  const charts = [[result, `${base}.png`]];
  if (result.l7) charts.push([{ ...result, suite: 'l7', ...result.l7 }, `${base}-l7.png`]);
  for (const [r, png] of charts) {
    if (!r.measurements.length) continue;
    try {
      const { renderChart } = await import('./lib/chart.mjs');
      const forChart = { ...r, measurements: r.measurements.filter((m) => !fixedRate(m)) };
      if (await renderChart(forChart, png)) progress(`chart: ${path.relative(process.cwd(), png)}`);
    } catch (err) {
      progress(`no chart (${err.message})`);
    }
  }
  progress(`wrote ${path.relative(process.cwd(), base)}.{json,md}`);
}
process.exit(0);
