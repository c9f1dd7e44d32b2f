// The waypoint's L7 decision table: AuthorizationPolicy YAML (as objects) → compileWaypointPolicies
// → evaluateL7, for one request. Each case names the field or rule it pins down.
import { describe, expect, it } from 'vitest';
import {
  authzRequestOf,
  compileWaypointPolicies,
  evaluateL7,
  normalizePath,
  type L7AuthzRequest,
} from '../../../src/waypoint/policy/authz-l7.js';
import type { PolicyObject } from '../../../src/waypoint/policy/policy-binding.js';

const ROOT = 'istio-system';
const WAYPOINT = { namespace: 'demo', name: 'waypoint' };
const GATEWAY = { targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'waypoint' }] };
const ECHO = { namespace: 'demo', hostname: 'echo.demo.svc.cluster.local', name: 'echo' };
const OTHER = { namespace: 'demo', hostname: 'other.demo.svc.cluster.local', name: 'other' };

function ap(spec: Record<string, unknown>, meta: Partial<PolicyObject['metadata']> = {}): PolicyObject {
  return { kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: 'demo', ...meta }, spec };
}
/** A policy bound to the waypoint itself. */
const gw = (spec: Record<string, unknown>, meta: Partial<PolicyObject['metadata']> = {}) =>
  ap({ ...GATEWAY, ...spec }, meta);
const allow = (rules: unknown[]) => gw({ action: 'ALLOW', rules });
const deny = (rules: unknown[]) => gw({ action: 'DENY', rules }, { name: 'deny' });
const to = (operation: Record<string, unknown>) => ({ to: [{ operation }] });
const from = (source: Record<string, unknown>) => ({ from: [{ source }] });
const when = (key: string, values?: string[], notValues?: string[]) => ({
  when: [{ key, ...(values ? { values } : {}), ...(notValues ? { notValues } : {}) }],
});

type ReqPatch = Partial<Omit<L7AuthzRequest, 'source' | 'destination'>> & {
  source?: Partial<L7AuthzRequest['source']>;
  destination?: Partial<L7AuthzRequest['destination']>;
};

function request(patch: ReqPatch = {}): L7AuthzRequest {
  return {
    method: 'GET',
    path: '/api/v1',
    host: 'echo.demo.svc.cluster.local:8080',
    headers: {},
    ...patch,
    source: { principal: 'cluster.local/ns/demo/sa/sleep', ip: '10.0.0.5', ...patch.source },
    destination: { service: ECHO, ip: '10.96.0.10', port: 8080, ...patch.destination },
  };
}

function decide(policies: PolicyObject[], patch: ReqPatch = {}) {
  // a repeated name gets a suffix ("p", "p-1"), so tables can build several policies with gw()
  const seen = new Set<string>();
  const named = policies.map((p, i) => {
    const name = seen.has(p.metadata.name) ? `${p.metadata.name}-${i}` : p.metadata.name;
    seen.add(name);
    return { ...p, metadata: { ...p.metadata, name } };
  });
  const set = compileWaypointPolicies(named, WAYPOINT, ROOT);
  return { ...evaluateL7(set, request(patch)), warnings: set.warnings };
}

interface Case {
  name: string;
  policies: PolicyObject[];
  req?: ReqPatch;
  allow: boolean;
  policy?: string;
}

const ALICE = 'https://issuer.example/alice';
const claims = {
  iss: 'https://issuer.example',
  sub: 'alice',
  aud: ['echo', 'web'],
  azp: 'frontend',
  groups: ['dev', 'ops'],
  org: { team: 'blue' },
};

