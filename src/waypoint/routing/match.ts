// matchRoute: the route a request takes (pure, on the request path). The work per request is a
// map lookup for the service, then the service's own entries in order, where
// only entries whose path condition can hold are tested (route-index.ts).
import { EMPTY_HEADERS, deepFreeze } from './actions.js';
import { serviceKey, type RouteEntry, type RouteTable, type ServiceRoutes } from './route-table.js';
import type { DirectAction, L7Request, RouteAction } from './types.js';

/** A service has routes, but none matched: 404, as Envoy answers. */
export const NO_ROUTE: DirectAction = deepFreeze({
  kind: 'direct',
  status: 404,
  routeName: 'no-route',
  reason: 'no route matched the request',
});

/** Addressed to a pod: routes attach to services, so the request goes where it was sent. */
const ORIGINAL: RouteAction = deepFreeze({
  kind: 'forward',
  backends: [],
  requestHeaders: EMPTY_HEADERS,
  responseHeaders: EMPTY_HEADERS,
  routeName: 'default',
  original: true,
});

export function matchRoute(table: RouteTable, req: L7Request): RouteAction {
  const svc = req.target.service;
  if (!svc) return ORIGINAL;
  const key = serviceKey(svc);
  const port = req.target.port;
  const routes = consumerRoutes(table, key, req, port) ?? table.routes.get(key);
  if (!routes || (routes.ports && !routes.ports.has(port))) {
    // No route for this service (port): every healthy endpoint of the service, as Istio's waypoint does.
    return {
      kind: 'forward',
      backends: [{ service: { namespace: svc.namespace, hostname: svc.hostname }, port, weight: 1 }],
      requestHeaders: EMPTY_HEADERS,
      responseHeaders: EMPTY_HEADERS,
      routeName: 'default',
    };
  }
  const hit = routes.entries.first(req, port);
  return hit ? actionOf(hit, req) : NO_ROUTE;
}

/**
 * The consumer routes for this request: those the client's own namespace attached to the
 * Service, when they cover the port (Gateway API GEP-1294: requests from a namespace with
 * consumer routes use that namespace's routes; everyone else the producer's). The namespace
 * comes from the verified peer identity, so a client cannot pick another namespace's routes.
 * On a port the consumer routes do not name, the producer routes apply (one route set per
 * Service port, as istiod builds them).
 */
function consumerRoutes(
  table: RouteTable,
  key: string,
  req: L7Request,
  port: number,
): ServiceRoutes | undefined {
  const byNs = table.consumers?.get(key);
  if (!byNs || !req.sourceIdentity) return undefined;
  const ns = spiffeNamespace(req.sourceIdentity);
  const routes = ns === undefined ? undefined : byNs.get(ns);
  if (!routes || (routes.ports && !routes.ports.has(port))) return undefined;
  return routes;
}

/** "spiffe://<trust-domain>/ns/<namespace>/sa/<account>" -> namespace. */
function spiffeNamespace(id: string): string | undefined {
  const m = /^spiffe:\/\/[^/]+\/ns\/([^/]+)\/sa\/[^/]+$/.exec(id);
  return m?.[1];
}

function actionOf(e: RouteEntry, req: L7Request): RouteAction {
  return typeof e.action === 'function' ? e.action(req) : e.action;
}
