// Gateway API HTTPRoute and GRPCRoute attached to Services (GAMMA) → per-service route entries
// in Gateway API precedence order. The order is istiod's (pilot/pkg/config/kube/gateway
// sortHTTPRoutes), which implements the spec: Exact path over PathPrefix over RegularExpression,
// then the longer path, then a method match, then more header matches, then more query
// matches; ties keep route order (oldest first: without creation timestamps, namespace/name
// order), then rule order, then match order. GRPCRoute method matches become paths
// ("/pkg.Service/Method") and join the same order, as istiod merges both kinds.
import type { GRPCRoute, HTTPRoute } from '../../config/types.js';
import { objectKey } from '../../config/types.js';
import { inPrecedenceOrder } from '../../config/precedence.js';
import { allOf, deepFreeze, defaultPortOf, formatLocation, hostOf, rewritePath } from './actions.js';
import { parseDurationMs } from './duration.js';
import { gatewayRetry, ruleBackends, ruleFilters, type Origin, type RuleFilters } from './gateway-filters.js';
import { regexLiteralPrefix, type PathKey } from './route-index.js';
import type { RouteEntry } from './route-table.js';
import type { ServiceIndex } from './services.js';
import type {
  GwGrpcMethodMatch,
  GwGrpcRouteRule,
  GwHeaderMatch,
  GwHttpRouteMatch,
  GwHttpRouteRule,
  GwParentRef,
  GwRouteSpec,
} from './spec-types.js';
import {
  compileRe2,
  exactTest,
  headerValue,
  prefixTest,
  regexTest,
  segmentPrefixTest,
} from './string-match.js';
import type { ValueTest } from './string-match.js';
import type { ForwardAction, L7Request, RouteAction, ServiceInfo, WeightedBackend } from './types.js';
import type { WarningSink } from './warnings.js';

/** Path match kinds in precedence order (higher first), as istiod ranks them. */
const RANK_EXACT = 3;
const RANK_PREFIX = 2;
const RANK_REGEX = 1;

const HTTP_RULE_FIELDS = ['name', 'matches', 'filters', 'backendRefs', 'timeouts', 'retry'];
const GRPC_RULE_FIELDS = ['name', 'matches', 'filters', 'backendRefs'];

/** An entry with what precedence looks at. */
interface Candidate {
  entry: RouteEntry;
  rank: number;
  length: number;
  hasMethod: boolean;
  headers: number;
  query: number;
  /** Route, rule and match order. */
  order: number;
}

/** The Gateway API routes of one service, before they become a ServiceRoutes. */
export interface GatewayServiceRoutes {
  service: ServiceInfo;
  /** Set for consumer routes: the namespace whose requests they apply to (the routes' own). */
  consumerNamespace?: string;
  objects: string[];
  /** undefined = every port. */
  ports?: Set<number>;
  candidates: Candidate[];
}

/** A compiled match: its test, precedence facts and the prefix it matched (for rewrites). */
interface CompiledMatch {
  test: (req: L7Request) => boolean;
  rank: number;
  length: number;
  hasMethod: boolean;
  headers: number;
  query: number;
  pathKey: PathKey;
  /** The PathPrefix value without its trailing slash, for ReplacePrefixMatch. */
  prefix?: string;
}

