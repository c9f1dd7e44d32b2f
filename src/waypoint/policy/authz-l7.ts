// L7 AuthorizationPolicy at the waypoint (pure): which policies bind to this waypoint through
// `targetRefs`, compiled once per config change, and the decision for one HTTP request.
//
// Istio's order ("Authorization policy precedence", istio.io docs): CUSTOM first (matchCustom:
// which CUSTOM policies' rules this request matches, so ext-authz.ts asks their provider), then
// any matching DENY denies; no ALLOW policy → allow; a matching ALLOW allows; otherwise deny.
// AUDIT never decides (matches are reported). As in Istio,
// a waypoint applies only policies that name it (or a service it serves) in `targetRefs`;
// selector-based and namespace-wide policies are for node proxies.
//
// The L4 parts of a rule (principals, namespaces, serviceAccounts, ipBlocks, ports, and the L4
// `when` keys) are read and matched by the same code as the node proxy's (xds/authz-rule-fields.ts,
// proxy/authz.ts), so the two layers cannot disagree; this file adds the HTTP attributes.
import {
  DRY_RUN_ANNOTATION,
  L4_WHEN_KEYS,
  Unconvertible,
  cidrs,
  compact,
  ports,
  serviceAccounts,
  strings,
  whenMatch,
  type AuthzSpec,
  type Condition,
  type Operation,
  type Rule,
  type Source,
} from '../../xds/authz-rule-fields.js';
import { matchMismatch, peerOf, stringMatches, type Peer } from '../../proxy/authz.js';
import { decideInOrder, policyKey } from './authz-order.js';
import { isEmptyMatch, type AuthzMatch } from '../../xds/authorization.js';
import type { L7Request } from '../routing/types.js';
import {
  DEFAULT_PATH_NORMALIZATION,
  normalizeRequestPath,
  type PathNormalization,
} from '../http/http-request.js';
import {
  policyTarget,
  targetCovers,
  type PolicyObject,
  type PolicyTarget,
  type ServiceRef,
  type WaypointRef,
} from './policy-binding.js';

import type {
  CompileOptions,
  CustomMatch,
  HttpAttr,
  HttpCheck,
  L7Match,
  L7Policy,
  L7Rule,
  ValueMatch,
  WaypointPolicySet,
} from './authz-l7-types.js';

// The compiled policy types live in authz-l7-types.ts (authz-order.ts, ext-authz.ts and jwt.ts
// read them; importing them from here made import cycles, issue 14). Re-exported for callers.
export type * from './authz-l7-types.js';

export { RBAC_DENIED_BODY } from './authz-l7-types.js';

/**
 * The AuthorizationPolicies that bind to `waypoint` through targetRef(s): kind Gateway naming it,
 * kind Service or ServiceEntry in the policy's namespace (requests for that service), or kind
 * GatewayClass `istio-waypoint` from the root namespace (every waypoint).
 */
export function compileWaypointPolicies(
  objects: Iterable<PolicyObject>,
  waypoint: WaypointRef,
  rootNamespace: string,
  opts: CompileOptions = {},
): WaypointPolicySet {
  const all = [...objects];
  const warnings: string[] = [];
  const policies: L7Policy[] = [];
  for (const obj of all) {
    if (obj.kind !== 'AuthorizationPolicy') continue;
    const target = policyTarget(obj, waypoint, rootNamespace, all, warnings, opts);
    if (!target) continue;
    const p = compilePolicy(obj, target, warnings);
    if (p) policies.push(p);
  }
  policies.sort((a, b) => key(a).localeCompare(key(b)));
  return { policies, warnings };
}

// ---- compiling one policy ----

