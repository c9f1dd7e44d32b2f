// State fan-out for a node proxy with several workers (nodeproxy/workers.ts): the primary fetches
// xDS and certificates once and pushes what it applied to each worker process over its IPC
// channel (structured clone: `serialization: 'advanced'`); a worker applies the same updates to
// its own ProxyState and PolicyStore, so its data path sees what a single-process proxy would.
// This file owns the message shapes and both ends of the state part: the primary's mirror (what
// a new or restarted worker is sent first) and the worker's apply, which fails closed on anything
// it does not recognise.
import type { Address } from '../xds/resources.js';
import type { Authorization } from '../xds/authorization.js';
import type { WorkloadCert } from '../identity/cert-manager.js';
import type { Identity } from '../identity/spiffe.js';
import type { ProxyState } from './state.js';
import type { PolicyStore } from './policy-store.js';

/** Primary → worker. */
export type ToWorker =
  | { t: 'addresses'; upserted: [string, Address][]; removed: string[] }
  | { t: 'policies'; policies: [string, Authorization][]; rejected: [string, string][] }
  | { t: 'synced' }
  | { t: 'cert'; id: number; cert?: WorkloadCert; error?: string }
  | { t: 'rotated'; cert: WorkloadCert }
  | { t: 'stop'; graceMs: number }
  | { t: 'metrics?'; id: number };

/** Per-worker counters the primary shows (readiness, admin, metrics). */
export interface WorkerStatus {
  ready: boolean;
  reason?: string;
  pods: { uid: string; name: string; namespace: string; ip: string; identity: string }[];
  authz: {
    allowed: number;
    denied: number;
    closedByPolicyChange: number;
    deniedByPolicy: [string, number][];
  };
}

/** Worker → primary. */
export type FromWorker =
  /** The worker listens for messages: only now does the primary send it the state (a message
   * sent before the child has a 'message' listener would be dropped). */
  | { t: 'hello' }
  | { t: 'cert?'; id: number; identity: Identity }
  | { t: 'status'; status: WorkerStatus }
  | { t: 'metrics'; id: number; metrics: unknown[] };

/** The primary's copy of every address resource it applied, by resource name. */
export class AddressMirror {
  private readonly all = new Map<string, Address>();

  record(upserted: ReadonlyMap<string, Address>, removed: readonly string[]): ToWorker {
    for (const name of removed) this.all.delete(name);
    for (const [name, a] of upserted) this.all.set(name, a);
    return { t: 'addresses', upserted: [...upserted], removed: [...removed] };
  }

  /** Everything, as one update: what a worker that just started must apply first. */
  snapshot(): ToWorker {
    return { t: 'addresses', upserted: [...this.all], removed: [] };
  }
}

/** The whole policy set (policies are few; a full copy keeps the rejected ones exact too). */
export function policySnapshot(policies: PolicyStore): ToWorker {
  return { t: 'policies', policies: [...policies.all()], rejected: [...policies.rejections()] };
}

export class FanOutError extends Error {
  readonly code = 'FANOUT_BAD_MESSAGE';
}

/** Worker side: applies a state or policy message; anything else is the caller's. */
export function applyStateMessage(msg: ToWorker, state: ProxyState, policies: PolicyStore): boolean {
  if (msg.t === 'addresses') {
    if (!Array.isArray(msg.upserted) || !Array.isArray(msg.removed))
      throw new FanOutError('addresses update without upserted/removed lists');
    state.applyAddresses(new Map(msg.upserted), msg.removed);
    return true;
  }
  if (msg.t === 'policies') {
    if (!Array.isArray(msg.policies) || !Array.isArray(msg.rejected))
      throw new FanOutError('policies update without policies/rejected lists');
    policies.mirror(new Map(msg.policies), new Map(msg.rejected));
    return true;
  }
  return false;
}
