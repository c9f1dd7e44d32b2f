// The "ambit next to the C tunnel pairs" table (report.mjs peerComparisonMarkdown), on a made-up
// result: a column per C pair present (the haproxy pair among them, issue 16 item 6), ambit ÷ that
// pair on every row, "–" where a figure is missing or at or below zero, nothing without a pair.
import { describe, expect, it } from 'vitest';
// @ts-expect-error: plain ESM module without type declarations
import { peerComparisonMarkdown } from './report.mjs';

const s = (median: number) => ({ median, min: median, max: median });
const m = (path: string, test: string, unit: string, value: number) => ({ path, test, unit, ...s(value) });
const p99 = (path: string, ms: number) => ({
  path,
  test: 'http @ 1000 req/s',
  p50: s(ms / 2),
  p90: s(ms / 1.5),
  p99: s(ms),
  p999: s(ms * 2),
});

const result = {
  measurements: [
    m('direct', 'bulk 1 stream', 'MiB/s', 1600),
    m('ambit', 'bulk 1 stream', 'MiB/s', 340),
    m('stunnel pair', 'bulk 1 stream', 'MiB/s', 560),
    m('haproxy pair', 'bulk 1 stream', 'MiB/s', 680),
    m('ambit', 'new connections', 'conn/s', 3000),
    m('haproxy pair', 'new connections', 'conn/s', 2400),
  ],
  latency: [p99('direct', 0.5), p99('ambit', 0.9), p99('stunnel pair', 0.62), p99('haproxy pair', 0.4)],
  cost: [
    { path: 'ambit', vcpuPer1kRps: s(0.105), rssMbAt1kRps: s(70) },
    { path: 'haproxy pair', vcpuPer1kRps: s(0.03), rssMbAt1kRps: s(9) },
  ],
};

const row = (md: string, name: string) => md.split('\n').find((l) => l.startsWith(`| ${name}`));

describe('peerComparisonMarkdown', () => {
  it('has a column and an ambit ÷ pair ratio for each C pair in the run, haproxy included', () => {
    const md = peerComparisonMarkdown(result);
    expect(md.split('\n')[2]).toBe(
      '| figure | ambit | stunnel pair | ambit ÷ stunnel | haproxy pair | ambit ÷ haproxy |',
    );
    expect(row(md, 'bulk 1 stream')).toBe(
      `| bulk 1 stream (MiB/s, higher is better) | 340 | 560 | ${(340 / 560).toFixed(2)}× | 680 | ${(340 / 680).toFixed(2)}× |`,
    );
    // A test one pair did not run shows "–" for it, not a ratio against nothing.
    expect(row(md, 'new connections')).toBe(
      `| new connections (conn/s, higher is better) | 3000 | – | – | 2400 | ${(3000 / 2400).toFixed(2)}× |`,
    );
    // Added p99 over direct: ambit 0.4 ms, stunnel 0.12 ms; haproxy's is below direct: no ratio.
    expect(row(md, 'added p99')).toMatch(/\| 0\.400 \| 0\.120 \| 3\.33× \| -0\.100 \| – \|$/);
    expect(row(md, 'vCPU per 1 000 req/s')).toMatch(
      new RegExp(`\\| 0\\.105 \\| – \\| – \\| 0\\.030 \\| ${(0.105 / 0.03).toFixed(2)}× \\|$`),
    );
  });

  it('prints nothing when no C pair ran', () => {
    const ambitOnly = {
      measurements: result.measurements.filter((x) => ['direct', 'ambit'].includes(x.path)),
      latency: [],
      cost: result.cost.filter((x) => x.path === 'ambit'),
    };
    expect(peerComparisonMarkdown(ambitOnly)).toBe('');
  });
});
