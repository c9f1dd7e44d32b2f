// A brand-new AuthorizationPolicy that fails validation is not skipped: skipping an ALLOW policy
// removes the only ALLOW on its workloads and opens them to everyone (issue 12, hole 3). This file
// turns such a policy into a well-formed one with the fail-closed meaning of what could not be
// read, so node proxies and waypoints need no special case:
//  - ALLOW / AUDIT: a rule with an unreadable part is dropped. An ALLOW left with no rules denies
//    every request to its workloads (Istio's meaning of an ALLOW with no rules: istiod's
//    authz builder emits a never-matching policy for it, pilot/pkg/security/authz/builder/builder.go).
//  - DENY / CUSTOM: a rule with an unreadable part becomes `{}`, which matches every request.
//    Here we differ from istiod on purpose: its builder skips an invalid rule whatever the action
//    ("skipped invalid rule", builder.go `build`), which for DENY fails open.
//  - CUSTOM whose provider cannot be read: a DENY of what its rules match, as istiod does when the
//    provider is missing (`getBadCustomDenyRules`).
//  - action (or the spec as a whole) unreadable: a DENY of every request in the policy's scope.
//  - selector / targetRef(s) unreadable: the scope cannot be known, so the policy applies to its
//    whole namespace (the whole mesh in the root namespace) with the same meanings: an ALLOW keeps
//    no rules (an unknown subset must not gain what its rules allowed, and nobody else may gain
//    it either), a DENY keeps its rules. Stricter than written, never looser.
// In a cluster istio's validation webhook would have refused these objects; without it (or from a
// folder) they get this far. An edit that breaks a policy that was good keeps the last good
// version instead (file-source.ts keepLastGood, kube-source.ts): a degraded object only stands in
// where there is nothing better.
import { formatPath, issueMessage } from './config-error.js';
import { KIND_SCHEMAS } from './schema.js';
import { ANNOTATION_DEGRADED as DEGRADED_ANNOTATION, type AuthorizationPolicy } from './types.js';

export interface ValidationIssue {
  /** Path inside the object (`['spec', 'rules', 0, ...]`). */
  path: readonly PropertyKey[];
  message: string;
}

export interface DegradedPolicy {
  object: AuthorizationPolicy;
  /** What changed, in the words `ambit ctl analyze` prints. */
  effects: string[];
}

type Spec = Record<string, unknown>;
// Bounded: each round only removes or blanks parts, so two rounds settle any real case.
const MAX_ROUNDS = 3;

/**
 * The fail-closed stand-in for an AuthorizationPolicy that failed validation, or undefined when
 * it cannot even be named (metadata.name/namespace unreadable: there is nothing to key it by).
 */
export function degradeAuthorizationPolicy(
  doc: Record<string, unknown>,
  issues: readonly ValidationIssue[],
): DegradedPolicy | undefined {
  const meta = isPlainObject(doc.metadata) ? doc.metadata : undefined;
  if (!meta || typeof meta.name !== 'string') return undefined;
  if (issues.some((i) => i.path[0] === 'metadata' && (i.path[1] === 'name' || i.path[1] === 'namespace')))
    return undefined;
  if (issues.some((i) => i.path[0] === 'apiVersion' || i.path[0] === 'kind')) return undefined;
  const effects: string[] = [];
  let current: Record<string, unknown> = doc;
  let currentIssues = issues;
  for (let round = 0; round < MAX_ROUNDS; round++) {
    current = degradeOnce(current, currentIssues, effects);
    const result = validate(current);
    if (!Array.isArray(result)) return { object: mark(result, effects), effects };
    currentIssues = result;
  }
  // Whatever is still wrong: deny everything in the namespace, the one shape that always validates.
  const denyAll = {
    apiVersion: doc.apiVersion,
    kind: 'AuthorizationPolicy',
    metadata: { name: meta.name, namespace: meta.namespace },
    spec: { action: 'DENY', rules: [{}] },
  };
  effects.push(
    `could not be repaired; it now denies every request to ${scopeWords(denyAll.spec, denyAll.metadata)}`,
  );
  const last = validate(denyAll);
  return Array.isArray(last) ? undefined : { object: mark(last, effects), effects };
}

