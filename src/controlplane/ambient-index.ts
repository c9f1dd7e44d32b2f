// The ambient index: turns the Namespaces, Pods and Services of the configuration into the
// resources of Istio's workload API (an Address per pod with an IP, one per Service with a cluster
// IP) and holds them encoded and versioned. Changes are applied incrementally: only the objects a
// change touches are rebuilt, and 'update' names only resources whose bytes changed, so the xDS
// server pushes true deltas (after istiod's pilot/pkg/serviceregistry/kube/controller/ambient).
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import {
  DATAPLANE_MODE_AMBIENT,
  LABEL_DATAPLANE_MODE,
  type ConfigChange,
  type ConfigSnapshot,
  type KubeResource,
  type Namespace,
  type ObjectMeta,
  type Pod,
  type Service as KubeService,
  type ServicePort,
} from '../config/types.js';
import type { Ip } from '../common/addr.js';
import { TYPE_ADDRESS, TYPE_AUTHORIZATION } from '../xds/proto.js';
import {
  addressAliases,
  DEFAULT_TRUST_DOMAIN,
  encodeAddress,
  serviceResourceName,
  spiffeIdOf,
  type Address,
  type AppProtocol,
  type PortMapping,
  type Service,
  type Workload,
} from '../xds/resources.js';

export interface IndexOptions {
  trustDomain: string;
  clusterId: string;
  network: string;
}

/** One encoded xDS resource as the server sends it. `version` is a short hash of `bytes`. */
export interface XdsResource {
  name: string;
  version: string;
  aliases: string[];
  bytes: Uint8Array;
}

/** Resources of one type whose encoded content changed (upserted) or that no longer exist. */
export interface IndexUpdate {
  typeUrl: string;
  upserted: string[];
  removed: string[];
}

const DOMAIN_SUFFIX = 'svc.cluster.local';
const LABEL_CANONICAL_NAME = ['service.istio.io/canonical-name', 'app.kubernetes.io/name', 'app'];
const LABEL_CANONICAL_REVISION = [
  'service.istio.io/canonical-revision',
  'app.kubernetes.io/version',
  'version',
];

// ---- decisions (pure) ----

/** Istio's enrollment rule: namespace label unless the pod opts out, or the pod opts in; never hostNetwork. */
export function isAmbientEnrolled(pod: Pod, ns: Namespace | undefined): boolean {
  if (pod.spec.hostNetwork) return false;
  const podMode = pod.metadata.labels?.[LABEL_DATAPLANE_MODE];
  if (podMode === DATAPLANE_MODE_AMBIENT) return true;
  if (podMode === 'none') return false;
  return ns?.metadata.labels?.[LABEL_DATAPLANE_MODE] === DATAPLANE_MODE_AMBIENT;
}

/** Terminal pods have released their IP (which may already belong to a new pod), as in Istio. */
export function isTerminal(pod: Pod): boolean {
  return pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed';
}

export function podIps(pod: Pod): Ip[] {
  const list = pod.status?.podIPs?.map((x) => x.ip) ?? [];
  if (list.length === 0 && pod.status?.podIP) list.push(pod.status.podIP);
  return [...new Set(list)].filter((ip) => isIP(ip) !== 0) as Ip[];
}

function firstLabel(labels: Record<string, string> | undefined, keys: string[]): string | undefined {
  for (const k of keys) if (labels?.[k]) return labels[k];
  return undefined;
}

export function canonicalName(pod: Pod): string {
  return firstLabel(pod.metadata.labels, LABEL_CANONICAL_NAME) ?? pod.metadata.name;
}

export function canonicalRevision(pod: Pod): string {
  return firstLabel(pod.metadata.labels, LABEL_CANONICAL_REVISION) ?? 'latest';
}

export function podHealth(pod: Pod): Workload['status'] {
  const phase = pod.status?.phase;
  if (phase && phase !== 'Running') return 'UNHEALTHY';
  const ready = pod.status?.conditions?.find((c) => c.type === 'Ready');
  return ready?.status === 'False' ? 'UNHEALTHY' : 'HEALTHY';
}

/** Kubernetes semantics: same namespace and a non-empty selector that is a subset of the labels. */
export function selects(svc: KubeService, pod: Pod): boolean {
  const sel = svc.spec.selector;
  if (!sel || svc.metadata.namespace !== pod.metadata.namespace) return false;
  const entries = Object.entries(sel);
  return entries.length > 0 && entries.every(([k, v]) => pod.metadata.labels?.[k] === v);
}

