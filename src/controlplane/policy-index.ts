// The policy half of the ambient index: the AuthorizationPolicies and PeerAuthentications the node
// proxies enforce, converted once per change (authz-convert.ts), indexed by namespace, and asked
// two questions per pod: which policy names its Workload lists (istiod's workload `policies`,
// pilot/pkg/serviceregistry/kube/controller/ambient/policies.go) and which PeerAuthentication
// chain governs it. It marks the pods a policy change affects; it holds no pods itself — the
// index passes a read-only view of its pod maps (PodView) — and publishes nothing: the index
// writes what it returns into the xDS store. Split from ambient-index.ts (issue 14: the file was
// 785 lines; this is the seam istiod also has between workloads and policies).
import type { AuthorizationPolicy, ObjectMeta, PeerAuthentication, Pod } from '../config/types.js';
import { inPrecedenceOrder } from '../config/precedence.js';
import { authorizationKey, type Authorization } from '../xds/authorization.js';
import {
  convertAuthorizationPolicy,
  convertPeerAuthentication,
  effectivePeerAuthentication,
  peerAuthenticationKeys,
  peerAuthnChain,
  policySelector,
  selectorPolicyApplies,
  type ConvertResult,
  type EffectivePeerAuthn,
  type PeerAuthnChain,
} from './authz-convert.js';
import { addTo, removeFrom } from './index-maps.js';

/** What the node proxies will make of one AuthorizationPolicy (for logs, `authz explain`, `ambit ctl`). */
export interface PolicyStatus {
  /** "namespace/name" of the AuthorizationPolicy. */
  key: string;
  /** Why nothing is sent to node proxies (targetRefs, AUDIT, CUSTOM). */
  skipped?: string;
  warnings: string[];
  /** Failed validation; in force in its fail-closed form (config/authz-degrade.ts): the effects. */
  degraded?: string[];
}

/** The pods as the index holds them, read-only: what a policy change needs to mark them. */
export interface PodView {
  /** Keys ("ns/name") of the pods of namespace `ns`. */
  podsIn(ns: string): Iterable<string>;
  /** Every namespace that has pods. */
  namespacesWithPods(): Iterable<string>;
  /** Keys of the pods of `ns` labelled `k=v`; undefined when none. */
  podsLabelled(ns: string, k: string, v: string): ReadonlySet<string> | undefined;
}

/** What a policy change marks for rebuilding (a subset of the index's own dirty set). */
export interface PolicyDirty {
  pods: Set<string>;
  /** AuthorizationPolicy keys to (re)convert or remove. */
  policies: Set<string>;
  peerAuthn: boolean;
}

interface PolicyEntry {
  obj: AuthorizationPolicy;
  json: string;
  result: ConvertResult;
}
interface PeerAuthnEntry {
  obj: PeerAuthentication;
  json: string;
}

const hasMatchLabels = (o: { spec: Record<string, unknown> }) =>
  Object.keys(policySelector(o) ?? {}).length > 0;

export class PolicyIndex {
  private readonly policies = new Map<string, PolicyEntry>();
  private readonly policiesByNs = new Map<string, Set<string>>(); // selector-scoped only
  private readonly peerAuthns = new Map<string, PeerAuthnEntry>();
  private convertedPeerAuthns = new Set<string>(); // resource names currently published for them

  constructor(
    private readonly rootNamespace: string,
    private readonly pods: PodView,
  ) {}

  /**
   * Records (or, with no `obj`, forgets) an AuthorizationPolicy and marks the pods its old and new
   * selector pick. Returns the conversion when the policy is new or changed (the index reports its
   * warnings), else undefined.
   */
  setPolicy(
    key: string,
    obj: AuthorizationPolicy | undefined,
    dirty: PolicyDirty,
  ): ConvertResult | undefined {
    const prev = this.policies.get(key);
    const json = obj && JSON.stringify(obj);
    if (prev?.json === json) return undefined;
    const ns = key.split('/')[0]!;
    // The workloads an old or new selector picks must update their policy list.
    if (prev) this.markSelected(prev.obj, dirty);
    if (obj) this.markSelected(obj, dirty);
    if (prev) removeFrom(this.policiesByNs, ns, key);
    let result: ConvertResult | undefined;
    if (obj) {
      result = convertAuthorizationPolicy(obj, this.rootNamespace);
      this.policies.set(key, { obj, json: json!, result });
      if (policySelector(obj)) addTo(this.policiesByNs, ns, key);
    } else {
      this.policies.delete(key);
    }
    dirty.policies.add(key);
    return result;
  }

  /** Records (or forgets) a PeerAuthentication and marks the pods whose chain it takes part in. */
  setPeerAuthn(key: string, obj: PeerAuthentication | undefined, dirty: PolicyDirty): void {
    const prev = this.peerAuthns.get(key);
    const json = obj && JSON.stringify(obj);
    if (prev?.json === json) return;
    if (prev) this.markGoverned(prev.obj, dirty);
    if (obj) this.markGoverned(obj, dirty);
    if (obj) this.peerAuthns.set(key, { obj, json: json! });
    else this.peerAuthns.delete(key);
    dirty.peerAuthn = true;
  }

  /** The converted Authorization of AuthorizationPolicy `key` (undefined: gone, or nothing for node proxies). */
  authorizationOf(key: string): Authorization | undefined {
    return this.policies.get(key)?.result.authorization;
  }

