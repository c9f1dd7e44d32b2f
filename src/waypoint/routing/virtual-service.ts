// Istio VirtualService `http` routes → route entries in first-match order (the order written:
// Istio never reorders them). Each match of a route becomes one entry, so a rewrite knows which
// prefix matched. Only VirtualServices that apply to the mesh (no `gateways`, or "mesh" among
// them) are read; subsets resolve through the service's DestinationRule.
import type { VirtualService } from '../../config/types.js';
import { objectKey } from '../../config/types.js';
import type { FaultPolicy, MirrorPolicy } from '../resilience/types.js';
import {
  EMPTY_HEADERS,
  allOf,
  deepFreeze,
  defaultPortOf,
  formatLocation,
  hostOf,
  maxSubstitutionGroup,
  portOf,
} from './actions.js';
import { parseDurationMs } from './duration.js';
import { istioRetry } from './istio-retry.js';
import { regexLiteralPrefix, type PathKey } from './route-index.js';
import type { PolicySource, RouteEntry } from './route-table.js';
import { serviceKey } from './route-table.js';
import type { ServiceIndex } from './services.js';
import type {
  IstioDestination,
  IstioHeaderOps,
  IstioHttpMatch,
  IstioHttpRoute,
  IstioStringMatch,
  IstioVirtualServiceSpec,
} from './spec-types.js';
import { compileRe2, exactTest, headerValue, prefixTest, presentTest, regexTest } from './string-match.js';
import type { ValueTest } from './string-match.js';
import type {
  BackendRef,
  ForwardAction,
  HeaderModifier,
  L7Request,
  Rewrite,
  RouteAction,
  ServiceInfo,
  WeightedBackend,
} from './types.js';
import type { WarningSink } from './warnings.js';

interface Ctx {
  object: string;
  namespace: string;
  warn: WarningSink;
  index: ServiceIndex;
  policies: ReadonlyMap<string, PolicySource>;
}

/** Whether a VirtualService applies to mesh traffic (and so to waypoints). */
export function appliesToMesh(vs: VirtualService): boolean {
  const gateways = (vs.spec as IstioVirtualServiceSpec).gateways;
  return !gateways?.length || gateways.includes('mesh');
}

/** The services a VirtualService's hosts name. */
export function virtualServiceTargets(
  vs: VirtualService,
  index: ServiceIndex,
  warn: WarningSink,
): ServiceInfo[] {
  const spec = vs.spec as IstioVirtualServiceSpec;
  const namespace = vs.metadata.namespace ?? 'default';
  const out = new Set<ServiceInfo>();
  (spec.hosts ?? []).forEach((h, i) => {
    const found = index.resolveHost(h, namespace);
    if (found.length === 0) {
      warn.add(objectKey(vs), `spec.hosts[${i}]`, 'UNKNOWN_SERVICE', `no service is named by host ${h}`);
    }
    for (const s of found) out.add(s);
  });
  return [...out];
}

/** Every entry of the VirtualService, in the order Istio tries them. */
export function compileVirtualService(
  vs: VirtualService,
  index: ServiceIndex,
  policies: ReadonlyMap<string, PolicySource>,
  warn: WarningSink,
): RouteEntry[] {
  const object = objectKey(vs);
  const spec = vs.spec as IstioVirtualServiceSpec;
  const ctx: Ctx = { object, namespace: vs.metadata.namespace ?? 'default', warn, index, policies };
  warn.unknownFields(object, 'spec', spec, ['hosts', 'gateways', 'http', 'exportTo']);
  const out: RouteEntry[] = [];
  (spec.http ?? []).forEach((route, i) => {
    const field = `spec.http[${i}]`;
    const routeName = `${object}:${route.name ?? `http[${i}]`}`;
    warn.unknownFields(object, field, route, [
      'name',
      'match',
      'route',
      'redirect',
      'directResponse',
      'rewrite',
      'timeout',
      'retries',
      'fault',
      'mirror',
      'mirrorPercentage',
      'mirrors',
      'headers',
    ]);
    if (route.delegate !== undefined) return; // reported above as unsupported: the route is skipped
    const shared = routeParts(route, ctx, field);
    const matches = route.match?.length ? route.match : [undefined];
    matches.forEach((m, j) => {
      const test = m ? compileMatch(m, ctx, `${field}.match[${j}]`) : () => true;
      if (!test) return;
      out.push({ test, action: routeAction(route, m, shared, routeName), pathKey: uriKey(m) });
    });
  });
  return out;
}

