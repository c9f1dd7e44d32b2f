// The workload API as ambit's internal types, and the one place that converts them to and from
// the protobuf wire form. The control plane builds these types and encodes them; proxies decode
// and validate them (a resource that fails validation is NACKed and the last good one kept).
import { AmbitError } from '../common/errors.js';
import { HBONE_PORT } from '../common/ports.js';
import { ipFromBytes, ipToBytes, type Ip } from '../common/addr.js';
import { decodeMessage, encodeMessage, pb } from './proto.js';

export type TunnelProtocol = 'NONE' | 'HBONE';
/** Istio's workload API AppProtocol; TCP and TLS as istiod sends them for `tcp-*` / `tls-*`, `https-*` ports. */
export type AppProtocol = 'UNKNOWN' | 'HTTP11' | 'HTTP2' | 'GRPC' | 'TCP' | 'TLS';

/**
 * Where a service's or workload's waypoint listens (Istio's GatewayAddress, address form): the
 * source node proxy tunnels to `ip:hboneMtlsPort` and expects the identity of the workload at `ip`.
 */
export interface GatewayAddress {
  network: string;
  ip: Ip;
  hboneMtlsPort: number;
}

export interface PortMapping {
  servicePort: number;
  targetPort: number;
  appProtocol?: AppProtocol;
}

export interface Workload {
  /** xDS name, e.g. "Kubernetes//Pod/demo/echo-v1". */
  uid: string;
  name: string;
  namespace: string;
  addresses: Ip[];
  network: string;
  tunnelProtocol: TunnelProtocol;
  trustDomain: string;
  serviceAccount: string;
  /** The waypoint that traffic addressed to this workload's IP goes through (waypoint-for workload/all). */
  waypoint?: GatewayAddress;
  node: string;
  /** Speaks HBONE itself (a waypoint): node proxies must not capture it or open listeners for it. */
  nativeTunnel?: boolean;
  canonicalName: string;
  canonicalRevision: string;
  workloadName: string;
  /** "namespace/hostname" → ports this workload serves for that service. */
  services: Record<string, PortMapping[]>;
  authorizationPolicies: string[];
  status: 'HEALTHY' | 'UNHEALTHY';
  clusterId: string;
}

export interface Service {
  name: string;
  namespace: string;
  hostname: string;
  /** VIPs with their network. */
  addresses: { network: string; address: Ip }[];
  ports: PortMapping[];
  subjectAltNames: string[];
  /** The waypoint that traffic to this service's VIPs goes through (waypoint-for service/all). */
  waypoint?: GatewayAddress;
}

export type Address = { workload: Workload } | { service: Service };

export const DEFAULT_TRUST_DOMAIN = 'cluster.local';

/** xDS resource name of a service: "namespace/hostname". */
export function serviceResourceName(s: Pick<Service, 'namespace' | 'hostname'>): string {
  return `${s.namespace}/${s.hostname}`;
}

/** Alias names by which an address resource can be looked up: "network/ip". */
export function addressAliases(a: Address): string[] {
  if ('workload' in a) return a.workload.addresses.map((ip) => `${a.workload.network}/${ip}`);
  return a.service.addresses.map((x) => `${x.network}/${x.address}`);
}

export function spiffeIdOf(w: Pick<Workload, 'trustDomain' | 'namespace' | 'serviceAccount'>): string {
  return `spiffe://${w.trustDomain || DEFAULT_TRUST_DOMAIN}/ns/${w.namespace}/sa/${w.serviceAccount || 'default'}`;
}

// ---- encoding (control plane) ----

export function encodeAddress(a: Address): Uint8Array {
  if ('workload' in a) {
    const w = a.workload;
    return encodeMessage(pb.Address, {
      workload: {
        uid: w.uid,
        name: w.name,
        namespace: w.namespace,
        addresses: w.addresses.map(ipToBytes),
        network: w.network,
        tunnelProtocol: w.tunnelProtocol,
        trustDomain: w.trustDomain,
        serviceAccount: w.serviceAccount,
        ...(w.waypoint ? { waypoint: encodeGatewayAddress(w.waypoint) } : {}),
        node: w.node,
        ...(w.nativeTunnel ? { nativeTunnel: true } : {}),
        canonicalName: w.canonicalName,
        canonicalRevision: w.canonicalRevision,
        workloadType: 'POD',
        workloadName: w.workloadName,
        services: Object.fromEntries(Object.entries(w.services).map(([k, ports]) => [k, { ports }])),
        authorizationPolicies: w.authorizationPolicies,
        status: w.status,
        clusterId: w.clusterId,
      },
    });
  }
  const s = a.service;
  return encodeMessage(pb.Address, {
    service: {
      name: s.name,
      namespace: s.namespace,
      hostname: s.hostname,
      addresses: s.addresses.map((x) => ({ network: x.network, address: ipToBytes(x.address) })),
      ports: s.ports,
      subjectAltNames: s.subjectAltNames,
      ...(s.waypoint ? { waypoint: encodeGatewayAddress(s.waypoint) } : {}),
    },
  });
}

function encodeGatewayAddress(g: GatewayAddress): object {
  return { address: { network: g.network, address: ipToBytes(g.ip) }, hboneMtlsPort: g.hboneMtlsPort };
}

// ---- decoding and validation (proxies) ----

