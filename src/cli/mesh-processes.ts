// The child processes of a mesh run on this machine, as `ambit up` starts them in local mode
// (mesh-runner.ts) and in netns mode (redirect/netns-mesh.ts): ambit components (control plane,
// node proxies, waypoints) that report "ready" over IPC, and the pods' app commands. One place
// spawns, pipes logs, kills, restarts and stops them (`MeshProcesses`), and builds the component
// arguments both modes share; what runs where is the caller's business. `MeshRun` is the common
// base of the two mesh classes: kill, restart and pid of one component.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { inNetns } from '../redirect/topology.js';

export const AMBIT_BIN = fileURLToPath(new URL('../../bin/ambit.js', import.meta.url));

/**
 * V8 flags for node proxies. A young generation capped at 1 MiB semi-spaces (V8 lets it grow to
 * 16 MiB): a node proxy's garbage is short-lived buffers and stream objects, so the bigger
 * nursery only holds RSS (≈ 12 MB at 1 000 req/s, 15–35 MB after a bulk transfer) and buys no
 * measurable CPU (more scavenges, each shorter: GC time per second unchanged). Where `ambit node`
 * runs on its own (DaemonSet), set NODE_OPTIONS=--max-semi-space-size=1.
 */
export const NODE_PROXY_V8_FLAGS: readonly string[] = ['--max-semi-space-size=1'];

/** One component: "controlplane", "node/<name>", "waypoint/<ns>/<name>" or "app/<ns>/<pod>". */
export interface MeshProcess {
  name: string;
  args: string[];
  /** The network namespace it runs in (netns mode, through `ip netns exec`); the host's when unset. */
  netns?: string;
  proc?: ChildProcess;
  exited?: Promise<number | null>;
}

export interface MeshProcessesOptions {
  stateDir: string;
  /** Every log line of every child, with the component that wrote it. */
  onLog?: (component: string, line: string) => void;
  /** Added to the environment of every child. */
  env?: Record<string, string>;
  readyTimeoutMs?: number;
  /** True once the mesh is stopping: an exit is then expected and not logged. */
  stopping: () => boolean;
}

/** What an app command is told about its pod. */
export interface AppPod {
  namespace: string;
  name: string;
  ip: string;
  command?: string;
}

export class MeshProcesses {
  private readonly children = new Map<string, MeshProcess>();

  constructor(private readonly opts: MeshProcessesOptions) {}

  get(name: string): MeshProcess | undefined {
    return this.children.get(name);
  }

  entries(): IterableIterator<[string, MeshProcess]> {
    return this.children.entries();
  }

  delete(name: string): void {
    this.children.delete(name);
  }

  has(name: string): boolean {
    return this.children.has(name);
  }