function compilePolicy(obj: PolicyObject, target: PolicyTarget, warnings: string[]): L7Policy | undefined {
  const spec = obj.spec as AuthzSpec;
  const namespace = obj.metadata.namespace ?? 'default';
  const id = `AuthorizationPolicy ${namespace}/${obj.metadata.name}`;
  const action = spec.action ?? 'ALLOW';
  const base = {
    name: obj.metadata.name,
    namespace,
    target,
    ...(obj.metadata.annotations?.[DRY_RUN_ANNOTATION] === 'true' ? { dryRun: true } : {}),
  };
  if (action === 'CUSTOM') return compileCustom(obj, spec, base, namespace, id, warnings);
  if (action !== 'ALLOW' && action !== 'DENY' && action !== 'AUDIT') {
    const why = `unknown action ${JSON.stringify(action)}`;
    warnings.push(`${id}: could not be understood (${why}); denying every request it governs`);
    return { ...base, action: 'DENY', rules: [], invalid: why };
  }
  try {
    const rules = (spec.rules ?? []).map((r, i) =>
      compileRule(action, r, namespace, `${id}: rules[${i}]`, warnings),
    );
    return { ...base, action, rules };
  } catch (err) {
    if (!(err instanceof Unconvertible)) throw err;
    if (action === 'AUDIT') {
      warnings.push(`${id}: could not be understood (${err.message}); AUDIT policy ignored`);
      return undefined;
    }
    warnings.push(`${id}: could not be understood (${err.message}); denying every request it governs`);
    return { ...base, action: 'DENY', rules: [], invalid: err.message };
  }
}

/**
 * A CUSTOM policy: its rules say which requests go to the provider. istiod builds them as DENY
 * rules in shadow mode (builder.go, IsCustomBuilder → RBAC_DENY), so a condition the waypoint
 * cannot evaluate is dropped (more requests checked, never fewer); a rule that cannot be read at
 * all makes the policy match everything it governs, and with no provider name ext-authz.ts
 * denies what it matches (istiod's getBadCustomDenyRules).
 */
function compileCustom(
  obj: PolicyObject,
  spec: AuthzSpec,
  base: Pick<L7Policy, 'name' | 'namespace' | 'target' | 'dryRun'>,
  namespace: string,
  id: string,
  warnings: string[],
): L7Policy {
  const provider = (obj.spec.provider as { name?: unknown } | undefined)?.name;
  const name = typeof provider === 'string' ? provider : '';
  if (!name) warnings.push(`${id}: action CUSTOM without provider.name; denying what its rules match`);
  try {
    const rules = (spec.rules ?? []).map((r, i) =>
      compileRule('DENY', r, namespace, `${id}: rules[${i}]`, warnings),
    );
    return { ...base, action: 'CUSTOM', provider: name, rules };
  } catch (err) {
    if (!(err instanceof Unconvertible)) throw err;
    warnings.push(`${id}: could not be understood (${err.message}); denying every request it governs`);
    return { ...base, action: 'DENY', rules: [], invalid: err.message };
  }
}

/** A rule that can never hold: stands in for an ALLOW rule using an attribute ambit cannot see. */
const NEVER: L7Rule = { clauses: [{ matches: [{ l4: [], http: [] }] }] };

function compileRule(
  action: 'ALLOW' | 'DENY' | 'AUDIT',
  rule: Rule,
  policyNs: string,
  id: string,
  warnings: string[],
): L7Rule {
  const clauses: L7Rule['clauses'] = [];
  if (rule.to?.length) clauses.push({ matches: rule.to.map(({ operation: op = {} }) => operationMatch(op)) });
  if (rule.from?.length)
    clauses.push({ matches: rule.from.map(({ source: s = {} }) => sourceMatch(s, policyNs)) });
  for (const c of rule.when ?? []) {
    const m = conditionMatch(c, policyNs);
    if (m) {
      clauses.push({ matches: [m] });
      continue;
    }
    if (action === 'ALLOW') {
      warnings.push(
        `${id}: condition ${c.key} cannot be evaluated by the waypoint; this ALLOW rule matches nothing`,
      );
      return NEVER;
    }
    warnings.push(
      `${id}: condition ${c.key} cannot be evaluated by the waypoint; dropped (this ${action} is broader than written)`,
    );
  }
  return { clauses };
}

function operationMatch(op: Operation): L7Match {
  const l4 = compact({ destinationPorts: ports(op.ports), notDestinationPorts: ports(op.notPorts) });
  return {
    l4: isEmptyMatch(l4) ? [] : [l4],
    http: [
      check({ kind: 'method' }, op.methods, op.notMethods, 'methods'),
      check({ kind: 'path' }, op.paths, op.notPaths, 'paths'),
      check({ kind: 'host' }, op.hosts?.map(lower), op.notHosts?.map(lower), 'hosts'),
    ].filter((c): c is HttpCheck => c !== undefined),
  };
}

