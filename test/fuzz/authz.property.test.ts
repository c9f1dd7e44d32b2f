// Properties of policy compile + decide, L4 (controlplane/authz-convert.ts → node/authz.ts) and
// L7 (waypoint/policy/authz-l7.ts), over random AuthorizationPolicies and connections/requests:
//  - a DENY match is never allowed: whenever one enforced DENY policy, alone, denies a request,
//    the whole set denies it, whatever ALLOW policies sit beside it (Istio's order, ztunnel
//    rbac.rs / Envoy RBAC: DENY before ALLOW);
//  - a policy that cannot be understood never opens anything: marking any applicable policy
//    invalid turns no denial into an allow;
//  - no identity, no principal: plaintext never matches a positive principal/namespace rule.
import { test, fc } from '@fast-check/vitest';
import { expect } from 'vitest';
import { convertAuthorizationPolicy } from '../../src/controlplane/authz-convert.js';
import type { AuthorizationPolicy } from '../../src/config/types.js';
import { evaluate, type AuthzConnection, type EvalPolicy } from '../../src/proxy/authz.js';
import { authorizationKey } from '../../src/xds/authorization.js';
import {
  compileWaypointPolicies,
  evaluateL7,
  type L7AuthzRequest,
} from '../../src/waypoint/policy/authz-l7.js';
import type { PolicyObject } from '../../src/waypoint/policy/policy-binding.js';
import { runs } from './runs.js';

const IDS = ['cluster.local/ns/demo/sa/a', 'cluster.local/ns/demo/sa/b', 'cluster.local/ns/other/sa/a'];
const sub = <T>(xs: readonly T[]) => fc.subarray([...xs], { minLength: 1 });
const source = fc.record(
  {
    principals: sub([...IDS, '*', 'cluster.local/ns/demo/*', '*/sa/a']),
    notPrincipals: sub(IDS),
    namespaces: sub(['demo', 'other', '*', 'de*']),
    notNamespaces: sub(['demo', 'other']),
    ipBlocks: sub(['127.0.180.0/24', '127.0.180.10', '10.0.0.0/8']),
    notIpBlocks: sub(['127.0.180.11', '127.0.181.0/24']),
  },
  { requiredKeys: [] },
);
const l4Operation = fc.record(
  { ports: sub(['8080', '9090']), notPorts: sub(['9090']) },
  { requiredKeys: [] },
);
const httpOperation = fc.record(
  {
    ports: sub(['8080', '9090']),
    methods: sub(['GET', 'POST']),
    paths: sub(['/admin', '/admin/*', '/public', '*']),
    notPaths: sub(['/public']),
  },
  { requiredKeys: [] },
);
const rule = (op: fc.Arbitrary<Record<string, string[]>>) =>
  fc.record(
    {
      from: fc.array(fc.record({ source }), { minLength: 1, maxLength: 2 }),
      to: fc.array(fc.record({ operation: op }), { minLength: 1, maxLength: 2 }),
      when: fc.array(
        fc.record({
          key: fc.constantFrom('source.namespace', 'destination.port', 'source.principal'),
          values: sub(['demo', '8080', IDS[0]!]),
        }),
        { maxLength: 1 },
      ),
    },
    { requiredKeys: [] },
  );
const policy = (op: fc.Arbitrary<Record<string, string[]>>, extraSpec: Record<string, unknown>) =>
  fc
    .record({
      name: fc.constantFrom('p1', 'p2', 'p3', 'p4', 'p5'),
      action: fc.constantFrom('ALLOW', 'DENY'),
      rules: fc.array(rule(op), { maxLength: 3 }),
      dryRun: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
    })
    .map(
      ({ name, action, rules, dryRun }): AuthorizationPolicy =>
        ({
          apiVersion: 'security.istio.io/v1',
          kind: 'AuthorizationPolicy',
          metadata: {
            name,
            namespace: 'demo',
            ...(dryRun ? { annotations: { 'istio.io/dry-run': 'true' } } : {}),
          },
          spec: { action, rules, ...extraSpec },
        }) as unknown as AuthorizationPolicy,
    );
const uniqueByName = <T extends { metadata: { name: string } }>(a: fc.Arbitrary<T>) =>
  fc.uniqueArray(a, { selector: (p) => p.metadata.name, maxLength: 5 });

const connection: fc.Arbitrary<AuthzConnection> = fc.record({
  srcIdentity: fc.option(fc.constantFrom(...IDS.map((i) => `spiffe://${i}`)), { nil: undefined }),
  srcIp: fc.constantFrom('127.0.180.10', '127.0.180.11', '127.0.181.3', '10.1.2.3'),
  dstIp: fc.constant('127.0.180.12'),
  dstPort: fc.constantFrom(8080, 9090),
});

