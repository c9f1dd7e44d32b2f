// L4 authorization, decided (pure): which policies apply to a destination workload, and whether
// they allow one connection. The same code decides on the data path (nodeproxy/inbound.ts), re-checks
// open tunnels after a policy change, and explains decisions (`ambit authz explain`).
//
// Istio ambient's order (ztunnel src/state.rs assert_rbac, src/rbac.rs):
//   1. any matching DENY denies;
//   2. if no ALLOW policy applies, allow;
//   3. any matching ALLOW allows;
//   4. otherwise deny.
// Dry-run policies are evaluated and reported but never decide.
import { ipToBytes } from '../common/addr.js';
import { parseSpiffeId } from '../identity/spiffe.js';
import {
  authorizationKey,
  isEmptyMatch,
  type Authorization,
  type AuthzMatch,
  type Cidr,
  type StringMatch,
} from '../xds/authorization.js';
import type { Workload } from '../xds/resources.js';

/** What a policy may look at. Only verified facts: the mTLS peer identity and the TCP peer address. */
export interface AuthzConnection {
  /** Verified SPIFFE id of the peer (spiffe://td/ns/N/sa/S); undefined for plaintext. */
  srcIdentity?: string;
  srcIp: string;
  dstIp: string;
  dstPort: number;
}

/** A policy as the evaluator sees it; `invalid` marks one that could not be understood (fails closed). */
export type EvalPolicy = Authorization & { invalid?: string };

export interface RuleTrace {
  index: number;
  matched: boolean;
  /** Why the rule did not match (the first clause that failed), or what matched. */
  why: string;
}

export interface PolicyTrace {
  policy: string;
  action: Authorization['action'];
  scope: Authorization['scope'];
  dryRun: boolean;
  matched: boolean;
  ruleIndex?: number;
  rules: RuleTrace[];
  invalid?: string;
}

export interface AuthzDecision {
  allow: boolean;
  /** The deciding policy ("namespace/name"), when one decided. */
  policy?: string;
  ruleIndex?: number;
  reason: string;
  /** Every applicable policy, in evaluation order, when asked for (`explain`). */
  trace?: PolicyTrace[];
}

/**
 * The policies that apply to `dst`: every GLOBAL one, the NAMESPACE ones of its namespace, and
 * the ones it names (selector-scoped policies, converted PeerAuthentication). Sorted by name so
 * decisions and explanations are stable.
 */
export function applicablePolicies(
  dst: Pick<Workload, 'namespace' | 'authorizationPolicies'>,
  all: ReadonlyMap<string, EvalPolicy>,
): EvalPolicy[] {
  const named = new Set(dst.authorizationPolicies);
  const out: EvalPolicy[] = [];
  for (const [key, p] of all) {
    if (p.scope === 'GLOBAL' || (p.scope === 'NAMESPACE' && p.namespace === dst.namespace) || named.has(key))
      out.push(p);
  }
  return out.sort((a, b) => authorizationKey(a).localeCompare(authorizationKey(b)));
}

/**
 * The L4 policies that govern a waypoint's own inbound (its HBONE listener): only those its own
 * workload names (selector-scoped, converted PeerAuthentication). In Istio a waypoint is not a
 * captured workload: ztunnel enforces L4 policy at the receiving node proxy of enrolled workloads
 * (istio.io docs, ambient/usage/l4-policy, "Policy enforcement using ztunnel"), and the waypoint
 * pod is not enrolled, so namespace-wide and root-namespace (GLOBAL) policies never stop traffic
 * reaching it; the destination's node proxy applies them afterwards, to the waypoint's identity.
 * Fail-closed stand-ins for unreadable policies (policy-store.ts) stay when the waypoint names
 * them, and always at the destination.
 */
export function waypointInboundPolicies(
  self: Pick<Workload, 'authorizationPolicies'> | undefined,
  applicable: readonly EvalPolicy[],
): EvalPolicy[] {
  const named = new Set(self?.authorizationPolicies ?? []);
  return applicable.filter((p) => named.has(authorizationKey(p)));
}

