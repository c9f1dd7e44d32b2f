// Runs a whole mesh on this machine from a folder of manifests (local mode): the control plane,
// one node proxy per Node object and one waypoint per waypoint Gateway (placed as the control
// plane places it: controlplane/waypoints.ts), each in its own child process (so tests can kill
// and restart one), plus the app command of every pod that names one. Used by `ambit up`,
// `ambit demo` and the integration tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile, chmod } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import net from 'node:net';
import { loadDirectory } from '../config/load.js';
import { FileSource } from '../config/file-source.js';
import { pino } from 'pino';
import {
  ANNOTATION_LOCAL_COMMAND,
  type KubeResource,
  type Namespace,
  type Node,
  type Pod,
} from '../config/types.js';
import { ensureNodeToken } from '../controlplane/node-auth.js';
import { isAmbientEnrolled } from '../controlplane/workload-builder.js';
import { planWaypoints } from '../controlplane/waypoints.js';
import { SOCKS5_PORT } from '../hbone/constants.js';

export const AMBIT_BIN = fileURLToPath(new URL('../../bin/ambit.js', import.meta.url));

export interface MeshOptions {
  configDir: string;
  stateDir: string;
  /** Control plane xDS+CA address; default 127.0.0.1:15012. */
  controlPlaneAddr?: string;
  /** Every log line of every child, with the component that wrote it. */
  onLog?: (component: string, line: string) => void;
  env?: Record<string, string>;
  certTtlSeconds?: number;
  startApps?: boolean;
  readyTimeoutMs?: number;
  /**
   * Keep watching the folder after start: Nodes and waypoint Gateways added later get their
   * process, removed ones are stopped, a waypoint whose address or node changed is restarted.
   */
  follow?: boolean;
}

export interface MeshNode {
  name: string;
  ip: string;
}
export interface MeshPod {
  namespace: string;
  name: string;
  ip: string;
  node: string;
  ambient: boolean;
  /** SOCKS5 entry into the mesh as this pod (ambient pods only). */
  socks?: string;
  command?: string;
  /** containerPorts the app is expected to listen on; `up` waits for them. */
  ports: number[];
}
export interface MeshWaypoint {
  namespace: string;
  name: string;
  ip: string;
  node: string;
  identity: string;
  waypointFor: string;
}
export interface MeshDescription {
  controlPlane: string;
  stateDir: string;
  nodes: MeshNode[];
  pods: MeshPod[];
  waypoints: MeshWaypoint[];
}

interface Child {
  name: string;
  args: string[];
  proc?: ChildProcess;
  exited?: Promise<number | null>;
}

export class Mesh {
  private readonly children = new Map<string, Child>();
  private stopping = false;
  private source?: FileSource;
  /** Reconciliations run one at a time, in order: a later folder state wins. */
  private reconciling: Promise<void> = Promise.resolve();

  private constructor(
    private readonly opts: MeshOptions,
    readonly description: MeshDescription,
    readonly configErrors: string[],
  ) {}

  static async start(opts: MeshOptions): Promise<Mesh> {
    const { objects, errors } = await loadDirectory(opts.configDir);
    const desc = describeMesh(objects, opts);
    const mesh = new Mesh(opts, desc, errors.map(String));
    await mkdir(path.join(opts.stateDir, 'bin'), { recursive: true });
    await writeShim(opts.stateDir);
    for (const n of desc.nodes) await ensureNodeToken(opts.stateDir, n.name);
    try {
      await mesh.spawnChild('controlplane', [
        'controlplane',
        '--config',
        opts.configDir,
        '--state',
        opts.stateDir,
        '--listen',
        desc.controlPlane,
      ]);
      await Promise.all(desc.nodes.map((n) => mesh.spawnChild(`node/${n.name}`, mesh.nodeArgs(n))));
      await Promise.all(
        desc.waypoints.map((w) => mesh.spawnChild(`waypoint/${w.namespace}/${w.name}`, mesh.waypointArgs(w))),
      );
      if (opts.startApps !== false) {
        const apps = desc.pods.filter((p) => p.command);
        for (const p of apps) mesh.spawnApp(p);
        await Promise.all(apps.flatMap((p) => p.ports.map((port) => waitForPort(p.ip, port, 10_000))));
      }
    } catch (err) {
      await mesh.stop();
      throw err;
    }
    await writeFile(path.join(opts.stateDir, 'mesh.json'), JSON.stringify(desc, null, 2));
    if (opts.follow) await mesh.follow();
    return mesh;
  }

