// Pure builders of the ambient index: how one Pod becomes a Workload and one Service a Service
// resource, with Istio's rules (enrollment, canonical names, health, selectors, target ports).
// No state; table-tested in test/unit/controlplane/ambient-index.test.ts.
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import {
  DATAPLANE_MODE_AMBIENT,
  LABEL_DATAPLANE_MODE,
  type Namespace,
  type Pod,
  type Service as KubeService,
  type ServicePort,
} from '../config/types.js';
import type { Ip } from '../common/addr.js';
import { type AppProtocol, type PortMapping, type Service, type Workload } from '../xds/resources.js';

export interface IndexOptions {
  trustDomain: string;
  clusterId: string;
  network: string;
  /** Policies here without a selector apply mesh-wide (Istio's root namespace). */
  rootNamespace: string;
}

export const DOMAIN_SUFFIX = 'svc.cluster.local';
/** Istio's default cluster ID (istiod's and ztunnel's `CLUSTER_ID`); the first part of a workload uid. */
export const DEFAULT_CLUSTER_ID = 'Kubernetes';
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
/** A Service with a non-empty selector; one without takes its endpoints from EndpointSlices. */
export function hasSelector(svc: KubeService): boolean {
  return Object.keys(svc.spec.selector ?? {}).length > 0;
}

export function selects(svc: KubeService, pod: Pod): boolean {
  const sel = svc.spec.selector;
  if (!sel || svc.metadata.namespace !== pod.metadata.namespace) return false;
  const entries = Object.entries(sel);
  return entries.length > 0 && entries.every(([k, v]) => pod.metadata.labels?.[k] === v);
}

/** Ports istiod takes as TCP when their name says nothing it knows (SMTP, DNS, MySQL, MongoDB). */
const WELL_KNOWN_TCP_PORTS = new Set([25, 53, 3306, 27017]);

/**
 * A Service port's protocol as istiod puts it in the workload API: its protocol selection
 * (pkg/config/kube/conversion.go ConvertProtocol: UDP is not ours; appProtocol, when set, replaces
 * the name, with Kubernetes' kubernetes.io/h2c, ws and wss; `grpc-web` before the prefix cut;
 * then the name's prefix before '-'; a prefix it does not know on a well-known port is TCP),
 * folded into AppProtocol (pilot/pkg/serviceregistry/ambient/workloads.go
 * toAppProtocolFromProtocol: HTTP, HTTP2, gRPC, TLS and HTTPS as TLS, TCP; anything else,
 * gRPC-Web, Mongo, Redis, MySQL, UDP included, is UNKNOWN, here undefined).
 */
export function appProtocolOf(port: ServicePort): AppProtocol | undefined {
  if (port.protocol?.toUpperCase() === 'UDP') return undefined;
  let name = port.name ?? '';
  if (port.appProtocol !== undefined) {
    name = port.appProtocol;
    if (name === 'kubernetes.io/h2c') return 'HTTP2';
    if (name === 'kubernetes.io/ws') return 'HTTP11';
    if (name === 'kubernetes.io/wss') return 'TLS';
  }
  if (name.slice(0, 8).toLowerCase() === 'grpc-web') return undefined;
  const dash = name.indexOf('-');
  const prefix = (dash >= 0 ? name.slice(0, dash) : name).toLowerCase();
  const known = ISTIO_PROTOCOLS[prefix];
  if (known !== undefined) return known ?? undefined;
  return WELL_KNOWN_TCP_PORTS.has(port.port) ? 'TCP' : undefined;
}

/** istiod's protocol.Parse names → AppProtocol; null: a protocol istiod knows that has no AppProtocol. */
const ISTIO_PROTOCOLS: Record<string, AppProtocol | null> = {
  http: 'HTTP11',
  http2: 'HTTP2',
  grpc: 'GRPC',
  tcp: 'TCP',
  tls: 'TLS',
  https: 'TLS',
  udp: null,
  http_proxy: null,
  mongo: null,
  redis: null,
  mysql: null,
};

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
  opts: Omit<IndexOptions, 'rootNamespace'>,
  authorizationPolicies: string[] = [],
): Workload | undefined {
  const addresses = podIps(pod);
  if (addresses.length === 0 || isTerminal(pod)) return undefined;
  const namespace = pod.metadata.namespace ?? 'default';
  const svcPorts: Record<string, PortMapping[]> = {};
  // Sorted so that equal inputs encode to equal bytes (protobuf maps follow key insertion order).
  // `services` are those the index found the pod backs; a selector is re-checked here, while a
  // Service without one is trusted to come from its EndpointSlices.
  const selecting = services.filter(
    (s) =>
      hasClusterIp(s) && (hasSelector(s) ? selects(s, pod) : s.metadata.namespace === pod.metadata.namespace),
  );
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
    authorizationPolicies,
    status: podHealth(pod),
    clusterId: opts.clusterId,
  };
}

export function resourceVersion(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('base64url').slice(0, 12);
}
