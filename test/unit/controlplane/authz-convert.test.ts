// AuthorizationPolicy / PeerAuthentication conversion: scope, warnings naming the policy,
// PeerAuthentication resolution (mesh → namespace → workload, port-level), bad input at load.
import { describe, expect, it } from 'vitest';
import type { AuthorizationPolicy, PeerAuthentication, Pod } from '../../../src/config/types.js';
import { parseManifests } from '../../../src/config/load.js';
import {
  convertAuthorizationPolicy,
  convertPeerAuthentication,
  effectivePeerAuthentication,
  peerAuthenticationKeys,
  peerAuthnChain,
} from '../../../src/controlplane/authz-convert.js';
import { AmbientIndex } from '../../../src/controlplane/ambient-index.js';
import { evaluate } from '../../../src/proxy/authz.js';

const ROOT = 'istio-system';
const ap = (ns: string, spec: Record<string, unknown>, name = 'p'): AuthorizationPolicy => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name, namespace: ns },
  spec,
});
const pa = (ns: string, name: string, spec: Record<string, unknown>): PeerAuthentication => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'PeerAuthentication',
  metadata: { name, namespace: ns },
  spec,
});
const pod: Pod = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'echo', namespace: 'demo', labels: { app: 'echo' } },
  spec: { nodeName: 'n1', serviceAccountName: 'echo' },
  status: { podIP: '10.0.0.11' },
};