export function compileGatewayRoutes(
  routes: readonly (HTTPRoute | GRPCRoute)[],
  index: ServiceIndex,
  warn: WarningSink,
): Map<string, GatewayServiceRoutes> {
  const out = new Map<string, GatewayServiceRoutes>();
  let order = 0;
  for (const route of inPrecedenceOrder(routes)) {
    const object = objectKey(route);
    const namespace = route.metadata.namespace ?? 'default';
    const spec = route.spec as GwRouteSpec<GwHttpRouteRule | GwGrpcRouteRule>;
    const parents = attachments(spec.parentRefs, { object, namespace, field: 'spec', warn }, index);
    if (parents.length === 0) continue;
    if (spec.hostnames?.length) {
      warn.add(object, 'spec.hostnames', 'IGNORED', 'hostnames are ignored for routes attached to a Service');
    }
    const candidates: Candidate[] = [];
    (spec.rules ?? []).forEach((rule, i) => {
      const at: Origin = { object, namespace, field: `spec.rules[${i}]`, warn };
      const routeName = `${object}:${rule.name ?? `rules[${i}]`}`;
      warn.unknownFields(
        object,
        at.field,
        rule,
        route.kind === 'HTTPRoute' ? HTTP_RULE_FIELDS : GRPC_RULE_FIELDS,
      );
      const parts = compileRule(route.kind, rule, at, index);
      const matches =
        route.kind === 'HTTPRoute'
          ? httpMatches((rule as GwHttpRouteRule).matches, at)
          : grpcMatches((rule as GwGrpcRouteRule).matches, at);
      for (const m of matches) {
        const action = ruleAction(parts, m, routeName, at);
        candidates.push({
          entry: { test: m.test, action, pathKey: m.pathKey },
          rank: m.rank,
          length: m.length,
          hasMethod: m.hasMethod,
          headers: m.headers,
          query: m.query,
          order: order++,
        });
      }
    });
    for (const { service, ports, consumer } of parents) {
      // Producer and consumer routes of a service merge only within their own group (GEP-1294).
      const key = `${service.namespace}/${service.hostname}${consumer ? `@${namespace}` : ''}`;
      let sr = out.get(key);
      if (!sr) {
        sr = { service, objects: [], ports: new Set(), candidates: [] };
        if (consumer) sr.consumerNamespace = namespace;
        out.set(key, sr);
      }
      if (!sr.objects.includes(object)) sr.objects.push(object);
      if (ports === undefined) sr.ports = undefined;
      else if (sr.ports) for (const p of ports) sr.ports.add(p);
      for (const c of candidates) {
        sr.candidates.push(ports ? { ...c, entry: { ...c.entry, ports } } : c);
      }
    }
  }
  for (const sr of out.values()) sr.candidates.sort(byPrecedence);
  return out;
}

function byPrecedence(a: Candidate, b: Candidate): number {
  if (a.rank !== b.rank) return b.rank - a.rank;
  if (a.length !== b.length) return b.length - a.length;
  if (a.hasMethod !== b.hasMethod) return a.hasMethod ? -1 : 1;
  if (a.headers !== b.headers) return b.headers - a.headers;
  if (a.query !== b.query) return b.query - a.query;
  return a.order - b.order;
}

// ---- parentRefs ----

/**
 * The Services a route attaches to, each with the ports it names (undefined = all); `consumer`
 * when the Service is in another namespace than the route (a consumer route, GEP-1294: it
 * applies only to requests from the route's namespace).
 */
function attachments(
  refs: GwParentRef[] | undefined,
  at: Omit<Origin, 'field'> & { field: string },
  index: ServiceIndex,
): Attachment[] {
  const out = new Map<ServiceInfo, Attachment>();
  (refs ?? []).forEach((ref, i) => {
    const field = `${at.field}.parentRefs[${i}]`;
    if (ref.kind !== 'Service') {
      if (ref.kind === 'ServiceEntry') {
        at.warn.add(
          at.object,
          field,
          'UNSUPPORTED_FIELD',
          'ServiceEntry parents are not supported by ambit yet',
        );
      }
      return; // Gateways (ingress) are another component's business.
    }
    if (ref.group === undefined) {
      at.warn.add(
        at.object,
        field,
        'INVALID_VALUE',
        'parentRef kind Service needs group "" (the default group is gateway.networking.k8s.io); taken as the core Service',
      );
    } else if (ref.group !== '' && ref.group !== 'core') return;
    const namespace = ref.namespace ?? at.namespace;
    const consumer = namespace !== at.namespace;
    const service = index.byName(namespace, ref.name);
    if (!service) {
      at.warn.add(at.object, field, 'UNKNOWN_SERVICE', `Service ${namespace}/${ref.name} does not exist`);
      return;
    }
    let port = ref.port;
    if (ref.sectionName !== undefined) {
      const named = service.ports.find((p) => p.name === ref.sectionName);
      if (!named) {
        at.warn.add(
          at.object,
          `${field}.sectionName`,
          'INVALID_VALUE',
          `Service ${namespace}/${ref.name} has no port named ${ref.sectionName}`,
        );
        return;
      }
      port = named.port;
    }
    if (port !== undefined && !service.ports.some((p) => p.port === port)) {
      at.warn.add(
        at.object,
        `${field}.port`,
        'INVALID_VALUE',
        `Service ${namespace}/${ref.name} has no port ${port}`,
      );
      return;
    }
    const prev = out.get(service);
    if (!prev) {
      const a: Attachment = port === undefined ? { service } : { service, ports: new Set([port]) };
      if (consumer) a.consumer = true;
      out.set(service, a);
    } else if (port === undefined) delete prev.ports;
    else prev.ports?.add(port);
  });
  return [...out.values()];
}

