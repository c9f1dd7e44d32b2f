// Schemas for the Gateway API kinds (gateway.networking.k8s.io): Gateway, HTTPRoute, GRPCRoute.
// Field names, limits and rules follow kubernetes-sigs/gateway-api (its OpenAPI limits and CEL
// rules), so a route that passes here would also pass a cluster's admission. Objects stay open.
import * as z from 'zod';
import { quote } from './config-error.js';
import {
  addIssue,
  annotations,
  checkUnique,
  dns1123Subdomain,
  gatewayDuration,
  hostname,
  labels,
  port,
  stringRule,
} from './schema-fields.js';

const loose = z.looseObject;
const objectName = z.string().min(1).max(253);

const parentRef = loose({
  group: z.string().optional(),
  kind: z.string().optional(),
  namespace: z.string().optional(),
  name: objectName,
  sectionName: dns1123Subdomain.optional(),
  port: port.optional(),
});

const headerName = stringRule(
  (s) => s.length <= 256 && /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/.test(s),
  'must be an HTTP header name',
);
const headerMatch = loose({
  type: z.enum(['Exact', 'RegularExpression']).optional(),
  name: headerName,
  value: z.string().min(1).max(4096),
});
const queryParamMatch = loose({
  type: z.enum(['Exact', 'RegularExpression']).optional(),
  name: z.string().min(1).max(256),
  value: z.string().min(1).max(1024),
});

// Where each filter type keeps its settings: type RequestHeaderModifier needs requestHeaderModifier.
const HTTP_FILTERS = {
  RequestHeaderModifier: 'requestHeaderModifier',
  ResponseHeaderModifier: 'responseHeaderModifier',
  RequestMirror: 'requestMirror',
  RequestRedirect: 'requestRedirect',
  URLRewrite: 'urlRewrite',
  ExtensionRef: 'extensionRef',
  CORS: 'cors',
  ExternalAuth: 'externalAuth',
} as const;
type HttpFilterType = keyof typeof HTTP_FILTERS;
const GRPC_FILTER_TYPES = [
  'RequestHeaderModifier',
  'ResponseHeaderModifier',
  'RequestMirror',
  'ExtensionRef',
] as const;

function filterSchema<T extends HttpFilterType>(types: readonly [T, ...T[]]) {
  return loose({ type: z.enum(types) }).superRefine((f, ctx) => {
    const field = HTTP_FILTERS[f.type];
    if (f[field] === undefined) addIssue(ctx, [field], `required when type is ${f.type}`);
  });
}
const httpFilter = filterSchema(Object.keys(HTTP_FILTERS) as [HttpFilterType, ...HttpFilterType[]]);
const grpcFilter = filterSchema(GRPC_FILTER_TYPES);

function backendRef<F extends z.ZodType>(filter: F) {
  return loose({
    group: z.string().optional(),
    kind: z.string().optional(),
    namespace: z.string().optional(),
    name: objectName,
    port: port.optional(),
    weight: z.number().int().min(0).max(1_000_000).optional(),
    filters: z.array(filter).max(16).optional(),
  }).superRefine((ref, ctx) => {
    // A Service is a set of ports; without one the reference does not resolve.
    if (!ref.group && (ref.kind ?? 'Service') === 'Service' && ref.port === undefined) {
      addIssue(ctx, ['port'], 'required for a Service backend');
    }
  });
}

const routeFields = {
  parentRefs: z.array(parentRef).max(32).optional(),
  hostnames: z.array(hostname).max(16).optional(),
};

// ---- Gateway ----

const PROTOCOL =
  /^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9]+$/;
const listener = loose({
  name: dns1123Subdomain,
  hostname: hostname.optional(),
  port,
  protocol: stringRule(
    (s) => s.length <= 255 && PROTOCOL.test(s),
    'must be a protocol such as HTTP, HTTPS, TLS, TCP, UDP or HBONE, or a domain-prefixed name',
  ),
  tls: loose({ mode: z.enum(['Terminate', 'Passthrough']).optional() }).optional(),
  allowedRoutes: loose({
    namespaces: loose({ from: z.enum(['All', 'Same', 'Selector']).optional() }).optional(),
    kinds: z.array(loose({ group: z.string().optional(), kind: z.string().min(1) })).optional(),
  }).optional(),
});

