// Transparent capture in real network namespaces (root): `ambit up --netns`'s topology, in-pod
// iptables redirection, unmodified curl in pods. Two nodes; demo is ambient, legacy is not.
//   demo/sleep   node-1  10.200.10.1  client (no app)
//   demo/echo    node-2  10.200.10.2  echo, behind Service echo.demo (10.200.100.1:8080)
//   demo/strict  node-2  10.200.10.3  echo, PeerAuthentication STRICT
//   legacy/client node-1 10.200.10.4  plaintext client outside the mesh
//   demo/web     node-1  10.200.10.5  another captured pod on sleep's node
// Namespaces are named ambit-t5x-a-*; all are removed at the end, also after a failure.
import { spawn } from 'node:child_process';
import { readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  curl,
  hasCurl,
  sh,
  until,
  waitForLog,
  netnsNamespace,
  netnsNode,
  netnsPod,
  type MeshLog,
  startNetnsE2e,
  type NetnsE2e,
} from '../support/netns-e2e.js';
import { netnsPrerequisites, type NetnsMesh } from '../../src/cli/up-netns.js';
import { listNetns } from '../../src/redirect/topology.js';

const PREFIX = 'ambit-t5x-a-';
const SLEEP = `${PREFIX}pod-demo-sleep`;
const ECHO = `${PREFIX}pod-demo-echo`;
const CLIENT = `${PREFIX}pod-legacy-client`;
const WEB = `${PREFIX}pod-demo-web`;
const ROUTER = `${PREFIX}router`;

const skip = (await netnsPrerequisites()) ?? ((await hasCurl()) ? undefined : 'curl is not installed');
if (skip) console.log(`e2e transparent capture skipped: ${skip}`);

const NAMESPACES = (demoAmbient: boolean) =>
  `${netnsNamespace('demo', demoAmbient)}---\n${netnsNamespace('legacy', false)}`;

const pod = (ns: string, name: string, node: string, ip: string, app: boolean, sa = name) =>
  netnsPod({ namespace: ns, name, node, ip, app, serviceAccount: sa });

const MESH = [
  netnsNode('node-1', '127.0.1.1'),
  netnsNode('node-2', '127.0.1.2'),
  pod('demo', 'sleep', 'node-1', '127.0.10.1', false),
  pod('demo', 'echo', 'node-2', '127.0.10.2', true),
  pod('demo', 'strict', 'node-2', '127.0.10.3', true),
  pod('legacy', 'client', 'node-1', '127.0.10.4', false),
  pod('demo', 'web', 'node-1', '127.0.10.5', false),
  `apiVersion: v1\nkind: Service\nmetadata: {name: echo, namespace: demo}\nspec:\n  clusterIP: 127.0.100.1\n  selector: {app: echo}\n  ports: [{name: http, port: 8080, targetPort: 8080}]\n`,
  `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: strict, namespace: demo}\nspec:\n  selector: {matchLabels: {app: strict}}\n  mtls: {mode: STRICT}\n`,
].join('---\n');

let e2e: NetnsE2e | undefined;
let configDir: string;
let mesh: NetnsMesh | undefined;
const logs: MeshLog[] = [];