/** Istio's protocol selection: appProtocol first, then the port name's prefix before '-'. */
export function appProtocolOf(port: ServicePort): AppProtocol | undefined {
  const explicit = port.appProtocol ? port.appProtocol.toLowerCase() : undefined;
  const byName = port.name?.toLowerCase().split('-')[0];
  for (const p of [explicit, byName]) {
    if (p === 'http') return 'HTTP11';
    if (p === 'http2' || p === 'kubernetes.io/h2c') return 'HTTP2';
    if (p === 'grpc') return 'GRPC';
    if (explicit !== undefined) return undefined; // an explicit appProtocol we don't know wins over the name
  }
  return undefined;
}

/** A numeric targetPort, undefined for a named one; an absent targetPort means the service port. */
function numericTargetPort(port: ServicePort): number | undefined {
  const t = port.targetPort;
  if (t === undefined || t === '') return port.port;
  if (typeof t === 'number') return t;
  return /^\d+$/.test(t) ? Number(t) : undefined;
}

export function hasClusterIp(svc: KubeService): boolean {
  const ip = svc.spec.clusterIP;
  return !!ip && ip !== 'None' && isIP(ip) !== 0;
}

export function serviceHostname(svc: KubeService): string {
  return `${svc.metadata.name}.${svc.metadata.namespace ?? 'default'}.${DOMAIN_SUFFIX}`;
}

export function buildService(svc: KubeService, opts: IndexOptions): Service | undefined {
  if (!hasClusterIp(svc)) return undefined;
  const ips = svc.spec.clusterIPs?.length ? svc.spec.clusterIPs : [svc.spec.clusterIP!];
  return {
    name: svc.metadata.name,
    namespace: svc.metadata.namespace ?? 'default',
    hostname: serviceHostname(svc),
    addresses: ips.filter((ip) => isIP(ip) !== 0).map((ip) => ({ network: opts.network, address: ip as Ip })),
    // A named targetPort is resolved per pod (Workload.services); the service's own entry says 0.
    ports: (svc.spec.ports ?? []).map((p) => {
      const m: PortMapping = { servicePort: p.port, targetPort: numericTargetPort(p) ?? 0 };
      const proto = appProtocolOf(p);
      if (proto) m.appProtocol = proto;
      return m;
    }),
    subjectAltNames: [],
  };
}

/** The ports `pod` serves for `svc`; a named targetPort the pod lacks drops that port, as in Istio. */
export function workloadPorts(svc: KubeService, pod: Pod): PortMapping[] {
  const out: PortMapping[] = [];
  for (const p of svc.spec.ports ?? []) {
    let target = numericTargetPort(p);
    if (target === undefined) {
      const named = pod.spec.containers?.flatMap((c) => c.ports ?? []).find((cp) => cp.name === p.targetPort);
      if (!named) continue;
      target = named.containerPort;
    }
    out.push({ servicePort: p.port, targetPort: target });
  }
  return out;
}

export function workloadUid(clusterId: string, namespace: string, name: string): string {
  return `${clusterId}//Pod/${namespace}/${name}`;
}

/** The Workload for `pod`, or undefined when it has no usable IP or has terminated. */
export function buildWorkload(
  pod: Pod,
  ns: Namespace | undefined,
  services: readonly KubeService[],
  opts: IndexOptions,
): Workload | undefined {
  const addresses = podIps(pod);
  if (addresses.length === 0 || isTerminal(pod)) return undefined;
  const namespace = pod.metadata.namespace ?? 'default';
  const svcPorts: Record<string, PortMapping[]> = {};
  // Sorted so that equal inputs encode to equal bytes (protobuf maps follow key insertion order).
  const selecting = services.filter((s) => hasClusterIp(s) && selects(s, pod));
  for (const s of selecting.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))) {
    svcPorts[`${namespace}/${serviceHostname(s)}`] = workloadPorts(s, pod);
  }
  return {
    uid: workloadUid(opts.clusterId, namespace, pod.metadata.name),
    name: pod.metadata.name,
    namespace,
    addresses,
    network: opts.network,
    tunnelProtocol: isAmbientEnrolled(pod, ns) ? 'HBONE' : 'NONE',
    trustDomain: opts.trustDomain,
    serviceAccount: pod.spec.serviceAccountName || 'default',
    node: pod.spec.nodeName ?? '',
    canonicalName: canonicalName(pod),
    canonicalRevision: canonicalRevision(pod),
    workloadName: pod.metadata.name,
    services: svcPorts,
    authorizationPolicies: [],
    status: podHealth(pod),
    clusterId: opts.clusterId,
  };
}