function l4Policies(objs: AuthorizationPolicy[]): EvalPolicy[] {
  return objs
    .map((o) => convertAuthorizationPolicy(o, 'istio-system').authorization)
    .filter((a): a is EvalPolicy => a !== undefined)
    .sort((a, b) => authorizationKey(a).localeCompare(authorizationKey(b)));
}

test.prop([uniqueByName(policy(l4Operation, {})), connection], runs())(
  'L4: a connection one enforced DENY policy denies is denied by the whole set',
  (objs, conn) => {
    const all = l4Policies(objs);
    const whole = evaluate(all, conn);
    for (const d of all) {
      if (d.action !== 'DENY' || d.dryRun) continue;
      const alone = evaluate([d], conn);
      if (!alone.allow) expect(whole.allow, `${alone.reason}; whole set: ${whole.reason}`).toBe(false);
    }
  },
);

test.prop([uniqueByName(policy(l4Operation, {})), connection, fc.nat()], runs())(
  'L4: marking a policy invalid never opens a connection',
  (objs, conn, pick) => {
    const all = l4Policies(objs);
    if (all.length === 0) return;
    const i = pick % all.length;
    const broken = all.map((p, j) => (j === i ? { ...p, invalid: 'unreadable (property test)' } : p));
    const before = evaluate(all, conn);
    const after = evaluate(broken, conn);
    if (!before.allow) expect(after.allow, after.reason).toBe(false);
    if (!all[i]!.dryRun) expect(after.allow, after.reason).toBe(false);
  },
);

test.prop([uniqueByName(policy(l4Operation, {})), connection], runs())(
  'L4: without a verified identity no positive principal or namespace rule matches',
  (objs, conn) => {
    const plaintext = { ...conn, srcIdentity: undefined };
    const onlyIdentityAllows = l4Policies(
      objs.map((o) => ({
        ...o,
        metadata: { name: o.metadata.name, namespace: 'demo' },
        spec: {
          action: 'ALLOW',
          rules: [
            { from: [{ source: { principals: IDS } }] },
            { from: [{ source: { namespaces: ['demo', 'other'] } }] },
          ],
        },
      })) as AuthorizationPolicy[],
    );
    if (onlyIdentityAllows.length) expect(evaluate(onlyIdentityAllows, plaintext).allow).toBe(false);
  },
);

// ---- L7 at the waypoint ----

const WAYPOINT = { namespace: 'demo', name: 'waypoint' };
const gatewayRef = {
  targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'waypoint' }],
};
const request: fc.Arbitrary<L7AuthzRequest> = fc.record({
  source: fc.record({
    principal: fc.option(fc.constantFrom(...IDS), { nil: undefined }),
    ip: fc.constantFrom('127.0.180.10', '127.0.181.3'),
  }),
  destination: fc.record({ ip: fc.constant('127.0.180.12'), port: fc.constantFrom(8080, 9090) }),
  method: fc.constantFrom('GET', 'POST', 'PUT'),
  path: fc.constantFrom('/admin', '/admin/x', '/public', '/public/../admin', '/%61dmin', '/x', '/admin?x=1'),
  host: fc.constant('echo.demo.svc.cluster.local'),
  headers: fc.constant({}),
});

test.prop([uniqueByName(policy(httpOperation, gatewayRef)), request], runs())(
  'L7: a request one enforced DENY policy denies is denied by the whole set',
  (objs, req) => {
    const set = compileWaypointPolicies(objs as unknown as PolicyObject[], WAYPOINT, 'istio-system');
    const whole = evaluateL7(set, req);
    for (const d of set.policies) {
      if (d.action !== 'DENY' || d.dryRun) continue;
      const alone = evaluateL7({ policies: [d], warnings: [] }, req);
      if (!alone.allow) expect(whole.allow, `${alone.reason}; whole set: ${whole.reason}`).toBe(false);
    }
  },
);

test.prop([uniqueByName(policy(httpOperation, gatewayRef)), request, fc.nat()], runs())(
  'L7: marking a policy invalid never opens a request',
  (objs, req, pick) => {
    const set = compileWaypointPolicies(objs as unknown as PolicyObject[], WAYPOINT, 'istio-system');
    if (set.policies.length === 0) return;
    const i = pick % set.policies.length;
    const broken = {
      ...set,
      policies: set.policies.map((p, j) => (j === i ? { ...p, invalid: 'unreadable' } : p)),
    };
    if (!evaluateL7(set, req).allow) expect(evaluateL7(broken, req).allow).toBe(false);
  },
);
