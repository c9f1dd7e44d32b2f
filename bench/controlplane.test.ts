// Keeps the controlplane benchmark working: runs `bench/controlplane.mjs --quick` once (real
// control plane process, 100 xDS clients over gRPC+TLS, CSR load) and checks that it produced
// sane, non-zero figures. It asserts no speed threshold.
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

interface Dist {
  p50: number;
  p99: number;
  min: number;
  max: number;
  n: number;
}
interface Result {
  machine: { cores: number; node: string; kernel: string };
  params: { nodes: number; pods: number; services: number; podChanges: number; csrRuns: number };
  controlPlane: {
    startupMs: number;
    firstPushPeakRssMb: number;
    idleRssMb: number;
    xdsDisconnects: number;
  };
  firstPush: { lastProxyMs: number; firstProxyMs: number; cpuSec: number };
  podChange: {
    writeToLastProxy: Dist;
    watchAndReload: Dist;
    indexToLastProxy: Dist;
    runs: { proxies: number; writeToLastMs: number; writeToFirstMs: number }[];
  };
  csr: {
    perSec: { median: number; min: number; max: number };
    errors: number;
    runs: { signed: number; p50Ms: number; p99Ms: number }[];
  };
}

describe('bench controlplane suite', () => {
  it('runs --quick and reports non-zero push, pod-change and CSR figures', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'ambit-bench-cp-test-'));
    const out = path.join(dir, 'controlplane.json');
    try {
      const r = spawnSync(
        process.execPath,
        [
          path.join(path.dirname(fileURLToPath(import.meta.url)), 'controlplane.mjs'),
          '--quick',
          '--out',
          out,
        ],
        { encoding: 'utf8', timeout: 85_000 },
      );
      expect(r.status, r.stderr).toBe(0);
      const res = JSON.parse(await readFile(out, 'utf8')) as Result;
      expect(res.machine.cores).toBeGreaterThan(0);
      expect(res.params.nodes).toBe(100);

      expect(res.controlPlane.startupMs).toBeGreaterThan(0);
      expect(res.firstPush.lastProxyMs).toBeGreaterThanOrEqual(res.firstPush.firstProxyMs);
      expect(res.firstPush.firstProxyMs).toBeGreaterThan(0);
      expect(res.controlPlane.firstPushPeakRssMb).toBeGreaterThan(0);
      expect(res.controlPlane.idleRssMb).toBeGreaterThan(0);
      expect(res.controlPlane.xdsDisconnects).toBe(0);

      // Every change reached every proxy, after it was written.
      expect(res.podChange.runs).toHaveLength(res.params.podChanges);
      expect(res.params.podChanges).toBeGreaterThanOrEqual(20);
      for (const c of res.podChange.runs) {
        expect(c.proxies).toBe(100);
        expect(c.writeToFirstMs).toBeGreaterThan(0);
        expect(c.writeToLastMs).toBeGreaterThanOrEqual(c.writeToFirstMs);
      }
      const w = res.podChange.writeToLastProxy;
      expect(w.p50).toBeGreaterThan(0);
      expect(w.p99).toBeGreaterThanOrEqual(w.p50);
      // The split is only there when the control plane's "config changed" lines were matched.
      expect(res.podChange.watchAndReload.n).toBe(res.params.podChanges);
      expect(res.podChange.indexToLastProxy.p50).toBeGreaterThanOrEqual(0);

      expect(res.csr.runs).toHaveLength(res.params.csrRuns);
      expect(res.csr.errors).toBe(0);
      for (const run of res.csr.runs) {
        expect(run.signed).toBeGreaterThan(0);
        expect(run.p99Ms).toBeGreaterThanOrEqual(run.p50Ms);
      }
      expect(res.csr.perSec.median).toBeGreaterThan(0);
      expect(r.stdout).toMatch(/CSRs signed per second/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
