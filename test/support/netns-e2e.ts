// What the e2e tests in real network namespaces (test/e2e/netns-*.test.ts, root) share: shell and
// curl inside a namespace, polling, the mesh's log lines as records, the manifests they write
// (pods whose app ambit runs in the pod's namespace, nodes, namespaces), and the mesh's life.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { NetnsMesh } from '../../src/cli/up-netns.js';
import { teardown } from '../../src/redirect/topology.js';

/** One log line of a mesh component, parsed (a line that is not JSON becomes `{msg: line}`). */
export interface MeshLog {
  component: string;
  rec: Record<string, unknown>;
}

/** NetnsMesh's `onLog` that appends every line to `logs`. */
export function collectLogs(logs: MeshLog[]): (component: string, line: string) => void {
  return (component, line) => {
    try {
      logs.push({ component, rec: JSON.parse(line) as Record<string, unknown> });
    } catch {
      logs.push({ component, rec: { msg: line } });
    }
  };
}

/** The first line of `logs` from index `from` on that `match`es, waiting up to `timeoutMs`. */
export async function waitForLog(
  logs: readonly MeshLog[],
  match: (l: MeshLog) => boolean,
  timeoutMs = 5_000,
  from = 0,
): Promise<MeshLog> {
  let found: MeshLog | undefined;
  await until(async () => (found = logs.slice(from).find(match)) !== undefined, timeoutMs).catch(() => {
    throw new Error(`no matching log line within ${timeoutMs} ms`);
  });
  return found!;
}

/** Polls `check` every 100 ms (a check that throws counts as not yet); throws after `timeoutMs`. */
export async function until(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Runs a command; resolves with its stdout, rejects with its stderr. */
export function sh(cmd: string, args: string[], timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout),
    );
  });
}

/** Runs a command inside network namespace `netns`. */
export function nsSh(netns: string, ...args: string[]): Promise<string> {
  return sh('ip', ['netns', 'exec', netns, ...args]);
}

/** An unmodified curl inside `netns` (fails on an HTTP error status or after `maxTime` s). */
export function curl(netns: string, url: string, maxTime = 5): Promise<string> {
  return sh(
    'ip',
    ['netns', 'exec', netns, 'curl', '-sS', '--fail', '-m', String(maxTime), url],
    (maxTime + 2) * 1000,
  );
}

/** Whether curl is installed (the tests that use it skip, saying so, when it is not). */
export const hasCurl = (): Promise<boolean> =>
  sh('curl', ['--version']).then(
    () => true,
    () => false,
  );

/**
 * A pod labelled app=<name>; with `app`, ambit runs an echo on 8080 in its namespace
 * (annotation ambit.dev/command) and the container declares that port.
 */
export function netnsPod(p: {
  namespace: string;
  name: string;
  node: string;
  ip: string;
  app: boolean;
  serviceAccount?: string;
}): string {
  return `apiVersion: v1
kind: Pod
metadata:
  name: ${p.name}
  namespace: ${p.namespace}
  labels: {app: ${p.name}}
${p.app ? '  annotations: {ambit.dev/command: "ambit echo --port 8080"}\n' : ''}spec:
  nodeName: ${p.node}
  serviceAccountName: ${p.serviceAccount ?? p.name}
  containers: [{name: c, image: x${p.app ? ', ports: [{containerPort: 8080}]' : ''}}]
status:
  podIP: ${p.ip}
`;
}

/** A Node with one InternalIP. */
export const netnsNode = (name: string, ip: string) =>
  `apiVersion: v1\nkind: Node\nmetadata: {name: ${name}}\nstatus: {addresses: [{type: InternalIP, address: ${ip}}]}\n`;

/** A Namespace, ambient (istio.io/dataplane-mode) or not. */
export const netnsNamespace = (name: string, ambient: boolean) =>
  `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n${ambient ? '  labels: {istio.io/dataplane-mode: ambient}\n' : ''}`;

/** A NetnsMesh started from a scratch config folder; `stop()` leaves no namespace and no folder. */
export interface NetnsE2e {
  mesh: NetnsMesh;
  configDir: string;
  stop(): Promise<void>;
}

/**
 * Removes what a crashed earlier run left under `prefix`, writes `files` (name → YAML, in order)
 * into a new config folder and starts the mesh, every log line into `logs`. A start that fails
 * cleans up before it throws.
 */
export async function startNetnsE2e(o: {
  prefix: string;
  files: Record<string, string>;
  logs: MeshLog[];
  discoverPodsByIp?: boolean;
}): Promise<NetnsE2e> {
  await teardown(o.prefix);
  const root = await mkdtemp(path.join(tmpdir(), o.prefix));
  let mesh: NetnsMesh | undefined;
  const stop = async () => {
    await mesh?.stop();
    await teardown(o.prefix);
    await rm(root, { recursive: true, force: true });
  };
  try {
    const configDir = path.join(root, 'config');
    await mkdir(configDir);
    for (const [name, yaml] of Object.entries(o.files)) await writeFile(path.join(configDir, name), yaml);
    mesh = await NetnsMesh.start({
      configDir,
      stateDir: path.join(root, 'state'),
      prefix: o.prefix,
      ...(o.discoverPodsByIp ? { discoverPodsByIp: true } : {}),
      onLog: collectLogs(o.logs),
    });
    return { mesh, configDir, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
