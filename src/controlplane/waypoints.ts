// Waypoints, decided (pure): which Gateways are waypoints, where each one runs (address, node,
// identity), how it is published (a Workload that speaks HBONE natively and a Service on 15008),
// and Istio's binding rules (istiod pilot/pkg/serviceregistry/kube/controller/ambient/waypoints.go):
//  - `istio.io/use-waypoint` on a pod or service beats the one on its namespace; `none` opts out;
//  - `istio.io/use-waypoint-namespace` (same object) names the waypoint's namespace, else the object's;
//  - the Gateway's `istio.io/waypoint-for` (service by default, workload, all, none) must cover the
//    kind of object that binds, else the binding is ignored.
// The ambient index (ambient-index.ts) holds the state and calls these; mesh-runner.ts uses
// planWaypoints too, so `ambit up` starts each waypoint where the control plane publishes it.
import { isIP } from 'node:net';
import type { Ip } from '../common/addr.js';
import { LABEL_USE_WAYPOINT, type KubeResource, type Namespace } from '../config/types.js';
import { HBONE_PORT } from '../common/ports.js';
import type { GatewayAddress, Service, Workload } from '../xds/resources.js';
import { DOMAIN_SUFFIX, type IndexOptions } from './workload-builder.js';

export const WAYPOINT_GATEWAY_CLASS = 'istio-waypoint';
export const LABEL_USE_WAYPOINT_NAMESPACE = 'istio.io/use-waypoint-namespace';
export const LABEL_WAYPOINT_FOR = 'istio.io/waypoint-for';
/** Local mode: which Node a waypoint runs on (default: the first Node by name). */
export const ANNOTATION_WAYPOINT_NODE = 'ambit.dev/node';
/** The default pool waypoints without `spec.addresses` get an address from (local mode). */
export const DEFAULT_WAYPOINT_POOL = '127.0.200.0/24';

export type WaypointFor = 'service' | 'workload' | 'all' | 'none';

/** One waypoint as the control plane runs it. */
export interface WaypointInfo {
  namespace: string;
  name: string;
  /** "namespace/name" of the Gateway. */
  key: string;
  ip: Ip;
  /** Where the address came from: the Gateway's spec.addresses, or the pool. */
  addressSource: 'spec' | 'pool';
  node: string;
  /** Istio deploys a waypoint with a service account named after the Gateway. */
  serviceAccount: string;
  waypointFor: WaypointFor;
}

/** A waypoint that could not be deployed, with the reason (for logs and `ambit ctl`). */
export interface WaypointProblem {
  key: string;
  reason: string;
}

interface GatewayLike {
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
}

export function isWaypointGateway(o: GatewayLike): boolean {
  return o.kind === 'Gateway' && o.spec?.gatewayClassName === WAYPOINT_GATEWAY_CLASS;
}

export function waypointForOf(gw: GatewayLike): WaypointFor {
  const v = gw.metadata.labels?.[LABEL_WAYPOINT_FOR];
  return v === 'workload' || v === 'all' || v === 'none' ? v : 'service';
}

/** The first `spec.addresses[].value` that is an IP (type IPAddress or unset), if any. */
/**
 * The address asked for in `spec.addresses`, else the one in `status.addresses` (in Kubernetes
 * the waypoint controller writes its Service's cluster IP there, as istiod does).
 */
function specAddress(gw: GatewayLike): Ip | undefined {
  for (const list of [gw.spec?.addresses, gw.status?.addresses]) {
    for (const a of (list ?? []) as { type?: string; value?: string }[]) {
      if ((a.type === undefined || a.type === 'IPAddress') && a.value && isIP(a.value)) return a.value as Ip;
    }
  }
  return undefined;
}

function parseCidr4(cidr: string): { base: number; size: number } | undefined {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(cidr);
  if (!m || isIP(m[1]!) !== 4) return undefined;
  const bits = Number(m[2]);
  if (bits < 8 || bits > 30) return undefined;
  const base = m[1]!.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
  const size = 2 ** (32 - bits);
  return { base: base - (base % size), size };
}

function ipOf(n: number): Ip {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.') as Ip;
}

/** FNV-1a: a stable small hash, so a waypoint keeps its pool address when others come and go. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/**
 * Deployment decisions for every waypoint Gateway among `objects`: address (spec.addresses[0],
 * else a deterministic one from `pool`, skipping the network and broadcast addresses and any
 * address another waypoint has), node (annotation, else the first Node by name) and identity.
 */
export function planWaypoints(
  objects: Iterable<KubeResource | GatewayLike>,
  pool = DEFAULT_WAYPOINT_POOL,
): { waypoints: WaypointInfo[]; problems: WaypointProblem[] } {
  const gateways: GatewayLike[] = [];
  const nodes: string[] = [];
  const taken = new Set<string>();
  for (const o of objects) {
    if (isWaypointGateway(o)) gateways.push(o);
    else if (o.kind === 'Node') nodes.push(o.metadata.name);
  }
  nodes.sort();
  gateways.sort((a, b) => keyOf(a).localeCompare(keyOf(b)));
  const problems: WaypointProblem[] = [];
  const waypoints: WaypointInfo[] = [];
  const pending: GatewayLike[] = [];
  for (const gw of gateways) {
    const ip = specAddress(gw);
    if (!ip) {
      pending.push(gw);
      continue;
    }
    if (taken.has(ip)) {
      problems.push({ key: keyOf(gw), reason: `address ${ip} is already used by another waypoint` });
      continue;
    }
    taken.add(ip);
    const w = place(gw, ip, 'spec', nodes, problems);
    if (w) waypoints.push(w);
  }
  const range = parseCidr4(pool);
  for (const gw of pending) {
    if (!range) {
      problems.push({
        key: keyOf(gw),
        reason: `no spec.addresses and the waypoint pool ${pool} is not an IPv4 CIDR`,
      });
      continue;
    }
    const usable = range.size - 2;
    let ip: Ip | undefined;
    const start = fnv1a(keyOf(gw)) % usable;
    for (let i = 0; i < usable && !ip; i++) {
      const candidate = ipOf(range.base + 1 + ((start + i) % usable));
      if (!taken.has(candidate)) ip = candidate;
    }
    if (!ip) {
      problems.push({ key: keyOf(gw), reason: `waypoint pool ${pool} is exhausted` });
      continue;
    }
    taken.add(ip);
    const w = place(gw, ip, 'pool', nodes, problems);
    if (w) waypoints.push(w);
  }
  return { waypoints, problems };
}