  /** Watches the folder and reconciles node proxy and waypoint processes with it. */
  private async follow(): Promise<void> {
    // The control plane reports bad manifests; this watcher only needs to see the good ones.
    const sink = this.opts.onLog ?? (() => {});
    const logger = pino({ level: 'error' }, { write: (line: string) => sink('ambit', line.trimEnd()) });
    const source = new FileSource({ dir: this.opts.configDir, logger });
    this.source = source;
    let first = true;
    source.onChange((_change, snapshot) => {
      if (first) return void (first = false); // the state Mesh.start() already laid out
      const objects = [...snapshot.objects.values()];
      this.reconciling = this.reconciling.then(() => this.reconcile(objects));
    });
    await source.start();
  }

  private async reconcile(objects: KubeResource[]): Promise<void> {
    if (this.stopping) return;
    const next = describeMesh(objects, { ...this.opts, controlPlaneAddr: this.description.controlPlane });
    const started: string[] = [];
    const stopped: string[] = [];
    const want = new Map<string, string[]>();
    for (const n of next.nodes) {
      await ensureNodeToken(this.opts.stateDir, n.name);
      want.set(`node/${n.name}`, this.nodeArgs(n));
    }
    for (const w of next.waypoints) want.set(`waypoint/${w.namespace}/${w.name}`, this.waypointArgs(w));
    for (const [name, c] of this.children) {
      if (!/^(node|waypoint)\//.test(name)) continue;
      const args = want.get(name);
      if (args && args.join('\0') === c.args.join('\0')) continue;
      if (c.proc) await this.kill(name, 'SIGTERM');
      this.children.delete(name);
      if (!args) stopped.push(name);
    }
    await Promise.all(
      [...want]
        .filter(([name]) => !this.children.has(name))
        .map(async ([name, args]) => {
          try {
            await this.spawnChild(name, args);
            started.push(name);
          } catch (err) {
            this.opts.onLog?.(
              'ambit',
              JSON.stringify({ level: 50, msg: `could not start ${name}: ${String(err)}` }),
            );
          }
        }),
    );
    this.description.nodes.splice(0, Infinity, ...next.nodes);
    this.description.waypoints.splice(0, Infinity, ...next.waypoints);
    if (started.length || stopped.length) {
      this.opts.onLog?.(
        'ambit',
        JSON.stringify({ level: 30, msg: 'mesh follows the folder', started, stopped }),
      );
      await writeFile(path.join(this.opts.stateDir, 'mesh.json'), JSON.stringify(this.description, null, 2));
    }
  }

  private nodeArgs(n: MeshNode): string[] {
    return [
      'node',
      '--name',
      n.name,
      '--ip',
      n.ip,
      '--state',
      this.opts.stateDir,
      '--controlplane',
      this.description.controlPlane,
      ...(this.opts.certTtlSeconds ? ['--cert-ttl', String(this.opts.certTtlSeconds)] : []),
    ];
  }

  private waypointArgs(w: MeshWaypoint): string[] {
    return [
      'waypoint',
      '--name',
      `${w.namespace}/${w.name}`,
      '--ip',
      w.ip,
      '--node',
      w.node,
      '--state',
      this.opts.stateDir,
      '--controlplane',
      this.description.controlPlane,
      ...(this.opts.certTtlSeconds ? ['--cert-ttl', String(this.opts.certTtlSeconds)] : []),
    ];
  }

  /** Kills one component ("controlplane", "node/<name>", "waypoint/<ns>/<name>", "app/<ns>/<pod>") and waits for it to exit. */
  async kill(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const c = this.children.get(name);
    if (!c?.proc) throw new Error(`no running component ${name}`);
    c.proc.kill(signal);
    await c.exited;
    c.proc = undefined;
  }

  /** Starts a killed component again with the same arguments and waits until it is ready. */
  async restart(name: string): Promise<void> {
    const c = this.children.get(name);
    if (!c) throw new Error(`unknown component ${name}`);
    if (c.proc) await this.kill(name, 'SIGTERM');
    await this.spawnChild(name, c.args);
  }

  pid(name: string): number | undefined {
    return this.children.get(name)?.proc?.pid;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.source?.stop();
    await this.reconciling;
    const running = [...this.children.values()].filter((c) => c.proc);
    for (const c of running) c.proc!.kill('SIGTERM');
    const deadline = setTimeout(() => running.forEach((c) => c.proc?.kill('SIGKILL')), 5000);
    await Promise.all(running.map((c) => c.exited));
    clearTimeout(deadline);
  }

  private spawnChild(
    name: string,
    args: string[],
    readyTimeoutMs = this.opts.readyTimeoutMs ?? 30_000,
  ): Promise<void> {
    // AMBIT_NODE_ARGS passes flags to the node binary itself (e.g. --cpu-prof for profiling).
    const nodeArgs = (this.opts.env?.AMBIT_NODE_ARGS ?? process.env.AMBIT_NODE_ARGS ?? '')
      .split(' ')
      .filter(Boolean);
    const proc = spawn(process.execPath, [...nodeArgs, AMBIT_BIN, ...args], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: { ...process.env, ...this.opts.env },
    });
    const child: Child = this.children.get(name) ?? { name, args };
    child.proc = proc;
    child.exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
    this.children.set(name, child);
    this.pipeLogs(name, proc);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${name} did not become ready within ${readyTimeoutMs} ms`)),
        readyTimeoutMs,
      );
      proc.on('message', (m: { type?: string }) => {
        if (m?.type === 'ready') {
          clearTimeout(timer);
          resolve();
        }
      });
      proc.once('exit', (code, signal) => {
        clearTimeout(timer);
        if (!this.stopping)
          this.opts.onLog?.('ambit', JSON.stringify({ level: 40, msg: `${name} exited`, code, signal }));
        reject(new Error(`${name} exited (code ${code}, signal ${signal}) before it was ready`));
      });
    });
  }

  private spawnApp(p: MeshPod): void {
    const name = `app/${p.namespace}/${p.name}`;
    // `exec` so the app replaces the shell and our signals reach it.
    const proc = spawn('/bin/sh', ['-c', `exec ${p.command!}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        ...this.opts.env,
        PATH: `${path.join(this.opts.stateDir, 'bin')}:${process.env.PATH ?? ''}`,
        POD_IP: p.ip,
        POD_NAME: p.name,
        POD_NAMESPACE: p.namespace,
      },
    });
    this.children.set(name, {
      name,
      args: [],
      proc,
      exited: new Promise((r) => proc.once('exit', (c) => r(c))),
    });
    this.pipeLogs(name, proc);
  }

  private pipeLogs(name: string, proc: ChildProcess): void {
    const sink = this.opts.onLog ?? (() => {});
    for (const stream of [proc.stdout, proc.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream }).on('line', (line) => sink(name, line));
    }
  }
}

