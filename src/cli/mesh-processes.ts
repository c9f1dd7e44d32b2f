// The child processes of a mesh run on this machine, as `ambit up` starts them in local mode
// (mesh-runner.ts) and in netns mode (up-netns.ts): ambit components (control plane,
// node proxies, waypoints) that report "ready" over IPC, and the pods' app commands. One place
// spawns, pipes logs, kills, restarts and stops them (`MeshProcesses`), and builds the component
// arguments both modes share; what runs where is the caller's business. `MeshRun` is the common
// base of the two mesh classes: kill, restart and pid of one component.
//
// Supervision (as a DaemonSet or Deployment would): once the mesh is up (`supervise()`), an ambit
// component that exits on its own is started again after a back-off (restart-backoff.ts), with a
// log line "restarting node/node-1 in 400ms (exit code 1, restart 3)". A component a caller
// stopped on purpose (`kill`, a removed Node) is left stopped until `restart`; stopping the mesh
// cancels every pending restart, so Ctrl-C during a back-off wait starts nothing again. Pods' app
// commands are not supervised (an app that exits may mean to).
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { inNetns } from '../redirect/topology.js';
import { RestartBackoff, restartMessage, type RestartPolicy } from './restart-backoff.js';

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
  /** An ambit component (reports ready over IPC), which supervision restarts. */
  ambit?: boolean;
  /** Stopped on purpose (`kill`): not restarted until `restart`. */
  held?: boolean;
  backoff?: RestartBackoff;
  /** A pending supervised restart, or the timer that declares the current run stable. */
  restartTimer?: NodeJS.Timeout;
  stableTimer?: NodeJS.Timeout;
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
  /** Back-off of supervised restarts (defaults in restart-backoff.ts). */
  restart?: Partial<RestartPolicy>;
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
  private supervising = false;

  constructor(private readonly opts: MeshProcessesOptions) {}

  get(name: string): MeshProcess | undefined {
    return this.children.get(name);
  }

  entries(): IterableIterator<[string, MeshProcess]> {
    return this.children.entries();
  }

  /** Forgets a component (a removed Node or waypoint); a pending restart of it is cancelled. */
  delete(name: string): void {
    const c = this.children.get(name);
    if (c) clearTimers(c);
    this.children.delete(name);
  }

  /**
   * From now on an ambit component that exits without being told to is restarted. Called once
   * the mesh is up: an exit during start-up fails the start instead.
   */
  supervise(): void {
    this.supervising = true;
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
    child.ambit = true;
    child.held = false;
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

  /**
   * Kills one component and waits for it to exit; it stays stopped (no supervised restart) until
   * `restart`. A component waiting for a supervised restart just stays stopped.
   */
  async kill(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const c = this.children.get(name);
    if (!c?.proc && !c?.restartTimer) throw new Error(`no running component ${name}`);
    c.held = true;
    clearTimers(c);
    if (!c.proc) return;
    c.proc.kill(signal);
    await c.exited;
    c.proc = undefined;
  }

  /** Starts a killed component again with the same arguments and waits until it is ready. */
  async restart(name: string): Promise<void> {
    const c = this.children.get(name);
    if (!c) throw new Error(`unknown component ${name}`);
    if (c.proc) await this.kill(name, 'SIGTERM');
    clearTimers(c);
    c.backoff = undefined; // an operator's restart starts a fresh history
    await this.spawnAmbit(name, c.args, c.netns);
  }

  pid(name: string): number | undefined {
    return this.children.get(name)?.proc?.pid;
  }

  /**
   * Cancels every pending restart, then SIGTERM to every running child, SIGKILL to those still
   * running after 5 s; resolves when all exited. The caller has set `stopping` first.
   */
  async stopAll(): Promise<void> {
    for (const c of this.children.values()) clearTimers(c);
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
    const run = { quiet: false };
    if (child.ambit) this.watchRun(child, proc, run);
    const sink = this.opts.onLog ?? (() => {});
    for (const stream of [proc.stdout, proc.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream }).on('line', (line) => {
        // A quiet run of a crash loop: counted, not shown (restart-backoff.ts).
        if (run.quiet) child.backoff?.countQuietLine();
        else sink(child.name, line);
      });
    }
  }

  /** Supervision of one run of an ambit component: when it counts as stable, and its exit. */
  private watchRun(child: MeshProcess, proc: ChildProcess, run: { quiet: boolean }): void {
    const backoff = (child.backoff ??= new RestartBackoff(this.opts.restart));
    backoff.started(Date.now());
    run.quiet = !backoff.loud;
    if (child.stableTimer) clearTimeout(child.stableTimer);
    child.stableTimer = setTimeout(() => {
      child.stableTimer = undefined;
      run.quiet = false;
      const after = backoff.ranStably(Date.now());
      if (after !== undefined) this.log(30, `${child.name} is running again after ${after} restarts`);
    }, backoff.stableMs + 10); // + 10 ms: timers run on a monotonic clock, the back-off on Date.now()
    child.stableTimer.unref();
    proc.once('exit', (code, signal) => {
      if (child.proc !== proc) return; // a newer run has taken its place
      child.proc = undefined;
      if (child.stableTimer) clearTimeout(child.stableTimer);
      child.stableTimer = undefined;
      if (this.opts.stopping()) return; // the mesh is stopping: expected
      if (child.held) return this.log(30, `${child.name} exited (stopped on request)`, { code, signal });
      if (this.children.get(child.name) !== child) return; // forgotten (removed from the folder)
      if (!this.supervising) {
        this.log(40, `${child.name} exited`, { code, signal });
        return;
      }
      const d = backoff.exited(Date.now());
      if (d.loud) this.log(40, restartMessage(child.name, d, { code, signal }), { code, signal });
      child.restartTimer = setTimeout(() => {
        child.restartTimer = undefined;
        if (this.opts.stopping() || child.held || this.children.get(child.name) !== child) return;
        this.spawnAmbit(child.name, child.args, child.netns).catch((err: Error) => {
          // An exit before ready is the next turn of the loop (handled above); anything else
          // (no ready within the timeout) is said once, and the process is left running.
          if (child.proc && child.proc.exitCode === null && child.proc.signalCode === null)
            this.log(40, `${child.name} restarted but ${err.message}`);
        });
      }, d.delayMs);
    });
  }

  private log(level: number, msg: string, fields: Record<string, unknown> = {}): void {
    this.opts.onLog?.('ambit', JSON.stringify({ level, time: new Date().toISOString(), msg, ...fields }));
  }
}

function clearTimers(c: MeshProcess): void {
  if (c.restartTimer) clearTimeout(c.restartTimer);
  if (c.stableTimer) clearTimeout(c.stableTimer);
  c.restartTimer = undefined;
  c.stableTimer = undefined;
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
