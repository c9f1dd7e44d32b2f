// The L4 decision table: AuthorizationPolicy YAML → conversion (control plane) → wire → decode
// (node proxy) → evaluate. Every case goes through the same code as the data path.
import { describe, expect, it } from 'vitest';
import type { AuthorizationPolicy } from '../../../src/config/types.js';
import {
  convertAuthorizationPolicy,
  selectorPolicyApplies,
  staticStrictPolicy,
} from '../../../src/controlplane/authz-convert.js';
import {
  authorizationKey,
  decodeAuthorization,
  encodeAuthorization,
  type Authorization,
} from '../../../src/xds/authorization.js';
import {
  applicablePolicies,
  cidrContains,
  evaluate,
  waypointInboundPolicies,
  type AuthzConnection,
} from '../../../src/proxy/authz.js';
import type { Pod } from '../../../src/config/types.js';

const ROOT = 'istio-system';
const SLEEP = 'spiffe://cluster.local/ns/demo/sa/sleep';

function ap(
  spec: Record<string, unknown>,
  meta: { name?: string; namespace?: string; annotations?: Record<string, string> } = {},
): AuthorizationPolicy {
  return {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: meta.name ?? 'p', namespace: meta.namespace ?? 'demo', annotations: meta.annotations },
    spec,
  };
}

const echoPod: Pod = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'echo-v1', namespace: 'demo', labels: { app: 'echo', version: 'v1' } },
  spec: {},
};

function decide(policies: (AuthorizationPolicy | Authorization)[], conn: Partial<AuthzConnection> = {}) {
  const all = new Map<string, Authorization>();
  const named: string[] = [];
  policies.forEach((p, i) => {
    let a: Authorization | undefined;
    if ('kind' in p) {
      if (p.metadata.name === 'p') p.metadata.name = `p${i}`;
      a = convertAuthorizationPolicy(p, ROOT).authorization;
      if (a && a.scope === 'WORKLOAD_SELECTOR' && selectorPolicyApplies(p, echoPod, ROOT))
        named.push(authorizationKey(a));
    } else {
      a = p;
      named.push(authorizationKey(a));
    }
    if (!a) return;
    const key = authorizationKey(a);
    all.set(key, decodeAuthorization(key, encodeAuthorization(a))); // through the wire
  });
  const dst = { namespace: 'demo', authorizationPolicies: named };
  return evaluate(applicablePolicies(dst, all), {
    srcIdentity: SLEEP,
    srcIp: '10.0.0.10',
    dstIp: '10.0.0.11',
    dstPort: 8080,
    ...conn,
  });
}

const allow = (rules: unknown[]) => ap({ action: 'ALLOW', rules });
const deny = (rules: unknown[]) => ap({ action: 'DENY', rules });
const from = (source: Record<string, unknown>) => ({ from: [{ source }] });
const to = (operation: Record<string, unknown>) => ({ to: [{ operation }] });
const when = (key: string, values?: string[], notValues?: string[]) => ({
  when: [{ key, values, notValues }],
});
const plain = { srcIdentity: undefined };

