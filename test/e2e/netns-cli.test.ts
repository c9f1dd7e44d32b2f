// The commands a user types in netns mode (root): `ambit up --netns` on the quickstart, `ambit
// exec` running an unmodified curl inside a pod, Ctrl-C removing everything, and `ambit down`
// cleaning up after an `up` that was killed. Namespaces are named ambit-t5x-b-*.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { AMBIT_BIN } from '../../src/cli/mesh-runner.js';
import { netnsPrerequisites } from '../../src/cli/up-netns.js';
import { listNetns, teardown } from '../../src/redirect/topology.js';

const PREFIX = 'ambit-t5x-b-';
const QUICKSTART = fileURLToPath(new URL('../../examples/quickstart', import.meta.url));
const hasCurl = await run(['--version'], 'curl').then(
  () => true,
  () => false,
);
const skip = (await netnsPrerequisites()) ?? (hasCurl ? undefined : 'curl is not installed');
if (skip) console.log(`e2e netns CLI skipped: ${skip}`);

let root: string | undefined;
const procs: ChildProcess[] = [];

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  if (!skip) await teardown(PREFIX);
  if (root) await rm(root, { recursive: true, force: true });
});

describe.skipIf(!!skip)('ambit up --netns, exec, down', () => {
  it('runs the quickstart in namespaces, curl in a pod reaches echo.demo, Ctrl-C removes it all', async () => {
    await teardown(PREFIX);
    root = await mkdtemp(path.join(tmpdir(), 'ambit-t5x-cli-'));
    const state = path.join(root, 'state');
    const up = await startUp(state);
    const body = await run([
      'exec',
      '--pod',
      'demo/sleep',
      '--state',
      state,
      '--',
      'curl',
      '-sS',
      '-m',
      '5',
      'http://echo.demo:8080/',
    ]);
    expect(JSON.parse(body)).toMatchObject({ pod: expect.stringMatching(/^demo\/echo-v[12]$/) });
    expect((await listNetns(PREFIX)).length).toBe(7); // router, 2 nodes, 4 pods
    up.proc.kill('SIGINT');
    expect(await exitCode(up.proc, 15_000)).toBe(0);
    expect(up.out()).toContain('ambit: stopping (removing the namespaces)');
    expect(await listNetns(PREFIX)).toEqual([]);
  }, 60_000);

  it('`--disable-capture` leaves pods on plain networking; `ambit down` removes what a killed `up` left', async () => {
    root ??= await mkdtemp(path.join(tmpdir(), 'ambit-t5x-cli-'));
    const up = await startUp(path.join(root, 'state2'), ['--disable-capture']);
    const sleep = `${PREFIX}pod-demo-sleep`;
    expect(await run(['netns', 'exec', sleep, 'iptables-save'], 'ip')).not.toMatch(/AMBIT/);
    const body = await run(
      ['netns', 'exec', sleep, 'curl', '-sS', '-m', '5', 'http://10.200.10.3:8080/'],
      'ip',
    );
    expect(JSON.parse(body)).toMatchObject({
      pod: 'demo/echo-v2',
      remote: expect.stringMatching(/^10\.200\.10\.1:/),
    });
    up.proc.kill('SIGKILL');
    await exitCode(up.proc, 5_000);
    expect((await listNetns(PREFIX)).length).toBeGreaterThan(0);
    const out = await run(['down', '--netns-prefix', PREFIX]);
    expect(out).toMatch(/removed \d+ network namespaces/);
    expect(await listNetns(PREFIX)).toEqual([]);
    expect(await run(['down', '--netns-prefix', PREFIX])).toMatch(/nothing to remove/);
  }, 60_000);
});

async function startUp(
  state: string,
  extra: string[] = [],
): Promise<{ proc: ChildProcess; out: () => string }> {
  let out = '';
  const proc = spawn(
    process.execPath,
    [AMBIT_BIN, 'up', '--netns', QUICKSTART, '--state', state, '--netns-prefix', PREFIX, ...extra],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  procs.push(proc);
  proc.stdout!.on('data', (c) => (out += c));
  proc.stderr!.on('data', (c) => (out += c));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready line within 30 s:\n${out}`)), 30_000);
    proc.stdout!.on('data', () => {
      if (out.includes('ambit: mesh ready in network namespaces')) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`ambit up --netns exited ${code}:\n${out}`));
    });
  });
  return { proc, out: () => out };
}

function exitCode(proc: ChildProcess, timeoutMs: number): Promise<number | null> {
  if (proc.exitCode !== null) return Promise.resolve(proc.exitCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`process did not exit within ${timeoutMs} ms`)),
      timeoutMs,
    );
    proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

function run(args: string[], cmd = 'ambit'): Promise<string> {
  const [file, argv] = cmd === 'ambit' ? [process.execPath, [AMBIT_BIN, ...args]] : [cmd, args];
  return new Promise((resolve, reject) => {
    execFile(file, argv, { timeout: 20_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout),
    );
  });
}