/** Nodes, pods and addresses of a manifest set, as `ambit up` lays them out. */
export function describeMesh(
  objects: KubeResource[],
  opts: Pick<MeshOptions, 'controlPlaneAddr' | 'stateDir'>,
): MeshDescription {
  const namespaces = new Map<string, Namespace>();
  const nodes: MeshNode[] = [];
  const pods: MeshPod[] = [];
  for (const o of objects) if (o.kind === 'Namespace') namespaces.set(o.metadata.name, o);
  for (const o of objects) {
    if (o.kind === 'Node') {
      const ip = nodeIp(o);
      if (ip) nodes.push({ name: o.metadata.name, ip });
    }
  }
  for (const o of objects) {
    if (o.kind !== 'Pod') continue;
    const pod = o as Pod;
    const ip = pod.status?.podIP;
    if (!ip || !pod.spec.nodeName) continue;
    const ns = pod.metadata.namespace ?? 'default';
    const ambient = isAmbientEnrolled(pod, namespaces.get(ns)) && !pod.spec.hostNetwork;
    pods.push({
      namespace: ns,
      name: pod.metadata.name,
      ip,
      node: pod.spec.nodeName,
      ambient,
      socks: ambient ? `${ip}:${SOCKS5_PORT}` : undefined,
      command: pod.metadata.annotations?.[ANNOTATION_LOCAL_COMMAND],
      ports: (pod.spec.containers ?? []).flatMap((c) => (c.ports ?? []).map((p) => p.containerPort)),
    });
  }
  const waypoints = planWaypoints(objects).waypoints.map((w) => ({
    namespace: w.namespace,
    name: w.name,
    ip: w.ip,
    node: w.node,
    identity: `spiffe://cluster.local/ns/${w.namespace}/sa/${w.serviceAccount}`,
    waypointFor: w.waypointFor,
  }));
  return {
    controlPlane: opts.controlPlaneAddr ?? '127.0.0.1:15012',
    stateDir: opts.stateDir,
    nodes,
    pods,
    waypoints,
  };
}

function nodeIp(n: Node): string | undefined {
  const addrs = n.status?.addresses ?? [];
  return (addrs.find((a) => a.type === 'InternalIP') ?? addrs[0])?.address;
}

/** Resolves once something accepts TCP on host:port, or after the deadline (the app may be slow; not fatal). */
async function waitForPort(host: string, port: number, deadlineMs: number): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (Date.now() < end) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host, port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `ambit` on the PATH of app commands, whatever way ambit itself was installed. */
async function writeShim(stateDir: string): Promise<void> {
  const shim = path.join(stateDir, 'bin', 'ambit');
  await writeFile(shim, `#!/bin/sh\nexec "${process.execPath}" "${AMBIT_BIN}" "$@"\n`);
  await chmod(shim, 0o755);
}
