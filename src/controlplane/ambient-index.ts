// The ambient index: turns the Namespaces, Pods and Services of the configuration into the
// resources of Istio's workload API (an Address per pod with an IP, one per Service with a cluster
// IP) and holds them encoded and versioned. Changes are applied incrementally: only the objects a
// change touches are rebuilt, and 'update' names only resources whose bytes changed, so the xDS
// server pushes true deltas (after istiod's pilot/pkg/serviceregistry/kube/controller/ambient).
import { EventEmitter } from 'node:events';
import {
  type ConfigChange,
  type ConfigSnapshot,
  type KubeResource,
  type AuthorizationPolicy,
  type Namespace,
  type ObjectMeta,
  type Pod,
  type Service as KubeService,
  type EndpointSlice,
} from '../config/types.js';
import { TYPE_ADDRESS, TYPE_AUTHORIZATION, TYPE_CONFIG_OBJECT } from '../xds/proto.js';
import { CONFIG_OBJECT_KINDS } from '../xds/config-objects.js';
import {
  addressAliases,
  DEFAULT_TRUST_DOMAIN,
  encodeAddress,
  serviceResourceName,
  spiffeIdOf,
  type Address,
  type Service,
  type Workload,
} from '../xds/resources.js';
import { authorizationKey, encodeAuthorization, type Authorization } from '../xds/authorization.js';
import { DEFAULT_ROOT_NAMESPACE, staticStrictPolicy, type EffectivePeerAuthn } from './authz-convert.js';
import { PolicyIndex, type PolicyStatus } from './policy-index.js';
import {
  buildService,
  buildWorkload,
  DEFAULT_CLUSTER_ID,
  DOMAIN_SUFFIX,
  isAmbientEnrolled,
  isTerminal,
  hasSelector,
  podIps,
  selects,
  workloadUid,
  type IndexOptions,
} from './workload-builder.js';
import {
  bindWaypoint,
  buildWaypointService,
  buildWaypointWorkload,
  DEFAULT_WAYPOINT_POOL,
  requestedWaypoint,
  waypointHostname,
  waypointUid,
} from './waypoints.js';
import { addTo, indexPairs, keyOf, labelKey, removeFrom } from './index-maps.js';
import { EnrolledIdentities } from './enrolled-identities.js';
import { EndpointSliceIndex } from './endpoint-slices.js';
import { isWaypointConfigKind, waypointConfigResource } from './waypoint-config.js';
import { ResourceStore, noChanges, type Changes, type XdsResource } from './resource-store.js';
import { WaypointPlanner, type WaypointStatus } from './waypoint-planner.js';

export type { IndexOptions, XdsResource, WaypointStatus, PolicyStatus };

/** One encoded xDS resource as the server sends it. `version` is a short hash of `bytes`. */
/** Resources of one type whose encoded content changed (upserted) or that no longer exist. */
export interface IndexUpdate {
  typeUrl: string;
  upserted: string[];
  removed: string[];
}

// ---- the incremental index ----

interface PodEntry {
  pod: Pod;
  json: string;
  /** Keys ("ns/name") of services whose selector matches this pod. */
  services: Set<string>;
  workload?: Workload;
}
interface ServiceEntry {
  svc: KubeService;
  json: string;
  members: Set<string>;
  service?: Service;
}
interface Dirty {
  pods: Set<string>;
  services: Set<string>;
  /** AuthorizationPolicy keys to (re)convert or remove. */
  policies: Set<string>;
  peerAuthn: boolean;
  /** A Gateway or Node changed: waypoints are re-planned. */
  waypoints: boolean;
}

const INDEXED_KINDS = new Set([
  'ConfigMap',
  'Namespace',
  'Pod',
  'Service',
  'EndpointSlice',
  'AuthorizationPolicy',
  'PeerAuthentication',
  'Node',
  'Gateway',
  ...CONFIG_OBJECT_KINDS,
]);
const objectIdOf = (o: { kind: string; metadata: ObjectMeta }) =>
  o.kind === 'Namespace' || o.kind === 'Node'
    ? `${o.kind}/${o.metadata.name}`
    : `${o.kind}/${keyOf(o.metadata)}`;