const cases: Case[] = [
  // ---- decision order ----
  { name: 'no policy: allow', policies: [], allow: true },
  { name: 'ALLOW with no rules matches nothing: deny', policies: [gw({ action: 'ALLOW' })], allow: false },
  {
    name: 'ALLOW with one empty rule matches everything',
    policies: [allow([{}])],
    allow: true,
    policy: 'demo/p',
  },
  {
    name: 'DENY wins over a matching ALLOW',
    policies: [allow([{}]), deny([to({ methods: ['GET'] })])],
    allow: false,
    policy: 'demo/deny',
  },
  {
    name: 'DENY that does not match leaves the ALLOW to decide',
    policies: [allow([{}]), deny([to({ methods: ['POST'] })])],
    allow: true,
    policy: 'demo/p',
  },
  { name: 'AUDIT never decides', policies: [gw({ action: 'AUDIT', rules: [{}] })], allow: true },
  {
    name: 'CUSTOM is ignored',
    policies: [gw({ action: 'CUSTOM', provider: { name: 'ext' }, rules: [{}] })],
    allow: true,
  },
  {
    name: 'dry-run DENY does not deny',
    policies: [gw({ action: 'DENY', rules: [{}] }, { annotations: { 'istio.io/dry-run': 'true' } })],
    allow: true,
  },

  // ---- binding ----
  {
    name: 'selector policies are ignored by the waypoint',
    policies: [ap({ selector: { matchLabels: { app: 'echo' } }, action: 'DENY', rules: [{}] })],
    allow: true,
  },
  {
    name: 'namespace-wide policies (no targetRefs) are ignored',
    policies: [ap({ action: 'DENY', rules: [{}] })],
    allow: true,
  },
  {
    name: 'targetRef to another waypoint is ignored',
    policies: [
      ap({
        targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'other-wp' }],
        action: 'DENY',
        rules: [{}],
      }),
    ],
    allow: true,
  },
  {
    name: 'singular targetRef Gateway binds',
    policies: [
      ap({
        targetRef: { kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'waypoint' },
        action: 'DENY',
        rules: [{}],
      }),
    ],
    allow: false,
  },
  {
    name: 'targetRef Service applies to requests for that service',
    policies: [
      ap({ targetRefs: [{ kind: 'Service', group: '', name: 'echo' }], action: 'DENY', rules: [{}] }),
    ],
    allow: false,
  },
  {
    name: 'targetRef Service does not apply to another service',
    policies: [
      ap({ targetRefs: [{ kind: 'Service', group: '', name: 'echo' }], action: 'DENY', rules: [{}] }),
    ],
    req: { destination: { service: OTHER } },
    allow: true,
  },
  {
    name: 'targetRef Service does not apply to pod-addressed traffic',
    policies: [ap({ targetRefs: [{ kind: 'Service', name: 'echo' }], action: 'DENY', rules: [{}] })],
    req: { destination: { service: undefined } },
    allow: true,
  },
  {
    name: 'targetRef Gateway applies to every service',
    policies: [deny([{}])],
    req: { destination: { service: OTHER } },
    allow: false,
  },
  {
    name: 'GatewayClass istio-waypoint from the root namespace binds every waypoint',
    policies: [
      ap(
        {
          targetRefs: [{ kind: 'GatewayClass', group: 'gateway.networking.k8s.io', name: 'istio-waypoint' }],
          action: 'DENY',
          rules: [{}],
        },
        { namespace: ROOT },
      ),
    ],
    allow: false,
  },
  {
    name: 'GatewayClass outside the root namespace is ignored',
    policies: [
      ap({
        targetRefs: [{ kind: 'GatewayClass', group: 'gateway.networking.k8s.io', name: 'istio-waypoint' }],
        action: 'DENY',
        rules: [{}],
      }),
    ],
    allow: true,
  },
  {
    name: 'targetRef ServiceEntry applies to its hosts',
    policies: [
      {
        kind: 'ServiceEntry',
        metadata: { name: 'ext', namespace: 'demo' },
        spec: { hosts: ['*.example.com'] },
      },
      ap({
        targetRefs: [{ kind: 'ServiceEntry', group: 'networking.istio.io', name: 'ext' }],
        action: 'DENY',
        rules: [{}],
      }),
    ],
    req: { destination: { service: { namespace: 'demo', hostname: 'api.example.com' } } },
    allow: false,
  },

  // ---- to.operation ----
  { name: 'methods: GET allowed', policies: [allow([to({ methods: ['GET', 'HEAD'] })])], allow: true },
  {
    name: 'methods: POST not listed',
    policies: [allow([to({ methods: ['GET', 'HEAD'] })])],
    req: { method: 'POST' },
    allow: false,
  },
  {
    name: 'notMethods excludes DELETE',
    policies: [allow([to({ notMethods: ['DELETE'] })])],
    req: { method: 'DELETE' },
    allow: false,
  },
  {
    name: 'paths exact',
    policies: [allow([to({ paths: ['/health'] })])],
    req: { path: '/health' },
    allow: true,
  },
  {
    name: 'paths exact is not a prefix',
    policies: [allow([to({ paths: ['/health'] })])],
    req: { path: '/health/deep' },
    allow: false,
  },
  {
    name: 'paths exact ignores the query string',
    policies: [allow([to({ paths: ['/health'] })])],
    req: { path: '/health?verbose=1' },
    allow: true,
  },
  {
    name: 'paths prefix "/api/*"',
    policies: [allow([to({ paths: ['/api/*'] })])],
    req: { path: '/api/v1/users' },
    allow: true,
  },
  {
    name: 'paths prefix "/api/*" does not match "/apix"',
    policies: [allow([to({ paths: ['/api/*'] })])],
    req: { path: '/apix' },
    allow: false,
  },
  {
    name: 'paths suffix "*.js"',
    policies: [allow([to({ paths: ['*.js'] })])],
    req: { path: '/static/app.js' },
    allow: true,
  },
  {
    name: 'paths suffix "*.js" does not match .css',
    policies: [allow([to({ paths: ['*.js'] })])],
    req: { path: '/static/app.css' },
    allow: false,
  },
  {
    name: 'paths "*" matches any path',
    policies: [allow([to({ paths: ['*'] })])],
    req: { path: '/' },
    allow: true,
  },
  {
    name: 'paths are case-sensitive',
    policies: [allow([to({ paths: ['/api/*'] })])],
    req: { path: '/API/v1' },
    allow: false,
  },
  {
    name: 'path template {*} matches one segment',
    policies: [allow([to({ paths: ['/users/{*}/orders'] })])],
    req: { path: '/users/42/orders' },
    allow: true,
  },
  {
    name: 'path template {*} does not match two segments',
    policies: [allow([to({ paths: ['/users/{*}/orders'] })])],
    req: { path: '/users/4/2/orders' },
    allow: false,
  },
  {
    name: 'path template {**} matches the rest',
    policies: [allow([to({ paths: ['/files/{**}'] })])],
    req: { path: '/files/a/b/c.txt' },
    allow: true,
  },
  {
    name: 'path template with {**} before {*} fails closed',
    policies: [allow([to({ paths: ['/a/{**}/b/{*}'] })]), allow([{}])],
    allow: false,
  },
  {
    name: 'a * inside an HTTP value is literal, as in Istio',
    policies: [allow([when('request.headers[x-v]', ['a*b'])])],
    req: { headers: { 'x-v': 'axxb' } },
    allow: false,
  },
  {
    name: 'DENY notPaths: everything but /public/* is denied',
    policies: [deny([to({ notPaths: ['/public/*'] })])],
    req: { path: '/admin' },
    allow: false,
  },
  {
    name: 'DENY notPaths: /public/* passes',
    policies: [deny([to({ notPaths: ['/public/*'] })])],
    req: { path: '/public/index.html' },
    allow: true,
  },
  {
    name: 'DENY /admin cannot be dodged with dot segments',
    policies: [deny([to({ paths: ['/admin'] })])],
    req: { path: '/public/../admin' },
    allow: false,
  },
  {
    name: 'DENY /admin cannot be dodged with percent-encoding',
    policies: [deny([to({ paths: ['/admin'] })])],
    req: { path: '/%61dmin' },
    allow: false,
  },
  // Istio compares hosts/notHosts with the whole Host/:authority, port included (the authz
  // HostMatcher on ":authority"; Istio's upgrade notes: use "host:*" to match any port).
  {
    name: 'hosts (Istio HostMatcher): exact compares the whole Host, so a bare name misses "name:8080"',
    policies: [allow([to({ hosts: ['echo.demo.svc.cluster.local'] })])],
    allow: false,
  },
  {
    name: 'hosts (Istio HostMatcher): exact is case-insensitive',
    policies: [allow([to({ hosts: ['Echo.Demo.svc.cluster.local'] })])],
    req: { host: 'echo.demo.SVC.cluster.local' },
    allow: true,
  },
  {
    name: 'hosts (Istio HostMatcher): exact with the port matches',
    policies: [allow([to({ hosts: ['echo.demo.svc.cluster.local:8080'] })])],
    allow: true,
  },
  {
    name: 'hosts (Istio HostMatcher): "name:*" is a prefix match and takes any port',
    policies: [allow([to({ hosts: ['echo.demo.svc.cluster.local:*'] })])],
    allow: true,
  },
  {
    name: 'hosts: a listed port must match',
    policies: [allow([to({ hosts: ['echo.demo.svc.cluster.local:9090'] })])],
    allow: false,
  },
  {
    name: 'hosts: suffix "*.example.com"',
    policies: [allow([to({ hosts: ['*.example.com'] })])],
    req: { host: 'API.example.com' },
    allow: true,
  },
  {
    name: 'hosts (Istio HostMatcher): suffix "*.example.com" misses "api.example.com:443" (port is part of the value)',
    policies: [allow([to({ hosts: ['*.example.com'] })])],
    req: { host: 'api.example.com:443' },
    allow: false,
  },
  {
    name: 'hosts: suffix does not match the bare domain',
    policies: [allow([to({ hosts: ['*.example.com'] })])],
    req: { host: 'example.com' },
    allow: false,
  },
  { name: 'hosts: prefix "echo.*"', policies: [allow([to({ hosts: ['echo.*'] })])], allow: true },
  {
    name: 'notHosts excludes a host',
    policies: [deny([to({ notHosts: ['echo.demo.svc.cluster.local'] })])],
    req: { host: 'echo.demo.svc.cluster.local' },
    allow: true,
  },
  {
    name: 'notHosts (Istio HostMatcher): a bare name does not exclude "name:8080", so the DENY applies',
    policies: [deny([to({ notHosts: ['echo.demo.svc.cluster.local'] })])],
    allow: false,
  },
  { name: 'ports: listed port', policies: [allow([to({ ports: ['8080'] })])], allow: true },
  {
    name: 'ports: other port',
    policies: [allow([to({ ports: ['8080'] })])],
    req: { destination: { port: 9090 } },
    allow: false,
  },
  { name: 'notPorts', policies: [allow([to({ notPorts: ['8080'] })])], allow: false },
  {
    name: 'operations are ORed',
    policies: [allow([{ to: [{ operation: { methods: ['POST'] } }, { operation: { paths: ['/api/*'] } }] }])],
    allow: true,
  },
  {
    name: 'fields within an operation are ANDed',
    policies: [allow([to({ methods: ['POST'], paths: ['/api/*'] })])],
    allow: false,
  },

  // ---- from.source ----
  {
    name: 'principals exact',
    policies: [allow([from({ principals: ['cluster.local/ns/demo/sa/sleep'] })])],
    allow: true,
  },
  {
    name: 'principals prefix',
    policies: [allow([from({ principals: ['cluster.local/ns/demo/*'] })])],
    allow: true,
  },
  { name: 'principals suffix', policies: [allow([from({ principals: ['*/sa/web'] })])], allow: false },
  {
    name: 'principals "*" requires an identity',
    policies: [allow([from({ principals: ['*'] })])],
    req: { source: { principal: undefined } },
    allow: false,
  },
  {
    name: 'notPrincipals excludes',
    policies: [allow([from({ notPrincipals: ['cluster.local/ns/demo/sa/sleep'] })])],
    allow: false,
  },
  {
    name: 'namespaces from the peer identity',
    policies: [allow([from({ namespaces: ['demo'] })])],
    allow: true,
  },
  {
    name: 'notNamespaces "*" denies plaintext only',
    policies: [deny([from({ notNamespaces: ['*'] })])],
    req: { source: { principal: undefined } },
    allow: false,
  },
  {
    name: 'serviceAccounts "ns/name"',
    policies: [allow([from({ serviceAccounts: ['demo/sleep'] })])],
    allow: true,
  },
  {
    name: 'serviceAccounts short name is in the policy namespace',
    policies: [allow([from({ serviceAccounts: ['web'] })])],
    allow: false,
  },
  { name: 'ipBlocks CIDR', policies: [allow([from({ ipBlocks: ['10.0.0.0/24'] })])], allow: true },
  { name: 'notIpBlocks CIDR', policies: [allow([from({ notIpBlocks: ['10.0.0.0/8'] })])], allow: false },
  {
    name: 'remoteIpBlocks is the source address',
    policies: [allow([from({ remoteIpBlocks: ['10.0.0.5'] })])],
    allow: true,
  },
  {
    name: 'requestPrincipals exact',
    policies: [allow([from({ requestPrincipals: [ALICE] })])],
    req: { requestPrincipal: ALICE },
    allow: true,
  },
  {
    name: 'requestPrincipals issuer prefix',
    policies: [allow([from({ requestPrincipals: ['https://issuer.example/*'] })])],
    req: { requestPrincipal: ALICE },
    allow: true,
  },
  {
    name: 'requestPrincipals "*" without a token: deny',
    policies: [allow([from({ requestPrincipals: ['*'] })])],
    allow: false,
  },
  {
    name: 'DENY notRequestPrincipals "*" rejects requests without a token',
    policies: [deny([from({ notRequestPrincipals: ['*'] })])],
    allow: false,
  },
  {
    name: 'DENY notRequestPrincipals "*" passes a token',
    policies: [deny([from({ notRequestPrincipals: ['*'] })])],
    req: { requestPrincipal: ALICE },
    allow: true,
  },
  {
    name: 'from and to are ANDed',
    policies: [allow([{ ...from({ namespaces: ['demo'] }), ...to({ methods: ['POST'] }) }])],
    allow: false,
  },

  // ---- when ----
  {
    name: 'when request.headers exact',
    policies: [allow([when('request.headers[X-User]', ['alice'])])],
    req: { headers: { 'x-user': 'alice' } },
    allow: true,
  },
  {
    name: 'when request.headers missing header',
    policies: [allow([when('request.headers[x-user]', ['alice'])])],
    allow: false,
  },
  {
    name: 'when request.headers prefix',
    policies: [allow([when('request.headers[x-user]', ['ali*'])])],
    req: { headers: { 'x-user': 'alicia' } },
    allow: true,
  },
  {
    name: 'when request.headers notValues',
    policies: [allow([when('request.headers[x-env]', undefined, ['prod'])])],
    req: { headers: { 'x-env': 'prod' } },
    allow: false,
  },
  { name: 'when source.ip', policies: [allow([when('source.ip', ['10.0.0.0/16'])])], allow: true },
  { name: 'when source.namespace', policies: [allow([when('source.namespace', ['other'])])], allow: false },
  {
    name: 'when source.principal',
    policies: [allow([when('source.principal', ['cluster.local/ns/demo/sa/sleep'])])],
    allow: true,
  },
  { name: 'when destination.ip', policies: [allow([when('destination.ip', ['10.96.0.0/12'])])], allow: true },
  { name: 'when destination.port', policies: [allow([when('destination.port', ['9090'])])], allow: false },
  {
    name: 'when request.auth.principal',
    policies: [allow([when('request.auth.principal', [ALICE])])],
    req: { requestPrincipal: ALICE },
    allow: true,
  },
  {
    name: 'when request.auth.claims list claim',
    policies: [allow([when('request.auth.claims[groups]', ['ops'])])],
    req: { requestPrincipal: ALICE, requestAuthClaims: claims },
    allow: true,
  },
  {
    name: 'when request.auth.claims nested claim',
    policies: [allow([when('request.auth.claims[org][team]', ['red'])])],
    req: { requestPrincipal: ALICE, requestAuthClaims: claims },
    allow: false,
  },
  {
    name: 'when request.auth.audiences',
    policies: [allow([when('request.auth.audiences', ['web'])])],
    req: { requestPrincipal: ALICE, requestAuthClaims: claims },
    allow: true,
  },
  {
    name: 'when request.auth.presenter',
    policies: [allow([when('request.auth.presenter', ['frontend'])])],
    req: { requestPrincipal: ALICE, requestAuthClaims: claims },
    allow: true,
  },
  {
    name: 'when conditions are ANDed',
    policies: [
      allow([
        {
          when: [
            { key: 'source.namespace', values: ['demo'] },
            { key: 'destination.port', values: ['9090'] },
          ],
        },
      ]),
    ],
    allow: false,
  },

  // ---- fail closed ----
  {
    name: 'a policy with a bad CIDR denies everything it governs',
    policies: [allow([from({ ipBlocks: ['10.0.0.0/99'] })]), allow([{}])],
    allow: false,
    policy: 'demo/p',
  },
  {
    name: 'ALLOW rule with a condition the waypoint cannot see matches nothing',
    policies: [allow([when('connection.sni', ['echo'])])],
    allow: false,
  },
];

