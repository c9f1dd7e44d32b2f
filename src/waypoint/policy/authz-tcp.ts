// The waypoint's TCP path under the same AuthorizationPolicies as its HTTP path (pure, table-
// tested). A connection the waypoint proxies as TCP (an undeclared port whose first bytes are
// not HTTP) is decided once, before any byte reaches the backend, by every policy bound to the
// waypoint for its service or workload — the compiled set of authz-l7.ts, read with Envoy's
// network RBAC meaning, as istiod builds the TCP filter chain:
//
// - istio pilot/pkg/security/authz/model/generator.go: paths, methods, hosts, request.headers,
//   request.auth.* (requestPrincipals, claims, audiences, presenter) return `"<key>" is HTTP only`
//   when generated for TCP.
// - model.go `rule.checkError`: in an ALLOW policy that error drops the whole rule ("a smaller
//   allow policy"), so an ALLOW rule with any HTTP-only field matches no connection; in a DENY
//   (or AUDIT) policy the error is ignored and only the HTTP value is dropped, so the rule is
//   wider — a permission or principal left with nothing becomes `any: true` — and
//   `to: [{operation: {paths: ["/admin"]}}]` denies every TCP connection it targets.
// - builder.go (`buildTCP`) skips the rules that fail and keeps the others.
//
// Order as at L7 (evaluateL7): an invalid DENY or a matching DENY denies; CUSTOM (ext_authz, which
// ambit implements for HTTP only) denies when its rules could match the connection — fail closed,
// where istiod would put a network ext_authz filter ambit does not have; no ALLOW → allow; a
// matching ALLOW allows; otherwise deny. Dry-run policies are reported, never enforced; AUDIT
// never decides. Source principal, namespace, service account, IP and the destination port are
// L4 facts and are checked exactly as at L7 (proxy/authz.ts `matchMismatch`).
import { matchMismatch, peerOf, type Peer } from '../../proxy/authz.js';
import type { L7Match, L7Rule, WaypointPolicySet } from './authz-l7.js';
import { decideInOrder, policyKey, type OrderedDecision } from './authz-order.js';
import { targetCovers, type ServiceRef } from './policy-binding.js';

/** What a TCP connection at the waypoint shows a policy: L4 facts only. */
export interface TcpAuthzConnection {
  /** Verified SPIFFE id of the peer (with or without "spiffe://"); absent without mTLS. */
  srcIdentity?: string;
  srcIp: string;
  /** The tunnel's target: a service VIP or a pod IP, and its port. */
  dstIp: string;
  dstPort: number;
  /** The service the tunnel is addressed to (undefined for a pod address): which targetRefs apply. */
  service?: ServiceRef;
}

/** Who decided and why; dry-run matches reported (authz-order.ts). */
export type TcpDecision = OrderedDecision;

/** How a rule reads at TCP: as written minus HTTP fields (DENY), or not at all (ALLOW with HTTP fields). */
type TcpAction = 'ALLOW' | 'DENY';

export function evaluateTcp(set: WaypointPolicySet, conn: TcpAuthzConnection): TcpDecision {
  const p0 = conn.srcIdentity;
  const c = {
    srcIdentity: p0 ? (p0.startsWith('spiffe://') ? p0 : `spiffe://${p0}`) : undefined,
    srcIp: conn.srcIp,
    dstIp: conn.dstIp,
    dstPort: conn.dstPort,
  };
  const ctx: Ctx = { conn: c, peer: peerOf(c) };
  const applicable = set.policies.filter((p) => targetCovers(p.target, conn.service));
  return decideInOrder(applicable, {
    denying: ['DENY', 'CUSTOM'],
    match: (p, pass) => firstMatch(p.rules, pass, ctx),
    deniedBy: (p, i) =>
      p.action === 'CUSTOM'
        ? `CUSTOM policy ${key(p)} rule ${i} could match; its external authorizer is HTTP-only, so the TCP connection is denied (fail closed)`
        : `DENY policy ${key(p)} rule ${i} matched (HTTP-only fields do not narrow a DENY at TCP)`,
    subject: 'connection',
    noneMatched: (enforced) => ({
      allow: false,
      policy: enforced.length === 1 ? key(enforced[0]!) : undefined,
      reason: `no ALLOW policy matched the TCP connection (${enforced.map(key).join(', ')} apply; rules with HTTP-only fields match no TCP connection)`,
    }),
  });
}

interface Ctx {
  conn: { srcIdentity?: string; srcIp: string; dstIp: string; dstPort: number };
  peer: Peer;
}

function firstMatch(rules: readonly L7Rule[], as: TcpAction, ctx: Ctx): number | undefined {
  const i = rules.findIndex((r) => ruleHolds(r, as, ctx));
  return i < 0 ? undefined : i;
}

function ruleHolds(rule: L7Rule, as: TcpAction, ctx: Ctx): boolean {
  // ALLOW: any HTTP-only field anywhere in the rule drops the whole rule (istio checkError).
  if (as === 'ALLOW' && rule.clauses.some((c) => c.matches.some((m) => m.http.length > 0))) return false;
  return rule.clauses.every((c) => c.matches.length === 0 || c.matches.some((m) => matchHolds(m, as, ctx)));
}

function matchHolds(m: L7Match, as: TcpAction, ctx: Ctx): boolean {
  if (m.l4.length === 0) {
    // Nothing at L4: at L7 an empty match never holds (authz-l7.ts); one that only had HTTP fields
    // is, in a DENY, widened to `any: true` as Envoy's generator does once they are dropped.
    return as === 'DENY' && m.http.length > 0;
  }
  return m.l4.every((l4) => matchMismatch(l4, ctx.conn, ctx.peer, false) === undefined);
}

const key = policyKey;