describe('convertAuthorizationPolicy', () => {
  it.each([
    [ap(ROOT, {}), 'GLOBAL'],
    [ap('demo', {}), 'NAMESPACE'],
    [ap('demo', { selector: { matchLabels: { app: 'echo' } } }), 'WORKLOAD_SELECTOR'],
    [ap(ROOT, { selector: { matchLabels: { app: 'echo' } } }), 'WORKLOAD_SELECTOR'],
  ])('scope of %j is %s', (p, scope) => {
    expect(convertAuthorizationPolicy(p, ROOT).authorization?.scope).toBe(scope);
  });

  it('uses the configured root namespace', () => {
    expect(convertAuthorizationPolicy(ap('mesh-root', {}), 'mesh-root').authorization?.scope).toBe('GLOBAL');
  });

  it.each([
    [{ action: 'AUDIT', rules: [{}] }, 'action AUDIT is not enforced'],
    [{ action: 'CUSTOM', provider: { name: 'x' } }, 'action CUSTOM is not enforced'],
    [
      { rules: [{ to: [{ operation: { methods: ['GET'] } }] }] },
      'ztunnel does not support HTTP attributes (found: methods). In ambient mode you must use a waypoint proxy to enforce HTTP rules. Within an ALLOW policy, rules matching HTTP attributes are omitted.',
    ],
    [{ action: 'DENY', rules: [{ to: [{ operation: { paths: ['/a'] } }] }] }, 'will have no effect'],
    [
      { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/a'], ports: ['80'] } }] }] },
      'DENY policy with HTTP attributes is enforced without the HTTP rules. This will be more restrictive than requested.',
    ],
    [{ rules: [{ from: [{ source: { principals: ['a/*/b'] } }] }] }, 'could not be understood'],
  ])('warns, naming the policy: %j', (spec, text) => {
    const r = convertAuthorizationPolicy(ap('demo', spec, 'named'), ROOT);
    expect(r.warnings.join('\n')).toContain('AuthorizationPolicy demo/named');
    expect(r.warnings.join('\n')).toContain(text);
  });

  it('leaves targetRefs policies to the waypoint', () => {
    const r = convertAuthorizationPolicy(
      ap('demo', { targetRefs: [{ kind: 'Service', group: '', name: 'echo' }] }),
      ROOT,
    );
    expect(r.authorization).toBeUndefined();
    expect(r.skipped).toContain('waypoint');
  });
});

describe('PeerAuthentication', () => {
  const keys = (...pas: PeerAuthentication[]) => peerAuthenticationKeys(peerAuthnChain(pas, pod, ROOT), ROOT);
  const strict = `${ROOT}/istio_converted_static_strict`;
  const portKey = 'demo/converted_peer_authentication_w';
  const sel = { matchLabels: { app: 'echo' } };
  it.each<[string, PeerAuthentication[], string[], string]>([
    ['nothing: PERMISSIVE', [], [], 'PERMISSIVE'],
    ['mesh STRICT', [pa(ROOT, 'm', { mtls: { mode: 'STRICT' } })], [strict], 'STRICT'],
    ['namespace STRICT', [pa('demo', 'n', { mtls: { mode: 'STRICT' } })], [strict], 'STRICT'],
    [
      'namespace UNSET inherits mesh STRICT',
      [pa(ROOT, 'm', { mtls: { mode: 'STRICT' } }), pa('demo', 'n', {})],
      [strict],
      'STRICT',
    ],
    [
      'namespace PERMISSIVE overrides mesh STRICT',
      [pa(ROOT, 'm', { mtls: { mode: 'STRICT' } }), pa('demo', 'n', { mtls: { mode: 'PERMISSIVE' } })],
      [],
      'PERMISSIVE',
    ],
    ['DISABLE is a no-op (not STRICT)', [pa('demo', 'n', { mtls: { mode: 'DISABLE' } })], [], 'DISABLE'],
    ['workload STRICT', [pa('demo', 'w', { selector: sel, mtls: { mode: 'STRICT' } })], [strict], 'STRICT'],
    [
      'workload PERMISSIVE under namespace STRICT',
      [
        pa('demo', 'n', { mtls: { mode: 'STRICT' } }),
        pa('demo', 'w', { selector: sel, mtls: { mode: 'PERMISSIVE' } }),
      ],
      [],
      'PERMISSIVE',
    ],
    [
      'other workload selector does not apply',
      [pa('demo', 'w', { selector: { matchLabels: { app: 'db' } }, mtls: { mode: 'STRICT' } })],
      [],
      'PERMISSIVE',
    ],
    [
      'STRICT with a PERMISSIVE port',
      [
        pa('demo', 'w', {
          selector: sel,
          mtls: { mode: 'STRICT' },
          portLevelMtls: { '8080': { mode: 'PERMISSIVE' } },
        }),
      ],
      [portKey],
      'STRICT',
    ],
    [
      'PERMISSIVE with a STRICT port',
      [
        pa('demo', 'w', {
          selector: sel,
          mtls: { mode: 'PERMISSIVE' },
          portLevelMtls: { '9000': { mode: 'STRICT' } },
        }),
      ],
      [portKey],
      'PERMISSIVE',
    ],
  ])('%s', (_n, pas, expectedKeys, mode) => {
    expect(keys(...pas)).toEqual(expectedKeys);
    expect(effectivePeerAuthentication(peerAuthnChain(pas, pod, ROOT)).mode).toBe(mode);
  });

  const conn = (port: number, identity?: string) => ({
    srcIdentity: identity,
    srcIp: '10.0.0.10',
    dstIp: '10.0.0.11',
    dstPort: port,
  });
  it('STRICT with a PERMISSIVE port: plaintext only on that port', () => {
    const a = convertPeerAuthentication(
      pa('demo', 'w', {
        selector: sel,
        mtls: { mode: 'STRICT' },
        portLevelMtls: { '8080': { mode: 'PERMISSIVE' } },
      }),
      undefined,
      undefined,
      ROOT,
    )!;
    expect(evaluate([a], conn(8080)).allow).toBe(true);
    expect(evaluate([a], conn(9000)).allow).toBe(false);
    expect(evaluate([a], conn(9000, 'spiffe://cluster.local/ns/demo/sa/sleep')).allow).toBe(true);
  });
  it('PERMISSIVE with a STRICT port: plaintext everywhere but that port', () => {
    const a = convertPeerAuthentication(
      pa('demo', 'w', {
        selector: sel,
        mtls: { mode: 'PERMISSIVE' },
        portLevelMtls: { '9000': { mode: 'STRICT' } },
      }),
      undefined,
      undefined,
      ROOT,
    )!;
    expect(evaluate([a], conn(8080)).allow).toBe(true);
    expect(evaluate([a], conn(9000)).allow).toBe(false);
  });
  it('UNSET workload with a PERMISSIVE port under a namespace STRICT', () => {
    const a = convertPeerAuthentication(
      pa('demo', 'w', { selector: sel, portLevelMtls: { '8080': { mode: 'PERMISSIVE' } } }),
      pa('demo', 'n', { mtls: { mode: 'STRICT' } }),
      undefined,
      ROOT,
    )!;
    expect(evaluate([a], conn(8080)).allow).toBe(true);
    expect(evaluate([a], conn(9000)).allow).toBe(false);
  });
});

describe('AmbientIndex with policies', () => {
  const ns = {
    apiVersion: 'v1' as const,
    kind: 'Namespace' as const,
    metadata: { name: 'demo', labels: { 'istio.io/dataplane-mode': 'ambient' } },
  };
  it('lists selector policies and PeerAuthentication in the selected workloads, incrementally', () => {
    const index = new AmbientIndex();
    index.apply({ upserted: [ns, pod], deleted: [] });
    const updates: string[] = [];
    index.on('update', (u) =>
      updates.push(`${u.typeUrl.split('.').pop()}:${[...u.upserted, ...u.removed].join(',')}`),
    );
    const sel = ap('demo', { selector: { matchLabels: { app: 'echo' } }, rules: [{}] }, 'sel');
    index.apply({ upserted: [sel], deleted: [] });
    expect(index.workloads()[0]!.authorizationPolicies).toEqual(['demo/sel']);
    expect(updates).toEqual(['Authorization:demo/sel', 'Address:Kubernetes//Pod/demo/echo']);
    index.apply({ upserted: [pa('demo', 'n', { mtls: { mode: 'STRICT' } })], deleted: [] });
    expect(index.workloads()[0]!.authorizationPolicies).toEqual(['demo/sel', strictKey]);
    expect(index.effectivePeerAuthentication('demo/echo')).toMatchObject({
      mode: 'STRICT',
      from: 'namespace',
    });
    index.apply({ upserted: [], deleted: [sel] });
    expect(index.workloads()[0]!.authorizationPolicies).toEqual([strictKey]);
    // a namespace-wide policy does not touch workloads
    updates.length = 0;
    index.apply({ upserted: [ap('demo', { rules: [{}] }, 'nsw')], deleted: [] });
    expect(updates).toEqual(['Authorization:demo/nsw']);
  });
  const strictKey = `${ROOT}/istio_converted_static_strict`;
});

describe('bad AuthorizationPolicy input is reported at load with file and field, and stands in fail-closed (issue 12)', () => {
  it.each([
    ['action: MAYBE', 'spec.action'],
    [
      'rules: [{from: [{source: {principals: ["cluster.local/*/sa/x"]}}]}]',
      'spec.rules[0].from[0].source.principals[0]',
    ],
    ['rules: [{from: [{source: {principals: ["spiffe://cluster.local/ns/a/sa/b"]}}]}]', 'principals[0]'],
    ['rules: [{from: [{source: {ipBlocks: ["10.0.0.0/33"]}}]}]', 'spec.rules[0].from[0].source.ipBlocks[0]'],
    ['rules: [{to: [{operation: {ports: ["70000"]}}]}]', 'spec.rules[0].to[0].operation.ports[0]'],
  ])('%s', (specLine, field) => {
    const text = `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: bad, namespace: demo}\nspec:\n  ${specLine}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: good, namespace: demo}\nspec: {}\n`;
    const r = parseManifests(text, 'policies.yaml');
    expect(r.errors).toHaveLength(1);
    expect(String(r.errors[0])).toContain(
      `policies.yaml:5: ${field}`.replace(
        /^(policies.yaml:5: )(principals)/,
        '$1spec.rules[0].from[0].source.$2',
      ),
    );
    // Never skipped: skipping a bad ALLOW would open its workloads. The bad one is in force in
    // its degraded form (config/authz-degrade.ts), and says so.
    expect(r.objects.map((o) => o.metadata.name)).toEqual(['bad', 'good']);
    expect(r.entries[0]!.degraded?.length).toBeGreaterThan(0);
    expect(r.entries[1]!.degraded).toBeUndefined();
  });
});