describe('evaluateL7 decision table', () => {
  it('has at least 30 cases', () => expect(cases.length).toBeGreaterThanOrEqual(30));
  it.each(cases)('$name', ({ policies, req, allow: expected, policy }) => {
    const d = decide(policies, req);
    expect(d.allow, d.reason).toBe(expected);
    if (policy) expect(d.policy).toBe(policy);
  });
});

describe('evaluateL7 details', () => {
  it('names the deciding policy and rule', () => {
    const d = decide([allow([to({ methods: ['POST'] }), to({ methods: ['GET'] })])]);
    expect(d).toMatchObject({
      allow: true,
      policy: 'demo/p',
      ruleIndex: 1,
      reason: 'ALLOW policy demo/p rule 1 matched',
    });
  });

  it('explains a deny when no ALLOW matched', () => {
    const d = decide([allow([to({ methods: ['POST'] })])]);
    expect(d.reason).toBe('no ALLOW policy matched (demo/p apply)');
  });

  it('reports matching AUDIT policies without letting them decide', () => {
    const d = decide([
      gw({ action: 'AUDIT', rules: [to({ paths: ['/api/*'] })] }, { name: 'audit' }),
      deny([to({ methods: ['GET'] })]),
    ]);
    expect(d).toMatchObject({ allow: false, policy: 'demo/deny', audited: ['demo/audit'] });
  });

  it('leaves CUSTOM to matchCustom: DENY/ALLOW decide without it (Istio: CUSTOM runs first, separately)', () => {
    const d = decide([gw({ action: 'CUSTOM', provider: { name: 'ext' }, rules: [{}] })]);
    expect(d.allow).toBe(true);
    expect(d.reason).toBe('no ALLOW policy applies to this request');
  });

  it('reports what a dry-run policy would have done', () => {
    const d = decide([
      gw({ action: 'DENY', rules: [{}] }, { name: 'shadow', annotations: { 'istio.io/dry-run': 'true' } }),
    ]);
    expect(d).toMatchObject({ allow: true, dryRun: [{ policy: 'demo/shadow', action: 'DENY' }] });
  });

  it('fails closed with the reason when a policy cannot be understood', () => {
    const d = decide([allow([from({ ipBlocks: ['not-an-ip'] })])]);
    expect(d.allow).toBe(false);
    expect(d.reason).toMatch(/could not be understood: "not-an-ip" is not an IP address/);
    expect(d.warnings[0]).toMatch(/denying every request it governs/);
  });

  it('a DENY rule keeps its other conditions when one cannot be evaluated (broader than written)', () => {
    const d = decide([deny([{ ...to({ methods: ['GET'] }), ...when('connection.sni', ['x']) }])]);
    expect(d.allow).toBe(false);
    expect(d.warnings[0]).toMatch(/connection.sni cannot be evaluated/);
  });

  it('accepts the principal with or without spiffe://', () => {
    const p = [allow([from({ principals: ['cluster.local/ns/demo/sa/sleep'] })])];
    expect(decide(p, { source: { principal: 'spiffe://cluster.local/ns/demo/sa/sleep' } }).allow).toBe(true);
  });

  it('matches a repeated header against its values joined with ","', () => {
    const p = [allow([when('request.headers[x-tag]', ['a,b'])])];
    expect(decide(p, { headers: { 'x-tag': ['a', 'b'] } }).allow).toBe(true);
  });

  it('picks up a policy added to the objects on recompilation', () => {
    const objects: PolicyObject[] = [];
    expect(decide(objects).allow).toBe(true);
    objects.push(deny([{}]));
    expect(decide(objects).allow).toBe(false);
  });
});