describe.skipIf(!!skip)('transparent capture in network namespaces', () => {
  beforeAll(async () => {
    e2e = await startNetnsE2e({
      prefix: PREFIX,
      files: { 'namespaces.yaml': NAMESPACES(true), 'mesh.yaml': MESH },
      logs,
    });
    ({ mesh, configDir } = e2e);
    // Count what crosses the router between the nodes: plaintext app traffic vs HBONE.
    for (const port of ['8080', '15008'])
      for (const dir of ['--dport', '--sport'])
        await sh('ip', ['netns', 'exec', ROUTER, 'iptables', '-A', 'FORWARD', '-p', 'tcp', dir, port]);
  }, 60_000);

  afterAll(async () => {
    if (process.env.AMBIT_E2E_LOGS)
      await writeFile(process.env.AMBIT_E2E_LOGS, logs.map((l) => JSON.stringify(l)).join('\n'));
    await e2e?.stop();
  }, 30_000);

  it('an unmodified curl in a pod reaches a pod on another node over HBONE, as its own identity', async () => {
    await routerCounters(true);
    const body = JSON.parse(await curl(SLEEP, 'http://echo.demo:8080/')) as { pod: string; remote: string };
    expect(body.pod).toBe('demo/echo');
    expect(body.remote).toMatch(/^10\.200\.10\.1:/); // the app sees the client pod's address
    const inbound = await waitForLog(
      logs,
      (l) =>
        l.component === 'node/node-2' &&
        l.rec.msg === 'connection complete' &&
        l.rec.direction === 'inbound' &&
        l.rec['dst.workload'] === 'echo' &&
        l.rec.connection_security_policy === 'mutual_tls',
    );
    expect(inbound.rec['src.identity']).toBe('spiffe://cluster.local/ns/demo/sa/sleep');
    // HBONE left from inside the sleep pod: its address is the TCP peer.
    expect(String(inbound.rec['src.addr'])).toMatch(/^10\.200\.10\.1:/);
    const c = await routerCounters();
    expect(c['8080']).toBe(0); // no plaintext on the app port between the nodes
    expect(c['15008']).toBeGreaterThan(0);
  });

  it('resolves mesh names through the node proxy DNS (15053)', async () => {
    expect(
      await sh('ip', ['netns', 'exec', SLEEP, 'getent', 'ahostsv4', 'echo.demo.svc.cluster.local']),
    ).toContain('10.200.100.1');
    expect(await sh('ip', ['netns', 'exec', SLEEP, 'getent', 'ahostsv4', 'echo'])).toContain('10.200.100.1');
  });

  it('PeerAuthentication STRICT refuses a plaintext client outside the mesh; PERMISSIVE admits it', async () => {
    await expect(curl(CLIENT, 'http://10.200.10.3:8080/')).rejects.toThrow();
    const denied = await waitForLog(
      logs,
      (l) => l.rec.msg === 'connection denied by policy' && l.rec['dst.workload'] === 'strict',
    );
    expect(String(denied.rec.reason)).toMatch(/PeerAuthentication STRICT/);
    expect(denied.rec['src.ip']).toBe('10.200.10.4');

    const body = JSON.parse(await curl(CLIENT, 'http://10.200.10.2:8080/')) as {
      pod: string;
      remote: string;
    };
    expect(body.pod).toBe('demo/echo');
    expect(body.remote).toMatch(/^10\.200\.10\.4:/);
    const admitted = await waitForLog(
      logs,
      (l) =>
        l.rec.msg === 'connection complete' &&
        l.rec.listener === 'plaintext' &&
        l.rec['dst.workload'] === 'echo',
    );
    expect(admitted.rec['src.addr']).toMatch(/^10\.200\.10\.4:/);
  });

  it('a pod added to the manifests at run time gets a namespace and is captured; removed, it leaves nothing', async () => {
    const LATE = `${PREFIX}pod-demo-late`;
    const from = logs.length;
    await writeFile(path.join(configDir, 'late.yaml'), pod('demo', 'late', 'node-1', '127.0.10.9', true));
    const added = (l: MeshLog) =>
      l.rec.msg === 'pods follow the manifests' && String(l.rec.added).includes(LATE);
    await waitForLog(logs, added, 10_000, from); // its namespace is fully wired (routes, resolv.conf)
    await until(async () => (await ourRules(LATE)) > 0, 10_000);
    // The node proxy may still be setting the new pod up (its xDS update and certificate).
    await until(
      async () => (await curl(LATE, 'http://echo.demo:8080/', 3).catch(() => '')).includes('demo/echo'),
      12_000,
    );
    // Its app was started too (once captured), and is reached through the mesh.
    await until(
      async () => (await curl(SLEEP, 'http://10.200.10.9:8080/', 3).catch(() => '')).includes('demo/late'),
      10_000,
    );
    await rm(path.join(configDir, 'late.yaml'));
    await until(async () => !(await listNetns(PREFIX)).includes(LATE), 10_000);
    expect(await sh('ip', ['netns', 'exec', ROUTER, 'ip', 'route'])).not.toContain('10.200.10.9');
  });

  it('a pod whose network namespace vanished is reported as not captured, the others keep working', async () => {
    const GONE = `${PREFIX}pod-demo-gone`;
    await writeFile(path.join(configDir, 'gone.yaml'), pod('demo', 'gone', 'node-1', '127.0.10.8', false));
    await until(async () => (await listNetns(PREFIX)).includes(GONE) && (await ourRules(GONE)) > 0, 10_000);
    await sh('ip', ['netns', 'del', GONE]); // out from under the node proxy
    const pid = mesh!.pid('node/node-1')!;
    const from = logs.length;
    process.kill(pid, 'SIGUSR2'); // capture off and on: every pod is set up again
    await until(async () => (await ourRules(SLEEP)) === 0, 5_000);
    process.kill(pid, 'SIGUSR2');
    const failed = await waitForLog(
      logs,
      (l) => l.rec.msg === 'pod not captured' && l.rec.pod === 'demo/gone',
      5_000,
      from,
    );
    expect(String(failed.rec.err)).toMatch(/network namespace \S+gone of pod demo\/gone does not exist/);
    await until(async () => (await ourRules(SLEEP)) > 0 && (await ourRules(WEB)) > 0, 5_000);
    expect(JSON.parse(await curl(SLEEP, 'http://echo.demo:8080/'))).toMatchObject({ pod: 'demo/echo' });
    await rm(path.join(configDir, 'gone.yaml'));
    await waitForLog(logs, (l) => l.rec.msg === 'pods follow the manifests', 10_000, from);
  });

  it('unlabelling the namespace releases its pods with no leftover rules; labelling captures them again', async () => {
    expect(await ourRules(SLEEP)).toBeGreaterThan(0);
    await writeFile(path.join(configDir, 'namespaces.yaml'), NAMESPACES(false));
    await until(async () => (await ourRules(SLEEP)) === 0 && (await ourRules(ECHO)) === 0, 10_000);
    expect(await sh('ip', ['netns', 'exec', SLEEP, 'iptables-save'])).not.toMatch(/AMBIT/);
    // Plain networking: the app port crosses the router in the clear, no HBONE at all.
    await routerCounters(true);
    const plain = JSON.parse(await curl(SLEEP, 'http://10.200.10.2:8080/')) as { remote: string };
    expect(plain.remote).toMatch(/^10\.200\.10\.1:/);
    expect(await routerCounters()).toMatchObject({ '15008': 0, '8080': expect.any(Number) });
    expect((await routerCounters())['8080']).toBeGreaterThan(0);

    await writeFile(path.join(configDir, 'namespaces.yaml'), NAMESPACES(true));
    await until(async () => (await ourRules(SLEEP)) > 0 && (await ourRules(ECHO)) > 0, 10_000);
    await until(
      async () => (await curl(SLEEP, 'http://echo.demo:8080/').catch(() => '')).includes('demo/echo'),
      5_000,
    );
  });

  it('the kill switch (SIGUSR2) returns the node to plain networking within seconds, and back', async () => {
    const pid = mesh!.pid('node/node-1')!;
    const rules = await ourRules(SLEEP);
    process.kill(pid, 'SIGUSR2');
    await until(async () => (await ourRules(SLEEP)) === 0 && !(await listening(SLEEP, 15001)), 5_000);
    // sleep's traffic is no longer captured: it reaches echo (node-2, PERMISSIVE) as plaintext.
    const plain = JSON.parse(await curl(SLEEP, 'http://10.200.10.2:8080/')) as { pod: string };
    expect(plain.pod).toBe('demo/echo');
    await waitForLog(
      logs,
      (l) =>
        l.rec.listener === 'plaintext' &&
        l.rec.msg === 'connection complete' &&
        /^10\.200\.10\.1:/.test(String(l.rec['src.addr'])),
    );
    process.kill(pid, 'SIGUSR2');
    await until(async () => (await ourRules(SLEEP)) === rules && (await listening(SLEEP, 15001)), 5_000);
  });

  it('a pod whose capture port is taken gets no rules at all, its neighbour is captured, and it is retried', async () => {
    const pid = mesh!.pid('node/node-1')!;
    process.kill(pid, 'SIGUSR2'); // capture off on node-1
    await until(
      async () =>
        (await ourRules(SLEEP)) === 0 && (await ourRules(WEB)) === 0 && !(await listening(SLEEP, 15001)),
      5_000,
    );
    const blocker = spawn('ip', [
      'netns',
      'exec',
      SLEEP,
      process.execPath,
      '-e',
      "require('net').createServer().listen(15001, '127.0.0.1', () => console.log('bound'))",
    ]);
    try {
      await new Promise<void>((resolve, reject) => {
        blocker.stdout.on('data', (c: Buffer) => c.toString().includes('bound') && resolve());
        blocker.once('exit', () => reject(new Error('blocker exited')));
      });
      const from = logs.length;
      process.kill(pid, 'SIGUSR2'); // capture on again
      await until(async () => (await ourRules(WEB)) > 0, 5_000);
      const failed = await waitForLog(
        logs,
        (l) => l.rec.msg === 'pod not captured' && l.rec.pod === 'demo/sleep',
        5_000,
        from,
      );
      expect(String(failed.rec.err)).toMatch(/EADDRINUSE/);
      expect(await ourRules(SLEEP)).toBe(0); // never half-captured
    } finally {
      blocker.kill();
    }
    await until(async () => (await ourRules(SLEEP)) > 0 && (await listening(SLEEP, 15001)), 6_000);
  });

  it('after a node proxy crash the pod fails closed; the restarted proxy reuses its rules and traffic flows within 2 s', async () => {
    const before = await ourRules(SLEEP);
    await mesh!.kill('node/node-1', 'SIGKILL');
    expect(await ourRules(SLEEP)).toBe(before); // rules stay: no bypass of the mesh while it is down
    await expect(curl(SLEEP, 'http://10.200.10.2:8080/', 2)).rejects.toThrow();
    const from = logs.length;
    await mesh!.restart('node/node-1');
    expect(await ourRules(SLEEP)).toBe(before);
    expect(
      logs
        .slice(from)
        .some(
          (l) =>
            l.rec.msg === 'node agent: redirection already in place; reused' && l.rec.pod === 'demo/sleep',
        ),
    ).toBe(true);
    await until(
      async () => (await curl(SLEEP, 'http://echo.demo:8080/', 1).catch(() => '')).includes('demo/echo'),
      2_000,
    );
  });

  it('stopping removes every namespace and file it created', async () => {
    await mesh!.stop();
    mesh = undefined;
    expect(await listNetns(PREFIX)).toEqual([]);
    expect(
      (await readdir('/etc/netns').catch(() => [] as string[])).filter((d) => d.startsWith(PREFIX)),
    ).toEqual([]);
    expect(await sh('ip', ['-o', 'link', 'show'])).not.toMatch(/ambit-/); // no link ever in the root namespace
  });
});

