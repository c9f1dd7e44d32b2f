// A worker's side of `ambit node --workers N` (workers.ts has the primary's): what the worker's
// NodeProxy takes instead of a control-plane connection. State and policy updates from the
// primary are applied to the worker's own ProxyState / PolicyStore (proxy/fan-out.ts);
// certificates are asked of the primary, which holds the one CertificateManager of the node, and
// rotations are pushed; pod listeners are SO_REUSEPORT sockets made by the native addon, so every
// worker listens on the same podIP:port and the kernel spreads new connections over them.
import { EventEmitter } from 'node:events';
import type { Logger } from '../common/log.js';
import { errorMessage } from '../common/errors.js';
import type { WorkloadCert } from '../identity/cert-manager.js';
import { formatSpiffeId, type Identity } from '../identity/spiffe.js';
import { nativeAddon } from '../redirect/native.js';
import type { ProxyState } from '../proxy/state.js';
import type { PolicyStore } from '../proxy/policy-store.js';
import { applyStateMessage, type FromWorker, type ToWorker, type WorkerStatus } from '../proxy/fan-out.js';

/** What NodeProxy needs of its certificates: CertificateManager, or a worker's feed. */
export interface CertSource {
  get(identity: Identity): Promise<WorkloadCert>;
  list(): WorkloadCert[];
  forget(identity: Identity): void;
  on(event: 'rotated', fn: (cert: WorkloadCert) => void): unknown;
}

/** The IPC end a forked worker has (`process` itself, when `process.send` exists). */
export interface IpcChannel {
  send?(msg: unknown): boolean;
  on(event: 'message', fn: (msg: unknown) => void): unknown;
}

export class WorkerFeed extends EventEmitter implements CertSource {
  private readonly certs = new Map<string, WorkloadCert>();
  private readonly waiting = new Map<
    number,
    { resolve: (c: WorkloadCert) => void; reject: (e: Error) => void }
  >();
  private nextId = 1;
  private isSynced = false;
  private syncWaiters: (() => void)[] = [];
  private target?: { state: ProxyState; policies: PolicyStore };
  /** Messages that arrived before the proxy attached its state (the primary sends at once). */
  private early: ToWorker[] = [];

  constructor(
    private readonly ipc: IpcChannel,
    private readonly log: Logger,
    /** Called with the primary's stop request. */
    private readonly onStop: (graceMs: number) => void,
    /** This worker's metrics, as prom-client's getMetricsAsJSON() gives them (the primary sums them). */
    private readonly metrics: () => Promise<unknown[]> = () => Promise.resolve([]),
  ) {
    super();
    ipc.on('message', (m) => this.onMessage(m as ToWorker));
    this.send({ t: 'hello' });
  }

  attach(state: ProxyState, policies: PolicyStore): void {
    this.target = { state, policies };
    for (const m of this.early.splice(0)) applyStateMessage(m, state, policies);
  }

  synced(): Promise<void> {
    return this.isSynced ? Promise.resolve() : new Promise((r) => this.syncWaiters.push(r));
  }

  get(identity: Identity): Promise<WorkloadCert> {
    const have = this.certs.get(formatSpiffeId(identity));
    if (have) return Promise.resolve(have);
    const id = this.nextId++;
    return new Promise<WorkloadCert>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.send({ t: 'cert?', id, identity });
    });
  }

  list(): WorkloadCert[] {
    return [...this.certs.values()];
  }

  /** Drops the local copy; the primary decides on its own when the node no longer needs it. */
  forget(identity: Identity): void {
    this.certs.delete(formatSpiffeId(identity));
  }

  /**
   * A listening TCP socket on host:port with SO_REUSEPORT (and SO_REUSEADDR, as libuv sets on its
   * own listeners), from the native addon: Node 20's net has no reusePort option.
   */
  listenFd(host: string, port: number): () => number {
    return () =>
      nativeAddon().listenInNetns(null, host, port, { reuseport: true, reuseaddr: true, backlog: 1024 });
  }

  report(status: WorkerStatus): void {
    this.send({ t: 'status', status });
  }

  private send(msg: FromWorker): void {
    this.ipc.send?.(msg);
  }

  private onMessage(m: ToWorker): void {
    try {
      if (!m || typeof m !== 'object' || typeof m.t !== 'string') throw new Error('not a fan-out message');
      switch (m.t) {
        case 'addresses':
        case 'policies':
          if (this.target) applyStateMessage(m, this.target.state, this.target.policies);
          else this.early.push(m);
          return;
        case 'synced':
          this.isSynced = true;
          for (const r of this.syncWaiters.splice(0)) r();
          return;
        case 'cert': {
          const w = this.waiting.get(m.id);
          this.waiting.delete(m.id);
          if (m.cert) this.certs.set(m.cert.spiffeId, m.cert);
          if (m.cert) w?.resolve(m.cert);
          else w?.reject(new Error(`primary could not get a certificate: ${m.error ?? 'no reason'}`));
          return;
        }
        case 'rotated':
          this.certs.set(m.cert.spiffeId, m.cert);
          this.emit('rotated', m.cert);
          return;
        case 'stop':
          this.onStop(m.graceMs);
          return;
        case 'metrics?':
          this.metrics().then(
            (metrics) => this.send({ t: 'metrics', id: m.id, metrics }),
            (err: unknown) => {
              this.log.warn({ err: errorMessage(err) }, 'worker: metrics not collected');
              this.send({ t: 'metrics', id: m.id, metrics: [] });
            },
          );
          return;
        default:
          throw new Error(`unknown message type ${String((m as { t: unknown }).t)}`);
      }
    } catch (err) {
      // The primary is this worker's only source of truth: a message it cannot apply means the
      // two disagree, so the worker exits (the primary restarts it from a full snapshot).
      this.log.error({ err: errorMessage(err) }, 'worker: bad message from the primary; exiting');
      process.exit(70);
    }
  }
}