// ---- matches ----

/** What the path must be or start with, for the route index (case-insensitive matches: nothing). */
function uriKey(m: IstioHttpMatch | undefined): PathKey {
  const uri = m?.uri;
  if (!uri || m.ignoreUriCase) return undefined;
  if (uri.exact !== undefined) return { exact: uri.exact };
  if (uri.prefix !== undefined) return { prefix: uri.prefix };
  if (uri.regex !== undefined) {
    const literal = regexLiteralPrefix(uri.regex);
    return literal ? { prefix: literal } : undefined;
  }
  return undefined;
}

const MATCH_FIELDS = [
  'name',
  'uri',
  'scheme',
  'method',
  'authority',
  'headers',
  'withoutHeaders',
  'queryParams',
  'port',
  'ignoreUriCase',
  'gateways',
];

/** The match's test; undefined when it can never match here (reported). */
function compileMatch(m: IstioHttpMatch, ctx: Ctx, field: string): ((req: L7Request) => boolean) | undefined {
  const { warn, object } = ctx;
  warn.unknownFields(object, field, m, MATCH_FIELDS);
  for (const k of ['sourceLabels', 'sourceNamespace'] as const) {
    if (m[k] !== undefined) {
      warn.add(
        object,
        `${field}.${k}`,
        'UNSUPPORTED_FIELD',
        `a waypoint cannot match on ${k}; this match never matches`,
      );
      return undefined;
    }
  }
  if (m.gateways?.length && !m.gateways.includes('mesh')) return undefined; // for gateways, not the mesh
  const tests: ((req: L7Request) => boolean)[] = [];
  const port = m.port;
  if (port !== undefined) tests.push((req) => req.target.port === port);
  const fail = (f: string) => ({ ...ctx, field: `${field}.${f}` });
  if (m.method) {
    const t = stringTest(m.method, fail('method'));
    if (!t) return undefined;
    tests.push((req) => t(req.method));
  }
  if (m.uri) {
    const t = stringTest(m.uri, fail('uri'), m.ignoreUriCase === true);
    if (!t) return undefined;
    tests.push((req) => t(req.path));
  }
  if (m.scheme) {
    const t = stringTest(m.scheme, fail('scheme'));
    if (!t) return undefined;
    tests.push(() => t('http')); // the waypoint receives plain HTTP inside the tunnel
  }
  if (m.authority) {
    const t = stringTest(m.authority, fail('authority'));
    if (!t) return undefined;
    tests.push((req) => t(req.authority));
  }
  for (const [name, sm] of Object.entries(m.headers ?? {})) {
    const t = stringTest(sm, fail(`headers.${name}`), false, true);
    if (!t) return undefined;
    const key = name.toLowerCase();
    tests.push((req) => t(headerValue(req.headers[key])));
  }
  for (const [name, sm] of Object.entries(m.withoutHeaders ?? {})) {
    const t = stringTest(sm, fail(`withoutHeaders.${name}`), false, true);
    if (!t) return undefined;
    const key = name.toLowerCase();
    tests.push((req) => !t(headerValue(req.headers[key])));
  }
  for (const [name, sm] of Object.entries(m.queryParams ?? {})) {
    const t = stringTest(sm, fail(`queryParams.${name}`), false, true);
    if (!t) return undefined;
    tests.push((req) => t(req.query.get(name) ?? undefined));
  }
  return allOf(tests);
}

/** Istio StringMatch; `{}` means "present" where Istio allows it (headers, query parameters). */
function stringTest(
  sm: IstioStringMatch,
  at: Ctx & { field: string },
  ignoreCase = false,
  emptyIsPresence = false,
): ValueTest | undefined {
  if (sm.exact !== undefined) return exactTest(sm.exact, ignoreCase);
  if (sm.prefix !== undefined) return prefixTest(sm.prefix, ignoreCase);
  if (sm.regex !== undefined) {
    const r = compileRe2(sm.regex, ignoreCase);
    if (r.ok) return regexTest(r.re);
    at.warn.add(
      at.object,
      at.field,
      'INVALID_REGEX',
      `regular expression ${JSON.stringify(sm.regex)} is not usable (${r.error}); this match never matches`,
    );
    return undefined;
  }
  return emptyIsPresence ? presentTest : () => true;
}