function sourceMatch(s: Source, policyNs: string): L7Match {
  const l4: AuthzMatch[] = [
    compact({
      sourceIps: cidrs(s.ipBlocks),
      notSourceIps: cidrs(s.notIpBlocks),
      namespaces: strings(s.namespaces, 'namespaces'),
      notNamespaces: strings(s.notNamespaces, 'notNamespaces'),
      serviceAccounts: serviceAccounts(s.serviceAccounts, policyNs),
      notServiceAccounts: serviceAccounts(s.notServiceAccounts, policyNs),
      principals: strings(s.principals, 'principals'),
      notPrincipals: strings(s.notPrincipals, 'notPrincipals'),
    }),
    // remote.ip is the client address after trusted proxies; ambit trusts none (Istio's default
    // numTrustedProxies 0), so it is the source address. A separate match keeps it ANDed with ipBlocks.
    compact({ sourceIps: cidrs(s.remoteIpBlocks), notSourceIps: cidrs(s.notRemoteIpBlocks) }),
  ].filter((m) => !isEmptyMatch(m));
  const rp = check(
    { kind: 'requestPrincipal' },
    s.requestPrincipals,
    s.notRequestPrincipals,
    'requestPrincipals',
  );
  return { l4, http: rp ? [rp] : [] };
}

/** A `when` condition as one match; undefined when the waypoint cannot evaluate the key. */
function conditionMatch(c: Condition, policyNs: string): L7Match | undefined {
  const v = c.values;
  const nv = c.notValues;
  if (L4_WHEN_KEYS.has(c.key)) return { l4: [compact(whenMatch(c))], http: [] };
  if (c.key === 'remote.ip')
    return { l4: [compact({ sourceIps: cidrs(v), notSourceIps: cidrs(nv) })], http: [] };
  if (c.key === 'source.serviceAccount')
    return {
      l4: [
        compact({
          serviceAccounts: serviceAccounts(v, policyNs),
          notServiceAccounts: serviceAccounts(nv, policyNs),
        }),
      ],
      http: [],
    };
  const attr = conditionAttr(c.key);
  if (!attr) return undefined;
  const hc = check(attr, v, nv, c.key);
  if (!hc) throw new Unconvertible(`${c.key}: needs values or notValues`);
  return { l4: [], http: [hc] };
}

function conditionAttr(key: string): HttpAttr | undefined {
  const header = /^request\.headers\[([^\]]+)\]$/.exec(key);
  if (header) return { kind: 'header', name: header[1]!.toLowerCase() };
  if (/^request\.auth\.claims(\[[^\]]+\])+$/.test(key))
    return { kind: 'claim', path: [...key.matchAll(/\[([^\]]+)\]/g)].map((m) => m[1]!) };
  if (key === 'request.auth.principal') return { kind: 'requestPrincipal' };
  if (key === 'request.auth.audiences') return { kind: 'audiences' };
  if (key === 'request.auth.presenter') return { kind: 'presenter' };
  return undefined; // connection.sni, experimental.envoy.filters.*
}

function check(attr: HttpAttr, values: string[] | undefined, notValues: string[] | undefined, field: string) {
  const pos = values?.map((v) => valueMatchOf(v, field, attr.kind === 'path'));
  const neg = notValues?.map((v) => valueMatchOf(v, field, attr.kind === 'path'));
  if (!pos?.length && !neg?.length) return undefined;
  const out: HttpCheck = { attr };
  if (pos?.length) out.values = pos;
  if (neg?.length) out.notValues = neg;
  return out;
}

/**
 * Istio's reading of an HTTP value (pilot's StringMatcher): "*" = present, "*x" = suffix, "x*" =
 * prefix, else exact, so a "*" elsewhere is a literal character (the L4 converter refuses those
 * because ztunnel does). In paths, "{*}" (one segment) and "{**}" (the rest) make a template.
 */
function valueMatchOf(v: string, field: string, path: boolean): ValueMatch {
  if (v === '') throw new Unconvertible(`${field}: empty value`);
  if (path && /\{\*\*?\}/.test(v)) return pathTemplate(v, field);
  if (v === '*') return { presence: true };
  if (v.startsWith('*')) return { suffix: v.slice(1) };
  if (v.endsWith('*')) return { prefix: v.slice(0, -1) };
  return { exact: v };
}

