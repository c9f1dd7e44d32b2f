// Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules
// (k8s.io/client-go/tools/leaderelection): the holder renews every `retryPeriod`; a Lease whose
// record has not changed for `leaseDuration`, as timed by *our* clock since we last saw it change
// (never by comparing clocks across machines), may be taken over; every write carries the
// resourceVersion it read, so of two replicas racing only one wins (409 for the other). A leader
// that cannot renew within `renewDeadline` steps down. On stop the leader releases the Lease so a
// standby takes over at once instead of after `leaseDuration`.
// Only the leader writes (CA root Secret on first start, trust bundle ConfigMaps, waypoint
// objects); every replica serves xDS and signs certificates.
import { EventEmitter } from 'node:events';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { isConflict, type KubeClient, type RawObject } from '../config/kube-client.js';
import { LEASE } from '../config/kube-resources.js';

export interface LeaderElectorOptions {
  client: KubeClient;
  namespace: string;
  name: string;
  /** This replica's name (the pod name): written as holderIdentity. */
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  logger: Logger;
}

interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

/** Emits 'started' when this replica becomes leader and 'stopped' when it stops being one. */
export class LeaderElector extends EventEmitter<{ started: []; stopped: [] }> {
  private leader = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** The last Lease record we saw, and when (by our clock) it last changed. */
  private observed: { record: string; at: number } | undefined;
  private lastRenew = 0;
  private readonly leaseMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryMs: number;
  private running: Promise<void> | undefined;

  constructor(private readonly opts: LeaderElectorOptions) {
    super();
    this.leaseMs = opts.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.retryMs = opts.retryPeriodMs ?? 2_000;
  }

  isLeader(): boolean {
    return this.leader;
  }

  start(): void {
    this.tick();
  }

  /** Resolves once this replica leads (or never, if another keeps leading). */
  untilLeader(): Promise<void> {
    if (this.leader) return Promise.resolve();
    return new Promise((resolve) => this.once('started', resolve));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    if (!this.leader) return;
    this.setLeader(false);
    try {
      const lease = await this.opts.client.get<RawObject & { spec?: LeaseSpec }>(
        LEASE,
        this.opts.namespace,
        this.opts.name,
      );
      if (lease?.spec?.holderIdentity === this.opts.identity) {
        await this.opts.client.replace(LEASE, this.opts.namespace, this.opts.name, {
          ...lease,
          spec: {
            ...lease.spec,
            holderIdentity: '',
            leaseDurationSeconds: 1,
            renewTime: microTime(Date.now()),
          },
        });
      }
    } catch (err) {
      this.opts.logger.warn(
        { err: errorMessage(err) },
        'could not release the leader lease; a standby takes over when it expires',
      );
    }
  }

  private tick(): void {
    if (this.stopped) return;
    this.running = this.tryAcquireOrRenew()
      .catch((err: unknown) => {
        this.opts.logger.debug({ err: errorMessage(err) }, 'leader lease: attempt failed');
      })
      .then(() => {
        // A leader that has not managed to renew within the deadline steps down.
        if (this.leader && Date.now() - this.lastRenew > this.renewDeadlineMs) {
          this.opts.logger.warn(
            { lease: this.opts.name },
            'could not renew the leader lease in time; stepping down',
          );
          this.setLeader(false);
        }
        if (!this.stopped) this.timer = setTimeout(() => this.tick(), this.retryMs);
      });
  }

  private async tryAcquireOrRenew(): Promise<void> {
    const { client, namespace, name, identity } = this.opts;
    const now = Date.now();
    const mine: LeaseSpec = {
      holderIdentity: identity,
      leaseDurationSeconds: Math.ceil(this.leaseMs / 1000),
      acquireTime: microTime(now),
      renewTime: microTime(now),
      leaseTransitions: 0,
    };
    const lease = await client.get<RawObject & { spec?: LeaseSpec }>(LEASE, namespace, name);
    if (!lease) {
      try {
        await client.create(LEASE, namespace, {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name, namespace },
          spec: mine,
        });
      } catch (err) {
        if (isConflict(err)) return; // another replica created it first
        throw err;
      }
      this.renewed(now);
      return;
    }
    const spec = lease.spec ?? {};
    const record = JSON.stringify(spec);
    if (this.observed?.record !== record) this.observed = { record, at: now };
    const holder = spec.holderIdentity ?? '';
    const durationMs = (spec.leaseDurationSeconds ?? Math.ceil(this.leaseMs / 1000)) * 1000;
    if (holder && holder !== identity && now - this.observed.at < durationMs) {
      if (this.leader) this.setLeader(false);
      return; // someone else holds a live lease
    }
    const next: LeaseSpec =
      holder === identity
        ? { ...spec, renewTime: microTime(now), leaseDurationSeconds: mine.leaseDurationSeconds }
        : { ...mine, leaseTransitions: (spec.leaseTransitions ?? 0) + (holder ? 1 : 0) };
    try {
      // The resourceVersion we read makes this a compare-and-swap.
      await client.replace(LEASE, namespace, name, { ...lease, spec: next });
    } catch (err) {
      if (isConflict(err)) return;
      throw err;
    }
    this.renewed(now);
  }

  private renewed(at: number): void {
    this.lastRenew = at;
    if (!this.leader) this.setLeader(true);
  }

  private setLeader(leader: boolean): void {
    if (this.leader === leader) return;
    this.leader = leader;
    this.opts.logger.info(
      { lease: `${this.opts.namespace}/${this.opts.name}`, identity: this.opts.identity },
      leader ? 'became leader' : 'stopped leading',
    );
    this.emit(leader ? 'started' : 'stopped');
  }
}

/** metav1.MicroTime: RFC 3339 with microseconds. */
function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}