export class AmbientIndex extends EventEmitter<{
  update: [IndexUpdate];
  policy: [PolicyStatus];
  waypoint: [WaypointStatus];
}> {
  readonly opts: IndexOptions;
  private readonly waypoints: WaypointPlanner;
  /** Everything else the index holds, by "Kind/ns/name", so rebuild can tell what disappeared. */
  private readonly otherObjects = new Map<string, KubeResource>();
  private readonly namespaces = new Map<string, Namespace>();
  private readonly pods = new Map<string, PodEntry>();
  private readonly svcs = new Map<string, ServiceEntry>();
  private readonly podsByNs = new Map<string, Set<string>>();
  // Label and selector indexes make membership a lookup instead of a pods × services scan.
  private readonly podsByLabel = new Map<string, Set<string>>();
  private readonly svcsBySelector = new Map<string, Set<string>>();
  // Services without a selector take their members from EndpointSlices (by pod IP).
  private readonly endpoints = new EndpointSliceIndex();
  private readonly enrolled = new EnrolledIdentities();
  private readonly policyIndex: PolicyIndex;
  private readonly store = new ResourceStore([TYPE_ADDRESS, TYPE_AUTHORIZATION, TYPE_CONFIG_OBJECT]);
  private generation = 0;

  constructor(
    opts: {
      trustDomain?: string;
      clusterId?: string;
      network?: string;
      rootNamespace?: string;
      /** IPv4 CIDR that waypoints without spec.addresses get an address from. */
      waypointPool?: string;
    } = {},
  ) {
    super();
    this.opts = {
      trustDomain: opts.trustDomain ?? DEFAULT_TRUST_DOMAIN,
      clusterId: opts.clusterId ?? DEFAULT_CLUSTER_ID,
      network: opts.network ?? '',
      rootNamespace: opts.rootNamespace ?? DEFAULT_ROOT_NAMESPACE,
    };
    this.waypoints = new WaypointPlanner(opts.waypointPool ?? DEFAULT_WAYPOINT_POOL, this.opts.trustDomain);
    this.policyIndex = new PolicyIndex(this.opts.rootNamespace, {
      podsIn: (ns) => this.podsByNs.get(ns) ?? [],
      namespacesWithPods: () => this.podsByNs.keys(),
      podsLabelled: (ns, k, v) => this.podsByLabel.get(labelKey(ns, k, v)),
    });
    // istiod always offers the static STRICT policy; workloads under STRICT reference it.
    this.setAuthorization(
      authorizationKey(staticStrictPolicy(this.opts.rootNamespace)),
      staticStrictPolicy(this.opts.rootNamespace),
      noChanges(),
    );
  }

  /** Brings the index to `snapshot`: used for the first load; emits only what differs. */
  rebuild(snapshot: ConfigSnapshot): void {
    const upserted: KubeResource[] = [];
    const present = new Set<string>();
    for (const o of snapshot.objects.values()) {
      if (!INDEXED_KINDS.has(o.kind)) continue;
      upserted.push(o);
      present.add(objectIdOf(o));
    }
    const deleted: ConfigChange['deleted'] = [];
    for (const ns of this.namespaces.values())
      if (!present.has(`Namespace/${ns.metadata.name}`)) deleted.push(ns);
    for (const [k, e] of this.pods) if (!present.has(`Pod/${k}`)) deleted.push(e.pod);
    for (const [k, e] of this.svcs) if (!present.has(`Service/${k}`)) deleted.push(e.svc);
    for (const k of this.endpoints.keys())
      if (!present.has(`EndpointSlice/${k}`)) {
        const [namespace, name = ''] = k.split('/');
        deleted.push({ kind: 'EndpointSlice', metadata: { name, namespace } } as EndpointSlice);
      }
    for (const [id, o] of this.policyIndex.objects()) if (!present.has(id)) deleted.push(o);
    for (const n of this.waypoints.knownNodes())
      if (!present.has(`Node/${n}`)) deleted.push({ kind: 'Node', metadata: { name: n } });
    for (const [id, o] of [...this.waypoints.knownGateways(), ...this.otherObjects])
      if (!present.has(id) && !deleted.includes(o)) deleted.push(o);
    this.apply({ upserted, deleted });
  }

  /** Applies one change from a config source; the snapshot argument is accepted for onChange's shape. */
  apply(change: ConfigChange, _snapshot?: ConfigSnapshot): void {
    const dirty: Dirty = {
      pods: new Set(),
      services: new Set(),
      policies: new Set(),
      peerAuthn: false,
      waypoints: false,
    };
    const config: Changes = noChanges();
    for (const d of change.deleted) this.trackOther(d, undefined, dirty, config);
    for (const o of change.upserted) this.trackOther(o, o, dirty, config);
    const changes: Changes = noChanges();
    if (dirty.waypoints) this.replanWaypoints(dirty, changes);
    for (const d of change.deleted) {
      if (d.kind === 'Namespace') this.setNamespace(d.metadata.name, undefined, dirty);
      else if (d.kind === 'Pod') this.removePod(keyOf(d.metadata), dirty);
      else if (d.kind === 'Service') this.removeService(keyOf(d.metadata), dirty);
      else if (d.kind === 'EndpointSlice') this.setSlice(keyOf(d.metadata), undefined, dirty);
      else if (d.kind === 'AuthorizationPolicy') this.setPolicy(keyOf(d.metadata), undefined, dirty);
      else if (d.kind === 'PeerAuthentication')
        this.policyIndex.setPeerAuthn(keyOf(d.metadata), undefined, dirty);
    }
    for (const o of change.upserted) {
      if (o.kind === 'Namespace') this.setNamespace(o.metadata.name, o, dirty);
      else if (o.kind === 'Pod') this.upsertPod(o, dirty);
      else if (o.kind === 'Service') this.upsertService(o, dirty);
      else if (o.kind === 'EndpointSlice') this.setSlice(keyOf(o.metadata), o, dirty);
      else if (o.kind === 'AuthorizationPolicy') this.setPolicy(keyOf(o.metadata), o, dirty);
      else if (o.kind === 'PeerAuthentication') this.policyIndex.setPeerAuthn(keyOf(o.metadata), o, dirty);
    }
    // Policies first: a workload should not name a policy its proxy has not been offered yet.
    const authz: Changes = noChanges();
    for (const k of dirty.policies) this.setAuthorization(k, this.policyIndex.authorizationOf(k), authz);
    if (dirty.peerAuthn) this.policyIndex.refreshPeerAuthns((k, a) => this.setAuthorization(k, a, authz));
    for (const k of dirty.services) this.refreshService(k, changes);
    for (const k of dirty.pods) this.refreshPod(k, changes);
    const emit = (typeUrl: string, c: Changes) => {
      if (c.upserted.size === 0 && c.removed.size === 0) return false;
      this.emit('update', { typeUrl, upserted: [...c.upserted], removed: [...c.removed] });
      return true;
    };
    const changedAuthz = authz.upserted.size + authz.removed.size > 0;
    const changedAddr = changes.upserted.size + changes.removed.size > 0;
    const changedConfig = config.upserted.size + config.removed.size > 0;
    if (!changedAuthz && !changedAddr && !changedConfig) return;
    this.generation++;
    // L7 config before the addresses that send traffic to a waypoint.
    emit(TYPE_CONFIG_OBJECT, config);
    emit(TYPE_AUTHORIZATION, authz);
    emit(TYPE_ADDRESS, changes);
  }

  // ---- queries ----

  /**
   * Local mode (CA node authorization): SPIFFE ids of ambient-enrolled, non-terminated pods
   * scheduled on `node`, plus the waypoints `ambit up` runs on that node (it starts the waypoint
   * process with that node's token; the placement is the annotation `ambit.dev/node`, else the
   * first Node by name, the same rule the runner uses).
   */
  identitiesOnNode(node: string): ReadonlySet<string> {
    const ids = this.enrolled.onNode(node);
    for (const id of this.waypoints.identitiesOnNode(node)) ids.add(id);
    return ids;
  }
  /**
   * Kubernetes mode: only the pods scheduled on `node` (Pod.spec.nodeName), never a waypoint's
   * identity. There the "placement" is a guess (the first Node by name) while the waypoint's pod
   * runs wherever the scheduler put it and gets its certificate with its own service-account
   * token (kube-token-review.ts identitiesForCaller); letting a node proxy sign for it would
   * hand every waypoint's identity to one node (issue 12, hole 4). As istiod's node
   * authorizer, which checks pods on the caller's node only.
   */
  podIdentitiesOnNode(node: string): ReadonlySet<string> {
    const ids = this.enrolled.onNode(node);
    for (const id of this.waypoints.identities()) ids.delete(id);
    return ids;
  }
  /** Whether `id` is a planned waypoint's identity (for refusal messages). */
  isWaypointIdentity(id: string): boolean {
    return this.waypoints.identities().has(id);
  }
  /** Every waypoint Gateway: programmed (address, node, identity) or why not. */
  waypointStatuses(): WaypointStatus[] {
    return this.waypoints.statuses();
  }
  workloads(): Workload[] {
    return [...this.pods.values()].flatMap((e) => (e.workload ? [e.workload] : []));
  }
  services(): Service[] {
    return [...this.svcs.values()].flatMap((e) => (e.service ? [e.service] : []));
  }
  /** Conversion status of every AuthorizationPolicy (warnings, skipped), for explain and ctl. */
  policyStatuses(): PolicyStatus[] {
    return this.policyIndex.statuses();
  }
  /** The effective PeerAuthentication of a pod ("namespace/name"), for explain and ctl. */
  effectivePeerAuthentication(podKey: string): EffectivePeerAuthn | undefined {
    const e = this.pods.get(podKey);
    return e && this.policyIndex.effectivePeerAuthentication(e.pod);
  }
  typeUrls(): string[] {
    return this.store.typeUrls();
  }
  resources(typeUrl: string): ReadonlyMap<string, XdsResource> {
    return this.store.resources(typeUrl);
  }
  /** Bumped on every emitted update; the xDS server's system_version_info. */
  version(): string {
    return String(this.generation);
  }

  // ---- object bookkeeping: record the object, mark what it affects ----

  private setNamespace(name: string, ns: Namespace | undefined, dirty: Dirty): void {
    const before = JSON.stringify(this.namespaces.get(name)?.metadata.labels ?? {});
    if (ns) this.namespaces.set(name, ns);
    else this.namespaces.delete(name);
    // Only labels feed into workloads; an annotation edit must not re-encode a namespace's pods.
    if (JSON.stringify(ns?.metadata.labels ?? {}) === before) return;
    for (const k of this.podsByNs.get(name) ?? []) dirty.pods.add(k);
    // istio.io/use-waypoint on the namespace binds its services too.
    for (const [k, e] of this.svcs)
      if ((e.svc.metadata.namespace ?? 'default') === name) dirty.services.add(k);
  }

  // ---- waypoints and L7 config objects ----

  /** Nodes, Gateways and the L7 kinds: recorded here; marks waypoints for re-planning. */
  private trackOther(
    o: { kind: string; metadata: ObjectMeta },
    obj: KubeResource | undefined,
    dirty: Dirty,
    config: Changes,
  ): void {
    const id = objectIdOf(o);
    if (o.kind === 'Node') {
      if (this.waypoints.trackNode(o.metadata.name, !!obj)) dirty.waypoints = true;
      return;
    }
    if (o.kind === 'Gateway') {
      if (this.waypoints.trackGateway(id, obj)) dirty.waypoints = true;
      return;
    }
    // The L7 kinds and Istio's mesh ConfigMap: what waypoints are sent (waypoint-config.ts).
    if (!isWaypointConfigKind(o)) return;
    if (obj) this.otherObjects.set(id, obj);
    else this.otherObjects.delete(id);
    const resource = waypointConfigResource(o, obj);
    if (resource) this.store.set(TYPE_CONFIG_OBJECT, resource.name, resource.bytes, config);
  }

  /** Re-plans every waypoint; republishes those that changed and re-binds what asked for them. */
  private replanWaypoints(dirty: Dirty, changes: Changes): void {
    const { changed, withdrawn, planned, statuses } = this.waypoints.replan();
    for (const w of withdrawn) {
      this.setResource(waypointUid(this.opts.clusterId, w), undefined, changes);
      this.setResource(`${w.namespace}/${waypointHostname(w)}`, undefined, changes);
    }
    for (const w of planned) {
      this.setResource(
        waypointUid(this.opts.clusterId, w),
        { workload: buildWaypointWorkload(w, this.opts) },
        changes,
      );
      this.setResource(
        `${w.namespace}/${waypointHostname(w)}`,
        { service: buildWaypointService(w) },
        changes,
      );
    }
    for (const st of statuses) this.emit('waypoint', st);
    if (changed.size === 0) return;
    // Re-bind only the objects that ask for a waypoint whose deployment changed.
    for (const [k, e] of this.pods) {
      const want = requestedWaypoint(e.pod, this.namespaces.get(e.pod.metadata.namespace ?? 'default'));
      if (want && changed.has(want)) dirty.pods.add(k);
    }
    for (const [k, e] of this.svcs) {
      const want = requestedWaypoint(e.svc, this.namespaces.get(e.svc.metadata.namespace ?? 'default'));
      if (want && changed.has(want)) dirty.services.add(k);
    }
  }

  /** AuthorizationPolicies: recorded and converted by the policy index; warnings reported here. */
  private setPolicy(key: string, obj: AuthorizationPolicy | undefined, dirty: Dirty): void {
    const result = this.policyIndex.setPolicy(key, obj, dirty);
    if (result && (result.warnings.length || result.skipped))
      this.emit('policy', { key, skipped: result.skipped, warnings: result.warnings });
  }

  private upsertPod(pod: Pod, dirty: Dirty): void {
    const key = keyOf(pod.metadata);
    const json = JSON.stringify(pod);
    const prev = this.pods.get(key);
    if (prev?.json === json) return;
    const ns = pod.metadata.namespace ?? 'default';
    if (prev) this.indexLabels(key, prev.pod, false);
    const entry: PodEntry = { pod, json, services: prev?.services ?? new Set(), workload: prev?.workload };
    this.pods.set(key, entry);
    addTo(this.podsByNs, ns, key);
    this.indexLabels(key, pod, true);
    // Candidate services share at least one selector pair with the pod's labels.
    const candidates = new Set<string>(entry.services);
    for (const [k, v] of Object.entries(pod.metadata.labels ?? {})) {
      for (const s of this.svcsBySelector.get(labelKey(ns, k, v)) ?? []) candidates.add(s);
    }
    for (const ip of podIps(pod)) for (const s of this.endpoints.servicesAt(ns, ip)) candidates.add(s);
    for (const s of candidates) this.link(key, s, this.isMember(s, pod));
    dirty.pods.add(key);
  }

  private removePod(key: string, dirty: Dirty): void {
    const prev = this.pods.get(key);
    if (!prev) return;
    this.indexLabels(key, prev.pod, false);
    for (const s of prev.services) this.svcs.get(s)?.members.delete(key);
    removeFrom(this.podsByNs, prev.pod.metadata.namespace ?? 'default', key);
    this.pods.delete(key);
    dirty.pods.add(key);
  }

  private upsertService(svc: KubeService, dirty: Dirty): void {
    const key = keyOf(svc.metadata);
    const json = JSON.stringify(svc);
    const prev = this.svcs.get(key);
    if (prev?.json === json) return;
    if (prev) this.indexSelector(key, prev.svc, false);
    const entry: ServiceEntry = { svc, json, members: prev?.members ?? new Set(), service: prev?.service };
    this.svcs.set(key, entry);
    this.indexSelector(key, svc, true);
    // Ports or selector may have changed: every old and new member is rebuilt.
    for (const p of entry.members) dirty.pods.add(p);
    for (const p of [...entry.members]) this.link(p, key, this.isMember(key, this.pods.get(p)!.pod));
    for (const p of this.matchingPods(svc)) {
      this.link(p, key, true);
      dirty.pods.add(p);
    }
    dirty.services.add(key);
  }

  private removeService(key: string, dirty: Dirty): void {
    const prev = this.svcs.get(key);
    if (!prev) return;
    this.indexSelector(key, prev.svc, false);
    for (const p of prev.members) {
      this.pods.get(p)?.services.delete(key);
      dirty.pods.add(p);
    }
    this.svcs.delete(key);
    dirty.services.add(key);
  }

  /** A pod backs a service: by its selector, or (no selector) by an EndpointSlice naming the pod's IP. */
  private isMember(svcKey: string, pod: Pod): boolean {
    const svc = this.svcs.get(svcKey)?.svc;
    if (!svc || svc.metadata.namespace !== pod.metadata.namespace) return false;
    if (hasSelector(svc)) return selects(svc, pod);
    const ns = pod.metadata.namespace ?? 'default';
    return podIps(pod).some((ip) => this.endpoints.servicesAt(ns, ip).has(svcKey));
  }

  /** Records an EndpointSlice (only the ready endpoints' IPs count) and re-links its Service. */
  private setSlice(key: string, obj: EndpointSlice | undefined, dirty: Dirty): void {
    for (const svcKey of this.endpoints.set(key, obj)) this.relink(svcKey, dirty);
  }

  /** Re-decides every member of a service (after its EndpointSlices changed). */
  private relink(svcKey: string, dirty: Dirty): void {
    const entry = this.svcs.get(svcKey);
    if (!entry || hasSelector(entry.svc)) return;
    for (const p of [...entry.members, ...this.matchingPods(entry.svc)]) {
      const member = this.isMember(svcKey, this.pods.get(p)!.pod);
      if (member === entry.members.has(p)) continue;
      this.link(p, svcKey, member);
      dirty.pods.add(p);
    }
    dirty.services.add(svcKey);
  }

  /** Pods whose labels match `svc`'s selector, starting from the rarest selector pair; without a selector, those its EndpointSlices name. */
  private matchingPods(svc: KubeService): string[] {
    const ns = svc.metadata.namespace ?? 'default';
    const svcKey = keyOf(svc.metadata);
    if (!hasSelector(svc))
      return [...(this.podsByNs.get(ns) ?? [])].filter((p) => this.isMember(svcKey, this.pods.get(p)!.pod));
    const pairs = Object.entries(svc.spec.selector ?? {});
    let smallest: Set<string> | undefined;
    for (const [k, v] of pairs) {
      const set = this.podsByLabel.get(labelKey(ns, k, v));
      if (!set) return [];
      if (!smallest || set.size < smallest.size) smallest = set;
    }
    return [...smallest!].filter((p) => selects(svc, this.pods.get(p)!.pod));
  }

  private link(podKey: string, svcKey: string, on: boolean): void {
    const pod = this.pods.get(podKey);
    const svc = this.svcs.get(svcKey);
    if (!pod || !svc) return;
    if (on) {
      pod.services.add(svcKey);
      svc.members.add(podKey);
    } else {
      pod.services.delete(svcKey);
      svc.members.delete(podKey);
    }
  }

  private indexLabels(key: string, pod: Pod, add: boolean): void {
    indexPairs(this.podsByLabel, pod.metadata, pod.metadata.labels, key, add);
  }

  private indexSelector(key: string, svc: KubeService, add: boolean): void {
    indexPairs(this.svcsBySelector, svc.metadata, svc.spec.selector, key, add);
  }

  // ---- rebuild what was marked, keep only what changed on the wire ----

  private refreshService(key: string, changes: Changes): void {
    const entry = this.svcs.get(key);
    const [ns = 'default', name = ''] = key.split('/');
    const resourceName = serviceResourceName({ namespace: ns, hostname: `${name}.${ns}.${DOMAIN_SUFFIX}` });
    const service = entry ? buildService(entry.svc, this.opts) : undefined;
    if (entry && service) {
      const waypoint = bindWaypoint(
        entry.svc,
        this.namespaces.get(ns),
        'service',
        this.waypoints.current(),
        this.opts.network,
      );
      if (waypoint) service.waypoint = waypoint;
    }
    if (entry) entry.service = service;
    this.setResource(resourceName, service && { service }, changes);
  }

  private refreshPod(key: string, changes: Changes): void {
    const entry = this.pods.get(key);
    const [ns = 'default', name = ''] = key.split('/');
    this.trackIdentity(key, entry?.pod);
    let workload: Workload | undefined;
    if (entry) {
      const services = [...entry.services].map((s) => this.svcs.get(s)!.svc);
      workload = entry.workload = buildWorkload(
        entry.pod,
        this.namespaces.get(ns),
        services,
        this.opts,
        this.policyIndex.policiesOf(entry.pod, (k) => this.store.has(TYPE_AUTHORIZATION, k)),
      );
      const waypoint =
        workload?.tunnelProtocol === 'HBONE'
          ? bindWaypoint(
              entry.pod,
              this.namespaces.get(ns),
              'workload',
              this.waypoints.current(),
              this.opts.network,
            )
          : undefined;
      if (workload && waypoint) workload.waypoint = waypoint;
    }
    this.setResource(workloadUid(this.opts.clusterId, ns, name), workload && { workload }, changes);
  }

  /** What the CA may sign for pod `key`'s node: its identity while enrolled and scheduled. */
  private trackIdentity(key: string, pod: Pod | undefined): void {
    const counts =
      pod?.spec.nodeName &&
      !isTerminal(pod) &&
      isAmbientEnrolled(pod, this.namespaces.get(pod.metadata.namespace ?? 'default'));
    if (!counts) return this.enrolled.set(key, undefined);
    const id = spiffeIdOf({
      trustDomain: this.opts.trustDomain,
      namespace: pod.metadata.namespace ?? 'default',
      serviceAccount: pod.spec.serviceAccountName || 'default',
    });
    this.enrolled.set(key, pod.spec.nodeName, id);
  }

  private setAuthorization(name: string, a: Authorization | undefined, changes: Changes): void {
    this.store.set(TYPE_AUTHORIZATION, name, a && encodeAuthorization(a), changes);
  }

  private setResource(name: string, address: Address | undefined, changes: Changes): void {
    this.store.set(
      TYPE_ADDRESS,
      name,
      address && encodeAddress(address),
      changes,
      address ? addressAliases(address) : [],
    );
  }
}