type Case = [string, (AuthorizationPolicy | Authorization)[], Partial<AuthzConnection>, boolean, number?];
const cases: Case[] = [
  ['no policy at all allows', [], {}, true],
  ['ALLOW with spec {} (no rules) matches nothing: deny', [ap({})], {}, false],
  ['ALLOW rules: [{}] matches everything', [allow([{}])], {}, true, 0],
  ['DENY rules: [{}] denies everything', [deny([{}])], {}, false, 0],
  ['DENY without rules matches nothing: allow', [ap({ action: 'DENY' })], {}, true],
  ['principals exact', [allow([from({ principals: ['cluster.local/ns/demo/sa/sleep'] })])], {}, true, 0],
  [
    'principals exact, other identity',
    [allow([from({ principals: ['cluster.local/ns/demo/sa/other'] })])],
    {},
    false,
  ],
  ['principals compared without spiffe://', [allow([from({ principals: [SLEEP] })])], {}, false],
  ['principals prefix *', [allow([from({ principals: ['cluster.local/ns/demo/*'] })])], {}, true],
  ['principals suffix *', [allow([from({ principals: ['*/sa/sleep'] })])], {}, true],
  ['principals suffix *, other sa', [allow([from({ principals: ['*/sa/curl'] })])], {}, false],
  ['principals "*" with an identity', [allow([from({ principals: ['*'] })])], {}, true],
  ['principals "*" without identity (plaintext)', [allow([from({ principals: ['*'] })])], plain, false],
  [
    'notPrincipals excludes the source',
    [allow([from({ notPrincipals: ['cluster.local/ns/demo/sa/sleep'] })])],
    {},
    false,
  ],
  [
    'notPrincipals of another source',
    [allow([from({ notPrincipals: ['cluster.local/ns/x/sa/y'] })])],
    {},
    true,
  ],
  ['notPrincipals "*" matches only plaintext', [deny([from({ notPrincipals: ['*'] })])], plain, false, 0],
  ['notPrincipals "*" lets mTLS through', [deny([from({ notPrincipals: ['*'] })])], {}, true],
  ['namespaces exact', [allow([from({ namespaces: ['demo'] })])], {}, true],
  ['namespaces other', [allow([from({ namespaces: ['prod'] })])], {}, false],
  ['namespaces prefix', [allow([from({ namespaces: ['de*'] })])], {}, true],
  ['namespaces suffix', [allow([from({ namespaces: ['*mo'] })])], {}, true],
  ['namespaces "*" without identity', [allow([from({ namespaces: ['*'] })])], plain, false],
  ['notNamespaces excludes', [allow([from({ notNamespaces: ['demo'] })])], {}, false],
  ['values in a field are ORed', [allow([from({ namespaces: ['prod', 'demo'] })])], {}, true],
  [
    'fields in a source are ANDed',
    [allow([from({ namespaces: ['demo'], principals: ['*/sa/other'] })])],
    {},
    false,
  ],
  [
    'positive and not* in one field: not wins',
    [allow([from({ namespaces: ['demo'], notNamespaces: ['demo'] })])],
    {},
    false,
  ],
  ['ipBlocks CIDR', [allow([from({ ipBlocks: ['10.0.0.0/24'] })])], {}, true],
  ['ipBlocks other CIDR', [allow([from({ ipBlocks: ['10.0.1.0/24'] })])], {}, false],
  ['ipBlocks single address', [allow([from({ ipBlocks: ['10.0.0.10'] })])], {}, true],
  ['notIpBlocks excludes the source', [allow([from({ notIpBlocks: ['10.0.0.10/32'] })])], {}, false],
  ['ipBlocks IPv6 never matches an IPv4 source', [allow([from({ ipBlocks: ['::/0'] })])], {}, false],
  [
    'two sources are ORed',
    [allow([{ from: [{ source: { namespaces: ['x'] } }, { source: { namespaces: ['demo'] } }] }])],
    {},
    true,
  ],
  ['ports', [allow([to({ ports: ['8080'] })])], {}, true],
  ['ports other', [allow([to({ ports: ['9090'] })])], {}, false],
  ['ports list ORed', [allow([to({ ports: ['9090', '8080'] })])], {}, true],
  ['notPorts excludes', [allow([to({ notPorts: ['8080'] })])], {}, false],
  ['notPorts other', [allow([to({ notPorts: ['9090'] })])], {}, true],
  ['empty operation matches nothing', [allow([{ to: [{ operation: {} }] }])], {}, false],
  [
    'from and to are ANDed',
    [allow([{ ...from({ namespaces: ['demo'] }), ...to({ ports: ['9090'] }) }])],
    {},
    false,
  ],
  [
    'rules are ORed; the index names the rule',
    [allow([from({ namespaces: ['x'] }), to({ ports: ['8080'] })])],
    {},
    true,
    1,
  ],
  ['when source.ip', [allow([when('source.ip', ['10.0.0.0/8'])])], {}, true],
  ['when source.ip notValues', [allow([when('source.ip', undefined, ['10.0.0.10'])])], {}, false],
  ['when source.namespace', [allow([when('source.namespace', ['demo'])])], {}, true],
  [
    'when source.principal',
    [allow([when('source.principal', ['cluster.local/ns/demo/sa/sleep'])])],
    {},
    true,
  ],
  ['when source.principal other', [allow([when('source.principal', ['*/sa/other'])])], {}, false],
  ['when destination.ip', [allow([when('destination.ip', ['10.0.0.11'])])], {}, true],
  ['when destination.ip other', [allow([when('destination.ip', ['10.9.0.0/16'])])], {}, false],
  ['when destination.port', [allow([when('destination.port', ['8080'])])], {}, true],
  ['when destination.port notValues', [allow([when('destination.port', undefined, ['8080'])])], {}, false],
  [
    'when conditions are ANDed',
    [
      allow([
        {
          when: [
            { key: 'source.namespace', values: ['demo'] },
            { key: 'destination.port', values: ['1'] },
          ],
        },
      ]),
    ],
    {},
    false,
  ],
  [
    'serviceAccounts "name" in the policy namespace',
    [allow([from({ serviceAccounts: ['sleep'] })])],
    {},
    true,
  ],
  ['serviceAccounts "ns/name" elsewhere', [allow([from({ serviceAccounts: ['prod/sleep'] })])], {}, false],
  ['notServiceAccounts excludes', [allow([from({ notServiceAccounts: ['demo/sleep'] })])], {}, false],
  ['DENY wins over a matching ALLOW', [allow([{}]), deny([from({ namespaces: ['demo'] })])], {}, false, 0],
  ['a DENY that misses, an ALLOW that matches', [allow([{}]), deny([from({ namespaces: ['x'] })])], {}, true],
  [
    'an ALLOW that misses denies even without a DENY',
    [allow([from({ namespaces: ['x'] })]), deny([to({ ports: ['1'] })])],
    {},
    false,
  ],
  ['one of two ALLOW policies matches', [allow([from({ namespaces: ['x'] })]), allow([{}])], {}, true],
  [
    'a namespace policy of another namespace does not apply',
    [ap({ action: 'DENY', rules: [{}] }, { namespace: 'prod' })],
    {},
    true,
  ],
  [
    'a root-namespace ALLOW applies mesh-wide',
    [ap({ rules: [from({ namespaces: ['x'] })] }, { namespace: ROOT })],
    {},
    false,
  ],
  [
    'a root-namespace DENY applies mesh-wide',
    [ap({ action: 'DENY', rules: [{}] }, { namespace: ROOT })],
    {},
    false,
    0,
  ],
  [
    'a selector that does not select: not applied',
    [ap({ selector: { matchLabels: { app: 'db' } }, action: 'DENY', rules: [{}] })],
    {},
    true,
  ],
  [
    'a selector that selects: applied',
    [ap({ selector: { matchLabels: { app: 'echo' } }, action: 'DENY', rules: [{}] })],
    {},
    false,
  ],
  ['an empty selector selects every workload of the namespace', [ap({ selector: {}, rules: [] })], {}, false],
  [
    'a root-namespace selector selects in every namespace',
    [ap({ selector: { matchLabels: { app: 'echo' } }, action: 'DENY', rules: [{}] }, { namespace: ROOT })],
    {},
    false,
  ],
  ['AUDIT is not enforced', [ap({ action: 'AUDIT', rules: [{}] })], {}, true],
  [
    'CUSTOM is not enforced at L4',
    [ap({ action: 'CUSTOM', provider: { name: 'ext' }, rules: [{}] })],
    {},
    true,
  ],
  [
    'targetRefs policies belong to the waypoint',
    [ap({ targetRefs: [{ kind: 'Service', group: '', name: 'echo' }], action: 'DENY', rules: [{}] })],
    {},
    true,
  ],
  ['ALLOW rule with methods is dropped (fails closed)', [allow([to({ methods: ['GET'] })])], {}, false],
  [
    'ALLOW: only the HTTP rule is dropped',
    [allow([to({ paths: ['/x'] }), from({ namespaces: ['demo'] })])],
    {},
    true,
    1,
  ],
  ['ALLOW with requestPrincipals is dropped', [allow([from({ requestPrincipals: ['*'] })])], {}, false],
  [
    'ALLOW with a request.headers condition is dropped',
    [allow([when('request.headers[x]', ['y'])])],
    {},
    false,
  ],
  [
    'DENY keeps its L4 part: methods + ports denies the port',
    [deny([to({ methods: ['GET'], ports: ['8080'] })])],
    {},
    false,
    0,
  ],
  // istiod handleRule (pilot/pkg/serviceregistry/ambient/authorization.go): from, to and each
  // when are separate clauses; a clause left with only HTTP fields is an empty match, which
  // ztunnel skips, so the whole DENY rule never matches at L4.
  [
    'istiod handleRule: DENY with an HTTP-only `to` beside an L4 `from` never matches at L4',
    [deny([{ ...from({ namespaces: ['demo'] }), ...to({ methods: ['POST'] }) }])],
    {},
    true,
  ],
  [
    'istiod handleRule: DENY with an L4 `from` and a request.headers `when` never matches at L4',
    [deny([{ ...from({ namespaces: ['demo'] }), when: [when('request.headers[x]', ['y']).when[0]!] }])],
    {},
    true,
  ],
  [
    'istiod handleRule: DENY with an L4 `from` and requestPrincipals in another source keeps the L4 source',
    [deny([{ from: [{ source: { namespaces: ['demo'] } }, { source: { requestPrincipals: ['*'] } }] }])],
    {},
    false,
    0,
  ],
  [
    'istiod handleRule: DENY with L4 and HTTP fields in the same source keeps the L4 field (stricter)',
    [deny([from({ namespaces: ['demo'], requestPrincipals: ['*'] })])],
    {},
    false,
    0,
  ],
  [
    'istiod handleRule: an HTTP-only DENY rule does not stop a later L4 rule of the same policy',
    [deny([when('request.headers[x]', ['y']), to({ ports: ['8080'] })])],
    {},
    false,
    1,
  ],
  ['DENY with only HTTP attributes has no effect', [deny([to({ methods: ['GET'] })])], {}, true],
  ['DENY with only an HTTP condition has no effect', [deny([when('request.headers[x]', ['y'])])], {}, true],
  [
    'connection.sni is not visible at L4 (ALLOW dropped)',
    [allow([when('connection.sni', ['a.b'])])],
    {},
    false,
  ],
  [
    'a dry-run DENY is reported, not enforced',
    [ap({ action: 'DENY', rules: [{}] }, { annotations: { 'istio.io/dry-run': 'true' } })],
    {},
    true,
  ],
  [
    'a policy that cannot be understood denies',
    [allow([from({ principals: ['cluster.local/*/sa/x'] })])],
    {},
    false,
    0,
  ],
  ['STRICT denies plaintext', [staticStrictPolicy(ROOT)], plain, false, 0],
  ['STRICT allows mTLS', [staticStrictPolicy(ROOT)], {}, true],
];

