// `ambit node --workers N`, the primary's side: how many workers to run, and the supervisor that
// forks them (one process each: its own event loop, listeners, HBONE pool), feeds each one the
// state the primary holds (proxy/fan-out.ts) and restarts a worker that dies while the others
// keep serving. Processes rather than worker_threads: a crash (a native fault, an abort, the OOM
// killer) then takes one worker and not the node, and the crash is observable by its pid.
import { fork, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../common/log.js';
import { nativeStatus } from '../redirect/native.js';
import type { FromWorker, ToWorker, WorkerStatus } from '../proxy/fan-out.js';

/**
 * "auto" stops here: each worker holds its own HBONE connections to every peer it talks to and
 * ~50 MB of its own heap and code, so past 8 the memory and connection count grow faster than a
 * node proxy's share of a node's traffic needs (ztunnel's default is 2 threads).
 */
export const MAX_AUTO_WORKERS = 8;
export const MAX_WORKERS = 64;

/** What a worker process is started with (argv[2], JSON). */
export interface WorkerInit {
  index: number;
  nodeName: string;
  nodeIp: string;
  stateDir: string;
  trustDomain?: string;
  ports?: { hbone?: number; socks5?: number };
  accessLog?: string;
  metrics?: boolean;
}

/**
 * The number of workers to run for a request ("auto", a number, or nothing → 1), and why it is
 * lower when it is: several workers share listeners through SO_REUSEPORT sockets from the native
 * addon (Node 20's net cannot set it), and netns capture installs per-pod rules that one process
 * must own, so both cases run one worker.
 */
export function chooseWorkers(
  requested: string | undefined,
  ctx: { netnsCapture: boolean; cpuLimit?: string },
): { count: number; reason?: string } {
  const auto = Math.min(usableCores(ctx.cpuLimit), MAX_AUTO_WORKERS);
  const asked =
    requested === undefined || requested === '' ? 1 : requested === 'auto' ? auto : Number(requested);
  if (!Number.isInteger(asked) || asked < 1 || asked > MAX_WORKERS)
    throw new WorkersError(`--workers must be "auto" or an integer 1-${MAX_WORKERS} (got ${requested})`);
  if (asked === 1) return { count: 1 };
  if (ctx.netnsCapture)
    return {
      count: 1,
      reason: 'netns capture runs in one process (per-pod rules and listeners in pod namespaces)',
    };
  const native = nativeStatus();
  if (!native.ok)
    return {
      count: 1,
      reason: `several workers need SO_REUSEPORT listeners from the native addon: ${native.reason}`,
    };
  return { count: asked };
}

/**
 * The cores the process may use: AMBIT_CPU_LIMIT when set (the container's `limits.cpu` through
 * the downward API, rounded up to whole cores by `divisor: 1`; without a limit Kubernetes gives
 * the node's allocatable CPU), as ztunnel reads ZTUNNEL_CPU_LIMIT (istio/ztunnel src/config.rs
 * get_cpu_count); else what Node says this process may run on (affinity-aware).
 */
export function usableCores(cpuLimit: string | undefined = process.env.AMBIT_CPU_LIMIT): number {
  const n = Number(cpuLimit);
  if (cpuLimit !== undefined && cpuLimit !== '' && Number.isInteger(n) && n >= 1) return n;
  return availableParallelism();
}

export class WorkersError extends Error {
  readonly code = 'WORKERS_BAD_COUNT';
}

interface Slot {
  index: number;
  proc?: ChildProcess;
  /** The worker said hello: it has its listener and has been sent the full state. */
  hello: boolean;
  status?: WorkerStatus;
  restarts: number;
  startedAt: number;
  timer?: NodeJS.Timeout;
}

export interface NodeWorkersOptions {
  count: number;
  init: Omit<WorkerInit, 'index'>;
  logger: Logger;
  /** The messages a new (or restarted) worker must get first: the full state. */
  initialMessages(): ToWorker[];
  onMessage(index: number, msg: FromWorker, reply: (m: ToWorker) => void): void;
  /** A worker's status changed (or it died: status undefined). */
  onStatus(): void;
}

const ENTRY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'worker-main.js');

export class NodeWorkers {
  private readonly slots: Slot[];
  private stopping = false;
  private nextMetricsId = 1;

  constructor(private readonly opts: NodeWorkersOptions) {
    this.slots = Array.from({ length: opts.count }, (_, index) => ({
      index,
      restarts: 0,
      startedAt: 0,
      hello: false,
    }));
  }

