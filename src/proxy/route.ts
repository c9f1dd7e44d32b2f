// Decide, then do: the pure outbound routing decision. Given the source workload, a target
// (IP or name, and port) and the proxy state, return where the connection goes. No I/O here;
// nodeproxy/outbound.ts carries the decision out. Order follows ztunnel's build_request: a service
// VIP whose Service has a waypoint goes to the waypoint (authority = the VIP:port, the waypoint's
// identity expected); else a healthy endpoint is picked; an endpoint (or a pod IP) whose Workload
// has a waypoint goes to that waypoint (authority = podIP:port); an endpoint in the mesh (HBONE)
// gets a tunnel to its :15008 with its identity expected; a known workload outside the mesh and
// any unknown IP get plain TCP (passthrough). A waypoint's own traffic never loops back to it.
import { formatSocketAddr, type HostPort, type Ip, type SocketAddr } from '../common/addr.js';
import { HBONE_PORT, LOOP_PORTS, MESH_PORTS } from '../common/ports.js';
import { spiffeIdOf, type GatewayAddress, type Service, type Workload } from '../xds/resources.js';
import type { ProxyState } from './state.js';

export type Route =
  | {
      kind: 'hbone';
      endpoint: Workload;
      service?: Service;
      /** Where the tunnel goes: the endpoint's HBONE listener. */
      hboneAddr: HostPort;
      /** CONNECT :authority: endpoint IP and target port. */
      authority: SocketAddr;
      expectedIdentity: string;
      /** Set when the tunnel goes to a waypoint (then `endpoint` is the waypoint's workload). */
      waypoint?: 'service' | 'workload';
    }
  | { kind: 'passthrough'; addr: HostPort & { host: Ip }; endpoint?: Workload; service?: Service }
  | { kind: 'reject'; code: 'ROUTE_NO_ENDPOINT' | 'ROUTE_FORBIDDEN_PORT'; reason: string };

/** Picks one endpoint among candidates; round robin in production, deterministic in tests. */
export type EndpointPicker = (service: Service, candidates: readonly Workload[]) => Workload;

/**
 * Where a connection to `target` goes. `source` is the connecting workload: when it is the
 * waypoint a service or workload uses, that waypoint is skipped (it is the one forwarding).
 */
export function buildRoute(
  target: HostPort & { host: Ip },
  state: ProxyState,
  pick: EndpointPicker,
  source?: Pick<Workload, 'addresses'>,
): Route {
  // A pod must not reach a proxy's own listeners through its capture: those act with another
  // pod's identity (SOCKS on a pod's :15080) or are the proxy's control surface. ztunnel's
  // outbound.rs refuses a loopback destination on cfg.illegal_ports (SelfCall); we also refuse
  // any address the mesh knows (pods, services, waypoints: in local mode they are all loopback
  // anyway), and the loop ports everywhere. An unknown outside address keeps its 15xxx ports.
  if (
    LOOP_PORTS.has(target.port) ||
    (MESH_PORTS.has(target.port) &&
      (isLoopbackIp(target.host) ||
        state.workloadByAddress(target.host) !== undefined ||
        state.serviceByAddress(target.host) !== undefined))
  ) {
    return {
      kind: 'reject',
      code: 'ROUTE_FORBIDDEN_PORT',
      reason: `${formatSocketAddr(target.host, target.port)}: port ${target.port} is a mesh proxy port, never a destination`,
    };
  }
  const service = state.serviceByAddress(target.host);
  if (service) {
    if (service.waypoint && !isSelf(source, service.waypoint))
      return viaWaypoint(
        service.waypoint,
        formatSocketAddr(target.host, target.port),
        state,
        'service',
        service,
      );
    const healthy = state
      .endpointsOf(service)
      .filter((w) => w.status === 'HEALTHY' && w.addresses.length > 0 && servesPort(w, service, target.port));
    if (healthy.length === 0) {
      return {
        kind: 'reject',
        code: 'ROUTE_NO_ENDPOINT',
        reason: `service ${service.hostname} has no healthy endpoint for port ${target.port}`,
      };
    }
    const endpoint = pick(service, healthy);
    const port = targetPortFor(endpoint, service, target.port);
    if (endpoint.waypoint && endpoint.tunnelProtocol === 'HBONE' && !isSelf(source, endpoint.waypoint)) {
      const authority = formatSocketAddr(endpoint.addresses[0]!, port);
      return viaWaypoint(endpoint.waypoint, authority, state, 'workload', service);
    }
    return toEndpoint(endpoint, port, service);
  }
  const workload = state.workloadByAddress(target.host);
  if (workload) {
    if (workload.waypoint && workload.tunnelProtocol === 'HBONE' && !isSelf(source, workload.waypoint))
      return viaWaypoint(workload.waypoint, formatSocketAddr(target.host, target.port), state, 'workload');
    return toEndpoint(workload, target.port, undefined, target.host);
  }
  return { kind: 'passthrough', addr: target };
}

