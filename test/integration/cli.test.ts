// The commands a user types: `ambit up` (ready line, config errors, --cert-ttl, a node proxy that
// dies restarted, Ctrl-C), `ambit exec` with a real curl, and `ambit demo`. Loopback range
// 127.0.46.0/24 (the demo uses the quickstart's).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, writeFile, rm, mkdir, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AMBIT_BIN } from '../../src/cli/mesh-runner.js';
import { manifests } from '../support/mesh.js';

const O = 46;
const CERT_TTL = 40;
const hasCurl = spawnSync('curl', ['--version']).status === 0;
let root: string;
let up: ChildProcess;
let out = '';
let err = '';
let startedAt = 0;

/** Pids of processes whose command line contains every one of `parts` (our own children only: the state folder is a fresh temp dir). */
async function pidsWith(...parts: string[]): Promise<number[]> {
  const pids: number[] = [];
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    const cmd = (await readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (parts.every((p) => cmd.includes(p))) pids.push(Number(e));
  }
  return pids;
}

function portOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, host, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'ambit-cli-'));
  const config = path.join(root, 'config');
  await mkdir(config);
  // The test mesh plus app commands, so `up` runs the apps itself.
  const withApps = manifests(O).replace(
    /name: (echo-v[12])\n {2}namespace: demo\n/g,
    'name: $1\n  namespace: demo\n  annotations: {ambit.dev/command: "ambit echo --port 8080"}\n',
  );
  await writeFile(path.join(config, 'mesh.yaml'), withApps);
  await writeFile(
    path.join(config, 'broken.yaml'),
    'apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: demo}\nspec:\n  ports: [{port: 70000}]\n',
  );
  startedAt = Date.now();
  up = spawn(
    process.execPath,
    [
      AMBIT_BIN,
      'up',
      config,
      '--state',
      path.join(root, 'state'),
      '--controlplane',
      `127.0.${O}.5:15012`,
      '--cert-ttl',
      String(CERT_TTL),
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  up.stdout!.on('data', (c) => (out += c));
  up.stderr!.on('data', (c) => (err += c));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no ready line; stdout:\n${out}\nstderr:\n${err}`)),
      30_000,
    );
    const check = () => {
      if (out.includes('ambit: mesh ready')) {
        clearTimeout(timer);
        resolve();
      }
    };
    up.stdout!.on('data', check);
    up.once('exit', (code) => reject(new Error(`ambit up exited ${code}\n${err}`)));
  });
}, 60_000);

afterAll(async () => {
  if (up.exitCode === null) up.kill('SIGKILL');
  await rm(root, { recursive: true, force: true });
});

describe('ambit up', () => {
  it('prints one ready line and prefixes logs by component', () => {
    expect(out.match(/ambit: mesh ready/g)).toHaveLength(1);
    expect(out).toMatch(/\[controlplane\] control plane ready/);
    expect(out).toMatch(/\[node\/node-1\] node proxy ready/);
  });

  it('names the file, line and field of an invalid manifest and runs the rest', async () => {
    // stderr and stdout are separate pipes: the error line may land just after the ready line.
    for (let i = 0; i < 50 && !err.includes('broken.yaml'); i++) await new Promise((r) => setTimeout(r, 100));
    expect(err).toMatch(/broken\.yaml:5: spec\.ports\[0\]\.port: .*65535/);
  });

  it('issues workload certificates with the lifetime of --cert-ttl', () => {
    const line = out
      .split('\n')
      .find((l) =>
        /\[node\/node-1\] identity spiffe:\/\/cluster\.local\/ns\/demo\/sa\/sleep: \w+ -> Valid/.test(l),
      );
    expect(line, out).toBeDefined();
    const notAfter = Date.parse(/cert\.not_after=(\S+)/.exec(line!)![1]!);
    // Issued between start and now, for CERT_TTL seconds (not the 24 h default).
    expect(notAfter).toBeGreaterThanOrEqual(startedAt + CERT_TTL * 1000 - 1000);
    expect(notAfter).toBeLessThanOrEqual(Date.now() + CERT_TTL * 1000 + 1000);
  });

  it('refuses a --cert-ttl that is not a whole number of seconds up to 7 days, naming the flag', () => {
    for (const bad of ['abc', '0', '1.5', '604801', '']) {
      const r = spawnSync(process.execPath, [AMBIT_BIN, 'up', root, '--cert-ttl', bad], { encoding: 'utf8' });
      expect(r.status, bad).toBe(2);
      expect(r.stderr).toMatch(/^ambit: --cert-ttl must be a whole number of seconds from 1 to 604800/);
    }
    const node = spawnSync(
      process.execPath,
      [AMBIT_BIN, 'node', '--name', 'n', '--ip', '127.0.46.99', '--cert-ttl', 'soon'],
      { encoding: 'utf8' },
    );
    expect(node.status).toBe(2);
    expect(node.stderr).toMatch(/--cert-ttl must be/);
  });

  it('restarts a node proxy that dies and says so in its output', async () => {
    const [pid, ...more] = await pidsWith(path.join(root, 'state'), 'node', '--name', 'node-1');
    expect(pid).toBeDefined();
    expect(more).toEqual([]);
    const from = out.length;
    process.kill(pid!, 'SIGKILL');
    for (let i = 0; i < 150 && !/\[node\/node-1\] node proxy ready/.test(out.slice(from)); i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(out.slice(from)).toMatch(
      /\[ambit\] restarting node\/node-1 in 100ms \(signal SIGKILL, restart 1\)/,
    );
    expect(out.slice(from)).toMatch(/\[node\/node-1\] node proxy ready/);
    const res = await fetch(`http://127.0.${O}.1:15021/healthz/ready`);
    expect(res.status).toBe(200);
  }, 30_000);

  it('serves readiness on each node IP', async () => {
    const res = await fetch(`http://127.0.${O}.1:15021/healthz/ready`);
    expect(res.status).toBe(200);
  });

  it.skipIf(!hasCurl)('lets `ambit exec` run curl inside the mesh as a pod (skipped without curl)', () => {
    const r = spawnSync(
      process.execPath,
      [
        AMBIT_BIN,
        'exec',
        '--pod',
        'demo/sleep',
        '--state',
        path.join(root, 'state'),
        '--',
        'curl',
        '-s',
        '-m',
        '10',
        `http://echo.demo:8080/from-curl`,
      ],
      { encoding: 'utf8', timeout: 20_000 },
    );
    expect(r.status).toBe(0);
    const body = JSON.parse(r.stdout) as { pod: string; path: string; remote: string };
    expect(['demo/echo-v1', 'demo/echo-v2']).toContain(body.pod);
    expect(body.path).toBe('/from-curl');
    expect(body.remote.startsWith(`127.0.${O}.10:`)).toBe(true);
  });

  it('tells `ambit exec` users which pods exist when they name a wrong one', () => {
    const r = spawnSync(
      process.execPath,
      [AMBIT_BIN, 'exec', '--pod', 'demo/nope', '--state', path.join(root, 'state'), '--', 'true'],
      { encoding: 'utf8' },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/pod demo\/nope is not in the mesh's manifests \(known: .*demo\/sleep/);
  });

  it('stops everything on Ctrl-C: no listener left behind', async () => {
    up.kill('SIGINT');
    const code = await new Promise((r) => up.once('exit', r));
    expect(code).toBe(0);
    for (const [host, port] of [
      [`127.0.${O}.5`, 15012],
      [`127.0.${O}.1`, 15021],
      [`127.0.${O}.10`, 15080],
      [`127.0.${O}.11`, 8080],
    ] as const) {
      expect(await portOpen(host, port), `${host}:${port}`).toBe(false);
    }
    expect(await pidsWith(path.join(root, 'state'))).toEqual([]);
  }, 20_000);
});

describe('ambit demo', () => {
  it('runs the quickstart and explains each request', () => {
    const r = spawnSync(process.execPath, [AMBIT_BIN, 'demo'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/answered by demo\/echo-v1 on node-1 via HBONE mTLS/);
    expect(r.stdout).toMatch(/answered by demo\/echo-v2 on node-2 via HBONE mTLS/);
    expect(r.stdout).toMatch(/destination verified spiffe:\/\/cluster\.local\/ns\/demo\/sa\/sleep/);
    expect(r.stdout).toMatch(/answered by legacy\/plain on node-2 via plain TCP/);
    expect(r.stdout).toMatch(/nope\.demo.*\n.*host unreachable/);
  }, 90_000);
});