  /** Starts an ambit component and resolves once it reports ready over IPC. */
  spawnAmbit(
    name: string,
    args: string[],
    netns?: string,
    readyTimeoutMs = this.opts.readyTimeoutMs ?? 30_000,
  ): Promise<void> {
    // AMBIT_NODE_ARGS passes flags to the node binary itself (e.g. --cpu-prof for profiling);
    // they come after the defaults, so they can override them.
    const nodeArgs = (this.opts.env?.AMBIT_NODE_ARGS ?? process.env.AMBIT_NODE_ARGS ?? '')
      .split(' ')
      .filter(Boolean);
    if (name.startsWith('node/')) nodeArgs.unshift(...NODE_PROXY_V8_FLAGS);
    // `ip netns exec` execs the command in place: the pid and the IPC channel are the child's own.
    const [cmd, ...prefix] = [...(netns ? inNetns(netns) : []), process.execPath];
    const proc = spawn(cmd!, [...prefix, ...nodeArgs, AMBIT_BIN, ...args], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: { ...process.env, ...this.opts.env },
    });
    const child: MeshProcess = this.children.get(name) ?? { name, args, netns };
    this.track(child, proc);
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
        if (!this.opts.stopping())
          this.opts.onLog?.('ambit', JSON.stringify({ level: 40, msg: `${name} exited`, code, signal }));
        reject(new Error(`${name} exited (code ${code}, signal ${signal}) before it was ready`));
      });
    });
  }

  /** Starts a pod's app command (`app/<ns>/<pod>`), with `ambit` on its PATH and the POD_* variables. */
  spawnApp(pod: AppPod, netns?: string): void {
    const name = `app/${pod.namespace}/${pod.name}`;
    // `exec` so the app replaces the shell and our signals reach it.
    const [cmd, ...prefix] = [...(netns ? inNetns(netns) : []), '/bin/sh'];
    const proc = spawn(cmd!, [...prefix, '-c', `exec ${pod.command!}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        ...this.opts.env,
        PATH: `${path.join(this.opts.stateDir, 'bin')}:${process.env.PATH ?? ''}`,
        POD_IP: pod.ip,
        POD_NAME: pod.name,
        POD_NAMESPACE: pod.namespace,
      },
    });
    this.track({ name, args: [], netns }, proc);
  }

  /** Kills one component and waits for it to exit. */
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
    await this.spawnAmbit(name, c.args, c.netns);
  }

  pid(name: string): number | undefined {
    return this.children.get(name)?.proc?.pid;
  }

  /** SIGTERM to every running child, SIGKILL to those still running after 5 s; resolves when all exited. */
  async stopAll(): Promise<void> {
    const running = [...this.children.values()].filter((c) => c.proc);
    for (const c of running) c.proc!.kill('SIGTERM');
    const deadline = setTimeout(() => running.forEach((c) => c.proc?.kill('SIGKILL')), 5000);
    await Promise.all(running.map((c) => c.exited));
    clearTimeout(deadline);
  }

  private track(child: MeshProcess, proc: ChildProcess): void {
    child.proc = proc;
    child.exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
    this.children.set(child.name, child);
    const sink = this.opts.onLog ?? (() => {});
    for (const stream of [proc.stdout, proc.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream }).on('line', (line) => sink(child.name, line));
    }
  }
}

/**
 * What both modes of `ambit up` share: the mesh's processes, and the control a caller (`ambit up`,
 * tests) has over one component.
 */
export abstract class MeshRun {
  /** Set once stop() begins: from then on an exit is expected. */
  protected stopping = false;
  protected readonly children: MeshProcesses;

  protected constructor(opts: Omit<MeshProcessesOptions, 'stopping'>) {
    this.children = new MeshProcesses({ ...opts, stopping: () => this.stopping });
  }

  /** Kills one component ("controlplane", "node/<name>", "waypoint/<ns>/<name>", "app/<ns>/<pod>") and waits for it to exit. */
  kill(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    return this.children.kill(name, signal);
  }

  /** Starts a killed component again with the same arguments and waits until it is ready. */
  restart(name: string): Promise<void> {
    return this.children.restart(name);
  }

  pid(name: string): number | undefined {
    return this.children.pid(name);
  }
}

/** The arguments of `ambit node` for a node of the mesh; `extra` goes before the certificate TTL. */
export function nodeArgs(
  n: { name: string; ip: string },
  mesh: { stateDir: string; controlPlane: string; certTtlSeconds?: number },
  extra: string[] = [],
): string[] {
  return [
    'node',
    '--name',
    n.name,
    '--ip',
    n.ip,
    '--state',
    mesh.stateDir,
    '--controlplane',
    mesh.controlPlane,
    ...extra,
    ...certTtlArgs(mesh.certTtlSeconds),
  ];
}

/** The arguments of `ambit waypoint` for a waypoint of the mesh. */
export function waypointArgs(
  w: { namespace: string; name: string; ip: string; node: string },
  mesh: { stateDir: string; controlPlane: string; certTtlSeconds?: number },
): string[] {
  return [
    'waypoint',
    '--name',
    `${w.namespace}/${w.name}`,
    '--ip',
    w.ip,
    '--node',
    w.node,
    '--state',
    mesh.stateDir,
    '--controlplane',
    mesh.controlPlane,
    ...certTtlArgs(mesh.certTtlSeconds),
  ];
}

function certTtlArgs(seconds: number | undefined): string[] {
  return seconds ? ['--cert-ttl', String(seconds)] : [];
}

/** Asks `check` every `everyMs` until it says true or `deadlineMs` have passed; either way resolves. */
export async function pollUntil(
  check: () => Promise<boolean>,
  deadlineMs: number,
  everyMs: number,
): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** `ambit` on the PATH of app commands, whatever way ambit itself was installed. */
export async function writeShim(stateDir: string): Promise<void> {
  const shim = path.join(stateDir, 'bin', 'ambit');
  await writeFile(shim, `#!/bin/sh\nexec "${process.execPath}" "${AMBIT_BIN}" "$@"\n`);
  await chmod(shim, 0o755);
}
