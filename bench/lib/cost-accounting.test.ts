// The cost suite's accounting on made-up process tables (issue 16: "per proxy role = the pair's
// total ÷ 2, every process listed, helpers shown apart"). Pure: no process is started.
import { describe, expect, it } from 'vitest';
// @ts-expect-error: plain ESM module without type declarations
import { accountRun, idlePerRole } from './cost-accounting.mjs';
// @ts-expect-error: plain ESM module without type declarations
import { costMarkdown, ztunnelComparisonMarkdown } from './report.mjs';
// @ts-expect-error: plain ESM module without type declarations
import { parseZtunnelVersion, rustLogLevel, ztunnelVersionLine } from './ztunnel.mjs';
// @ts-expect-error: plain ESM module without type declarations
import { selects } from './topology.mjs';

// The nghttpx pair as the suite sees it: two idle masters, two workers, tinyproxy. 12 s run at
// 960 req/s achieved. Worker figures are the ones issue 16 measured (0.056 vCPU per 1 000 req/s each).
const nghttpx = [
  { pid: 101, role: 'tinyproxy (last CONNECT hop)', helper: true, cpuSec: 0.4378, rssMb: 6 },
  { pid: 102, role: 'nghttpx server side, master', cpuSec: 0.0012, rssMb: 10 },
  { pid: 103, role: 'nghttpx client side, master', cpuSec: 0, rssMb: 10 },
  { pid: 104, role: 'nghttpx server side, worker', cpuSec: 0.64512, rssMb: 14 },
  { pid: 105, role: 'nghttpx client side, worker', cpuSec: 0.64512, rssMb: 16 },
];

describe('cost accounting per proxy role', () => {
  it("charges one role the pair's proxy processes ÷ 2, not the total ÷ the process count", () => {
    const r = accountRun({ processes: nghttpx, seconds: 12, achievedRps: 960 });
    // (0.0012 + 0 + 0.64512 + 0.64512) CPU s / 12 s = 0.10762 vCPU for the pair; ÷ 2 per role;
    // × 1000 / 960 to exactly 1 000 req/s.
    const pair = (0.0012 + 0.64512 * 2) / 12;
    expect(r.perRole.vcpuPer1kRps).toBeCloseTo(((pair / 2) * 1000) / 960, 6);
    expect(r.perRole.vcpuPer1kRps).toBeCloseTo(0.05605, 4);
    // The old rule (every process of the path ÷ 5) gave a figure about 0.6× lower.
    const oldRule = ((nghttpx.reduce((a, p) => a + p.cpuSec, 0) / 12 / 5) * 1000) / 960;
    expect(r.perRole.vcpuPer1kRps).toBeGreaterThan(oldRule * 1.5);
    expect(r.perRole.rssMb).toBe((10 + 10 + 14 + 16) / 2);
  });

  it('lists every process, and keeps helpers out of the role and in their own sum', () => {
    const r = accountRun({ processes: nghttpx, seconds: 12, achievedRps: 960 });
    expect(r.processes.map((p: { pid: number }) => p.pid)).toEqual([101, 102, 103, 104, 105]);
    const tiny = r.processes.find((p: { pid: number }) => p.pid === 101);
    expect(tiny.helper).toBe(true);
    expect(tiny.vcpuPer1kRps).toBeCloseTo(((0.4378 / 12) * 1000) / 960, 6);
    expect(r.helpers.vcpuPer1kRps).toBeCloseTo(tiny.vcpuPer1kRps, 9);
    expect(r.helpers.rssMb).toBe(6);
    // Doubling the helper's CPU leaves the proxy role unchanged.
    const busier = nghttpx.map((p) => (p.helper ? { ...p, cpuSec: p.cpuSec * 2 } : p));
    expect(accountRun({ processes: busier, seconds: 12, achievedRps: 960 }).perRole.vcpuPer1kRps).toBe(
      r.perRole.vcpuPer1kRps,
    );
  });

  it('gives the same role figure for a two-process pair (ambit, stunnel, ztunnel) as before', () => {
    const ambit = [
      { pid: 1, role: 'node proxy client side (node-1)', cpuSec: 1.3, rssMb: 70 },
      { pid: 2, role: 'node proxy server side (node-2)', cpuSec: 1.1, rssMb: 66 },
    ];
    const r = accountRun({ processes: ambit, seconds: 11, achievedRps: 1000 });
    expect(r.perRole.vcpuPer1kRps).toBeCloseTo((1.3 + 1.1) / 11 / 2, 9);
    expect(r.perRole.rssMb).toBe(68);
    expect(r.helpers).toEqual({ vcpuPer1kRps: 0, rssMb: 0 });
  });

  it('fails closed on a run that cannot be normalised or a process table that is wrong', () => {
    const ok = { processes: nghttpx, seconds: 12, achievedRps: 960 };
    expect(() => accountRun({ ...ok, achievedRps: 0 })).toThrow(/no request completed/);
    expect(() => accountRun({ ...ok, achievedRps: NaN })).toThrow(/no request completed/);
    expect(() => accountRun({ ...ok, seconds: 0 })).toThrow(/positive/);
    expect(() => accountRun({ ...ok, processes: nghttpx.filter((p) => p.helper) })).toThrow(/proxy process/);
    expect(() => accountRun({ ...ok, processes: [...nghttpx, nghttpx[1]] })).toThrow(/listed twice/);
    const restarted = nghttpx.map((p) => (p.pid === 104 ? { ...p, cpuSec: -3 } : p));
    expect(() => accountRun({ ...ok, processes: restarted })).toThrow(/backwards/);
  });

  it('halves idle memory per role and keeps helpers apart', () => {
    expect(idlePerRole(nghttpx)).toEqual({ perRole: 25, helpers: 6 });
  });
});

