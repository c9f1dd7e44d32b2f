// AuthorizationPolicy and PeerAuthentication → the L4 `Authorization` resources node proxies
// enforce (pure; after istiod's pilot/pkg/serviceregistry/kube/controller/ambient/authorization.go).
//
// Each AuthorizationPolicy is converted once. What the node proxy cannot enforce is said in a
// warning naming the policy (shown by `ambit authz explain`, and by `ambit ctl` later):
//  - targetRef(s): the policy belongs to a waypoint; not sent to node proxies;
//  - CUSTOM, AUDIT: not enforced at L4 (as in ztunnel);
//  - HTTP-only fields, exactly as istiod (handleRule): an ALLOW rule using them is dropped (it
//    can never match, fails closed); in a DENY rule each from/to/when is its own clause, a clause
//    left with only HTTP fields can never hold, so that whole rule never matches at L4; L4 fields
//    in the same match as HTTP fields are kept (stricter than written). The warning is istiod's
//    UnsupportedValue status message.
// A policy that cannot be understood (a value the schema should have refused) becomes a DENY of
// every connection to the workloads it selects: never fail open.
import {
  ANNOTATION_DEGRADED,
  type AuthorizationPolicy,
  type PeerAuthentication,
  type Pod,
} from '../config/types.js';
import { inPrecedenceOrder } from '../config/precedence.js';
import type { Authorization, AuthzClause, AuthzMatch, AuthzRule, AuthzScope } from '../xds/authorization.js';
import {
  compact,
  cidrs,
  DRY_RUN_ANNOTATION,
  L4_WHEN_KEYS,
  ports,
  serviceAccounts,
  strings,
  Unconvertible,
  whenMatch,
  type AuthzSpec,
  type Rule,
} from '../xds/authz-rule-fields.js';

export const DEFAULT_ROOT_NAMESPACE = 'istio-system';
/** istiod's name; '_' cannot appear in a Kubernetes name, so it never clashes with a user's policy. */
export const STATIC_STRICT_POLICY = 'istio_converted_static_strict';
export const CONVERTED_PEER_AUTHN_PREFIX = 'converted_peer_authentication_';

export interface ConvertResult {
  /** The L4 resource, or undefined when node proxies have nothing to enforce. */
  authorization?: Authorization;
  /** Why there is no resource (targetRefs, AUDIT, CUSTOM). */
  skipped?: string;
  /** Everything the node proxy will do differently from what was written. */
  warnings: string[];
  /** The policy failed validation and is in force in its fail-closed form: what that changed. */
  degraded?: string[];
}

// ---- AuthorizationPolicy ----

const HTTP_OPERATION_FIELDS = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'] as const;
const HTTP_SOURCE_FIELDS = [
  'requestPrincipals',
  'notRequestPrincipals',
  'remoteIpBlocks',
  'notRemoteIpBlocks',
] as const;

export function authorizationScope(policy: AuthorizationPolicy, rootNamespace: string): AuthzScope {
  const spec = policy.spec as AuthzSpec;
  if (spec.selector) return 'WORKLOAD_SELECTOR';
  return policy.metadata.namespace === rootNamespace ? 'GLOBAL' : 'NAMESPACE';
}

export function convertAuthorizationPolicy(
  policy: AuthorizationPolicy,
  rootNamespace: string,
): ConvertResult {
  const result = convertPolicy(policy, rootNamespace);
  const note = policy.metadata.annotations?.[ANNOTATION_DEGRADED];
  if (note === undefined) return result;
  // The config layer already rewrote it (authz-degrade.ts); here it is only said, first.
  const degraded = note.split('\n').filter(Boolean);
  const id = `AuthorizationPolicy ${policy.metadata.namespace ?? 'default'}/${policy.metadata.name}`;
  return {
    ...result,
    degraded,
    warnings: [
      `${id}: failed validation; in force degraded (fail closed): ${degraded.join('; ')}`,
      ...result.warnings,
    ],
  };
}