function pathTemplate(v: string, field: string): ValueMatch {
  const segs = v.split('/');
  const bad = (why: string) => new Unconvertible(`${field}: path template "${v}" ${why}`);
  if (segs[0] !== '') throw bad('must start with /');
  const regex = segs
    .map((seg, i) => {
      if (seg === '{*}') return '[^/]+';
      if (seg === '{**}') {
        if (segs.slice(i + 1).some((s) => s.includes('{'))) throw bad('has {**} before another operator');
        return '.*';
      }
      if (/[{}*]/.test(seg)) throw bad('must use {*} and {**} as whole segments');
      return seg.replace(/[.+?^$()|[\]\\]/g, '\\$&');
    })
    .join('/');
  return { template: v, regex: new RegExp(`^${regex}$`) };
}

function valueMatches(m: ValueMatch, value: string): boolean {
  return 'template' in m ? m.regex.test(value) : stringMatches(m, value);
}

const lower = (s: string) => s.toLowerCase();
const key = policyKey;

// ---- deciding ----

/** What a policy may look at for one request. Peer facts are verified (mTLS), the rest is HTTP. */
export interface L7AuthzRequest {
  source: {
    /** The peer's SPIFFE id from mTLS, with or without "spiffe://"; absent for plaintext. */
    principal?: string;
    /** Informational: source.namespace is read from the principal, as Istio reads it from the certificate. */
    namespace?: string;
    ip: string;
  };
  destination: { service?: ServiceRef; ip: string; port: number };
  method: string;
  /** As received; matched after normalizePath (query dropped, dot segments resolved). */
  path: string;
  /** Host / :authority as received. */
  host: string;
  /** Lower-case names, as node gives them. */
  headers: Record<string, string | string[] | undefined>;
  /** "iss/sub" from a JWT validated by RequestAuthentication (jwt.ts). */
  requestPrincipal?: string;
  requestAuthClaims?: Record<string, unknown>;
}

export interface L7Decision {
  allow: boolean;
  /** The deciding policy ("namespace/name"), when one decided. */
  policy?: string;
  ruleIndex?: number;
  reason: string;
  /** AUDIT policies that matched (they never decide). */
  audited?: string[];
  /** Dry-run policies that matched, with what they would have done. */
  dryRun?: { policy: string; action: 'ALLOW' | 'DENY' }[];
}

/** Which CUSTOM policies must ask their provider about this request (Istio: CUSTOM runs first). */
export function matchCustom(set: WaypointPolicySet, req: L7AuthzRequest): CustomMatch {
  const out: CustomMatch = { matched: [], dryRun: [] };
  const customs = set.policies.filter(
    (p) => p.action === 'CUSTOM' && targetCovers(p.target, req.destination.service),
  );
  if (customs.length === 0) return out;
  const ctx = requestContext(req, set.pathNormalization);
  for (const p of customs) {
    const i = matchRules(p, ctx);
    if (i === undefined) continue;
    if (p.dryRun) out.dryRun.push(key(p));
    else out.matched.push({ policy: key(p), provider: p.provider ?? '', ruleIndex: i });
  }
  return out;
}

export function evaluateL7(set: WaypointPolicySet, req: L7AuthzRequest): L7Decision {
  const ctx = requestContext(req, set.pathNormalization);
  const applicable = set.policies.filter((p) => targetCovers(p.target, req.destination.service));
  // AUDIT never decides; it is only reported with the decision.
  const audited = applicable.filter((p) => p.action === 'AUDIT' && matchRules(p, ctx) !== undefined).map(key);
  const d = decideInOrder(applicable, {
    denying: ['DENY'],
    match: (p) => matchRules(p, ctx),
    deniedBy: (p, i) => `DENY policy ${key(p)} rule ${i} matched`,
    subject: 'request',
    noneMatched: (enforced) => ({
      allow: false,
      reason: `no ALLOW policy matched (${enforced.map(key).join(', ')} apply)`,
    }),
  });
  return audited.length ? { ...d, audited } : d;
}

/**
 * The attributes of a request as the HTTP proxy holds it (the shared L7Request), the verified
 * peer of its tunnel, and what RequestAuthentication made of its token (jwt.ts).
 */
export function authzRequestOf(
  req: L7Request,
  peer: { identity?: string; ip: string },
  authn: { principal?: string; claims?: Record<string, unknown> } = {},
): L7AuthzRequest {
  const out: L7AuthzRequest = {
    source: { ip: peer.ip, ...(peer.identity ? { principal: peer.identity } : {}) },
    destination: {
      ip: req.target.ip,
      port: req.target.port,
      ...(req.target.service ? { service: req.target.service } : {}),
    },
    method: req.method,
    path: req.path,
    host: req.authority,
    headers: req.headers,
  };
  if (authn.principal) out.requestPrincipal = authn.principal;
  if (authn.claims) out.requestAuthClaims = authn.claims;
  return out;
}