/** Removes a degraded mark a user wrote on a valid policy: only this file may set it. */
export function stripDegradedMark<T extends { metadata: { annotations?: Record<string, string> } }>(o: T): T {
  const a = o.metadata.annotations;
  if (a && DEGRADED_ANNOTATION in a) {
    const { [DEGRADED_ANNOTATION]: _, ...rest } = a;
    o.metadata.annotations = rest;
  }
  return o;
}

/** The effects recorded on a policy by degradeAuthorizationPolicy, or undefined if it was valid. */
export function degradedEffects(o: {
  metadata: { annotations?: Record<string, string> };
}): string[] | undefined {
  const v = o.metadata.annotations?.[DEGRADED_ANNOTATION];
  return v === undefined ? undefined : v.split('\n').filter(Boolean);
}

// The same schema the loader used, so the stand-in is exactly as valid as any good policy.
function validate(doc: Record<string, unknown>): ValidationIssue[] | AuthorizationPolicy {
  const r = KIND_SCHEMAS.AuthorizationPolicy.safeParse(doc, { reportInput: true, error: issueMessage });
  return r.success
    ? (r.data as AuthorizationPolicy)
    : r.error.issues.map((i) => ({ path: i.path, message: i.message }));
}

function degradeOnce(
  doc: Record<string, unknown>,
  issues: readonly ValidationIssue[],
  effects: string[],
): Record<string, unknown> {
  const meta = { ...(doc.metadata as Record<string, unknown>) };
  for (const field of ['labels', 'annotations'] as const) {
    // An unreadable annotation block also loses istio.io/dry-run: the policy is enforced (closed).
    if (issues.some((i) => i.path[0] === 'metadata' && i.path[1] === field)) {
      delete meta[field];
      effects.push(`metadata.${field} ignored (${firstMessage(issues, ['metadata', field])})`);
    }
  }
  const specIssues = issues.filter((i) => i.path[0] === 'spec');
  const rawSpec = doc.spec;
  // Only these four are carried: a stray top-level field (say `rules:` indented wrongly) is gone
  // from the stand-in, and its issue below makes the policy deny.
  const base = { apiVersion: doc.apiVersion, kind: doc.kind, metadata: meta };
  if (!isPlainObject(rawSpec) && rawSpec !== undefined) {
    effects.push(
      `spec unreadable (${firstMessage(issues, ['spec'])}); it now denies every request to ${scopeWords({}, meta)}`,
    );
    return { ...base, spec: { action: 'DENY', rules: [{}] } };
  }
  const spec: Spec = { ...(rawSpec ?? {}) };
  const at = (p: readonly PropertyKey[]) => specIssues.filter((i) => startsWith(i.path, ['spec', ...p]));

  // 1. action (and CUSTOM's provider)
  let action = typeof spec.action === 'string' ? spec.action : 'ALLOW';
  const known = new Set(['spec', 'selector', 'targetRef', 'targetRefs', 'rules', 'action', 'provider']);
  const elsewhere = issues.filter(
    (i) =>
      i.path[0] !== 'metadata' &&
      (i.path[0] !== 'spec' || i.path.length < 2 || !known.has(String(i.path[1]))),
  );
  if (at(['action']).length || elsewhere.length) {
    const why = at(['action'])[0] ?? elsewhere[0]!;
    effects.push(
      `${fieldOf(why)} unreadable (${why.message}); it now denies every request to ${scopeWords(spec, meta)}`,
    );
    const out: Spec = { action: 'DENY', rules: [{}] };
    if (!at(['selector']).length && spec.selector !== undefined) out.selector = spec.selector;
    if (!at(['targetRef']).length && !at(['targetRefs']).length) {
      if (spec.targetRef !== undefined) out.targetRef = spec.targetRef;
      if (spec.targetRefs !== undefined) out.targetRefs = spec.targetRefs;
    }
    return { ...base, spec: out };
  }
  if (at(['provider']).length) {
    const why = at(['provider'])[0]!;
    if (action === 'CUSTOM') {
      effects.push(
        `${fieldOf(why)}: ${why.message}; the CUSTOM policy now denies what its rules match (as istiod does for a missing provider)`,
      );
      action = 'DENY';
    } else {
      effects.push(`${fieldOf(why)} ignored: ${why.message}`);
    }
    delete spec.provider;
  }
  spec.action = action;
  const denyLike = action === 'DENY';

  // 2. scope
  const scopeIssue = at(['selector'])[0] ?? at(['targetRef'])[0] ?? at(['targetRefs'])[0];
  if (scopeIssue) {
    delete spec.selector;
    delete spec.targetRef;
    delete spec.targetRefs;
    const scope = scopeWords(spec, meta);
    if (action === 'ALLOW' || action === 'AUDIT') {
      spec.rules = [];
      effects.push(
        `${fieldOf(scopeIssue)} unreadable (${scopeIssue.message}): the policy now applies to ${scope}` +
          (action === 'ALLOW'
            ? ' with no rules, so it denies every request there that no other ALLOW allows'
            : ' with no rules'),
      );
      return { ...base, spec };
    }
    effects.push(
      `${fieldOf(scopeIssue)} unreadable (${scopeIssue.message}): the DENY now applies to ${scope}`,
    );
  }

  // 3. rules
  const scope = scopeWords(spec, meta);
  if (!Array.isArray(spec.rules) && spec.rules !== undefined) {
    const why = at(['rules'])[0];
    effects.push(
      `spec.rules unreadable (${why?.message ?? 'not a list'}); ` +
        (denyLike
          ? `the DENY now matches every request to ${scope}`
          : `no rules remain: ${noRulesEffect(action, scope)}`),
    );
    spec.rules = denyLike ? [{}] : [];
    return { ...base, spec };
  }
  const rules = (spec.rules as unknown[] | undefined) ?? [];
  const hadRules = rules.length > 0;
  const kept: unknown[] = [];
  rules.forEach((rule, i) => {
    const bad = at(['rules', i]);
    if (bad.length === 0) {
      kept.push(rule);
      return;
    }
    const what = `${fieldOf(bad[0]!)}: ${bad[0]!.message}`;
    if (denyLike) {
      kept.push({});
      effects.push(
        `rule ${i} now matches every request (${what}); DENY now denies every request to ${scope}`,
      );
    } else {
      effects.push(`rule ${i} dropped (${what})`);
    }
  });
  if (at(['rules']).some((i) => i.path.length === 2)) {
    // An issue on the list itself (a size rule): nothing to drop selectively.
    effects.push(`spec.rules: ${at(['rules'])[0]!.message}`);
  }
  spec.rules = kept;
  if (!denyLike && hadRules && kept.length === 0) effects.push(noRulesEffect(action, scope));
  return { ...base, spec };
}

