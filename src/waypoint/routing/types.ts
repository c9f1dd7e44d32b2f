// The routing contract of the waypoint (src/waypoint/README.md): the request as routing sees
// it, the services routes attach to, and the action a route decides. W1 (the HTTP proxy) and W3
// (resilience) import these; the compiled table's internals live in route-table.ts.
import type { DestinationPolicy, FaultPolicy, MirrorPolicy, RetryPolicy } from '../resilience/types.js';

// RouteTable is exported by index.ts from route-table.ts (importing it here made a cycle, issue 14).
export type { DestinationPolicy };

/** An HTTP request as the waypoint sees it, before routing. */
export interface L7Request {
  method: string; // "GET"
  path: string; // path only, no query: "/api/v1"
  query: URLSearchParams;
  /**
   * The query exactly as received, without "?" ('' when none). Redirects keep it byte for byte,
   * as Envoy does (RedirectAction.strip_query defaults to false); `query` re-serialized would
   * turn "%20" into "+" and "flag" into "flag=".
   */
  rawQuery?: string;
  headers: Record<string, string | string[] | undefined>; // lower-case names (node's IncomingHttpHeaders)
  authority: string; // Host / :authority as sent
  /** The service (or pod) the node proxy sent to the waypoint: ":authority" of the HBONE CONNECT. */
  target: { service?: { namespace: string; hostname: string; name: string }; ip: string; port: number };
  grpc: boolean;
  /**
   * Verified SPIFFE id of the client (the HBONE peer certificate, never a header): consumer
   * routes apply to requests from their own namespace only (Gateway API GEP-1294).
   */
  sourceIdentity?: string;
}

/** A Service as routing needs it (from the ambient index). */
export interface ServiceInfo {
  name: string;
  namespace: string;
  /** FQDN: name.namespace.svc.cluster.local */
  hostname: string;
  ports: { port: number; name?: string; appProtocol?: string }[];
}

/** Identifies a service: the key of the ambient index's service map is "namespace/hostname". */
export interface ServiceRef {
  namespace: string;
  hostname: string;
}

export interface HeaderPair {
  /** Lower-case header name. */
  name: string;
  value: string;
}

/**
 * Header edits, applied in this order: `set` replaces every value of the header, `add` appends
 * a value (Gateway API and Istio both append rather than replace), `remove` drops the header.
 */
export interface HeaderModifier {
  set: HeaderPair[];
  add: HeaderPair[];
  /** Lower-case header names. */
  remove: string[];
}

/** A destination: a port of a service, optionally narrowed to the endpoints carrying `subset`. */
export interface BackendRef {
  service: ServiceRef;
  /** Service port. */
  port: number;
  /** Endpoint labels of a DestinationRule subset; every label must match. */
  subset?: Record<string, string>;
  /** The subset's name, to look its trafficPolicy up with destinationPolicy(). */
  subsetName?: string;
}

export interface WeightedBackend extends BackendRef {
  /** Relative weight, > 0 (weight-0 backends are dropped at compile time). */
  weight: number;
  /** Per-backend edits (Gateway API backendRef filters, Istio destination headers), after the route's. */
  requestHeaders?: HeaderModifier;
  responseHeaders?: HeaderModifier;
  /**
   * Set when the reference cannot be used (a subset no DestinationRule defines, a backend kind
   * ambit does not support): a request that picks this backend gets `status` and `reason`
   * instead (Gateway API: 500 for that share of traffic; Istio: 503).
   */
  invalid?: { status: number; reason: string };
  /**
   * The status a request that picks this backend gets when its Service does not exist when the
   * request arrives: 500 for Gateway API backendRefs (the spec's rule for a reference that does
   * not resolve); unset = 503 (Istio: no healthy upstream).
   */
  unknownServiceStatus?: number;
}

/** How the path and authority are rewritten before forwarding; see rewritePath(). */
export interface Rewrite {
  /** Replace the whole path. */
  path?: string;
  /** Replace the leading `from` (the part of the path a prefix match matched) with `to`. */
  pathPrefix?: { from: string; to: string };
  /**
   * Istio `uriRegexRewrite` (Envoy `regex_rewrite`, RegexMatchAndSubstitute): every match of
   * `pattern` (global, RE2 translated) in the path is replaced by `substitution`, where `\1`..`\9`
   * are capture groups, `\0` the whole match and `\\` a backslash (RE2::Rewrite syntax).
   */
  regex?: { pattern: RegExp; substitution: string };
  /** New Host / :authority. */
  authority?: string;
}

export interface DirectAction {
  kind: 'direct';
  status: number;
  body?: string;
  headers?: Record<string, string>;
  /** The route that answered ("default" / "no-route" when none did). */
  routeName?: string;
  /** Why, for the access log (no route, no backends, unsupported filter, ...). */
  reason?: string;
}

export interface RedirectAction {
  kind: 'redirect';
  status: number;
  location: string;
  routeName?: string;
  /** Response header edits (Istio `headers.response` on a redirect route). */
  responseHeaders?: HeaderModifier;
}

export interface ForwardAction {
  kind: 'forward';
  /**
   * At least one backend; pick one by weight. Empty only when `original` is set (a request
   * addressed to a pod, not a service: forward to `req.target` as addressed).
   */
  backends: WeightedBackend[];
  requestHeaders: HeaderModifier;
  responseHeaders: HeaderModifier;
  rewrite?: Rewrite;
  /** Whole-request timeout; 0 = explicitly none; undefined = none set by the route (Istio: none). */
  timeoutMs?: number;
  perTryTimeoutMs?: number;
  /** undefined = the route set none (the caller applies Istio's default); attempts 0 = no retries. */
  retry?: RetryPolicy;
  fault?: FaultPolicy;
  mirror?: MirrorPolicy<BackendRef>[];
  /**
   * Set per request (on a copy) by the pipeline: the chosen backend's request header edits,
   * applied after `requestHeaders` (Gateway API backendRef filters apply only to that backend).
   */
  backendRequestHeaders?: HeaderModifier;
  /** "HTTPRoute/ns/name:rules[0]", "VirtualService/ns/name:http[1]", "default", ... */
  routeName: string;
  /** Workload-addressed traffic (no service): forward to req.target.ip:port unchanged. */
  original?: true;
}

/**
 * What to do with a request. Actions for routes whose outcome does not depend on the request
 * are shared between requests and frozen: treat every action as read-only.
 */
export type RouteAction = DirectAction | RedirectAction | ForwardAction;

/** Stable codes for conversion warnings (`ambit ctl analyze`). */
export type RouteWarningCode =
  | 'UNSUPPORTED_FIELD'
  | 'UNKNOWN_SERVICE'
  | 'UNKNOWN_BACKEND'
  | 'UNKNOWN_SUBSET'
  | 'NO_DESTINATION_RULE'
  | 'INVALID_REGEX'
  | 'INVALID_VALUE'
  | 'ROUTE_CONFLICT'
  | 'IGNORED';

/** Something in an object that routing does differently from what was written, and why. */
export interface RouteWarning {
  code: RouteWarningCode;
  /** objectKey: "HTTPRoute/ns/name". */
  object: string;
  /** Dotted path inside the object: "spec.rules[0].filters[1]". */
  field: string;
  message: string;
}