// ---- actions ----

/** What every match of the route shares. */
interface RouteParts {
  backends?: WeightedBackend[];
  /** Why the route has no usable destination (answered with 503), if so. */
  noBackend?: string;
  /** The backends leave the port to the request (destination without port.number). */
  portFromRequest: boolean;
  requestHeaders: HeaderModifier;
  responseHeaders: HeaderModifier;
  timeoutMs?: number;
  retry?: ForwardAction['retry'];
  fault?: FaultPolicy;
  mirror: MirrorPolicy<BackendRef>[];
  regexRewrite?: NonNullable<Rewrite['regex']>;
}

function routeParts(route: IstioHttpRoute, ctx: Ctx, field: string): RouteParts {
  const parts: RouteParts = {
    portFromRequest: false,
    requestHeaders: istioHeaders(route.headers?.request),
    responseHeaders: istioHeaders(route.headers?.response),
    mirror: [],
  };
  if (route.route) {
    const anyWeight = route.route.some((d) => d.weight !== undefined);
    const backends: WeightedBackend[] = [];
    route.route.forEach((d, i) => {
      const f = `${field}.route[${i}]`;
      const weight = anyWeight ? (d.weight ?? 0) : 1;
      if (weight === 0) return;
      const b = destination(d.destination, ctx, `${f}.destination`);
      if (b.port === 0) parts.portFromRequest = true;
      const wb: WeightedBackend = { ...b, weight };
      if (d.headers?.request) wb.requestHeaders = istioHeaders(d.headers.request);
      if (d.headers?.response) wb.responseHeaders = istioHeaders(d.headers.response);
      backends.push(wb);
    });
    if (backends.length === 0) parts.noBackend = 'every destination of the route has weight 0';
    else if (backends.every((b) => b.invalid)) parts.noBackend = backends[0]!.invalid!.reason;
    parts.backends = backends;
  }
  parts.timeoutMs = parseDurationMs(route.timeout);
  if (route.retries) {
    ctx.warn.unknownFields(ctx.object, `${field}.retries`, route.retries, [
      'attempts',
      'perTryTimeout',
      'retryOn',
      'backoff',
      'retryRemoteLocalities',
    ]);
    parts.retry = istioRetry(route.retries, (msg, sub) =>
      ctx.warn.add(ctx.object, `${field}.retries${sub}`, 'UNSUPPORTED_FIELD', msg),
    );
  }
  if (route.fault) parts.fault = fault(route.fault, ctx, `${field}.fault`);
  const mirrors: { destination: IstioDestination; percent?: number; field: string }[] = [];
  if (route.mirror)
    mirrors.push({
      destination: route.mirror,
      percent: route.mirrorPercentage?.value,
      field: `${field}.mirror`,
    });
  (route.mirrors ?? []).forEach((m, i) =>
    mirrors.push({
      destination: m.destination,
      percent: m.percentage?.value,
      field: `${field}.mirrors[${i}]`,
    }),
  );
  for (const m of mirrors) {
    const b = destination(m.destination, ctx, m.field);
    if (b.invalid || b.port === 0) {
      if (b.port === 0) {
        ctx.warn.add(
          ctx.object,
          m.field,
          'INVALID_VALUE',
          'a mirror to a service with several ports needs port.number; ignored',
        );
      }
      continue;
    }
    const { invalid: _i, ...ref } = b;
    parts.mirror.push({ backend: ref, percent: Math.min(100, Math.max(0, m.percent ?? 100)) });
  }
  const rr = route.rewrite?.uriRegexRewrite;
  if (rr !== undefined) {
    const at = `${field}.rewrite.uriRegexRewrite`;
    const r = compileRe2(rr.match ?? '', false, true);
    // The pattern's capture group count: an empty alternative always matches, with every group unset.
    const groups = r.ok ? new RegExp(`${r.re.source}|`, r.re.flags.replace('g', '')).exec('')!.length - 1 : 0;
    if (route.rewrite?.uri !== undefined) {
      ctx.warn.add(
        ctx.object,
        at,
        'INVALID_VALUE',
        'uri and uriRegexRewrite cannot both be set (Istio refuses it); uriRegexRewrite ignored',
      );
    } else if (!rr.match || !rr.rewrite) {
      // Istio's validation (pilot/pkg/config/validation validateHTTPRewrite, validateURIRegexRewrite)
      // refuses uri beside uriRegexRewrite and an empty match or rewrite; here a warning.
      ctx.warn.add(ctx.object, at, 'INVALID_VALUE', 'uriRegexRewrite needs both match and rewrite; ignored');
    } else if (!r.ok) {
      ctx.warn.add(
        ctx.object,
        at,
        'INVALID_REGEX',
        `regular expression ${JSON.stringify(rr.match)} is not usable (${r.error}); the rewrite is ignored`,
      );
    } else if (maxSubstitutionGroup(rr.rewrite) > groups) {
      ctx.warn.add(
        ctx.object,
        at,
        'INVALID_VALUE',
        `rewrite ${JSON.stringify(rr.rewrite)} refers to a capture group the pattern does not have (${groups}); ignored`,
      );
    } else {
      parts.regexRewrite = { pattern: r.re, substitution: rr.rewrite };
    }
  }
  return parts;
}