interface Attachment {
  service: ServiceInfo;
  ports?: Set<number>;
  consumer?: true;
}

// ---- rule → action ----

interface RuleParts {
  filters: RuleFilters;
  backends: WeightedBackend[];
  /** Why the rule has no usable backend (500), if so. */
  noBackend?: string;
  timeoutMs?: number;
  perTryTimeoutMs?: number;
  retry?: ForwardAction['retry'];
}

function compileRule(
  kind: 'HTTPRoute' | 'GRPCRoute',
  rule: GwHttpRouteRule | GwGrpcRouteRule,
  at: Origin,
  index: ServiceIndex,
): RuleParts {
  const filters = ruleFilters(rule.filters, at, index);
  if (filters.redirect && rule.backendRefs?.length) {
    at.warn.add(
      at.object,
      `${at.field}.backendRefs`,
      'IGNORED',
      'a rule with a RequestRedirect filter sends no traffic to its backendRefs',
    );
  }
  const backends = filters.redirect ? [] : ruleBackends(rule.backendRefs, at, index);
  const parts: RuleParts = { filters, backends };
  if (!filters.redirect) {
    if (!rule.backendRefs?.length) parts.noBackend = 'the rule has no backendRefs';
    else if (backends.length === 0) parts.noBackend = 'every backendRef of the rule has weight 0';
    else if (backends.every((b) => b.invalid)) parts.noBackend = backends[0]!.invalid!.reason;
  }
  if (kind === 'HTTPRoute') {
    const r = rule as GwHttpRouteRule;
    parts.timeoutMs = parseDurationMs(r.timeouts?.request);
    parts.perTryTimeoutMs = parseDurationMs(r.timeouts?.backendRequest);
    parts.retry = gatewayRetry(r.retry, parts.perTryTimeoutMs);
  }
  return parts;
}

function ruleAction(parts: RuleParts, m: CompiledMatch, routeName: string, at: Origin): RouteEntry['action'] {
  const { filters } = parts;
  const pathModifier = filters.rewrite?.path ?? filters.redirect?.path;
  if (pathModifier?.type === 'ReplacePrefixMatch' && m.prefix === undefined) {
    at.warn.add(
      at.object,
      `${at.field}.filters`,
      'INVALID_VALUE',
      'ReplacePrefixMatch needs a PathPrefix match; the path is left unchanged for the other matches',
    );
  }
  if (filters.fail) return deepFreeze({ kind: 'direct', status: 500, routeName, reason: filters.fail });
  if (filters.redirect) return redirectAction(filters.redirect, m, routeName);
  if (parts.noBackend) return deepFreeze({ kind: 'direct', status: 500, routeName, reason: parts.noBackend });
  const action: ForwardAction = {
    kind: 'forward',
    backends: parts.backends,
    requestHeaders: filters.requestHeaders,
    responseHeaders: filters.responseHeaders,
    routeName,
  };
  const rw = filters.rewrite;
  if (rw) {
    const rewrite: NonNullable<ForwardAction['rewrite']> = {};
    if (rw.hostname !== undefined) rewrite.authority = rw.hostname;
    if (rw.path?.type === 'ReplaceFullPath') rewrite.path = rw.path.replaceFullPath ?? '/';
    else if (rw.path?.type === 'ReplacePrefixMatch' && m.prefix !== undefined) {
      rewrite.pathPrefix = { from: m.prefix, to: trimSlash(rw.path.replacePrefixMatch ?? '/') };
    }
    if (Object.keys(rewrite).length > 0) action.rewrite = rewrite;
  }
  if (parts.timeoutMs !== undefined) action.timeoutMs = parts.timeoutMs;
  if (parts.perTryTimeoutMs !== undefined) action.perTryTimeoutMs = parts.perTryTimeoutMs;
  if (parts.retry) action.retry = parts.retry;
  if (filters.mirror.length > 0) action.mirror = filters.mirror;
  return deepFreeze(action);
}