export const gatewaySpec = loose({
  gatewayClassName: z.string().min(1).max(253),
  listeners: z.array(listener).min(1).max(64),
  addresses: z
    .array(loose({ type: z.string().optional(), value: z.string().min(1) }))
    .max(16)
    .optional(),
  infrastructure: loose({ labels: labels.optional(), annotations: annotations.optional() }).optional(),
}).superRefine((spec, ctx) => checkUnique(ctx, spec.listeners, 'listeners', (l) => l.name, 'listener name'));

// ---- HTTPRoute ----

const pathMatch = loose({
  type: z.enum(['Exact', 'PathPrefix', 'RegularExpression']).optional(),
  value: z.string().max(1024).optional(),
}).superRefine((m, ctx) => {
  if ((m.type ?? 'PathPrefix') === 'RegularExpression' || m.value === undefined) return;
  const problem = pathProblem(m.value);
  if (problem) addIssue(ctx, ['value'], `${problem} (got ${quote(m.value)})`);
});

// The Gateway API CEL rules for Exact and PathPrefix paths.
function pathProblem(v: string): string | undefined {
  if (!v.startsWith('/')) return "must be an absolute path starting with '/'";
  for (const bad of ['//', '/./', '/../', '%2f', '%2F', '#']) {
    if (v.includes(bad)) return `must not contain ${quote(bad)}`;
  }
  if (v.endsWith('/..') || v.endsWith('/.')) return "must not end with '/.' or '/..'";
  return undefined;
}

const httpRouteMatch = loose({
  path: pathMatch.optional(),
  headers: z.array(headerMatch).max(16).optional(),
  queryParams: z.array(queryParamMatch).max(16).optional(),
  method: z.enum(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']).optional(),
});
const timeouts = loose({ request: gatewayDuration.optional(), backendRequest: gatewayDuration.optional() });

const httpRouteRule = loose({
  name: dns1123Subdomain.optional(),
  matches: z.array(httpRouteMatch).max(64).optional(),
  filters: z.array(httpFilter).max(16).optional(),
  backendRefs: z.array(backendRef(httpFilter)).max(16).optional(),
  timeouts: timeouts.optional(),
}).superRefine((r, ctx) => {
  const types = r.filters?.map((f) => f.type) ?? [];
  if (types.includes('RequestRedirect') && types.includes('URLRewrite')) {
    addIssue(ctx, ['filters'], 'cannot use both RequestRedirect and URLRewrite in one rule');
  }
});

export const httpRouteSpec = loose({ ...routeFields, rules: z.array(httpRouteRule).max(16).optional() });

// ---- GRPCRoute ----

const grpcMethodMatch = loose({
  type: z.enum(['Exact', 'RegularExpression']).optional(),
  service: z.string().max(1024).optional(),
  method: z.string().max(1024).optional(),
}).superRefine((m, ctx) => {
  if (m.service === undefined && m.method === undefined) {
    addIssue(ctx, ['service'], 'set service, method or both');
    return;
  }
  if ((m.type ?? 'Exact') !== 'Exact') return;
  if (m.service !== undefined && !/^\.?[A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)*$/.test(m.service)) {
    addIssue(
      ctx,
      ['service'],
      `must be a fully-qualified gRPC service name such as pkg.Service (got ${quote(m.service)})`,
    );
  }
  if (m.method !== undefined && !/^[A-Za-z_][A-Za-z_0-9]*$/.test(m.method)) {
    addIssue(ctx, ['method'], `must be a gRPC method name such as GetUser (got ${quote(m.method)})`);
  }
});

const grpcRouteRule = loose({
  name: dns1123Subdomain.optional(),
  matches: z
    .array(loose({ method: grpcMethodMatch.optional(), headers: z.array(headerMatch).max(16).optional() }))
    .max(64)
    .optional(),
  filters: z.array(grpcFilter).max(16).optional(),
  backendRefs: z.array(backendRef(grpcFilter)).max(16).optional(),
});

export const grpcRouteSpec = loose({ ...routeFields, rules: z.array(grpcRouteRule).max(16).optional() });
