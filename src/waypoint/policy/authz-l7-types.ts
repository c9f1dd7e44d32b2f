// The waypoint's compiled L7 AuthorizationPolicy, as authz-l7.ts builds it and authz-order.ts,
// authz-tcp.ts, ext-authz.ts and jwt.ts read it. Types only, below every file that uses them, so
// none of them imports authz-l7.ts back (those imports were cycles, issue 14).
import type { AuthzMatch, StringMatch } from '../../xds/authorization.js';
import type { PathNormalization } from '../http/http-request.js';
import type { PolicyTarget } from './policy-binding.js';

/** One HTTP attribute test: any value of the attribute matches one of `values`, none `notValues`. */
export interface HttpCheck {
  attr: HttpAttr;
  values?: ValueMatch[];
  notValues?: ValueMatch[];
}
/** Istio's string rules, plus path templates ("/users/{*}/orders", "/files/{**}"). */
export type ValueMatch = StringMatch | { template: string; regex: RegExp };
export type HttpAttr =
  | { kind: 'method' }
  | { kind: 'path' }
  | { kind: 'host' }
  | { kind: 'header'; name: string }
  | { kind: 'requestPrincipal' }
  | { kind: 'claim'; path: string[] }
  | { kind: 'audiences' }
  | { kind: 'presenter' };

/** Everything listed must hold; a match with nothing listed never holds (as at L4). */
export interface L7Match {
  l4: AuthzMatch[];
  http: HttpCheck[];
}
export interface L7Rule {
  /** ANDed; each clause holds when any of its matches does. No clauses: the rule always holds. */
  clauses: { matches: L7Match[] }[];
}

export interface L7Policy {
  name: string;
  namespace: string;
  action: 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM';
  rules: L7Rule[];
  /** CUSTOM: the extension provider (meshConfig.extensionProviders[].name) it delegates to. */
  provider?: string;
  target: PolicyTarget;
  dryRun?: boolean;
  /** Could not be understood: denies every request it governs (never fail open). */
  invalid?: string;
}

export interface WaypointPolicySet {
  /** Sorted by "namespace/name" so decisions are stable. */
  policies: L7Policy[];
  /** Everything enforced differently from what was written, each naming the policy. */
  warnings: string[];
  /** How paths are normalized before matching (meshConfig.pathNormalization; pipeline.ts forwards the same). */
  pathNormalization?: PathNormalization;
}

export interface CompileOptions {
  clusterDomain?: string;
}

/** The CUSTOM policies whose rules a request matches (dry-run ones only reported). */
export interface CustomMatch {
  /** "namespace/name" and provider of each enforced CUSTOM policy that matched. */
  matched: { policy: string; provider: string; ruleIndex: number }[];
  dryRun: string[];
}

/** Body Envoy sends with a 403 from its RBAC filter (and a CUSTOM denial without a body); users grep for it. */
export const RBAC_DENIED_BODY = 'RBAC: access denied';