export function evaluate(
  policies: readonly EvalPolicy[],
  conn: AuthzConnection,
  opts: { explain?: boolean } = {},
): AuthzDecision {
  const peer = peerOf(conn);
  const explain = opts.explain ?? false;
  const trace: PolicyTrace[] = [];
  const withTrace = (d: AuthzDecision): AuthzDecision => (explain ? { ...d, trace } : d);
  let decided: AuthzDecision | undefined;

  for (const p of policies) {
    if (p.action !== 'DENY' && !p.invalid) continue;
    const t = matchPolicy(p, conn, peer, explain);
    if (explain) trace.push(t);
    if (!t.matched || p.dryRun || decided) continue;
    decided = p.invalid
      ? { allow: false, policy: t.policy, reason: `policy ${t.policy} could not be understood: ${p.invalid}` }
      : {
          allow: false,
          policy: t.policy,
          ruleIndex: t.ruleIndex,
          reason: `DENY policy ${t.policy} rule ${t.ruleIndex} matched`,
        };
    if (!explain) return decided;
  }
  const allows = policies.filter((p) => p.action === 'ALLOW' && !p.invalid);
  for (const p of allows) {
    // After a DENY decided, ALLOWs are still traced for the explanation, never consulted.
    const t = matchPolicy(p, conn, peer, explain);
    if (explain) trace.push(t);
    if (!t.matched || p.dryRun || decided) continue;
    decided = {
      allow: true,
      policy: t.policy,
      ruleIndex: t.ruleIndex,
      reason: `ALLOW policy ${t.policy} rule ${t.ruleIndex} matched`,
    };
    if (!explain) return decided;
  }
  if (decided) return withTrace(decided);
  const enforced = allows.filter((p) => !p.dryRun);
  if (enforced.length === 0) {
    return withTrace({
      allow: true,
      reason: allows.length
        ? 'only dry-run ALLOW policies apply'
        : 'no ALLOW policy applies to this workload',
    });
  }
  return withTrace({
    allow: false,
    reason: `no ALLOW policy matched (${enforced.map(authorizationKey).join(', ')} apply)`,
  });
}

// ---- matching (ztunnel rbac.rs semantics) ----

export interface Peer {
  /** Principal as Istio writes it: the SPIFFE id without "spiffe://"; "" without identity. */
  principal: string;
  namespace: string;
  serviceAccount: string;
  hasIdentity: boolean;
}

export function peerOf(conn: AuthzConnection): Peer {
  const id = conn.srcIdentity ? parseSpiffeId(conn.srcIdentity) : undefined;
  if (!conn.srcIdentity?.startsWith('spiffe://') || !id)
    return { principal: '', namespace: '', serviceAccount: '', hasIdentity: false };
  return {
    principal: conn.srcIdentity.slice('spiffe://'.length),
    namespace: id.namespace,
    serviceAccount: id.serviceAccount,
    hasIdentity: true,
  };
}

function matchPolicy(p: EvalPolicy, conn: AuthzConnection, peer: Peer, explain: boolean): PolicyTrace {
  const t: PolicyTrace = {
    policy: authorizationKey(p),
    action: p.invalid ? 'DENY' : p.action,
    scope: p.scope,
    dryRun: p.dryRun ?? false,
    matched: false,
    rules: [],
  };
  if (p.invalid) {
    t.invalid = p.invalid;
    t.matched = true; // fails closed: denies everything it applies to
    return t;
  }
  for (let i = 0; i < p.rules.length; i++) {
    const why = ruleMismatch(p.rules[i]!, conn, peer, explain);
    if (explain)
      t.rules.push({ index: i, matched: why === undefined, why: why ?? describeRule(p.rules[i]!) });
    if (why === undefined) {
      t.matched = true;
      t.ruleIndex = i;
      if (!explain) return t;
      break;
    }
  }
  return t;
}

/** undefined when the rule matches; otherwise why not (detailed only when explaining). */
function ruleMismatch(
  rule: Authorization['rules'][number],
  conn: AuthzConnection,
  peer: Peer,
  explain: boolean,
): string | undefined {
  for (let c = 0; c < rule.clauses.length; c++) {
    const clause = rule.clauses[c]!;
    if (clause.matches.length === 0) continue; // an empty clause holds
    const misses: string[] = [];
    let held = false;
    for (const m of clause.matches) {
      const miss = isEmptyMatch(m) ? 'nothing to match at L4' : matchMismatch(m, conn, peer, explain);
      if (miss === undefined) {
        held = true;
        break;
      }
      if (explain) misses.push(miss);
    }
    if (!held) return explain ? misses.join('; or ') : 'no match';
  }
  return undefined;
}