/** Gateway API RequestRedirect: unset port → the scheme's port if a scheme is set, else the listener's (service) port. */
function redirectAction(
  r: NonNullable<RuleFilters['redirect']>,
  m: CompiledMatch,
  routeName: string,
): (req: L7Request) => RouteAction {
  const status = r.statusCode ?? 302;
  return (req) => {
    const scheme = r.scheme ?? 'http';
    const host = r.hostname ?? hostOf(req.authority);
    const port = r.port ?? (r.scheme !== undefined ? defaultPortOf(r.scheme) : req.target.port);
    let path = req.path;
    if (r.path?.type === 'ReplaceFullPath') path = r.path.replaceFullPath ?? '/';
    else if (r.path?.type === 'ReplacePrefixMatch' && m.prefix !== undefined) {
      path = rewritePath(req.path, {
        pathPrefix: { from: m.prefix, to: trimSlash(r.path.replacePrefixMatch ?? '/') },
      });
    }
    return { kind: 'redirect', status, location: formatLocation(scheme, host, port, path, req), routeName };
  };
}

function trimSlash(p: string): string {
  return p.endsWith('/') ? p.slice(0, -1) : p;
}

// ---- matches ----

const CATCH_ALL: GwHttpRouteMatch = { path: { type: 'PathPrefix', value: '/' } };

function httpMatches(matches: GwHttpRouteMatch[] | undefined, at: Origin): CompiledMatch[] {
  const list = matches?.length ? matches : [CATCH_ALL];
  const out: CompiledMatch[] = [];
  list.forEach((m, j) => {
    const field = `${at.field}.matches[${j}]`;
    const tests: ((req: L7Request) => boolean)[] = [];
    const method = m.method;
    if (method !== undefined) tests.push((req) => req.method === method);
    const path = compilePath(m.path ?? CATCH_ALL.path!, { ...at, field: `${field}.path` });
    if (!path) return;
    tests.push(path.test);
    const headers = headerTests(m.headers, { ...at, field: `${field}.headers` });
    const query = queryTests(m.queryParams, { ...at, field: `${field}.queryParams` });
    if (!headers || !query) return;
    tests.push(...headers, ...query);
    out.push({
      test: allOf(tests),
      rank: path.rank,
      length: path.length,
      hasMethod: method !== undefined,
      headers: headers.length,
      query: query.length,
      pathKey: path.pathKey,
      ...(path.prefix !== undefined ? { prefix: path.prefix } : {}),
    });
  });
  return out;
}

type PathMatch = Pick<CompiledMatch, 'test' | 'rank' | 'length' | 'pathKey' | 'prefix'>;

function compilePath(p: NonNullable<GwHttpRouteMatch['path']>, at: Origin): PathMatch | undefined {
  const value = p.value ?? '/';
  switch (p.type ?? 'PathPrefix') {
    case 'Exact':
      return {
        test: (req) => req.path === value,
        rank: RANK_EXACT,
        length: value.length,
        pathKey: { exact: value },
      };
    case 'PathPrefix': {
      const prefix = value === '/' ? '' : trimSlash(value);
      const t = segmentPrefixTest(prefix);
      return {
        test: (req) => t(req.path),
        rank: RANK_PREFIX,
        length: Math.max(prefix.length, 1),
        prefix,
        pathKey: { prefix },
      };
    }
    default: {
      const re = regex(value, at);
      return (
        re && {
          test: (req) => re.test(req.path),
          rank: RANK_REGEX,
          length: value.length,
          pathKey: regexKey(value),
        }
      );
    }
  }
}

