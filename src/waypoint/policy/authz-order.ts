// The order in which a waypoint's AuthorizationPolicies decide, shared by the HTTP path
// (authz-l7.ts `evaluateL7`) and the TCP path (authz-tcp.ts `evaluateTcp`) so the two cannot
// drift. It is Envoy's RBAC filter chain as istiod builds it (pilot/pkg/security/authz/builder:
// a DENY filter before an ALLOW filter; envoy rbac_filter: a shadow (dry-run) engine only
// records): an invalid or matching denying policy denies; with no enforced ALLOW policy the
// request or connection is allowed; a matching ALLOW allows; otherwise it is denied. What "match"
// means (HTTP attributes or L4 facts only) and the words of each reason stay with the caller.
import type { L7Policy } from './authz-l7-types.js';

/** A decision before the caller adds what only it reports (AUDIT matches at L7). */
export interface OrderedDecision {
  allow: boolean;
  /** "namespace/name" of the deciding policy. */
  policy?: string;
  ruleIndex?: number;
  reason: string;
  /** Dry-run policies that matched, with what they would have done. */
  dryRun?: { policy: string; action: 'ALLOW' | 'DENY' }[];
}

export interface DecideSpec {
  /** Actions read in the denying pass: DENY, and at TCP also CUSTOM (fail closed). */
  denying: readonly L7Policy['action'][];
  /** Index of the first rule of `p` that matches, read as a denying or an allowing rule. */
  match(p: L7Policy, pass: 'DENY' | 'ALLOW'): number | undefined;
  /** Why rule `i` of denying policy `p` denies. */
  deniedBy(p: L7Policy, i: number): string;
  /** "request" or "connection", for the reason when no ALLOW policy applies. */
  subject: string;
  /** The decision when enforced ALLOW policies apply and none matched. */
  noneMatched(enforced: readonly L7Policy[]): OrderedDecision;
}

export const policyKey = (p: { namespace: string; name: string }) => `${p.namespace}/${p.name}`;

/** `applicable`: the policies bound to this destination, sorted; `dryRun` is filled as a side report. */
export function decideInOrder(applicable: readonly L7Policy[], spec: DecideSpec): OrderedDecision {
  const dryRun: NonNullable<OrderedDecision['dryRun']> = [];
  const finish = (d: OrderedDecision): OrderedDecision => ({ ...d, ...(dryRun.length ? { dryRun } : {}) });
  for (const p of applicable) {
    if (!spec.denying.includes(p.action)) continue;
    if (p.invalid)
      return finish({
        allow: false,
        policy: policyKey(p),
        reason: `policy ${policyKey(p)} could not be understood: ${p.invalid}`,
      });
    const i = spec.match(p, 'DENY');
    if (i === undefined) continue;
    if (p.dryRun) {
      dryRun.push({ policy: policyKey(p), action: 'DENY' });
      continue;
    }
    return finish({ allow: false, policy: policyKey(p), ruleIndex: i, reason: spec.deniedBy(p, i) });
  }
  const allows = applicable.filter((p) => p.action === 'ALLOW');
  let decided: OrderedDecision | undefined;
  for (const p of allows) {
    const i = spec.match(p, 'ALLOW');
    if (i === undefined) continue;
    if (p.dryRun) dryRun.push({ policy: policyKey(p), action: 'ALLOW' });
    else
      decided ??= {
        allow: true,
        policy: policyKey(p),
        ruleIndex: i,
        reason: `ALLOW policy ${policyKey(p)} rule ${i} matched`,
      };
  }
  if (decided) return finish(decided);
  const enforced = allows.filter((p) => !p.dryRun);
  if (enforced.length === 0)
    return finish({
      allow: true,
      reason: allows.length
        ? 'only dry-run ALLOW policies apply'
        : `no ALLOW policy applies to this ${spec.subject}`,
    });
  return finish(spec.noneMatched(enforced));
}
