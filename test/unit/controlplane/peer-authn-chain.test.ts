// peerAuthnChain orders conflicting PeerAuthentications itself, by Istio's rule: per level the
// oldest creationTimestamp wins, then namespace/name (config/precedence.ts; istiod's
// convertedSelectorPeerAuthentications in pilot/pkg/serviceregistry/kube/controller/ambient/
// authorization.go keeps the policy whose CreationTimestamp is Before the others'). Called
// directly here, not through the ambient index, and with the inputs in every order.
import { describe, expect, it } from 'vitest';
import type { PeerAuthentication, Pod } from '../../../src/config/types.js';
import { effectivePeerAuthentication, peerAuthnChain } from '../../../src/controlplane/authz-convert.js';

const ROOT = 'istio-system';
const pod: Pod = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'echo', namespace: 'demo', labels: { app: 'echo' } },
  spec: { nodeName: 'n1' },
};
const pa = (
  ns: string,
  name: string,
  mode: string,
  created?: string,
  selector?: Record<string, string>,
): PeerAuthentication => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'PeerAuthentication',
  metadata: { name, namespace: ns, ...(created ? { creationTimestamp: created } : {}) },
  spec: { ...(selector ? { selector: { matchLabels: selector } } : {}), mtls: { mode } },
});
const OLD = '2024-01-01T00:00:00Z';
const NEW = '2025-06-01T00:00:00Z';

/** Every order of the input: the answer must not depend on it. */
function permutations<T>(xs: readonly T[]): T[][] {
  if (xs.length <= 1) return [[...xs]];
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((p) => [x, ...p]));
}

describe('peerAuthnChain: conflicts within a level (table, every input order)', () => {
  const app = { app: 'echo' };
  it.each<[string, PeerAuthentication[], 'mesh' | 'namespace' | 'workload', string]>([
    [
      'workload: the older wins although its name sorts later',
      [pa('demo', 'a-strict', 'STRICT', NEW, app), pa('demo', 'z-permissive', 'PERMISSIVE', OLD, app)],
      'workload',
      'z-permissive',
    ],
    [
      'workload: swapped timestamps flip the winner',
      [pa('demo', 'a-strict', 'STRICT', OLD, app), pa('demo', 'z-permissive', 'PERMISSIVE', NEW, app)],
      'workload',
      'a-strict',
    ],
    [
      'workload: equal timestamps fall back to the name',
      [pa('demo', 'b', 'STRICT', OLD, app), pa('demo', 'a', 'PERMISSIVE', OLD, app)],
      'workload',
      'a',
    ],
    [
      'workload: one without a timestamp is oldest (Go zero time)',
      [pa('demo', 'a', 'STRICT', OLD, app), pa('demo', 'z', 'PERMISSIVE', undefined, app)],
      'workload',
      'z',
    ],
    [
      'namespace level: the older wins',
      [pa('demo', 'a', 'STRICT', NEW), pa('demo', 'b', 'PERMISSIVE', OLD)],
      'namespace',
      'b',
    ],
    [
      'mesh level: the older wins',
      [pa(ROOT, 'a', 'STRICT', NEW), pa(ROOT, 'b', 'DISABLE', OLD)],
      'mesh',
      'b',
    ],
  ])('%s', (_why, pas, level, want) => {
    for (const order of permutations(pas)) {
      expect(peerAuthnChain(order, pod, ROOT)[level]?.metadata.name).toBe(want);
    }
  });

  it('decides the effective mode by the older workload policy', () => {
    const strictNew = pa('demo', 'a-strict', 'STRICT', NEW, { app: 'echo' });
    const permissiveOld = pa('demo', 'z-permissive', 'PERMISSIVE', OLD, { app: 'echo' });
    expect(effectivePeerAuthentication(peerAuthnChain([strictNew, permissiveOld], pod, ROOT)).mode).toBe(
      'PERMISSIVE',
    );
    const strictOld = pa('demo', 'a-strict', 'STRICT', OLD, { app: 'echo' });
    const permissiveNew = pa('demo', 'z-permissive', 'PERMISSIVE', NEW, { app: 'echo' });
    expect(effectivePeerAuthentication(peerAuthnChain([permissiveNew, strictOld], pod, ROOT)).mode).toBe(
      'STRICT',
    );
  });
});
