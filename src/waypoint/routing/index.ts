// The routing module's public API (see README.md): compile once per config change, match per request.
export { compileRouteTable } from './compile.js';
export { matchRoute, NO_ROUTE } from './match.js';
export { destinationPolicy } from './destination-rule.js';
export { rewritePath } from './actions.js';
export { serviceKey } from './route-table.js';
export type * from './types.js';
export type { RouteTable } from './route-table.js';