describe('L4 authorization decisions (conversion → wire → evaluate)', () => {
  it('has at least 50 cases', () => expect(cases.length).toBeGreaterThanOrEqual(50));
  it.each(cases)('%s', (_name, policies, conn, expected, ruleIndex) => {
    const d = decide(policies, conn);
    expect(d.allow, d.reason).toBe(expected);
    if (ruleIndex !== undefined) expect(d.ruleIndex).toBe(ruleIndex);
  });

  it('names the deciding policy', () => {
    const d = decide([ap({ action: 'DENY', rules: [from({ namespaces: ['x'] }), {}] }, { name: 'block' })]);
    expect(d).toMatchObject({ allow: false, policy: 'demo/block', ruleIndex: 1 });
  });

  it('explains every applicable policy and why each rule missed', () => {
    const all = new Map<string, Authorization>();
    for (const p of [
      ap({ rules: [from({ namespaces: ['prod'] }), to({ ports: ['9090'] })] }, { name: 'a' }),
      ap({ action: 'DENY', rules: [from({ ipBlocks: ['192.168.0.0/16'] })] }, { name: 'b' }),
    ]) {
      const a = convertAuthorizationPolicy(p, ROOT).authorization!;
      all.set(authorizationKey(a), a);
    }
    const d = evaluate(
      applicablePolicies({ namespace: 'demo', authorizationPolicies: [] }, all),
      { srcIdentity: SLEEP, srcIp: '10.0.0.10', dstIp: '10.0.0.11', dstPort: 8080 },
      { explain: true },
    );
    expect(d.allow).toBe(false);
    expect(d.trace!.map((t) => t.policy)).toEqual(['demo/b', 'demo/a']);
    expect(d.trace![0]!.rules[0]!.why).toContain('source ip 10.0.0.10 is not 192.168.0.0/16');
    expect(d.trace![1]!.rules[0]!.why).toContain('source namespace demo is not "prod"');
    expect(d.trace![1]!.rules[1]!.why).toContain('destination port 8080 is not 9090');
  });
});