function convertPolicy(policy: AuthorizationPolicy, rootNamespace: string): ConvertResult {
  const spec = policy.spec as AuthzSpec;
  const namespace = policy.metadata.namespace ?? 'default';
  const id = `AuthorizationPolicy ${namespace}/${policy.metadata.name}`;
  if (spec.targetRef !== undefined || (spec.targetRefs?.length ?? 0) > 0) {
    return { skipped: 'has targetRefs: enforced by the waypoint, not by node proxies', warnings: [] };
  }
  const action = spec.action ?? 'ALLOW';
  if (action === 'AUDIT' || action === 'CUSTOM') {
    const why = `action ${action} is not enforced by the node proxy (as in ztunnel); use a waypoint for ${action}`;
    return { skipped: why, warnings: [`${id}: ${why}`] };
  }
  const base = {
    name: policy.metadata.name,
    namespace,
    scope: authorizationScope(policy, rootNamespace),
    ...(policy.metadata.annotations?.[DRY_RUN_ANNOTATION] === 'true' ? { dryRun: true } : {}),
  };
  if (action !== 'ALLOW' && action !== 'DENY')
    return failClosed(base, id, `unknown action ${JSON.stringify(action)}`);
  const warnings: string[] = [];
  const rules: AuthzRule[] = [];
  const httpFound = new Set<string>();
  try {
    for (const rule of spec.rules ?? []) {
      const r = convertRule(rule, namespace);
      r.http.forEach((f) => httpFound.add(f));
      // istiod's handleRule: an ALLOW rule with any HTTP attribute is omitted (matches nothing);
      // a DENY rule is kept as converted, its HTTP-only matches left empty (never match).
      rules.push(action === 'ALLOW' && r.http.length > 0 ? NEVER : r.rule);
    }
  } catch (err) {
    if (err instanceof Unconvertible) return failClosed(base, id, err.message);
    throw err;
  }
  if (httpFound.size > 0) warnings.push(`${id}: ${httpStatusMessage(action, [...httpFound], rules)}`);
  return { authorization: { ...base, action, rules }, warnings };
}

/**
 * Stands in for a dropped rule so rule indexes keep meaning `rules[i]` of the policy as written
 * (logs and `authz explain` name them). A clause whose only match is empty never holds.
 */
const NEVER: AuthzRule = { clauses: [{ matches: [{}] }] };

function failClosed(base: Omit<Authorization, 'action' | 'rules'>, id: string, why: string): ConvertResult {
  return {
    authorization: { ...base, action: 'DENY', rules: [{ clauses: [] }], dryRun: undefined },
    warnings: [
      `${id}: could not be understood (${why}); denying every connection to the workloads it applies to`,
    ],
  };
}

interface ConvertedRule {
  rule: AuthzRule;
  /** HTTP-only attributes found (field names or `when` keys). */
  http: string[];
}

/**
 * One rule as istiod's handleRule (pilot/pkg/serviceregistry/ambient/authorization.go) converts
 * it: the `to` operations are one clause (each operation one match, keeping only ports and
 * notPorts), the `from` sources another (keeping the L4 source fields), and each `when`
 * condition its own clause. HTTP fields are left out of their match; a match left with nothing
 * is empty, and an empty match never matches (ztunnel skips it), so a clause whose matches are
 * all empty makes the whole rule unmatchable. L4 fields beside HTTP fields in the same match
 * are kept (stricter than written).
 */
function convertRule(rule: Rule, policyNamespace: string): ConvertedRule {
  const http = new Set<string>();
  const clauses: AuthzClause[] = [];
  if (rule.to?.length) {
    const matches = rule.to.map(({ operation: op = {} }) => {
      HTTP_OPERATION_FIELDS.filter((f) => op[f]?.length).forEach((f) => http.add(f));
      return compact({ destinationPorts: ports(op.ports), notDestinationPorts: ports(op.notPorts) });
    });
    clauses.push({ matches });
  }
  if (rule.from?.length) {
    const matches = rule.from.map(({ source: s = {} }) => {
      HTTP_SOURCE_FIELDS.filter((f) => s[f]?.length).forEach((f) => http.add(f));
      return compact({
        sourceIps: cidrs(s.ipBlocks),
        notSourceIps: cidrs(s.notIpBlocks),
        namespaces: strings(s.namespaces, 'namespaces'),
        notNamespaces: strings(s.notNamespaces, 'notNamespaces'),
        serviceAccounts: serviceAccounts(s.serviceAccounts, policyNamespace),
        notServiceAccounts: serviceAccounts(s.notServiceAccounts, policyNamespace),
        principals: strings(s.principals, 'principals'),
        notPrincipals: strings(s.notPrincipals, 'notPrincipals'),
      });
    });
    clauses.push({ matches });
  }
  for (const c of rule.when ?? []) {
    if (!L4_WHEN_KEYS.has(c.key)) {
      http.add(c.key);
      clauses.push({ matches: [{}] }); // istiod emits an empty match for it
      continue;
    }
    clauses.push({ matches: [compact(whenMatch(c))] });
  }
  return { rule: { clauses }, http: [...http].sort() };
}