function place(
  gw: GatewayLike,
  ip: Ip,
  addressSource: WaypointInfo['addressSource'],
  nodes: string[],
  problems: WaypointProblem[],
): WaypointInfo | undefined {
  const wanted = gw.metadata.annotations?.[ANNOTATION_WAYPOINT_NODE];
  const node = wanted ?? nodes[0];
  if (!node) {
    problems.push({ key: keyOf(gw), reason: 'no Node to run it on' });
    return undefined;
  }
  if (wanted && !nodes.includes(wanted)) {
    problems.push({
      key: keyOf(gw),
      reason: `annotation ${ANNOTATION_WAYPOINT_NODE} names unknown Node ${wanted}`,
    });
    return undefined;
  }
  const namespace = gw.metadata.namespace ?? 'default';
  return {
    namespace,
    name: gw.metadata.name,
    key: keyOf(gw),
    ip,
    addressSource,
    node,
    serviceAccount: gw.metadata.name,
    waypointFor: waypointForOf(gw),
  };
}

function keyOf(o: GatewayLike): string {
  return `${o.metadata.namespace ?? 'default'}/${o.metadata.name}`;
}

export function waypointHostname(w: Pick<WaypointInfo, 'name' | 'namespace'>): string {
  return `${w.name}.${w.namespace}.${DOMAIN_SUFFIX}`;
}

export function waypointUid(clusterId: string, w: Pick<WaypointInfo, 'name' | 'namespace'>): string {
  return `${clusterId}//Gateway/${w.namespace}/${w.name}`;
}

/** The waypoint's own Workload: HBONE, natively (node proxies neither capture it nor listen for it). */
export function buildWaypointWorkload(w: WaypointInfo, opts: Omit<IndexOptions, 'rootNamespace'>): Workload {
  return {
    uid: waypointUid(opts.clusterId, w),
    name: w.name,
    namespace: w.namespace,
    addresses: [w.ip],
    network: opts.network,
    tunnelProtocol: 'HBONE',
    nativeTunnel: true,
    trustDomain: opts.trustDomain,
    serviceAccount: w.serviceAccount,
    node: w.node,
    canonicalName: w.name,
    canonicalRevision: 'latest',
    workloadName: w.name,
    services: {
      [`${w.namespace}/${waypointHostname(w)}`]: [{ servicePort: HBONE_PORT, targetPort: HBONE_PORT }],
    },
    authorizationPolicies: [],
    status: 'HEALTHY',
    clusterId: opts.clusterId,
  };
}

/** The waypoint's Service: reachable by name on 15008 (no VIP in local mode; the workload is the endpoint). */
export function buildWaypointService(w: WaypointInfo): Service {
  return {
    name: w.name,
    namespace: w.namespace,
    hostname: waypointHostname(w),
    addresses: [],
    ports: [{ servicePort: HBONE_PORT, targetPort: HBONE_PORT }],
    subjectAltNames: [],
  };
}

// ---- binding ----

/** The waypoint an object asks for by its labels or its namespace's: "ns/name", or undefined. */
export function requestedWaypoint(
  obj: { metadata: { namespace?: string; labels?: Record<string, string> } },
  ns: Pick<Namespace, 'metadata'> | undefined,
): string | undefined {
  const objNs = obj.metadata.namespace ?? 'default';
  for (const labels of [obj.metadata.labels, ns?.metadata.labels]) {
    const name = labels?.[LABEL_USE_WAYPOINT];
    if (!name) continue; // absent or empty: fall through to the namespace
    if (name === 'none') return undefined;
    return `${labels[LABEL_USE_WAYPOINT_NAMESPACE] || objNs}/${name}`;
  }
  return undefined;
}

/** Whether a waypoint accepts bindings from this kind of object (istio.io/waypoint-for). */
export function waypointAccepts(w: Pick<WaypointInfo, 'waypointFor'>, kind: 'service' | 'workload'): boolean {
  return w.waypointFor === 'all' || w.waypointFor === kind;
}

/** The GatewayAddress to publish for an object, or undefined (not bound, unknown waypoint, or not covered). */
export function bindWaypoint(
  obj: { metadata: { namespace?: string; labels?: Record<string, string> } },
  ns: Pick<Namespace, 'metadata'> | undefined,
  kind: 'service' | 'workload',
  waypoints: ReadonlyMap<string, WaypointInfo>,
  network = '',
): GatewayAddress | undefined {
  const key = requestedWaypoint(obj, ns);
  const w = key ? waypoints.get(key) : undefined;
  if (!w || !waypointAccepts(w, kind)) return undefined;
  return { network, ip: w.ip, hboneMtlsPort: HBONE_PORT };
}