function regex(pattern: string, at: Origin): RegExp | undefined {
  const r = compileRe2(pattern);
  if (r.ok) return r.re;
  at.warn.add(
    at.object,
    at.field,
    'INVALID_REGEX',
    `regular expression ${JSON.stringify(pattern)} is not usable (${r.error}); this match never matches`,
  );
  return undefined;
}

/** Header tests; the first entry for a name wins (Gateway API). undefined: a regex is unusable. */
function headerTests(
  list: GwHeaderMatch[] | undefined,
  at: Origin,
): ((req: L7Request) => boolean)[] | undefined {
  const out: ((req: L7Request) => boolean)[] = [];
  const seen = new Set<string>();
  for (const [i, h] of (list ?? []).entries()) {
    const name = h.name.toLowerCase();
    if (seen.has(name)) continue;
    seen.add(name);
    const t = valueTest(h, { ...at, field: `${at.field}[${i}]` });
    if (!t) return undefined;
    out.push((req) => t(headerValue(req.headers[name])));
  }
  return out;
}

function queryTests(
  list: GwHeaderMatch[] | undefined,
  at: Origin,
): ((req: L7Request) => boolean)[] | undefined {
  const out: ((req: L7Request) => boolean)[] = [];
  const seen = new Set<string>();
  for (const [i, q] of (list ?? []).entries()) {
    if (seen.has(q.name)) continue;
    seen.add(q.name);
    const t = valueTest(q, { ...at, field: `${at.field}[${i}]` });
    if (!t) return undefined;
    const name = q.name;
    out.push((req) => t(req.query.get(name) ?? undefined));
  }
  return out;
}

function valueTest(m: GwHeaderMatch, at: Origin): ValueTest | undefined {
  if ((m.type ?? 'Exact') === 'Exact') return exactTest(m.value);
  const re = regex(m.value, at);
  return re && regexTest(re);
}

/** GRPCRoute matches, as paths: service+method → Exact, service → "/svc/" prefix, method → regex. */
function grpcMatches(matches: GwGrpcRouteRule['matches'], at: Origin): CompiledMatch[] {
  const list = matches?.length ? matches : [{}];
  const out: CompiledMatch[] = [];
  list.forEach((m, j) => {
    const field = `${at.field}.matches[${j}]`;
    const path = grpcPath(m.method, { ...at, field: `${field}.method` });
    if (!path) return;
    const headers = headerTests(m.headers, { ...at, field: `${field}.headers` });
    if (!headers) return;
    out.push({
      test: allOf([path.test, ...headers]),
      rank: path.rank,
      length: path.length,
      hasMethod: false,
      headers: headers.length,
      query: 0,
      pathKey: path.pathKey,
    });
  });
  return out;
}

function grpcPath(m: GwGrpcMethodMatch | undefined, at: Origin): PathMatch | undefined {
  const service = m?.service?.replace(/^\./, '');
  const method = m?.method;
  if (service === undefined && method === undefined) {
    return { test: () => true, rank: RANK_PREFIX, length: 1, pathKey: undefined };
  }
  if ((m?.type ?? 'Exact') === 'Exact') {
    if (service !== undefined && method !== undefined) {
      const p = `/${service}/${method}`;
      return { test: (req) => req.path === p, rank: RANK_EXACT, length: p.length, pathKey: { exact: p } };
    }
    if (service !== undefined) {
      const prefix = `/${service}/`;
      const t = prefixTest(prefix);
      return { test: (req) => t(req.path), rank: RANK_PREFIX, length: prefix.length, pathKey: { prefix } };
    }
  }
  const pattern = `/(?:${service ?? '[^/]+'})/(?:${method ?? '[^/]+'})`;
  const re = regex(pattern, at);
  return (
    re && {
      test: (req) => re.test(req.path),
      rank: RANK_REGEX,
      length: pattern.length,
      pathKey: regexKey(pattern),
    }
  );
}

function regexKey(pattern: string): PathKey {
  const literal = regexLiteralPrefix(pattern);
  return literal ? { prefix: literal } : undefined;
}