function routeAction(
  route: IstioHttpRoute,
  m: IstioHttpMatch | undefined,
  parts: RouteParts,
  routeName: string,
): RouteEntry['action'] {
  if (route.directResponse) {
    const headers: Record<string, string> = {};
    for (const p of [...parts.responseHeaders.set, ...parts.responseHeaders.add]) headers[p.name] = p.value;
    const body = route.directResponse.body;
    const text =
      body?.string ?? (body?.bytes !== undefined ? Buffer.from(body.bytes, 'base64').toString() : undefined);
    return deepFreeze({
      kind: 'direct',
      status: route.directResponse.status,
      routeName,
      ...(text !== undefined ? { body: text } : {}),
      ...(Object.keys(headers).length ? { headers } : {}),
    });
  }
  if (route.redirect) return redirectAction(route.redirect, parts, routeName);
  if (parts.noBackend || !parts.backends) {
    return deepFreeze({
      kind: 'direct',
      status: 503,
      routeName,
      reason: parts.noBackend ?? 'no destination',
    });
  }
  const action: ForwardAction = {
    kind: 'forward',
    backends: parts.backends,
    requestHeaders: parts.requestHeaders,
    responseHeaders: parts.responseHeaders,
    routeName,
  };
  const rw = route.rewrite;
  if (rw && (rw.uri !== undefined || rw.authority !== undefined || parts.regexRewrite)) {
    const rewrite: NonNullable<ForwardAction['rewrite']> = {};
    if (rw.authority !== undefined) rewrite.authority = rw.authority;
    if (rw.uri !== undefined) {
      // Envoy prefix_rewrite: the matched prefix is replaced; an exact or regex match matched the whole path.
      if (m?.uri?.exact !== undefined || m?.uri?.regex !== undefined) rewrite.path = rw.uri;
      else rewrite.pathPrefix = { from: m?.uri?.prefix ?? '/', to: rw.uri };
    } else if (parts.regexRewrite) rewrite.regex = parts.regexRewrite;
    action.rewrite = rewrite;
  }
  if (parts.timeoutMs !== undefined) action.timeoutMs = parts.timeoutMs;
  if (parts.retry) {
    action.retry = parts.retry;
    if (parts.retry.perTryTimeoutMs !== undefined) action.perTryTimeoutMs = parts.retry.perTryTimeoutMs;
  }
  if (parts.fault) action.fault = parts.fault;
  if (parts.mirror.length > 0) action.mirror = parts.mirror;
  if (!parts.portFromRequest) return deepFreeze(action);
  deepFreeze(action.requestHeaders);
  return (req) => ({
    ...action,
    backends: action.backends.map((b) => (b.port === 0 ? { ...b, port: req.target.port } : b)),
  });
}

function redirectAction(
  r: NonNullable<IstioHttpRoute['redirect']>,
  parts: RouteParts,
  routeName: string,
): (req: L7Request) => RouteAction {
  const status = r.redirectCode ?? 301;
  const responseHeaders = parts.responseHeaders;
  return (req) => {
    const scheme = r.scheme ?? 'http';
    const host = r.authority !== undefined ? hostOf(r.authority) : hostOf(req.authority);
    let port = r.authority !== undefined ? portOf(r.authority) : portOf(req.authority);
    if (r.port !== undefined) port = r.port;
    else if (r.derivePort === 'FROM_REQUEST_PORT') port = req.target.port;
    else if (r.derivePort === 'FROM_PROTOCOL_DEFAULT' || r.scheme !== undefined) port = defaultPortOf(scheme);
    const location = formatLocation(scheme, host, port, r.uri ?? req.path, req);
    return {
      kind: 'redirect',
      status,
      location,
      routeName,
      ...(responseHeaders !== EMPTY_HEADERS ? { responseHeaders } : {}),
    };
  };
}