/**
 * istiod's hasEffectiveRules: whether some rule can fire at L4 — one with no clauses (matches
 * every connection), or one whose every clause has a non-empty match.
 */
export function hasEffectiveRules(rules: AuthzRule[]): boolean {
  return rules.some((r) => r.clauses.every((c) => c.matches.some((m) => !isEmpty(m))));
}

/**
 * The UnsupportedValue status istiod writes on a policy with HTTP attributes
 * (convertAuthorizationPolicy, httpRuleFmt and its three endings), worded as istiod's.
 */
export function httpStatusMessage(action: 'ALLOW' | 'DENY', found: string[], rules: AuthzRule[]): string {
  const ending =
    action === 'ALLOW'
      ? 'Within an ALLOW policy, rules matching HTTP attributes are omitted. This will be more restrictive than requested.'
      : hasEffectiveRules(rules)
        ? 'DENY policy with HTTP attributes is enforced without the HTTP rules. This will be more restrictive than requested.'
        : 'After omitting unsupported HTTP attributes, this DENY policy has no enforceable rules at ztunnel and will have no effect. Deploy a waypoint proxy and use a targetRef to enforce this policy.';
  return `ztunnel does not support HTTP attributes (found: ${[...new Set(found)].sort().join(', ')}). In ambient mode you must use a waypoint proxy to enforce HTTP rules. ${ending}`;
}

function isEmpty(m: AuthzMatch): boolean {
  return Object.keys(m).length === 0;
}

// ---- which workloads a selector policy applies to ----

/** Labels a policy's `selector.matchLabels` requires; undefined when it has no selector. */
export function policySelector(obj: { spec: Record<string, unknown> }): Record<string, string> | undefined {
  const sel = obj.spec.selector as { matchLabels?: Record<string, string> } | undefined;
  return sel ? (sel.matchLabels ?? {}) : undefined;
}

/**
 * Whether a selector-scoped policy applies to `pod`: same namespace, or the root namespace (which
 * selects across the mesh), and every matchLabels pair present (an empty selector selects all).
 */
export function selectorPolicyApplies(
  obj: { metadata: { namespace?: string }; spec: Record<string, unknown> },
  pod: Pod,
  rootNamespace: string,
): boolean {
  const sel = policySelector(obj);
  if (!sel) return false;
  const ns = obj.metadata.namespace ?? 'default';
  if (ns !== rootNamespace && ns !== (pod.metadata.namespace ?? 'default')) return false;
  return Object.entries(sel).every(([k, v]) => pod.metadata.labels?.[k] === v);
}

// ---- PeerAuthentication ----

export type MtlsMode = 'UNSET' | 'DISABLE' | 'PERMISSIVE' | 'STRICT';
interface PeerAuthnSpec {
  selector?: { matchLabels?: Record<string, string> };
  mtls?: { mode?: MtlsMode };
  portLevelMtls?: Record<string, { mode?: MtlsMode }>;
}
const modeOf = (pa: PeerAuthentication | undefined): MtlsMode =>
  (pa?.spec as PeerAuthnSpec | undefined)?.mtls?.mode ?? 'UNSET';
const hasSelector = (pa: PeerAuthentication) => {
  const sel = (pa.spec as PeerAuthnSpec).selector;
  return !!sel && Object.keys(sel.matchLabels ?? {}).length > 0;
};