  start(): void {
    for (const s of this.slots) this.spawn(s);
  }

  statuses(): (WorkerStatus | undefined)[] {
    return this.slots.map((s) => (s.proc ? s.status : undefined));
  }

  pids(): (number | undefined)[] {
    return this.slots.map((s) => s.proc?.pid);
  }

  /**
   * Every live worker's metrics (getMetricsAsJSON), asked at scrape time; a worker that does not
   * answer within `timeoutMs` (busy, or restarting) is left out of this scrape.
   */
  async collectMetrics(timeoutMs = 1000): Promise<unknown[][]> {
    const asks = this.slots.map((s) => {
      const p = s.proc;
      if (!p?.connected || !s.hello) return Promise.resolve(undefined);
      const id = this.nextMetricsId++;
      return new Promise<unknown[] | undefined>((resolve) => {
        const timer = setTimeout(() => done(undefined), timeoutMs);
        const onMsg = (m: unknown) => {
          const msg = m as FromWorker;
          if (msg?.t === 'metrics' && msg.id === id)
            done(Array.isArray(msg.metrics) ? msg.metrics : undefined);
        };
        const done = (v: unknown[] | undefined) => {
          clearTimeout(timer);
          p.off('message', onMsg);
          p.off('exit', onExit);
          resolve(v);
        };
        const onExit = () => done(undefined);
        p.on('message', onMsg);
        p.once('exit', onExit);
        this.send(s, { t: 'metrics?', id });
      });
    });
    return (await Promise.all(asks)).filter((m): m is unknown[] => m !== undefined);
  }

  broadcast(msg: ToWorker): void {
    for (const s of this.slots) this.send(s, msg);
  }

  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    await Promise.all(
      this.slots.map(async (s) => {
        clearTimeout(s.timer);
        const p = s.proc;
        if (!p || p.exitCode !== null || p.signalCode !== null) return;
        const exited = new Promise<void>((r) => p.once('exit', () => r()));
        // A worker that has not said hello has no state, hence no listeners or connections yet.
        if (s.hello) this.send(s, { t: 'stop', graceMs });
        else p.kill('SIGKILL');
        const kill = setTimeout(() => p.kill('SIGKILL'), graceMs + 2000);
        await exited;
        clearTimeout(kill);
      }),
    );
  }

  private send(s: Slot, msg: ToWorker): void {
    const p = s.proc;
    // Before hello, nothing: the snapshot sent at hello holds every update until then.
    if (p?.connected && s.hello) p.send(msg);
  }

  private spawn(s: Slot): void {
    const init: WorkerInit = { ...this.opts.init, index: s.index };
    const p = fork(ENTRY, [JSON.stringify(init)], { serialization: 'advanced', stdio: 'inherit' });
    s.proc = p;
    s.hello = false;
    s.status = undefined;
    s.startedAt = Date.now();
    this.opts.logger.info({ worker: s.index, pid: p.pid }, 'node proxy worker started');
    p.on('message', (m: unknown) => {
      const msg = m as FromWorker;
      if (!msg || typeof msg !== 'object' || typeof msg.t !== 'string') {
        this.opts.logger.warn({ worker: s.index }, 'worker: message without a type ignored');
        return;
      }
      if (msg.t === 'hello') {
        s.hello = true;
        for (const out of this.opts.initialMessages()) this.send(s, out);
        return;
      }
      if (msg.t === 'metrics') return; // answered in collectMetrics
      if (msg.t === 'status') {
        s.status = msg.status;
        this.opts.onStatus();
        return;
      }
      this.opts.onMessage(s.index, msg, (r) => this.send(s, r));
    });
    p.on('error', (err) => this.opts.logger.warn({ worker: s.index, err: err.message }, 'worker: IPC error'));
    p.once('exit', (code, signal) => {
      if (s.proc !== p) return;
      s.proc = undefined;
      s.status = undefined;
      this.opts.onStatus();
      if (this.stopping) return;
      // Back-off 0.1 s doubling to 5 s; a worker that lived 30 s starts the count again.
      if (Date.now() - s.startedAt > 30_000) s.restarts = 0;
      const delay = Math.min(100 * 2 ** s.restarts, 5000);
      s.restarts++;
      this.opts.logger.warn(
        { worker: s.index, pid: p.pid, 'exit.code': code, 'exit.signal': signal, restart_in_ms: delay },
        'node proxy worker exited; restarting it (the other workers keep serving)',
      );
      s.timer = setTimeout(() => this.spawn(s), delay);
    });
  }
}
