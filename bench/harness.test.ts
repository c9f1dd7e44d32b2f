// Keeps the benchmark harness working: runs the l4 suite in --quick mode once and checks that it
// produced sane, non-zero figures for every path. It asserts no speed threshold.
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

describe('bench harness', () => {
  it('runs the l4 suite quickly and reports non-zero figures for direct and ambit', async () => {
    const out = path.join(await mkdtemp(path.join(tmpdir(), 'ambit-bench-')), 'l4.json');
    const r = spawnSync(
      process.execPath,
      [path.join(path.dirname(fileURLToPath(import.meta.url)), 'run.mjs'), 'l4', '--quick', '--out', out],
      { encoding: 'utf8', timeout: 120_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    const result = JSON.parse(await readFile(out, 'utf8')) as {
      machine: { cores: number };
      rows: Record<
        string,
        {
          bulk1: { bytesPerSec: number }[];
          rps50: { rps: number; p50: number; p99: number; proxyCpuSec: number }[];
        }
      >;
    };
    expect(result.machine.cores).toBeGreaterThan(0);
    expect(Object.keys(result.rows)).toEqual(['direct', 'ambit (2 node proxies)']);
    for (const row of Object.values(result.rows)) {
      expect(row.bulk1).toHaveLength(3);
      for (const b of row.bulk1) expect(b.bytesPerSec).toBeGreaterThan(0);
      for (const q of row.rps50) {
        expect(q.rps).toBeGreaterThan(0);
        expect(q.p50).toBeGreaterThan(0);
        expect(q.p99).toBeGreaterThanOrEqual(q.p50);
      }
    }
    // The proxies do the work on the ambit path, and none on the direct path.
    expect(result.rows['ambit (2 node proxies)']!.rps50[0]!.proxyCpuSec).toBeGreaterThan(0);
    expect(r.stdout).toMatch(/ratio ambit\/direct/);
  }, 150_000);
});