export function matchMismatch(
  m: AuthzMatch,
  conn: AuthzConnection,
  peer: Peer,
  explain: boolean,
): string | undefined {
  const checks: [string, unknown[] | undefined, unknown[] | undefined, (v: never) => boolean, string][] = [
    [
      'destination ip',
      m.destinationIps,
      m.notDestinationIps,
      (c: Cidr) => cidrContains(c, conn.dstIp),
      conn.dstIp,
    ],
    ['source ip', m.sourceIps, m.notSourceIps, (c: Cidr) => cidrContains(c, conn.srcIp), conn.srcIp],
    [
      'destination port',
      m.destinationPorts,
      m.notDestinationPorts,
      (p: number) => p === conn.dstPort,
      String(conn.dstPort),
    ],
    [
      'service account',
      m.serviceAccounts,
      m.notServiceAccounts,
      (s: { namespace: string; serviceAccount: string }) =>
        peer.hasIdentity && s.namespace === peer.namespace && s.serviceAccount === peer.serviceAccount,
      peer.hasIdentity ? `${peer.namespace}/${peer.serviceAccount}` : '(no identity)',
    ],
    [
      'principal',
      m.principals,
      m.notPrincipals,
      (s: StringMatch) => peer.hasIdentity && stringMatches(s, peer.principal),
      peer.hasIdentity ? peer.principal : '(no identity: plaintext)',
    ],
    [
      'source namespace',
      m.namespaces,
      m.notNamespaces,
      (s: StringMatch) => stringMatches(s, peer.namespace),
      peer.namespace || '(no identity: plaintext)',
    ],
  ];
  for (const [what, pos, neg, pred, actual] of checks) {
    const test = pred as (v: unknown) => boolean;
    if (pos?.length && !pos.some(test))
      return explain ? `${what} ${actual} is not ${oneOf(pos.map(describeValue))}` : what;
    if (neg?.length) {
      const hit = neg.find(test);
      if (hit !== undefined)
        return explain ? `${what} ${actual} is excluded by not ${describeValue(hit)}` : what;
    }
  }
  return undefined;
}

export function stringMatches(s: StringMatch, value: string): boolean {
  if ('exact' in s) return value === s.exact;
  if ('prefix' in s) return value.startsWith(s.prefix);
  if ('suffix' in s) return value.endsWith(s.suffix);
  return value !== '';
}

export function cidrContains(c: Cidr, ip: string): boolean {
  let a: Buffer;
  let b: Buffer;
  try {
    a = ipToBytes(c.address);
    b = ipToBytes(ip);
  } catch {
    return false;
  }
  if (a.length !== b.length) return false;
  let bits = c.length;
  for (let i = 0; i < a.length && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((a[i]! & mask) !== (b[i]! & mask)) return false;
  }
  return true;
}

// ---- words for explanations ----

export function describeValue(v: unknown): string {
  if (typeof v === 'number') return String(v);
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if ('exact' in o) return `"${String(o.exact)}"`;
    if ('prefix' in o) return `"${String(o.prefix)}*"`;
    if ('suffix' in o) return `"*${String(o.suffix)}"`;
    if ('presence' in o) return '"*" (any)';
    if ('address' in o) {
      const c = v as Cidr;
      return c.length === (c.address.includes(':') ? 128 : 32) ? c.address : `${c.address}/${c.length}`;
    }
    if ('serviceAccount' in o) return `${String(o.namespace)}/${String(o.serviceAccount)}`;
  }
  return JSON.stringify(v);
}

function oneOf(values: string[]): string {
  return values.length === 1 ? values[0]! : `one of ${values.join(', ')}`;
}

const FIELD_WORDS: Record<keyof AuthzMatch, string> = {
  namespaces: 'namespace',
  notNamespaces: 'namespace not',
  principals: 'principal',
  notPrincipals: 'principal not',
  serviceAccounts: 'service account',
  notServiceAccounts: 'service account not',
  sourceIps: 'source ip',
  notSourceIps: 'source ip not',
  destinationIps: 'destination ip',
  notDestinationIps: 'destination ip not',
  destinationPorts: 'port',
  notDestinationPorts: 'port not',
};

/** "namespace "demo" and port 8080" — one match in words. */
export function describeMatch(m: AuthzMatch): string {
  const parts: string[] = [];
  for (const [f, word] of Object.entries(FIELD_WORDS) as [keyof AuthzMatch, string][]) {
    const vals = m[f];
    if (vals?.length) parts.push(`${word} ${(vals as unknown[]).map(describeValue).join(' | ')}`);
  }
  return parts.length ? parts.join(' and ') : '(nothing at L4)';
}

export function describeRule(rule: Authorization['rules'][number]): string {
  if (rule.clauses.length === 0) return 'matches every connection';
  return rule.clauses
    .map((c) =>
      c.matches.length === 1
        ? describeMatch(c.matches[0]!)
        : `(${c.matches.map(describeMatch).join(' or ')})`,
    )
    .join(' and ');
}