export function resourceVersion(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('base64url').slice(0, 12);
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
}
interface Changes {
  upserted: Set<string>;
  removed: Set<string>;
}

const keyOf = (m: Pick<ObjectMeta, 'name' | 'namespace'>) => `${m.namespace ?? 'default'}/${m.name}`;
const labelKey = (ns: string, k: string, v: string) => `${ns}\u0000${k}=${v}`;

function addTo<K, V>(map: Map<K, Set<V>>, k: K, v: V): void {
  let set = map.get(k);
  if (!set) map.set(k, (set = new Set()));
  set.add(v);
}
function removeFrom<K, V>(map: Map<K, Set<V>>, k: K, v: V): void {
  const set = map.get(k);
  if (set?.delete(v) && set.size === 0) map.delete(k);
}

function indexPairs(
  map: Map<string, Set<string>>,
  meta: Pick<ObjectMeta, 'namespace'>,
  pairs: Record<string, string> | undefined,
  key: string,
  add: boolean,
): void {
  for (const [k, v] of Object.entries(pairs ?? {})) {
    const lk = labelKey(meta.namespace ?? 'default', k, v);
    if (add) addTo(map, lk, key);
    else removeFrom(map, lk, key);
  }
}

export class AmbientIndex extends EventEmitter<{ update: [IndexUpdate] }> {
  readonly opts: IndexOptions;
  private readonly namespaces = new Map<string, Namespace>();
  private readonly pods = new Map<string, PodEntry>();
  private readonly svcs = new Map<string, ServiceEntry>();
  private readonly podsByNs = new Map<string, Set<string>>();
  // Label and selector indexes make membership a lookup instead of a pods × services scan.
  private readonly podsByLabel = new Map<string, Set<string>>();
  private readonly svcsBySelector = new Map<string, Set<string>>();
  private readonly enrolledByNode = new Map<string, Map<string, string>>(); // node → pod key → SPIFFE id
  private readonly nodeOfEnrolled = new Map<string, string>(); // pod key → node, to undo the above
  private readonly store = new Map<string, Map<string, XdsResource>>([
    [TYPE_ADDRESS, new Map()],
    [TYPE_AUTHORIZATION, new Map()], // filled by a later issue; subscribers get an empty answer
  ]);
  private generation = 0;

  constructor(opts: { trustDomain?: string; clusterId?: string; network?: string } = {}) {
    super();
    this.opts = {
      trustDomain: opts.trustDomain ?? DEFAULT_TRUST_DOMAIN,
      clusterId: opts.clusterId ?? 'Kubernetes',
      network: opts.network ?? '',
    };
  }

  /** Brings the index to `snapshot`: used for the first load; emits only what differs. */
  rebuild(snapshot: ConfigSnapshot): void {
    const upserted: KubeResource[] = [];
    const present = new Set<string>();
    for (const o of snapshot.objects.values()) {
      if (o.kind !== 'Namespace' && o.kind !== 'Pod' && o.kind !== 'Service') continue;
      upserted.push(o);
      present.add(o.kind === 'Namespace' ? `Namespace/${o.metadata.name}` : `${o.kind}/${keyOf(o.metadata)}`);
    }
    const deleted: ConfigChange['deleted'] = [];
    for (const ns of this.namespaces.values())
      if (!present.has(`Namespace/${ns.metadata.name}`)) deleted.push(ns);
    for (const [k, e] of this.pods) if (!present.has(`Pod/${k}`)) deleted.push(e.pod);
    for (const [k, e] of this.svcs) if (!present.has(`Service/${k}`)) deleted.push(e.svc);
    this.apply({ upserted, deleted });
  }