function isLoopbackIp(ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1' || ip.startsWith('::ffff:127.');
}

function isSelf(source: Pick<Workload, 'addresses'> | undefined, waypoint: GatewayAddress): boolean {
  return !!source && source.addresses.includes(waypoint.ip);
}

/** HBONE to the waypoint, with the original destination as :authority and the waypoint's identity expected. */
function viaWaypoint(
  wp: GatewayAddress,
  authority: SocketAddr,
  state: ProxyState,
  kind: 'service' | 'workload',
  service?: Service,
): Route {
  const w = state.workloadByAddress(wp.ip);
  if (!w) {
    return {
      kind: 'reject',
      code: 'ROUTE_NO_ENDPOINT',
      reason: `waypoint ${wp.ip} for ${service?.hostname ?? authority} is not a known workload`,
    };
  }
  return {
    kind: 'hbone',
    endpoint: w,
    service,
    hboneAddr: { host: wp.ip, port: wp.hboneMtlsPort },
    authority,
    expectedIdentity: spiffeIdOf(w),
    waypoint: kind,
  };
}

function toEndpoint(w: Workload, port: number, service?: Service, ip: Ip = w.addresses[0]!): Route {
  if (w.tunnelProtocol === 'HBONE') {
    return {
      kind: 'hbone',
      endpoint: w,
      service,
      hboneAddr: { host: ip, port: HBONE_PORT },
      authority: formatSocketAddr(ip, port),
      expectedIdentity: spiffeIdOf(w),
    };
  }
  return { kind: 'passthrough', addr: { host: ip, port }, endpoint: w, service };
}

/** Whether endpoint `w` of service `s` serves service port `port` (the node proxy and the waypoint's router). */
export function servesPort(w: Workload, s: Service, port: number): boolean {
  const key = `${s.namespace}/${s.hostname}`;
  const ports = w.services[key];
  // A service that declares no ports forwards every port as is.
  if (s.ports.length === 0) return true;
  return (
    s.ports.some((p) => p.servicePort === port) &&
    (ports === undefined || ports.length === 0 || ports.some((p) => p.servicePort === port))
  );
}

/** The workload's own mapping wins (named target ports resolve per pod), then the service's. */
export function targetPortFor(w: Workload, s: Service, servicePort: number): number {
  const own = w.services[`${s.namespace}/${s.hostname}`]?.find((p) => p.servicePort === servicePort);
  if (own?.targetPort) return own.targetPort;
  const svc = s.ports.find((p) => p.servicePort === servicePort);
  return svc?.targetPort || servicePort;
}

/**
 * Mesh DNS names for a service, as a pod in `sourceNamespace` may write them:
 * "svc.ns.svc.cluster.local", "svc.ns.svc", "svc.ns", and "svc" (in the source's namespace).
 */
export function resolveServiceName(
  name: string,
  sourceNamespace: string,
  state: ProxyState,
  clusterDomain = 'cluster.local',
): Service | undefined {
  const host = name.toLowerCase().replace(/\.$/, '');
  const candidates = [host];
  const parts = host.split('.');
  if (parts.length === 1) candidates.push(`${host}.${sourceNamespace}.svc.${clusterDomain}`);
  if (parts.length === 2) candidates.push(`${host}.svc.${clusterDomain}`);
  if (parts.length === 3 && parts[2] === 'svc') candidates.push(`${host}.${clusterDomain}`);
  for (const c of candidates) {
    const s = state.serviceByHostname(c);
    if (s) return s;
  }
  return undefined;
}

/** Round robin per service, over whatever healthy set is current. */
export function roundRobin(): EndpointPicker {
  const next = new Map<string, number>();
  return (service, candidates) => {
    const key = `${service.namespace}/${service.hostname}`;
    const i = next.get(key) ?? 0;
    next.set(key, (i + 1) % 1_000_000);
    return candidates[i % candidates.length]!;
  };
}