function istioHeaders(ops: IstioHeaderOps | undefined): HeaderModifier {
  if (!ops) return EMPTY_HEADERS;
  const pairs = (r: Record<string, string> | undefined) =>
    Object.entries(r ?? {}).map(([name, value]) => ({ name: name.toLowerCase(), value: String(value) }));
  return { set: pairs(ops.set), add: pairs(ops.add), remove: (ops.remove ?? []).map((n) => n.toLowerCase()) };
}

/** A route destination as a backend; port 0 = take the request's port. */
function destination(d: IstioDestination, ctx: Ctx, field: string): WeightedBackend {
  const { index, warn, object } = ctx;
  const found = d.host.includes('*') ? [] : index.resolveHost(d.host, ctx.namespace);
  const svc = found[0];
  const service = svc
    ? { namespace: svc.namespace, hostname: svc.hostname }
    : index.guessRef(d.host, ctx.namespace);
  if (!svc) {
    warn.add(
      object,
      `${field}.host`,
      'UNKNOWN_BACKEND',
      `no service is named by host ${d.host}; requests sent to it get 503 until one is`,
    );
  }
  let port = d.port?.number;
  if (port === undefined && svc?.ports.length === 1) port = svc.ports[0]!.port;
  const b: WeightedBackend = { service, port: port ?? 0, weight: 1 };
  if (d.subset === undefined) return b;
  const policy = ctx.policies.get(serviceKey(service));
  const labels = policy?.subsets.get(d.subset);
  if (!labels) {
    const reason = policy
      ? `subset ${d.subset} is not defined by ${policy.object}`
      : `subset ${d.subset} of ${service.hostname} needs a DestinationRule, and none applies to it`;
    warn.add(
      object,
      `${field}.subset`,
      policy ? 'UNKNOWN_SUBSET' : 'NO_DESTINATION_RULE',
      `${reason}; requests sent to it get 503`,
    );
    return { ...b, subsetName: d.subset, invalid: { status: 503, reason } };
  }
  return { ...b, subset: labels, subsetName: d.subset };
}

function fault(f: NonNullable<IstioHttpRoute['fault']>, ctx: Ctx, field: string): FaultPolicy | undefined {
  const out: FaultPolicy = {};
  const { warn, object } = ctx;
  warn.unknownFields(object, field, f, ['delay', 'abort']);
  // Istio: "If left unspecified, no request will be delayed / aborted": a fault without a
  // percentage does nothing, which is rarely what was meant, so it is reported.
  const percent = (v: number | undefined, f2: string) => {
    if (v === undefined)
      warn.add(
        object,
        `${field}.${f2}.percentage`,
        'INVALID_VALUE',
        'no percentage: as in Istio, no request is affected',
      );
    return Math.min(100, Math.max(0, v ?? 0));
  };
  if (f.delay) {
    warn.unknownFields(object, `${field}.delay`, f.delay, ['fixedDelay', 'percentage', 'percent']);
    const ms = parseDurationMs(f.delay.fixedDelay);
    if (ms === undefined) {
      warn.add(
        object,
        `${field}.delay.fixedDelay`,
        'INVALID_VALUE',
        'fixedDelay is required; no delay is injected',
      );
    } else out.delay = { percent: percent(f.delay.percentage?.value ?? f.delay.percent, 'delay'), ms };
  }
  if (f.abort) {
    warn.unknownFields(object, `${field}.abort`, f.abort, ['httpStatus', 'percentage']);
    if (f.abort.httpStatus === undefined) {
      warn.add(
        object,
        `${field}.abort.httpStatus`,
        'INVALID_VALUE',
        'httpStatus is required (grpcStatus and http2Error are not supported); no abort is injected',
      );
    } else out.abort = { percent: percent(f.abort.percentage?.value, 'abort'), status: f.abort.httpStatus };
  }
  return out.delay || out.abort ? out : undefined;
}