function noRulesEffect(action: string, scope: string): string {
  return action === 'ALLOW'
    ? `${action} now has no rules: it denies every request to ${scope} that no other ALLOW allows`
    : `${action} now has no rules`;
}

/** "app=echo in namespace demo", "Service demo/echo", "every workload in namespace demo", "the whole mesh". */
export function scopeWords(
  spec: Spec,
  meta: Record<string, unknown>,
  rootNamespace = 'istio-system',
): string {
  const ns = typeof meta.namespace === 'string' ? meta.namespace : 'default';
  const refs = [
    ...(Array.isArray(spec.targetRefs) ? spec.targetRefs : []),
    ...(spec.targetRef !== undefined ? [spec.targetRef] : []),
  ] as { kind?: unknown; name?: unknown; namespace?: unknown }[];
  if (refs.length) return refs.map((r) => `${String(r.kind)} ${ns}/${String(r.name)}`).join(', ');
  const labels =
    isPlainObject(spec.selector) && isPlainObject(spec.selector.matchLabels)
      ? spec.selector.matchLabels
      : undefined;
  if (labels && Object.keys(labels).length) {
    const sel = Object.entries(labels)
      .map(([k, v]) => `${k}=${String(v)}`)
      .join(',');
    return ns === rootNamespace ? `${sel} in every namespace` : `${sel} in namespace ${ns}`;
  }
  return ns === rootNamespace ? 'every workload in the mesh' : `every workload in namespace ${ns}`;
}

function mark(o: AuthorizationPolicy, effects: readonly string[]): AuthorizationPolicy {
  o.metadata.annotations = { ...o.metadata.annotations, [DEGRADED_ANNOTATION]: effects.join('\n') };
  return o;
}

function firstMessage(issues: readonly ValidationIssue[], prefix: readonly PropertyKey[]): string {
  return issues.find((i) => startsWith(i.path, prefix))?.message ?? 'unreadable';
}

function fieldOf(i: ValidationIssue): string {
  return formatPath(i.path) || '(document)';
}

function startsWith(path: readonly PropertyKey[], prefix: readonly PropertyKey[]): boolean {
  return prefix.every((p, i) => path[i] === p);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