/** How many of our rules the namespace has (jumps included). */
async function ourRules(netns: string): Promise<number> {
  const save = await sh('ip', ['netns', 'exec', netns, 'iptables-save', '-t', 'nat']);
  return save.split('\n').filter((l) => l.startsWith('-A') && l.includes('AMBIT')).length;
}

async function listening(netns: string, port: number): Promise<boolean> {
  return (await sh('ip', ['netns', 'exec', netns, 'ss', '-Hltn', `sport = :${port}`])).trim() !== '';
}

/** Packets forwarded by the router on the app port and on HBONE (either direction); zeroes them with reset. */
async function routerCounters(reset = false): Promise<Record<string, number>> {
  if (reset) {
    await sh('ip', ['netns', 'exec', ROUTER, 'iptables', '-Z', 'FORWARD']);
    return {};
  }
  const out = await sh('ip', ['netns', 'exec', ROUTER, 'iptables', '-L', 'FORWARD', '-v', '-x', '-n']);
  const counts: Record<string, number> = { '8080': 0, '15008': 0 };
  for (const line of out.split('\n')) {
    const m = /^\s*(\d+)\s+\d+\s+.*[ds]pt:(\d+)/.exec(line);
    if (m && m[2]! in counts) counts[m[2]!]! += Number(m[1]);
  }
  return counts;
}