describe('normalizePath', () => {
  it.each([
    ['/a/b', '/a/b'],
    ['/a/./b', '/a/b'],
    ['/a/../b', '/b'],
    ['/../../b', '/b'],
    ['/a/b/..', '/a/'],
    ['/%7Euser/%2Fx', '/~user/%2Fx'],
    ['/p?q=1#f', '/p'],
    ['', '/'],
  ])('%s → %s', (raw, want) => expect(normalizePath(raw)).toBe(want));
});

describe('authzRequestOf', () => {
  it('takes the attributes from the shared L7Request, the tunnel peer and the JWT result', () => {
    const set = compileWaypointPolicies(
      [
        gw({
          rules: [
            {
              ...from({ principals: ['cluster.local/ns/demo/sa/sleep'], requestPrincipals: [ALICE] }),
              ...to({ methods: ['PUT'], paths: ['/items/*'], hosts: ['echo.demo:8080'], ports: ['8080'] }),
            },
          ],
        }),
      ],
      WAYPOINT,
      ROOT,
    );
    const req = {
      method: 'PUT',
      path: '/items/7',
      query: new URLSearchParams(),
      headers: {},
      authority: 'echo.demo:8080',
      target: { service: ECHO, ip: '10.96.0.10', port: 8080 },
      grpc: false,
    };
    const peer = { identity: 'spiffe://cluster.local/ns/demo/sa/sleep', ip: '10.0.0.5' };
    expect(evaluateL7(set, authzRequestOf(req, peer, { principal: ALICE })).allow).toBe(true);
    expect(evaluateL7(set, authzRequestOf(req, peer)).allow).toBe(false);
  });
});
