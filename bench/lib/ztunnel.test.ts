// The ztunnel pair of the l4 and cost suites (bench/lib/ztunnel.mjs), started as the suites start
// it but on its own namespaces and subnet (layout 1: ambit-bzt-1a/-1b, 10.248.1.0/24), so it can
// run beside a benchmark. Needs AMBIT_ZTUNNEL_BIN and root; without them it says why and skips.
// It checks that the pair carries HTTP and bulk bytes, that the server end is mutual TLS (a client
// without a certificate gets a TLS alert), that every process has its role, and that nothing is
// left behind. No speed is asserted.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: plain ESM module without type declarations
import { startZtunnelNet, ztunnelAvailability, ztLayout } from './ztunnel.mjs';
// @ts-expect-error: plain ESM module without type declarations
import { loadgen } from './topology.mjs';

const run = promisify(execFile);

interface ZtPath {
  name: string;
  kind: string;
  target(port: number): Record<string, unknown>;
  activate?(): Promise<void>;
  deactivate?(): Promise<void>;
  pids(): number[];
  processes?(): { pid: number; role: string; helper: boolean }[];
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** From inside `ns`: a TLS client without a certificate against host:15008; what it got back. */
async function clientWithoutCert(ns: string, host: string): Promise<string> {
  const script = `
const tls = require('node:tls');
const s = tls.connect({ host: ${JSON.stringify(host)}, port: 15008, servername: 'server', rejectUnauthorized: false, ALPNProtocols: ['h2'] });
const done = (v) => { process.stdout.write(v); process.exit(0); };
s.on('secureConnect', () => s.write('PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n'));
s.on('data', () => done('got data'));
s.on('error', (e) => done(e.code || e.message));
s.on('close', () => done('closed without alert'));
setTimeout(() => done('timeout'), 3000);`;
  const { stdout } = await run('ip', ['netns', 'exec', ns, process.execPath, '-e', script], {
    timeout: 10_000,
  });
  return stdout;
}

describe('ztunnel pair for the benchmarks', () => {
  it('is left out, with the reason, when AMBIT_ZTUNNEL_BIN is unset or not a program', async () => {
    expect((await ztunnelAvailability({})).skip).toMatch(/AMBIT_ZTUNNEL_BIN is unset/);
    expect((await ztunnelAvailability({ AMBIT_ZTUNNEL_BIN: '/nonexistent/ztunnel' })).skip).toMatch(
      /not an executable/,
    );
  });

  it('refuses a namespace that already has processes in it, and leaves it and them alone', async (ctx) => {
    if (process.getuid?.() !== 0) {
      console.warn('skipped: creating network namespaces needs root');
      ctx.skip('creating network namespaces needs root');
    }
    const layout = ztLayout(3);
    await run('ip', ['netns', 'add', layout.nsClient]);
    const { spawn } = await import('node:child_process');
    const squatter = spawn('ip', ['netns', 'exec', layout.nsClient, 'sleep', '30'], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 50 && !(await run('ip', ['netns', 'pids', layout.nsClient])).stdout.trim(); i++)
        await new Promise((r) => setTimeout(r, 20));
      const root = await mkdtemp(path.join(tmpdir(), 'ambit-bzt-test-'));
      await expect(
        startZtunnelNet({
          root,
          bin: '/bin/false',
          workerThreads: [1],
          loadgen,
          logLevel: 'warn',
          layout: 3,
        }),
      ).rejects.toThrow(new RegExp(`${layout.nsClient} exists with processes ${squatter.pid}`));
      await rm(root, { recursive: true, force: true });
      expect(alive(squatter.pid!)).toBe(true);
      expect((await run('ip', ['netns', 'list'])).stdout).toMatch(new RegExp(`^${layout.nsClient}\\b`, 'm'));
    } finally {
      squatter.kill();
      await new Promise((r) =>
        squatter.exitCode !== null || squatter.signalCode ? r(null) : squatter.once('exit', r),
      );
      await run('ip', ['netns', 'del', layout.nsClient]);
    }
  });

  it('carries HTTP and bulk bytes over mutual-TLS HBONE between two namespaces, and cleans up', async (ctx) => {
    const avail = await ztunnelAvailability();
    if (avail.skip) {
      console.warn(`skipped: ${avail.skip}`);
      ctx.skip(avail.skip);
    }
    const root = await mkdtemp(path.join(tmpdir(), 'ambit-bzt-test-'));
    const layout = ztLayout(1);
    const net = await startZtunnelNet({
      root,
      bin: avail.bin,
      workerThreads: [1],
      loadgen,
      logLevel: 'warn',
      layout: 1,
    });
    let pids: number[] = [];
    try {
      const pair = (net.paths as ZtPath[]).find((p) => p.kind === 'ztunnel')!;
      expect(pair.name).toBe('ztunnel pair, 1 worker thread');
      await pair.activate!();
      pids = pair.pids();
      expect(pids).toHaveLength(2);
      expect(pair.processes!().map((p) => `${p.role}${p.helper ? ' (helper)' : ''}`)).toEqual([
        'ztunnel client side',
        'ztunnel server side',
        'ambit CA (certificates only; idle) (helper)',
      ]);
      const timing = { warmupMs: 100, durationMs: 300 };
      const http = await loadgen({ ...timing, ...pair.target(8080), mode: 'rps', connections: 4 });
      expect(http.rps).toBeGreaterThan(0);
      const bulk = await loadgen({ ...timing, ...pair.target(9000), mode: 'bulk', streams: 1 });
      expect(bulk.bytesPerSec).toBeGreaterThan(0);
      expect(await clientWithoutCert(layout.nsClient, layout.server)).toMatch(/ALERT_CERTIFICATE_REQUIRED/);
      await pair.deactivate!();
      for (const pid of pids) expect(alive(pid), `ztunnel ${pid} still running`).toBe(false);
    } finally {
      await net.stop();
      await rm(root, { recursive: true, force: true });
    }
    const { stdout } = await run('ip', ['netns', 'list']);
    expect(stdout).not.toMatch(new RegExp(`^${layout.nsClient}\\b|^${layout.nsServer}\\b`, 'm'));
  }, 60_000);
});
