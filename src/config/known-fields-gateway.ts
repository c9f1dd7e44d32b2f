// The fields of the Gateway API kinds ambit reads (Gateway, HTTPRoute, GRPCRoute), struct by
// struct, for unknown-field warnings (known-fields.ts). Names are the JSON tags of
// kubernetes-sigs/gateway-api apis/v1 (gateway_types.go, httproute_types.go, grpcroute_types.go,
// shared_types.go). The set is the union of the experimental-channel CRDs
// (config/crd/experimental) of every release v1.0.0 to v1.6.1 and main: a field that only
// experimental or only an older release defines (sessionPersistence.sessionName, the v1.6
// `cookie`, `tls.frontendValidation` before `spec.tls`) is still a real field for someone, and a
// warning must never be a false alarm. `status` is not checked: ambit never reads a route's or
// a Gateway's status from a file.
import { type FieldTree } from './known-field-tree.js';

const leaf = true as const;

// shared_types.go
const parentReference: FieldTree = {
  group: leaf,
  kind: leaf,
  namespace: leaf,
  name: leaf,
  sectionName: leaf,
  port: leaf,
};
const backendObjectReference = { group: leaf, kind: leaf, name: leaf, namespace: leaf, port: leaf };
const sessionPersistence: FieldTree = {
  sessionName: leaf, // up to v1.5
  absoluteTimeout: leaf,
  idleTimeout: leaf, // up to v1.5
  type: leaf,
  cookieConfig: { lifetimeType: leaf }, // up to v1.5
  cookie: { name: leaf, path: leaf, lifetimeType: leaf }, // v1.6 and later
  header: { name: leaf },
};
const fraction: FieldTree = { numerator: leaf, denominator: leaf };
const localObjectReference: FieldTree = { group: leaf, kind: leaf, name: leaf };
const secretObjectReference: FieldTree = { group: leaf, kind: leaf, name: leaf, namespace: leaf };

// httproute_types.go
const httpHeader: FieldTree = { name: leaf, value: leaf };
const headerFilter: FieldTree = { set: [httpHeader], add: [httpHeader], remove: leaf }; // HTTPHeaderFilter
const pathModifier: FieldTree = { type: leaf, replaceFullPath: leaf, replacePrefixMatch: leaf };
const requestMirror: FieldTree = {
  backendRef: backendObjectReference,
  percent: leaf,
  fraction,
};
const httpRouteFilter: FieldTree = {
  type: leaf,
  requestHeaderModifier: headerFilter,
  responseHeaderModifier: headerFilter,
  requestMirror,
  requestRedirect: {
    scheme: leaf,
    hostname: leaf,
    path: pathModifier,
    port: leaf,
    statusCode: leaf,
  },
  urlRewrite: { hostname: leaf, path: pathModifier },
  cors: {
    allowOrigins: leaf,
    allowCredentials: leaf,
    allowMethods: leaf,
    allowHeaders: leaf,
    exposeHeaders: leaf,
    maxAge: leaf,
  },
  externalAuth: {
    protocol: leaf,
    backendRef: backendObjectReference,
    grpc: { allowedHeaders: leaf },
    http: { path: leaf, allowedHeaders: leaf, allowedResponseHeaders: leaf },
    forwardBody: { maxSize: leaf },
  },
  extensionRef: localObjectReference,
};
const nameTypeValue: FieldTree = { type: leaf, name: leaf, value: leaf };
const httpRouteRule: FieldTree = {
  name: leaf,
  matches: [
    {
      path: { type: leaf, value: leaf },
      headers: [nameTypeValue],
      queryParams: [nameTypeValue],
      method: leaf,
    },
  ],
  filters: [httpRouteFilter],
  backendRefs: [{ ...backendObjectReference, weight: leaf, filters: [httpRouteFilter] }], // HTTPBackendRef
  timeouts: { request: leaf, backendRequest: leaf },
  retry: { codes: leaf, attempts: leaf, backoff: leaf },
  sessionPersistence,
};

// grpcroute_types.go: GRPCRouteFilter has only the header modifiers, requestMirror and extensionRef.
const grpcRouteFilter: FieldTree = {
  type: leaf,
  requestHeaderModifier: headerFilter,
  responseHeaderModifier: headerFilter,
  requestMirror,
  extensionRef: localObjectReference,
};
const grpcRouteRule: FieldTree = {
  name: leaf,
  matches: [{ method: { type: leaf, service: leaf, method: leaf }, headers: [nameTypeValue] }],
  filters: [grpcRouteFilter],
  backendRefs: [{ ...backendObjectReference, weight: leaf, filters: [grpcRouteFilter] }],
  sessionPersistence,
};

// CommonRouteSpec + hostnames; `useDefaultGateways` is experimental (v1.4 and later).
const routeSpec = (rule: FieldTree): FieldTree => ({
  parentRefs: [parentReference],
  useDefaultGateways: leaf,
  hostnames: leaf,
  rules: [rule],
});

// gateway_types.go
const labelSelector: FieldTree = {
  matchLabels: leaf,
  matchExpressions: [{ key: leaf, operator: leaf, values: leaf }],
};
const namespacesFrom: FieldTree = { from: leaf, selector: labelSelector }; // RouteNamespaces, ListenerNamespaces
const tlsValidation: FieldTree = { caCertificateRefs: [secretObjectReference], mode: leaf };
const listener: FieldTree = {
  name: leaf,
  hostname: leaf,
  port: leaf,
  protocol: leaf,
  tls: {
    mode: leaf,
    certificateRefs: [secretObjectReference],
    frontendValidation: { caCertificateRefs: [secretObjectReference] }, // up to v1.3
    options: leaf, // a free map of implementation options
  },
  allowedRoutes: { namespaces: namespacesFrom, kinds: [{ group: leaf, kind: leaf }] },
};
const GATEWAY: FieldTree = {
  gatewayClassName: leaf,
  listeners: [listener],
  addresses: [{ type: leaf, value: leaf }],
  infrastructure: {
    labels: leaf,
    annotations: leaf,
    parametersRef: localObjectReference,
  },
  allowedListeners: { namespaces: namespacesFrom },
  backendTLS: { clientCertificateRef: secretObjectReference }, // up to v1.3
  tls: {
    backend: { clientCertificateRef: secretObjectReference },
    frontend: {
      default: { validation: tlsValidation },
      perPort: [{ port: leaf, tls: { validation: tlsValidation } }],
    },
  },
  defaultScope: leaf,
};

/** The spec trees of the Gateway API kinds ambit reads. */
export const GATEWAY_SPEC_FIELDS: Readonly<Record<string, FieldTree>> = {
  Gateway: GATEWAY,
  HTTPRoute: routeSpec(httpRouteRule),
  GRPCRoute: routeSpec(grpcRouteRule),
};