describe('cost and ztunnel reporting', () => {
  const s = (median: number) => ({ median, min: median, max: median });
  const cost = [
    {
      path: 'nghttpx pair',
      vcpuPer1kRps: s(0.056),
      rssMbAt1kRps: s(25),
      idleRssMb: 20,
      processes: [
        {
          pid: 101,
          role: 'tinyproxy (last CONNECT hop)',
          helper: true,
          vcpuPer1kRps: s(0.038),
          rssMbAt1kRps: s(6),
          idleRssMb: 5,
        },
        {
          pid: 104,
          role: 'nghttpx server side, worker',
          helper: false,
          vcpuPer1kRps: s(0.056),
          rssMbAt1kRps: s(14),
          idleRssMb: 12,
        },
      ],
    },
    { path: 'ambit', vcpuPer1kRps: s(0.105), rssMbAt1kRps: s(70), idleRssMb: 65, processes: [] },
    {
      path: 'ztunnel pair, 1 worker thread',
      vcpuPer1kRps: s(0.05),
      rssMbAt1kRps: s(14),
      idleRssMb: 10,
      processes: [],
    },
  ];

  it('prints every process with its role and whether it was charged', () => {
    const md = costMarkdown({ cost });
    expect(md).toMatch(/\| nghttpx pair \| 101 \| tinyproxy \(last CONNECT hop\) \| no \(helper\) \| 0\.038/);
    expect(md).toMatch(/\| nghttpx pair \| 104 \| nghttpx server side, worker \| yes \| 0\.056/);
    expect(md).toMatch(/\| nghttpx pair \| 0\.056 .*tinyproxy \(last CONNECT hop\): 0\.038, 6 \|/);
  });

  it('compares ambit with each ztunnel pair, and prints nothing without one', () => {
    const r = { measurements: [], latency: [], cost };
    expect(ztunnelComparisonMarkdown(r)).toMatch(
      /\| vCPU per 1 000 req\/s per proxy role \(lower is better\) \| 0\.105 \| 0\.050 \| 2\.10× \|/,
    );
    expect(ztunnelComparisonMarkdown({ ...r, cost: cost.slice(0, 2) })).toBe('');
  });

  it("reads ztunnel's commit and build from `ztunnel version`", () => {
    const v = parseZtunnelVersion(
      'version.BuildInfo{Version:"62d8265-dirty", GitRevision:"62d826530e5ce85764e309170205b293efcbc80b-dirty", RustVersion:"1.95.0", BuildProfile:"release", BuildStatus:"Modified", IstioVersion:"unknown", CryptoProvider:"tls-ring"}\n',
    );
    expect(v.GitRevision).toBe('62d826530e5ce85764e309170205b293efcbc80b-dirty');
    expect(ztunnelVersionLine(v)).toBe(
      'ztunnel 62d826530e5ce85764e309170205b293efcbc80b-dirty (release build, crypto provider tls-ring, Rust 1.95.0, build status Modified)',
    );
    expect(parseZtunnelVersion('garbage').GitRevision).toBeUndefined();
  });

  it('maps the log level and selects paths for --only', () => {
    expect(rustLogLevel('warn')).toBe('warn');
    expect(rustLogLevel('fatal')).toBe('error');
    expect(rustLogLevel('nonsense')).toBe('warn');
    expect(selects('ztunnel', 'ztunnel pair, 2 worker threads')).toBe(true);
    expect(selects('ztunnel', 'ambit')).toBe(false);
    expect(selects('ztunnel', 'direct (netns, veth)')).toBe(true);
    expect(selects('Ambit, stunnel', 'stunnel pair')).toBe(true);
    expect(selects(undefined, 'nghttpx pair')).toBe(true);
  });
});
