// `ambit ctl` against a mesh in real network namespaces (root): the node proxies' admin (15000)
// listens on the node IP (`ambit up --netns` passes `--admin-bind <node IP>`), so `ambit ctl certs`
// and `config-dump`, run in the router namespace, reach every node at the InternalIP that the
// control plane's /debug/syncz lists, and the admin token still guards it: a read without the
// token is refused 401. Before, admin listened on the node namespace's 127.0.0.1 only and `ctl`
// showed every node as unreachable. Namespaces are named ambit-t14h4-*.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { AMBIT_BIN } from '../../src/cli/mesh-runner.js';
import { NetnsMesh, netnsPrerequisites } from '../../src/cli/up-netns.js';
import { routerNetnsName, teardown } from '../../src/redirect/topology.js';
import { ADMIN_PORT, CONTROL_PLANE_DEBUG_PORT } from '../../src/common/ports.js';
import { collectLogs, hasCurl, until, type MeshLog } from '../support/netns-e2e.js';

const PREFIX = 'ambit-t14h4-';
const QUICKSTART = fileURLToPath(new URL('../../examples/quickstart', import.meta.url));
const skip = (await netnsPrerequisites()) ?? ((await hasCurl()) ? undefined : 'curl is not installed');
if (skip) console.log(`e2e netns ctl skipped: ${skip}`);

let mesh: NetnsMesh | undefined;
let root: string | undefined;
afterAll(async () => {
  await mesh?.stop();
  if (!skip) await teardown(PREFIX);
  if (root) await rm(root, { recursive: true, force: true });
});

/** `ambit ctl ARGS` inside the router namespace (where the control plane and every node IP route). */
function ctl(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string }> {
  const router = routerNetnsName(PREFIX);
  return new Promise((resolve) => {
    execFile(
      'ip',
      ['netns', 'exec', router, process.execPath, AMBIT_BIN, 'ctl', ...args],
      { timeout: 15_000, env: { ...process.env, ...env } },
      (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout, err: stderr }),
    );
  });
}

/** curl's HTTP status for `url`, from the router namespace, with optional headers. */
function status(url: string, headers: string[] = []): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'ip',
      [
        'netns',
        'exec',
        routerNetnsName(PREFIX),
        'curl',
        '-s',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
        '-m',
        '5',
        ...headers.flatMap((h) => ['-H', h]),
        url,
      ],
      { timeout: 10_000 },
      (err, stdout, stderr) => (err && !stdout ? reject(new Error(stderr || err.message)) : resolve(stdout)),
    );
  });
}

describe.skipIf(!!skip)('ambit ctl against ambit up --netns', () => {
  it('certs and config-dump reach every node proxy at its node IP; admin without the token is refused 401', async () => {
    await teardown(PREFIX); // what a crashed earlier run left
    root = await mkdtemp(path.join(tmpdir(), PREFIX));
    const stateDir = path.join(root, 'state');
    const logs: MeshLog[] = [];
    mesh = await NetnsMesh.start({
      configDir: QUICKSTART,
      stateDir,
      prefix: PREFIX,
      onLog: collectLogs(logs),
    });
    const cp = `10.200.0.1:${CONTROL_PLANE_DEBUG_PORT}`;
    const common = ['--controlplane', cp, '--state', stateDir, '-o', 'json'];

    // Every node connected, each answering /certs with the certificates of its local pods.
    let certs: { nodes: { node: string; certificates: unknown[]; error?: string }[] } = { nodes: [] };
    await until(async () => {
      const r = await ctl(['certs', ...common]);
      if (r.code !== 0) return false;
      certs = JSON.parse(r.out) as typeof certs;
      return certs.nodes.length === 2 && certs.nodes.every((n) => !n.error && n.certificates.length > 0);
    }, 20_000).catch(() => {
      throw new Error(`ambit ctl certs never reached both nodes: ${JSON.stringify(certs)}`);
    });
    expect(certs.nodes.map((n) => n.node).sort()).toEqual(['node-1', 'node-2']);

    const dump = await ctl(['config-dump', '--node', 'node-1', ...common]);
    expect(dump.err).toBe('');
    expect(dump.code).toBe(0);
    const parsed = JSON.parse(dump.out) as { xdsSync?: { ip?: string } };
    const nodeIp = parsed.xdsSync?.ip;
    expect(nodeIp).toMatch(/^10\.2\d\d\./); // the mapped InternalIP, not a loopback

    // The admin token still guards the widened bind: no token 401, the run's token 200.
    const url = `http://${nodeIp}:${ADMIN_PORT}/certs`;
    expect(await status(url)).toBe('401');
    const token = (await readFile(path.join(stateDir, 'admin.token'), 'utf8')).trim();
    expect(await status(url, [`Authorization: Bearer ${token}`])).toBe('200');
  }, 90_000);
});