  /**
   * Recompiles every workload PeerAuthentication with port-level mTLS (they are few): calls
   * `publish` with each resource name and its Authorization, or undefined for one no longer made.
   */
  refreshPeerAuthns(publish: (name: string, a: Authorization | undefined) => void): void {
    const root = this.rootNamespace;
    const all = [...this.peerAuthns.values()].map((e) => e.obj);
    const levelPolicy = (ns: string) =>
      inPrecedenceOrder(
        all.filter((pa) => (pa.metadata.namespace ?? 'default') === ns && !hasMatchLabels(pa)),
      )[0];
    const next = new Map<string, Authorization>();
    for (const pa of all) {
      const ns = pa.metadata.namespace ?? 'default';
      const converted = convertPeerAuthentication(pa, levelPolicy(ns), levelPolicy(root), root);
      if (converted) next.set(authorizationKey(converted), converted);
    }
    for (const k of this.convertedPeerAuthns) if (!next.has(k)) publish(k, undefined);
    for (const [k, a] of next) publish(k, a);
    this.convertedPeerAuthns = new Set(next.keys());
  }

  /**
   * The policy names a pod's Workload lists: selector policies that select it, then its
   * PeerAuthentication chain's, each only if `published` (the proxy must be offered it).
   */
  policiesOf(pod: Pod, published: (name: string) => boolean): string[] {
    const ns = pod.metadata.namespace ?? 'default';
    const out = new Set<string>();
    for (const n of new Set([ns, this.rootNamespace])) {
      for (const key of this.policiesByNs.get(n) ?? []) {
        const e = this.policies.get(key)!;
        if (e.result.authorization && selectorPolicyApplies(e.obj, pod, this.rootNamespace)) out.add(key);
      }
    }
    for (const k of peerAuthenticationKeys(this.peerAuthnChainOf(pod), this.rootNamespace)) {
      if (published(k)) out.add(k);
    }
    return [...out].sort();
  }

  /** The effective PeerAuthentication of a pod, for explain and ctl. */
  effectivePeerAuthentication(pod: Pod): EffectivePeerAuthn | undefined {
    return effectivePeerAuthentication(this.peerAuthnChainOf(pod));
  }

  /** Conversion status of every AuthorizationPolicy (warnings, skipped), for explain and ctl. */
  statuses(): PolicyStatus[] {
    return [...this.policies.entries()]
      .map(([key, e]) => ({
        key,
        skipped: e.result.skipped,
        warnings: e.result.warnings,
        ...(e.result.degraded ? { degraded: e.result.degraded } : {}),
      }))
      .sort((a, b) => a.key.localeCompare(b.key));
  }

  /** Every AuthorizationPolicy and PeerAuthentication held, with its key (for rebuild's diff). */
  *objects(): IterableIterator<[string, AuthorizationPolicy | PeerAuthentication]> {
    for (const [k, e] of this.policies) yield [`AuthorizationPolicy/${k}`, e.obj];
    for (const [k, e] of this.peerAuthns) yield [`PeerAuthentication/${k}`, e.obj];
  }

  private peerAuthnChainOf(pod: Pod): PeerAuthnChain {
    const ns = pod.metadata.namespace ?? 'default';
    const candidates = [...this.peerAuthns.values()]
      .map((e) => e.obj)
      .filter((pa) => [ns, this.rootNamespace].includes(pa.metadata.namespace ?? 'default'));
    // peerAuthnChain orders conflicting ones itself (oldest creationTimestamp, then namespace/name).
    return peerAuthnChain(candidates, pod, this.rootNamespace);
  }

  /** Pods a selector-scoped policy may select (root namespace: across the mesh). */
  private markSelected(
    obj: { metadata: ObjectMeta; spec: Record<string, unknown> },
    dirty: PolicyDirty,
  ): void {
    const sel = policySelector(obj);
    if (!sel) return;
    const ns = obj.metadata.namespace ?? 'default';
    const namespaces = ns === this.rootNamespace ? [...this.pods.namespacesWithPods()] : [ns];
    const pairs = Object.entries(sel);
    for (const n of namespaces) {
      if (pairs.length === 0) {
        for (const p of this.pods.podsIn(n)) dirty.pods.add(p);
        continue;
      }
      let smallest: ReadonlySet<string> | undefined;
      for (const [k, v] of pairs) {
        const set = this.pods.podsLabelled(n, k, v);
        if (!smallest || !set || set.size < smallest.size) smallest = set ?? new Set();
      }
      for (const p of smallest ?? []) dirty.pods.add(p);
    }
  }

  /** Pods whose PeerAuthentication chain a policy takes part in. */
  private markGoverned(obj: PeerAuthentication, dirty: PolicyDirty): void {
    if (policySelector(obj) && Object.keys(policySelector(obj)!).length > 0) {
      if ((obj.metadata.namespace ?? 'default') !== this.rootNamespace) this.markSelected(obj, dirty);
      return;
    }
    const ns = obj.metadata.namespace ?? 'default';
    const namespaces = ns === this.rootNamespace ? [...this.pods.namespacesWithPods()] : [ns];
    for (const n of namespaces) for (const p of this.pods.podsIn(n)) dirty.pods.add(p);
  }
}