/** STRICT as istiod compiles it: DENY every connection without a verified principal. */
export function staticStrictPolicy(rootNamespace: string): Authorization {
  return {
    name: STATIC_STRICT_POLICY,
    namespace: rootNamespace,
    scope: 'WORKLOAD_SELECTOR',
    action: 'DENY',
    rules: [{ clauses: [{ matches: [{ notPrincipals: [{ presence: true }] }] }] }],
  };
}

export function convertedPeerAuthenticationName(name: string): string {
  return `${CONVERTED_PEER_AUTHN_PREFIX}${name}`;
}

/** The mesh, namespace and workload PeerAuthentication that govern a pod (istiod's choice). */
export interface PeerAuthnChain {
  mesh?: PeerAuthentication;
  namespace?: PeerAuthentication;
  workload?: PeerAuthentication;
}

/**
 * Picks the governing policies from those that could apply: mesh = root namespace without a
 * selector, namespace = the pod's namespace without a selector, workload = the pod's namespace
 * with a matching selector. On a conflict within a level the oldest `creationTimestamp` wins, then
 * `namespace/name` (config/precedence.ts): istiod's `convertedSelectorPeerAuthentications`
 * (pilot/pkg/serviceregistry/kube/controller/ambient/authorization.go) keeps, per level, the policy
 * whose CreationTimestamp is Before the others'. Sorted here, so a caller's order never matters.
 */
export function peerAuthnChain(
  all: Iterable<PeerAuthentication>,
  pod: Pod,
  rootNamespace: string,
): PeerAuthnChain {
  const ns = pod.metadata.namespace ?? 'default';
  const chain: PeerAuthnChain = {};
  for (const pa of inPrecedenceOrder(all)) {
    const paNs = pa.metadata.namespace ?? 'default';
    if (!hasSelector(pa)) {
      if (paNs === rootNamespace) chain.mesh ??= pa;
      else if (paNs === ns) chain.namespace ??= pa;
    } else if (paNs === ns && paNs !== rootNamespace) {
      const sel = (pa.spec as PeerAuthnSpec).selector?.matchLabels ?? {};
      if (Object.entries(sel).every(([k, v]) => pod.metadata.labels?.[k] === v)) chain.workload ??= pa;
    }
  }
  return chain;
}

/** The policy names (xDS keys) a workload must reference for its PeerAuthentication (istiod's rules). */
export function peerAuthenticationKeys(chain: PeerAuthnChain, rootNamespace: string): string[] {
  let strict = false;
  let portKey = '';
  if (chain.mesh) strict = modeOf(chain.mesh) === 'STRICT';
  if (chain.namespace && modeOf(chain.namespace) !== 'UNSET') strict = modeOf(chain.namespace) === 'STRICT';
  const w = chain.workload;
  if (w) {
    const mode = modeOf(w);
    if (mode === 'STRICT') strict = true;
    if (mode === 'PERMISSIVE' || mode === 'DISABLE') strict = false;
    const ports = Object.values((w.spec as PeerAuthnSpec).portLevelMtls ?? {}).map((p) => p.mode ?? 'UNSET');
    if (ports.length) {
      const key = `${w.metadata.namespace ?? 'default'}/${convertedPeerAuthenticationName(w.metadata.name)}`;
      const anyLoose = ports.some((m) => m === 'PERMISSIVE' || m === 'DISABLE');
      const anyStrict = ports.includes('STRICT');
      if (mode === 'STRICT') {
        if (anyLoose) [portKey, strict] = [key, false];
      } else if (mode === 'PERMISSIVE' || mode === 'DISABLE') {
        if (anyStrict) portKey = key;
      } else if (strict) {
        if (ports.includes('PERMISSIVE')) [portKey, strict] = [key, false];
      } else if (anyStrict) {
        portKey = key;
      }
    }
  }
  const out: string[] = [];
  if (strict) out.push(`${rootNamespace}/${STATIC_STRICT_POLICY}`);
  if (portKey) out.push(portKey);
  return out.sort();
}

/**
 * A workload PeerAuthentication with portLevelMtls, compiled to one DENY (istiod's
 * convertPeerAuthentication): one rule per STRICT port that the parent does not already cover,
 * and one rule "no principal, and not one of the PERMISSIVE ports" when the effective mode is STRICT.
 */