interface RequestContext {
  conn: { srcIdentity?: string; srcIp: string; dstIp: string; dstPort: number };
  peer: Peer;
  req: L7AuthzRequest;
  path: string;
  /** Host / :authority lower-cased, port and all: hosts/notHosts compare the whole value. */
  host: string;
}

function requestContext(req: L7AuthzRequest, mode?: PathNormalization): RequestContext {
  const p = req.source.principal;
  const srcIdentity = p ? (p.startsWith('spiffe://') ? p : `spiffe://${p}`) : undefined;
  const conn = {
    srcIdentity,
    srcIp: req.source.ip,
    dstIp: req.destination.ip,
    dstPort: req.destination.port,
  };
  const host = req.host.toLowerCase();
  return {
    conn,
    peer: peerOf(conn),
    req,
    path: normalizePath(req.path, mode),
    host,
  };
}

/** Index of the first rule that holds, or undefined. */
function matchRules(p: L7Policy, ctx: RequestContext): number | undefined {
  const i = p.rules.findIndex((r) =>
    r.clauses.every((c) => c.matches.length === 0 || c.matches.some((m) => matchHolds(m, ctx))),
  );
  return i < 0 ? undefined : i;
}

function matchHolds(m: L7Match, ctx: RequestContext): boolean {
  if (m.l4.length === 0 && m.http.length === 0) return false;
  return (
    m.l4.every((l4) => matchMismatch(l4, ctx.conn, ctx.peer, false) === undefined) &&
    m.http.every((c) => checkHolds(c, ctx))
  );
}

function checkHolds(c: HttpCheck, ctx: RequestContext): boolean {
  const actual = attrValues(c.attr, ctx);
  // hosts/notHosts: the whole Host/:authority value, port included, case-insensitive (Istio's
  // authz HostMatcher on ":authority": "*x" suffix, "x*" prefix, else exact). Istio's upgrade
  // notes tell users an exact `hosts: [a.com]` does not match "a.com:8080" and to add "a.com:*".
  const test = (m: ValueMatch) => actual.some((v) => valueMatches(m, v));
  if (c.values && !c.values.some(test)) return false;
  return !c.notValues?.some(test);
}

/** The values an attribute has for this request (several for list claims and audiences). */
function attrValues(a: HttpAttr, ctx: RequestContext): string[] {
  const { req } = ctx;
  switch (a.kind) {
    case 'method':
      return [req.method];
    case 'path':
      return [ctx.path];
    case 'host':
      return [ctx.host];
    case 'header': {
      // Envoy matches a repeated header against its values joined with ","
      const h = req.headers[a.name];
      return h === undefined ? [] : [Array.isArray(h) ? h.join(',') : h];
    }
    case 'requestPrincipal':
      return req.requestPrincipal ? [req.requestPrincipal] : [];
    case 'claim':
      return claimValues(
        a.path.reduce<unknown>((o, k) => (isObject(o) ? o[k] : undefined), req.requestAuthClaims),
      );
    case 'audiences':
      return claimValues(req.requestAuthClaims?.aud);
    case 'presenter':
      return claimValues(req.requestAuthClaims?.azp);
  }
}

function claimValues(v: unknown): string[] {
  const one = (x: unknown) =>
    typeof x === 'string' || typeof x === 'number' || typeof x === 'boolean' ? [String(x)] : [];
  return Array.isArray(v) ? v.flatMap(one) : one(v);
}

const isObject = (o: unknown): o is Record<string, unknown> =>
  typeof o === 'object' && o !== null && !Array.isArray(o);

/**
 * The path policies see: query and fragment dropped, then meshConfig.pathNormalization
 * (`normalizeRequestPath`, http-request.ts; default MERGE_SLASHES). The pipeline has already
 * normalized a forwarded request's path the same way, so policy and backend see one path; this
 * is idempotent on it. A path the normalizer refuses (the pipeline answered it already) is
 * matched as written with a leading "/".
 */
export function normalizePath(raw: string, mode: PathNormalization = DEFAULT_PATH_NORMALIZATION): string {
  let p = raw.split(/[?#]/, 1)[0] ?? '';
  if (!p.startsWith('/')) p = `/${p}`;
  const n = normalizeRequestPath(p, mode);
  return n.ok ? n.path : p;
}