describe('cidrContains', () => {
  it.each([
    ['10.0.0.0', 8, '10.255.1.2', true],
    ['10.0.0.0', 8, '11.0.0.1', false],
    ['10.1.2.3', 32, '10.1.2.3', true],
    ['0.0.0.0', 0, '1.2.3.4', true],
    ['10.0.0.128', 25, '10.0.0.200', true],
    ['10.0.0.128', 25, '10.0.0.100', false],
    ['fd00::', 8, 'fd12::1', true],
    ['fd00::', 8, '10.0.0.1', false],
  ] as const)('%s/%d contains %s: %s', (address, length, ip, expected) => {
    expect(cidrContains({ address: address as never, length }, ip)).toBe(expected);
  });
});

// A waypoint is not a captured workload in Istio (L4 policy is enforced by the receiving node
// proxy of enrolled workloads: istio.io ambient/usage/l4-policy); only what its own workload names
// governs its inbound. Namespace-wide and root policies are for the destination's node proxy.
describe('waypointInboundPolicies', () => {
  const conv = (ns: string, spec: Record<string, unknown>, name: string) => {
    const a = convertAuthorizationPolicy(
      {
        apiVersion: 'security.istio.io/v1',
        kind: 'AuthorizationPolicy',
        metadata: { name, namespace: ns },
        spec,
      },
      ROOT,
    ).authorization!;
    return [authorizationKey(a), a] as const;
  };
  const all = new Map([
    conv(ROOT, {}, 'allow-nothing'),
    conv('demo', { action: 'DENY', rules: [{}] }, 'deny-all'),
    conv('demo', { selector: { matchLabels: { app: 'waypoint' } }, action: 'DENY', rules: [{}] }, 'wp-deny'),
  ]);
  const waypointSelf = { namespace: 'demo', authorizationPolicies: [] as string[] };
  it.each<[string, string[], boolean, string | undefined]>([
    ['a root allow-nothing and a namespace DENY-all do not stop the waypoint', [], true, undefined],
    ['a selector policy naming the waypoint does', ['demo/wp-deny'], false, 'demo/wp-deny'],
  ])('%s', (_n, named, allow, policy) => {
    const self = { ...waypointSelf, authorizationPolicies: named };
    const d = evaluate(waypointInboundPolicies(self, applicablePolicies(self, all)), {
      srcIdentity: SLEEP,
      srcIp: '10.0.0.10',
      dstIp: '10.0.0.11',
      dstPort: 8080,
    });
    expect(d.allow).toBe(allow);
    expect(d.policy).toBe(policy);
  });
  it('the same policies still govern an ordinary workload in the namespace (the destination)', () => {
    const d = evaluate(applicablePolicies(waypointSelf, all), {
      srcIdentity: SLEEP,
      srcIp: '10.0.0.10',
      dstIp: '10.0.0.11',
      dstPort: 8080,
    });
    expect(d.allow).toBe(false);
  });
});
