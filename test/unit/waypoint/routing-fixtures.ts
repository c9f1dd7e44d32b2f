// Builders shared by the routing unit tests (routing*.test.ts): services, requests and objects.
import type {
  DestinationRule,
  GRPCRoute,
  HTTPRoute,
  KubeResource,
  VirtualService,
} from '../../../src/config/types.js';
import { compileRouteTable, matchRoute } from '../../../src/waypoint/routing/index.js';
import type { L7Request, RouteAction, RouteTable, ServiceInfo } from '../../../src/waypoint/routing/index.js';

export function service(
  name: string,
  namespace = 'shop',
  ports: ServiceInfo['ports'] = [{ port: 80, name: 'http' }],
): ServiceInfo {
  return { name, namespace, hostname: `${name}.${namespace}.svc.cluster.local`, ports };
}

export const SERVICES: ServiceInfo[] = [
  service('web', 'shop', [
    { port: 80, name: 'http' },
    { port: 8080, name: 'http-alt' },
  ]),
  service('reviews'),
  service('ratings'),
  service('api'),
  service('grpc', 'shop', [{ port: 9090, name: 'grpc', appProtocol: 'grpc' }]),
  service('other', 'ops'),
];

export interface ReqOptions {
  method?: string;
  headers?: L7Request['headers'];
  query?: string;
  authority?: string;
  port?: number;
  /** "name.ns"; null = addressed to a pod */
  to?: string | null;
  grpc?: boolean;
}

export function request(path: string, o: ReqOptions = {}): L7Request {
  const to = o.to === undefined ? 'web.shop' : o.to;
  const port = o.port ?? 80;
  const target: L7Request['target'] = { ip: '10.0.0.1', port };
  if (to !== null) {
    const [name, namespace] = to.split('.') as [string, string];
    target.service = { name, namespace, hostname: `${name}.${namespace}.svc.cluster.local` };
  }
  return {
    method: o.method ?? 'GET',
    path,
    query: new URLSearchParams(o.query ?? ''),
    headers: o.headers ?? {},
    authority: o.authority ?? `${to ?? '10.0.0.1'}:${port}`,
    target,
    grpc: o.grpc ?? false,
  };
}

const meta = (name: string, namespace: string) => ({ name, namespace });

/** An HTTPRoute attached to Service `parent` (default web). */
export function httpRoute(
  name: string,
  rules: unknown[],
  o: { parent?: string; ns?: string; parentRefs?: unknown[]; extra?: Record<string, unknown> } = {},
): HTTPRoute {
  const ns = o.ns ?? 'shop';
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: meta(name, ns),
    spec: {
      parentRefs: o.parentRefs ?? [{ group: '', kind: 'Service', name: o.parent ?? 'web' }],
      rules,
      ...o.extra,
    },
  };
}

export function grpcRoute(name: string, rules: unknown[], parent = 'grpc'): GRPCRoute {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'GRPCRoute',
    metadata: meta(name, 'shop'),
    spec: { parentRefs: [{ group: '', kind: 'Service', name: parent }], rules },
  };
}

export function virtualService(name: string, spec: Record<string, unknown>, ns = 'shop'): VirtualService {
  return { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: meta(name, ns), spec };
}

export function destinationRule(name: string, spec: Record<string, unknown>, ns = 'shop'): DestinationRule {
  return { apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: meta(name, ns), spec };
}

/** A rule forwarding to Service `to` port 80. */
export function to(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { backendRefs: [{ name, port: 80 }], ...extra };
}

export function table(objects: KubeResource[], services = SERVICES): RouteTable {
  return compileRouteTable(objects, services);
}

/** Where a request went: the first backend's service name, "original", or the status. */
export function outcome(action: RouteAction): string {
  if (action.kind === 'direct') return String(action.status);
  if (action.kind === 'redirect') return `${action.status} ${action.location}`;
  if (action.original) return 'original';
  return action.backends.map((b) => b.service.hostname.split('.')[0]).join('+');
}

export function route(t: RouteTable, path: string, o?: ReqOptions): RouteAction {
  return matchRoute(t, request(path, o));
}

export function warningsOf(t: RouteTable, key: string): string[] {
  return (t.warnings.get(key) ?? []).map((w) => `${w.code} ${w.field}: ${w.message}`);
}