export function convertPeerAuthentication(
  pa: PeerAuthentication,
  nsPa: PeerAuthentication | undefined,
  meshPa: PeerAuthentication | undefined,
  rootNamespace: string,
): Authorization | undefined {
  const spec = pa.spec as PeerAuthnSpec;
  const ns = pa.metadata.namespace ?? 'default';
  const portLevel = Object.entries(spec.portLevelMtls ?? {}).sort(([a], [b]) => Number(a) - Number(b));
  if (ns === rootNamespace || !spec.selector || portLevel.length === 0) return undefined;
  const mode = modeOf(pa);
  const nsMode = modeOf(nsPa);
  const meshMode = modeOf(meshPa);
  const noPrincipal: AuthzMatch = { notPrincipals: [{ presence: true }] };
  const clauses: AuthzClause[] = [];
  const rules: AuthzRule[] = [];
  if (mode === 'STRICT') clauses.push({ matches: [noPrincipal] });
  const parentStrict = nsMode === 'STRICT' || ((nsMode === 'UNSET' || !nsPa) && meshMode === 'STRICT');
  let foundNonStrict = false;
  for (const [portText, m] of portLevel) {
    const port = Number(portText);
    const portMode = m.mode ?? 'UNSET';
    if (portMode === 'STRICT') {
      if (mode === 'STRICT' || (mode === 'UNSET' && parentStrict)) continue; // already covered
      rules.push({ clauses: [{ matches: [{ ...noPrincipal, destinationPorts: [port] }] }] });
    } else if (portMode === 'PERMISSIVE' || portMode === 'DISABLE') {
      if (mode === 'PERMISSIVE' || mode === 'DISABLE') continue;
      if (mode === 'UNSET' && !parentStrict) continue;
      foundNonStrict = true;
      clauses.push({ matches: [{ notDestinationPorts: [port] }] });
    }
  }
  if (mode === 'STRICT' && !foundNonStrict) return undefined; // the static STRICT policy covers it
  if (clauses.length === 0 && rules.length === 0) return undefined;
  const mergeStrict =
    (meshMode === 'STRICT' && (!nsPa || nsMode === 'UNSET' || nsMode === 'STRICT')) || nsMode === 'STRICT';
  if (mergeStrict && foundNonStrict && mode !== 'STRICT') clauses.push({ matches: [noPrincipal] });
  if (clauses.length) rules.push({ clauses });
  return {
    name: convertedPeerAuthenticationName(pa.metadata.name),
    namespace: ns,
    scope: 'WORKLOAD_SELECTOR',
    action: 'DENY',
    rules,
  };
}

export interface EffectivePeerAuthn {
  /** The mode for connections that are not on a port-level exception. */
  mode: 'STRICT' | 'PERMISSIVE' | 'DISABLE';
  /** Which level set it ('default' = nothing set: PERMISSIVE). */
  from: 'mesh' | 'namespace' | 'workload' | 'default';
  policy?: string;
  /** Port-level overrides from the workload policy. */
  ports: Record<number, 'STRICT' | 'PERMISSIVE' | 'DISABLE'>;
}

/** The effective mTLS mode of a workload, UNSET resolved mesh → namespace → workload (for ctl/explain). */
export function effectivePeerAuthentication(chain: PeerAuthnChain): EffectivePeerAuthn {
  let eff: EffectivePeerAuthn = { mode: 'PERMISSIVE', from: 'default', ports: {} };
  const levels: [keyof PeerAuthnChain, PeerAuthentication | undefined][] = [
    ['mesh', chain.mesh],
    ['namespace', chain.namespace],
    ['workload', chain.workload],
  ];
  for (const [from, pa] of levels) {
    const mode = modeOf(pa);
    if (!pa || mode === 'UNSET') continue;
    eff = { mode, from, policy: `${pa.metadata.namespace ?? 'default'}/${pa.metadata.name}`, ports: {} };
  }
  const portLevel = (chain.workload?.spec as PeerAuthnSpec | undefined)?.portLevelMtls ?? {};
  for (const [port, m] of Object.entries(portLevel)) {
    const mode = m.mode ?? 'UNSET';
    eff.ports[Number(port)] = mode === 'UNSET' ? eff.mode : mode;
  }
  return eff;
}
