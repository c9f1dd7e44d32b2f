// The compiled route table: per service, the routes in the order they are tried, with every
// match condition and regex compiled once. Built by compileRouteTable() (compile.ts), read by
// matchRoute() (match.ts) and destinationPolicy() (destination-rule.ts).
import type { DestinationPolicy } from '../resilience/types.js';
import type { RouteIndex } from './route-index.js';
import type { RouteWarning } from './types.js';

// RouteEntry lives with the index that holds the entries (route-index.ts); re-exported so the
// converters keep one place to import the table's parts from. (It was defined here and imported
// back by route-index.ts: an import cycle, issue 14.)
export type { RouteEntry } from './route-index.js';

/** The routes of one service. */
export interface ServiceRoutes {
  /** Which API the routes come from (see compile.ts for when both target one service). */
  api: 'gateway' | 'istio';
  /** objectKeys of the objects the routes came from. */
  objects: string[];
  /** Ports the routes cover; a request on another port takes the default route. undefined = all. */
  ports?: ReadonlySet<number>;
  /** The entries, in the order they are tried (Gateway API precedence or Istio's written order). */
  entries: RouteIndex;
}

/** A DestinationRule's traffic policy for one service, with its port and subset overrides. */
export interface PolicySource {
  /** objectKey of the DestinationRule. */
  object: string;
  resolve(port: number | undefined, subset: string | undefined): DestinationPolicy;
  subsets: ReadonlyMap<string, Record<string, string>>;
}

export interface RouteTable {
  /** Keyed by "namespace/hostname" of the service: its producer routes (and VirtualServices). */
  readonly routes: ReadonlyMap<string, ServiceRoutes>;
  /**
   * Consumer routes (Gateway API routes in another namespace than their Service), keyed by
   * "namespace/hostname" of the service, then by the routes' namespace: requests from that
   * namespace use them instead of the producer routes (GEP-1294 "Multiple routes for a Service").
   */
  readonly consumers?: ReadonlyMap<string, ReadonlyMap<string, ServiceRoutes>>;
  /** DestinationRules, keyed by "namespace/hostname" of the service they apply to. */
  readonly policies: ReadonlyMap<string, PolicySource>;
  /** Conversion warnings by objectKey ("HTTPRoute/ns/name"). */
  readonly warnings: ReadonlyMap<string, RouteWarning[]>;
}

export function serviceKey(s: { namespace: string; hostname: string }): string {
  return `${s.namespace}/${s.hostname}`;
}
