// Keeps the benchmark harness working: runs the l4, cost and l7 suites in --quick mode once and
// checks that they produced sane, non-zero figures for every path. It asserts no speed threshold.
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

interface Summary {
  median: number;
  min: number;
  max: number;
}
interface Result {
  machine: { cores: number; node: string };
  ztunnel: { skip?: string; line?: string; version?: { GitRevision?: string } };
  measurements: ({ path: string; test: string; unit: string; runs: number[] } & Summary)[];
  latency: { path: string; test: string; p50: Summary; p99: Summary; p999: Summary }[];
  cost: {
    path: string;
    process?: string;
    protocol?: string;
    vcpuPer1kRps: Summary;
    rssMbAt1kRps: Summary;
    idleRssMb: number;
    rssMbWithIdleTunnels?: number;
    processes?: { pid: number; role: string; helper: boolean; vcpuPer1kRps: Summary }[];
  }[];
}

/** With AMBIT_ZTUNNEL_BIN (and root) the l4 and cost suites add the ztunnel pairs; else they say why not. */
const ZTUNNEL = Boolean(process.env.AMBIT_ZTUNNEL_BIN) && process.getuid?.() === 0;
function checkZtunnel(result: Result, names: Set<string>, stdout: string) {
  if (!ZTUNNEL) {
    expect(result.ztunnel.skip).toMatch(/AMBIT_ZTUNNEL_BIN|root/);
    expect(stdout).toMatch(/ztunnel: not measured/);
    return;
  }
  expect(result.ztunnel.version?.GitRevision).toBeTruthy();
  expect(stdout).toContain(result.ztunnel.line!);
  expect(names.has('ztunnel pair, 1 worker thread')).toBe(true);
}

const RUN = path.join(path.dirname(fileURLToPath(import.meta.url)), 'run.mjs');

async function runSuite(suite: string): Promise<{ result: Result; stdout: string }> {
  const out = path.join(await mkdtemp(path.join(tmpdir(), 'ambit-bench-')), `${suite}.json`);
  const r = spawnSync(process.execPath, [RUN, suite, '--quick', '--out', out], {
    encoding: 'utf8',
    timeout: 280_000,
  });
  expect(r.status, r.stderr).toBe(0);
  return { result: JSON.parse(await readFile(out, 'utf8')) as Result, stdout: r.stdout };
}

describe('bench harness', () => {
  it('runs the l4 suite quickly with sane figures for every path', async () => {
    const { result, stdout } = await runSuite('l4');
    expect(result.machine.cores).toBeGreaterThan(0);
    const paths = new Set(result.measurements.map((m) => m.path));
    expect(paths.has('direct') && paths.has('ambit')).toBe(true);
    for (const m of result.measurements) {
      expect(m.runs, `${m.path} / ${m.test}`).toHaveLength(3);
      for (const v of m.runs) expect(v, `${m.path} / ${m.test}`).toBeGreaterThan(0);
      expect(m.min).toBeLessThanOrEqual(m.median);
      expect(m.median).toBeLessThanOrEqual(m.max);
    }
    for (const l of result.latency) {
      expect(l.p50.median).toBeGreaterThan(0);
      expect(l.p99.median).toBeGreaterThanOrEqual(l.p50.median);
      expect(l.p999.median).toBeGreaterThanOrEqual(l.p99.median);
    }
    expect(stdout).toMatch(/\| target \| measured \| goal \|/);
    // Each C pair that ran has its ambit ÷ pair column (the haproxy pair among them; issue 16).
    for (const pair of ['stunnel pair', 'nghttpx pair', 'haproxy pair'])
      if (paths.has(pair)) expect(stdout, pair).toContain(`| ambit ÷ ${pair.replace(' pair', '')} |`);
    checkZtunnel(result, paths, stdout);
  }, 300_000);

  it('runs the cost suite quickly and reports CPU and memory per proxy role, every process listed', async () => {
    const { result, stdout } = await runSuite('cost');
    for (const c of result.cost) {
      // Every process with its role; the role's figure comes from the pair's proxy processes.
      expect(c.processes?.length, c.path).toBeGreaterThanOrEqual(2);
      expect(c.processes!.filter((x) => !x.helper).length, c.path).toBeGreaterThanOrEqual(2);
      for (const x of c.processes!) expect(x.role, c.path).toBeTruthy();
      expect(c.vcpuPer1kRps.median, c.path).toBeGreaterThan(0);
    }
    const nghttpx = result.cost.find((c) => c.path === 'nghttpx pair');
    if (nghttpx)
      expect(nghttpx.processes!.filter((x) => x.helper).map((x) => x.role)).toEqual([
        'tinyproxy (last CONNECT hop)',
      ]);
    // The haproxy pair runs in plain mode, one thread: exactly its two ends, no master, no helper.
    const haproxy = result.cost.find((c) => c.path === 'haproxy pair');
    if (haproxy)
      expect(haproxy.processes!.map((x) => `${x.role}${x.helper ? ' (helper)' : ''}`).sort()).toEqual([
        'haproxy client side',
        'haproxy server side',
      ]);
    expect(stdout).toMatch(/\| path \| pid \| role \| charged to the proxy role \|/);
    checkZtunnel(result, new Set(result.cost.map((c) => c.path)), stdout);
    const ambit = result.cost.find((c) => c.path === 'ambit');
    expect(ambit).toBeDefined();
    expect(ambit!.vcpuPer1kRps.median).toBeGreaterThan(0);
    expect(ambit!.rssMbAt1kRps.median).toBeGreaterThan(ambit!.idleRssMb * 0.5);
    expect(ambit!.rssMbWithIdleTunnels).toBeGreaterThan(0);
  }, 300_000);

  it('runs the l7 suite quickly: every path answers, waypoint CPU and RSS are reported', async () => {
    const { result, stdout } = await runSuite('l7');
    const paths = new Set(result.measurements.map((m) => m.path));
    for (const p of ['direct', 'ambit L4 only', 'ambit waypoint, 1 rule', 'ambit waypoint, 1 000 rules'])
      expect(paths.has(p), p).toBe(true);
    const tests = new Set(result.measurements.map((m) => m.test));
    expect([...tests].some((t) => t.startsWith('HTTP/1.1'))).toBe(true);
    expect([...tests].some((t) => t.startsWith('h2c'))).toBe(true);
    for (const m of result.measurements) {
      expect(m.runs.length, `${m.path} / ${m.test}`).toBeGreaterThan(0);
      // Every path answers in the closed loop. At a fixed rate a path that cannot keep up on a busy
      // machine may complete nothing inside the short quick window: its latency still shows it.
      if (!m.test.includes(' @ '))
        for (const v of m.runs) expect(v, `${m.path} / ${m.test}`).toBeGreaterThan(0);
      expect(m.min).toBeLessThanOrEqual(m.median);
      expect(m.median).toBeLessThanOrEqual(m.max);
    }
    for (const l of result.latency) {
      expect(l.p50.median, `${l.path} / ${l.test}`).toBeGreaterThan(0);
      expect(l.p99.median).toBeGreaterThanOrEqual(l.p50.median);
    }
    for (const proto of ['HTTP/1.1', 'h2c']) {
      const w = result.cost.find(
        (c) => c.path === 'ambit waypoint, 1 rule' && c.protocol === proto && c.process === 'waypoint',
      );
      expect(w, proto).toBeDefined();
      expect(w!.vcpuPer1kRps.median).toBeGreaterThan(0);
      expect(w!.rssMbAt1kRps.median).toBeGreaterThan(0);
    }
    expect(stdout).toMatch(/waypoint req\/s vs haproxy/);
  }, 300_000);
});
