// The state fan-out of a multi-worker node proxy (src/proxy/fan-out.ts): what a worker applies
// equals what the primary holds, through the same structured clone the IPC channel uses, and
// rejected policies stay fail-closed in the worker.
import { describe, expect, it } from 'vitest';
import { serialize, deserialize } from 'node:v8';
import { ProxyState } from '../../../src/proxy/state.js';
import { PolicyStore } from '../../../src/proxy/policy-store.js';
import {
  AddressMirror,
  FanOutError,
  applyStateMessage,
  policySnapshot,
  type ToWorker,
} from '../../../src/proxy/fan-out.js';
import type { Address } from '../../../src/xds/resources.js';
import { testWorkload } from '../../support/workloads.js';

/** What `serialization: 'advanced'` does to a message on its way to the worker. */
const overIpc = (m: ToWorker): ToWorker => deserialize(serialize(m)) as ToWorker;

describe('state fan-out to workers', () => {
  it('a worker fed deltas, or a late worker fed the snapshot, sees what the primary sees', () => {
    const mirror = new AddressMirror();
    const worker = new ProxyState();
    const policies = new PolicyStore();
    const a = testWorkload('a', '127.0.254.30');
    const b = testWorkload('b', '127.0.254.31');
    const push = (up: [string, Address][], removed: string[]) =>
      applyStateMessage(overIpc(mirror.record(new Map(up), removed)), worker, policies);
    push(
      [
        [a.uid, { workload: a }],
        [b.uid, { workload: b }],
      ],
      [],
    );
    push([], [a.uid]);
    expect(worker.allWorkloads().map((w) => w.name)).toEqual(['b']);
    expect(worker.workloadByAddress('127.0.254.31')).toEqual(b);
    const late = new ProxyState();
    applyStateMessage(overIpc(mirror.snapshot()), late, new PolicyStore());
    expect(late.allWorkloads()).toEqual(worker.allWorkloads());
    expect(late.workloadByAddress('127.0.254.30')).toBeUndefined();
  });

  it('a policy the primary rejected denies in the worker too (fail closed)', () => {
    const primary = new PolicyStore();
    expect(() => primary.decode('demo/broken', new Uint8Array([0xff, 0xff, 0xff]))).toThrow();
    const worker = new PolicyStore();
    applyStateMessage(overIpc(policySnapshot(primary)), new ProxyState(), worker);
    expect([...worker.rejections().keys()]).toEqual(['demo/broken']);
    const applied = worker.forWorkload({ namespace: 'demo', authorizationPolicies: [] });
    expect(applied.map((p) => [p.name, p.action, !!p.invalid])).toEqual([['broken', 'DENY', true]]);
  });

  it('refuses a malformed update instead of applying part of it', () => {
    const bad = { t: 'addresses', upserted: 'nope', removed: [] } as unknown as ToWorker;
    expect(() => applyStateMessage(bad, new ProxyState(), new PolicyStore())).toThrow(FanOutError);
    expect(applyStateMessage({ t: 'synced' }, new ProxyState(), new PolicyStore())).toBe(false);
  });
});
