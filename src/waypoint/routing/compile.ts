// compileRouteTable: every routing object → one RouteTable, compiled once per config change.
//
// When both Gateway API routes (HTTPRoute/GRPCRoute) and a VirtualService target one service,
// Istio calls the result undefined. ambit picks a rule: the Gateway API routes win (they are
// the API Istio recommends for waypoints) and each VirtualService left out gets a
// ROUTE_CONFLICT warning naming the route that won. DestinationRules still apply either way.
// Among several VirtualServices for one service, the one in the service's namespace wins, then
// namespace/name order; Istio merges them only for gateways, not for the mesh.
//
// Gateway API routes in another namespace than their Service (consumer routes) go to their own
// table, per Service and per namespace, and never conflict with producer routes or
// VirtualServices: they replace them only for requests from their namespace (match.ts).
import type {
  DestinationRule,
  GRPCRoute,
  HTTPRoute,
  KubeResource,
  VirtualService,
} from '../../config/types.js';
import { objectKey } from '../../config/types.js';
import { compileDestinationRules } from './destination-rule.js';
import { compileGatewayRoutes } from './gateway-api.js';
import { RouteIndex } from './route-index.js';
import type { RouteTable, ServiceRoutes } from './route-table.js';
import { serviceKey } from './route-table.js';
import { ServiceIndex } from './services.js';
import type { ServiceInfo } from './types.js';
import { appliesToMesh, compileVirtualService, virtualServiceTargets } from './virtual-service.js';
import { WarningSink } from './warnings.js';

export function compileRouteTable(
  objects: readonly KubeResource[],
  services: readonly ServiceInfo[],
): RouteTable {
  const warn = new WarningSink();
  const index = new ServiceIndex(services);
  const sorted = [...objects].sort(byNamespaceName);
  const gatewayRoutes = sorted.filter(
    (o): o is HTTPRoute | GRPCRoute => o.kind === 'HTTPRoute' || o.kind === 'GRPCRoute',
  );
  const virtualServices = sorted.filter((o): o is VirtualService => o.kind === 'VirtualService');
  const destinationRules = sorted.filter((o): o is DestinationRule => o.kind === 'DestinationRule');

  const policies = compileDestinationRules(destinationRules, index, warn);
  const routes = new Map<string, ServiceRoutes>();

  const consumers = new Map<string, Map<string, ServiceRoutes>>();
  for (const gw of compileGatewayRoutes(gatewayRoutes, index, warn).values()) {
    const entries = new RouteIndex();
    for (const c of gw.candidates) entries.add(c.entry);
    const sr: ServiceRoutes = {
      api: 'gateway',
      objects: gw.objects,
      ...(gw.ports ? { ports: gw.ports } : {}),
      entries,
    };
    const key = serviceKey(gw.service);
    if (gw.consumerNamespace === undefined) routes.set(key, sr);
    else {
      let byNs = consumers.get(key);
      if (!byNs) consumers.set(key, (byNs = new Map()));
      byNs.set(gw.consumerNamespace, sr);
    }
  }

  // VirtualServices: the first per service wins (own namespace first); entries compiled once per VS.
  const vsByService = new Map<string, { vs: VirtualService; service: ServiceInfo }[]>();
  for (const vs of virtualServices) {
    if (!appliesToMesh(vs)) continue;
    for (const service of virtualServiceTargets(vs, index, warn)) {
      const key = serviceKey(service);
      const list = vsByService.get(key);
      if (list) list.push({ vs, service });
      else vsByService.set(key, [{ vs, service }]);
    }
  }
  const compiled = new Map<VirtualService, RouteIndex>();
  for (const [key, list] of vsByService) {
    const service = list[0]!.service;
    const gw = routes.get(key);
    if (gw) {
      for (const { vs } of list) {
        warn.add(
          objectKey(vs),
          'spec.hosts',
          'ROUTE_CONFLICT',
          `${gw.objects.join(', ')} also route ${service.hostname}; Istio leaves this undefined and ambit applies the Gateway API routes, so this VirtualService is ignored for it`,
        );
      }
      continue;
    }
    const ordered = [...list].sort(
      (a, b) =>
        Number(b.vs.metadata.namespace === service.namespace) -
        Number(a.vs.metadata.namespace === service.namespace),
    );
    const winner = ordered[0]!.vs;
    for (const { vs } of ordered.slice(1)) {
      warn.add(
        objectKey(vs),
        'spec.hosts',
        'ROUTE_CONFLICT',
        `${objectKey(winner)} also routes ${service.hostname} and takes precedence; this VirtualService is ignored for it`,
      );
    }
    let entries = compiled.get(winner);
    if (!entries) {
      entries = new RouteIndex();
      for (const e of compileVirtualService(winner, index, policies, warn)) entries.add(e);
      compiled.set(winner, entries);
    }
    routes.set(key, { api: 'istio', objects: [objectKey(winner)], entries });
  }

  return { routes, consumers, policies, warnings: warn.result() };
}

function byNamespaceName(a: KubeResource, b: KubeResource): number {
  const an = a.metadata.namespace ?? '';
  const bn = b.metadata.namespace ?? '';
  if (an !== bn) return an < bn ? -1 : 1;
  if (a.metadata.name !== b.metadata.name) return a.metadata.name < b.metadata.name ? -1 : 1;
  return a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : 0;
}
