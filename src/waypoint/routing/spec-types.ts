// The specs of the routing kinds as users write them (YAML shapes). src/config validates the
// fields it knows before anything reaches routing; the nested objects it leaves open
// (filters, redirect, rewrite, trafficPolicy, ...) are described here and read defensively.

// ---- Gateway API (gateway.networking.k8s.io/v1; retry and mirror fractions are experimental) ----

export interface GwParentRef {
  group?: string;
  kind?: string;
  namespace?: string;
  name: string;
  sectionName?: string;
  port?: number;
}

export interface GwHeaderMatch {
  type?: 'Exact' | 'RegularExpression';
  name: string;
  value: string;
}

export interface GwPathMatch {
  type?: 'Exact' | 'PathPrefix' | 'RegularExpression';
  value?: string;
}

export interface GwHttpRouteMatch {
  path?: GwPathMatch;
  headers?: GwHeaderMatch[];
  queryParams?: GwHeaderMatch[];
  method?: string;
}

export interface GwHeaderModifier {
  set?: { name: string; value: string }[];
  add?: { name: string; value: string }[];
  remove?: string[];
}

export interface GwPathModifier {
  type: 'ReplaceFullPath' | 'ReplacePrefixMatch';
  replaceFullPath?: string;
  replacePrefixMatch?: string;
}

export interface GwBackendRef {
  group?: string;
  kind?: string;
  namespace?: string;
  name: string;
  port?: number;
  weight?: number;
  filters?: GwFilter[];
}

export interface GwFilter {
  type: string;
  requestHeaderModifier?: GwHeaderModifier;
  responseHeaderModifier?: GwHeaderModifier;
  requestMirror?: {
    backendRef: GwBackendRef;
    percent?: number;
    fraction?: { numerator: number; denominator?: number };
  };
  requestRedirect?: {
    scheme?: string;
    hostname?: string;
    path?: GwPathModifier;
    port?: number;
    statusCode?: number;
  };
  urlRewrite?: { hostname?: string; path?: GwPathModifier };
}

export interface GwHttpRouteRule {
  name?: string;
  matches?: GwHttpRouteMatch[];
  filters?: GwFilter[];
  backendRefs?: GwBackendRef[];
  timeouts?: { request?: string; backendRequest?: string };
  retry?: { codes?: number[]; attempts?: number; backoff?: string };
}

export interface GwGrpcMethodMatch {
  type?: 'Exact' | 'RegularExpression';
  service?: string;
  method?: string;
}

export interface GwGrpcRouteRule {
  name?: string;
  matches?: { method?: GwGrpcMethodMatch; headers?: GwHeaderMatch[] }[];
  filters?: GwFilter[];
  backendRefs?: GwBackendRef[];
}

export interface GwRouteSpec<R> {
  parentRefs?: GwParentRef[];
  hostnames?: string[];
  rules?: R[];
}

// ---- Istio networking.istio.io VirtualService ----

export interface IstioStringMatch {
  exact?: string;
  prefix?: string;
  regex?: string;
}

export interface IstioDestination {
  host: string;
  subset?: string;
  port?: { number?: number };
}

export interface IstioHeaderOps {
  set?: Record<string, string>;
  add?: Record<string, string>;
  remove?: string[];
}

export interface IstioHeaders {
  request?: IstioHeaderOps;
  response?: IstioHeaderOps;
}

export interface IstioHttpMatch {
  name?: string;
  uri?: IstioStringMatch;
  scheme?: IstioStringMatch;
  method?: IstioStringMatch;
  authority?: IstioStringMatch;
  headers?: Record<string, IstioStringMatch>;
  withoutHeaders?: Record<string, IstioStringMatch>;
  queryParams?: Record<string, IstioStringMatch>;
  port?: number;
  ignoreUriCase?: boolean;
  sourceLabels?: Record<string, string>;
  gateways?: string[];
  sourceNamespace?: string;
}

export interface IstioPercent {
  value?: number;
}

export interface IstioHttpRoute {
  name?: string;
  match?: IstioHttpMatch[];
  route?: { destination: IstioDestination; weight?: number; headers?: IstioHeaders }[];
  redirect?: {
    uri?: string;
    authority?: string;
    port?: number;
    derivePort?: 'FROM_PROTOCOL_DEFAULT' | 'FROM_REQUEST_PORT';
    scheme?: string;
    redirectCode?: number;
  };
  directResponse?: { status: number; body?: { string?: string; bytes?: string } };
  delegate?: unknown;
  rewrite?: { uri?: string; authority?: string; uriRegexRewrite?: { match?: string; rewrite?: string } };
  timeout?: string;
  retries?: { attempts?: number; perTryTimeout?: string; retryOn?: string; retryRemoteLocalities?: boolean };
  fault?: {
    delay?: { fixedDelay?: string; percentage?: IstioPercent; percent?: number };
    abort?: { httpStatus?: number; grpcStatus?: string; percentage?: IstioPercent };
  };
  mirror?: IstioDestination;
  mirrorPercentage?: IstioPercent;
  mirrors?: { destination: IstioDestination; percentage?: IstioPercent }[];
  headers?: IstioHeaders;
}

export interface IstioVirtualServiceSpec {
  hosts?: string[];
  gateways?: string[];
  http?: IstioHttpRoute[];
  tls?: unknown[];
  tcp?: unknown[];
}

// ---- Istio networking.istio.io DestinationRule ----

export interface IstioLoadBalancer {
  simple?: string;
  consistentHash?: {
    httpHeaderName?: string;
    httpCookie?: { name: string; ttl?: string; path?: string };
    useSourceIp?: boolean;
    httpQueryParameterName?: string;
  };
}

export interface IstioConnectionPool {
  tcp?: { maxConnections?: number };
  http?: {
    http1MaxPendingRequests?: number;
    http2MaxRequests?: number;
    maxRequestsPerConnection?: number;
    idleTimeout?: string;
  };
}

export interface IstioOutlierDetection {
  consecutive5xxErrors?: number;
  consecutiveGatewayErrors?: number;
  interval?: string;
  baseEjectionTime?: string;
  maxEjectionPercent?: number;
}

export interface IstioTrafficPolicy {
  loadBalancer?: IstioLoadBalancer;
  connectionPool?: IstioConnectionPool;
  outlierDetection?: IstioOutlierDetection;
  tls?: { mode?: string };
  portLevelSettings?: (IstioTrafficPolicy & { port?: { number?: number } })[];
}

export interface IstioDestinationRuleSpec {
  host: string;
  trafficPolicy?: IstioTrafficPolicy;
  subsets?: { name: string; labels?: Record<string, string>; trafficPolicy?: IstioTrafficPolicy }[];
  workloadSelector?: unknown;
}