interface WirePort {
  servicePort: number;
  targetPort: number;
  appProtocol: AppProtocol;
}
interface WireWorkload {
  uid: string;
  name: string;
  namespace: string;
  addresses: Uint8Array[];
  network: string;
  tunnelProtocol: TunnelProtocol;
  trustDomain: string;
  serviceAccount: string;
  waypoint?: WireGatewayAddress | null;
  node: string;
  nativeTunnel: boolean;
  canonicalName: string;
  canonicalRevision: string;
  workloadName: string;
  services: Record<string, { ports?: WirePort[] }>;
  authorizationPolicies: string[];
  status: 'HEALTHY' | 'UNHEALTHY';
  clusterId: string;
}
interface WireService {
  name: string;
  namespace: string;
  hostname: string;
  addresses: { network: string; address: Uint8Array }[];
  ports: WirePort[];
  subjectAltNames: string[];
  waypoint?: WireGatewayAddress | null;
}
interface WireGatewayAddress {
  hostname?: { namespace: string; hostname: string } | null;
  address?: { network: string; address: Uint8Array } | null;
  hboneMtlsPort: number;
}

function invalid(name: string, why: string): AmbitError {
  return new AmbitError('XDS_INVALID_RESOURCE', `resource ${JSON.stringify(name)}: ${why}`);
}

function checkPorts(name: string, ports: WirePort[]): PortMapping[] {
  return ports.map((p) => {
    if (!(p.servicePort >= 1 && p.servicePort <= 65535))
      throw invalid(name, `service_port ${p.servicePort} out of range`);
    // target_port 0 on a Service means "resolved per workload" (a named targetPort): keep it, the
    // router reads the workload's own mapping first (proxy/route.ts targetPortFor).
    if (p.targetPort > 65535) throw invalid(name, `target_port ${p.targetPort} out of range`);
    return { servicePort: p.servicePort, targetPort: p.targetPort, appProtocol: p.appProtocol };
  });
}

function checkGatewayAddress(
  name: string,
  g: WireGatewayAddress | null | undefined,
): GatewayAddress | undefined {
  if (!g) return undefined;
  if (g.hostname) throw invalid(name, 'waypoint by hostname is not supported; send its address');
  if (!g.address) throw invalid(name, 'waypoint has neither an address nor a hostname');
  const ip = ipFromBytes(g.address.address);
  if (!ip) throw invalid(name, `waypoint address of ${g.address.address.length} bytes is not IPv4 or IPv6`);
  const port = g.hboneMtlsPort || HBONE_PORT;
  if (port > 65535) throw invalid(name, `waypoint hbone_mtls_port ${port} out of range`);
  return { network: g.address.network, ip, hboneMtlsPort: port };
}

/** Decodes and validates one Address resource; throws XDS_INVALID_RESOURCE with the reason. */
export function decodeAddress(name: string, bytes: Uint8Array): Address {
  let msg: { workload?: WireWorkload | null; service?: WireService | null };
  try {
    msg = decodeMessage(pb.Address, bytes);
  } catch (err) {
    throw invalid(name, `undecodable protobuf (${(err as Error).message})`);
  }
  if (msg.workload) {
    const w = msg.workload;
    if (!w.uid) throw invalid(name, 'workload has no uid');
    const addresses = w.addresses.map((b) => {
      const ip = ipFromBytes(b);
      if (!ip) throw invalid(name, `workload address of ${b.length} bytes is not IPv4 or IPv6`);
      return ip;
    });
    const services: Record<string, PortMapping[]> = {};
    for (const [svc, list] of Object.entries(w.services)) services[svc] = checkPorts(name, list.ports ?? []);
    const waypoint = checkGatewayAddress(name, w.waypoint);
    return {
      workload: {
        ...(waypoint ? { waypoint } : {}),
        ...(w.nativeTunnel ? { nativeTunnel: true } : {}),
        uid: w.uid,
        name: w.name,
        namespace: w.namespace,
        addresses,
        network: w.network,
        tunnelProtocol: w.tunnelProtocol,
        trustDomain: w.trustDomain || DEFAULT_TRUST_DOMAIN,
        serviceAccount: w.serviceAccount || 'default',
        node: w.node,
        canonicalName: w.canonicalName,
        canonicalRevision: w.canonicalRevision,
        workloadName: w.workloadName,
        services,
        authorizationPolicies: w.authorizationPolicies,
        status: w.status,
        clusterId: w.clusterId,
      },
    };
  }
  if (msg.service) {
    const s = msg.service;
    if (!s.hostname || !s.namespace) throw invalid(name, 'service needs a namespace and a hostname');
    const addresses = s.addresses.map((a) => {
      const ip = ipFromBytes(a.address);
      if (!ip) throw invalid(name, `service address of ${a.address.length} bytes is not IPv4 or IPv6`);
      return { network: a.network, address: ip };
    });
    const waypoint = checkGatewayAddress(name, s.waypoint);
    return {
      service: {
        ...(waypoint ? { waypoint } : {}),
        name: s.name,
        namespace: s.namespace,
        hostname: s.hostname,
        addresses,
        ports: checkPorts(name, s.ports),
        subjectAltNames: s.subjectAltNames,
      },
    };
  }
  throw invalid(name, 'Address has neither a workload nor a service');
}