  /** Applies one change from a config source; the snapshot argument is accepted for onChange's shape. */
  apply(change: ConfigChange, _snapshot?: ConfigSnapshot): void {
    const dirty: Dirty = { pods: new Set(), services: new Set() };
    for (const d of change.deleted) {
      if (d.kind === 'Namespace') this.setNamespace(d.metadata.name, undefined, dirty);
      else if (d.kind === 'Pod') this.removePod(keyOf(d.metadata), dirty);
      else if (d.kind === 'Service') this.removeService(keyOf(d.metadata), dirty);
    }
    for (const o of change.upserted) {
      if (o.kind === 'Namespace') this.setNamespace(o.metadata.name, o, dirty);
      else if (o.kind === 'Pod') this.upsertPod(o, dirty);
      else if (o.kind === 'Service') this.upsertService(o, dirty);
    }
    const changes: Changes = { upserted: new Set(), removed: new Set() };
    for (const k of dirty.services) this.refreshService(k, changes);
    for (const k of dirty.pods) this.refreshPod(k, changes);
    if (changes.upserted.size === 0 && changes.removed.size === 0) return;
    this.generation++;
    this.emit('update', {
      typeUrl: TYPE_ADDRESS,
      upserted: [...changes.upserted],
      removed: [...changes.removed],
    });
  }

  // ---- queries ----

  /** SPIFFE ids of ambient-enrolled, non-terminated pods scheduled on `node` (CA node authorization). */
  identitiesOnNode(node: string): ReadonlySet<string> {
    return new Set(this.enrolledByNode.get(node)?.values());
  }
  workloads(): Workload[] {
    return [...this.pods.values()].flatMap((e) => (e.workload ? [e.workload] : []));
  }
  services(): Service[] {
    return [...this.svcs.values()].flatMap((e) => (e.service ? [e.service] : []));
  }
  typeUrls(): string[] {
    return [...this.store.keys()];
  }
  resources(typeUrl: string): ReadonlyMap<string, XdsResource> {
    return this.store.get(typeUrl) ?? new Map();
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
    for (const s of candidates) this.link(key, s, selects(this.svcs.get(s)!.svc, pod));
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
    for (const p of [...entry.members]) this.link(p, key, selects(svc, this.pods.get(p)!.pod));
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

  /** Pods whose labels match `svc`'s selector, starting from the rarest selector pair. */
  private matchingPods(svc: KubeService): string[] {
    const ns = svc.metadata.namespace ?? 'default';
    const pairs = Object.entries(svc.spec.selector ?? {});
    if (pairs.length === 0) return [];
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
      workload = entry.workload = buildWorkload(entry.pod, this.namespaces.get(ns), services, this.opts);
    }
    this.setResource(workloadUid(this.opts.clusterId, ns, name), workload && { workload }, changes);
  }

  private trackIdentity(key: string, pod: Pod | undefined): void {
    const oldNode = this.nodeOfEnrolled.get(key);
    if (oldNode !== undefined) {
      this.nodeOfEnrolled.delete(key);
      const ids = this.enrolledByNode.get(oldNode);
      if (ids?.delete(key) && ids.size === 0) this.enrolledByNode.delete(oldNode);
    }
    if (!pod?.spec.nodeName || isTerminal(pod)) return;
    if (!isAmbientEnrolled(pod, this.namespaces.get(pod.metadata.namespace ?? 'default'))) return;
    const id = spiffeIdOf({
      trustDomain: this.opts.trustDomain,
      namespace: pod.metadata.namespace ?? 'default',
      serviceAccount: pod.spec.serviceAccountName || 'default',
    });
    let ids = this.enrolledByNode.get(pod.spec.nodeName);
    if (!ids) this.enrolledByNode.set(pod.spec.nodeName, (ids = new Map()));
    ids.set(key, id);
    this.nodeOfEnrolled.set(key, pod.spec.nodeName);
  }

  private setResource(name: string, address: Address | undefined, changes: Changes): void {
    const store = this.store.get(TYPE_ADDRESS)!;
    if (!address) {
      if (store.delete(name)) {
        changes.removed.add(name);
        changes.upserted.delete(name);
      }
      return;
    }
    const bytes = encodeAddress(address);
    const version = resourceVersion(bytes);
    if (store.get(name)?.version === version) return;
    store.set(name, { name, version, aliases: addressAliases(address), bytes });
    changes.upserted.add(name);
    changes.removed.delete(name);
  }
}
