// matchRoute: the route a request takes (pure, on the request path). The work per request is a
// map lookup for the service, then the service's own entries in order, where
// only entries whose path condition can hold are tested (route-index.ts).
import { EMPTY_HEADERS, deepFreeze } from './actions.js';
import { serviceKey, type RouteEntry, type RouteTable } from './route-table.js';
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
  const routes = table.routes.get(serviceKey(svc));
  const port = req.target.port;
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

function actionOf(e: RouteEntry, req: L7Request): RouteAction {
  return typeof e.action === 'function' ? e.action(req) : e.action;
}
