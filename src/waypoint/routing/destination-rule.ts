// DestinationRule → subsets (endpoint labels) and traffic policy per service, and
// destinationPolicy() for the resilience layer. Istio's merge order is followed: the rule's
// trafficPolicy, overridden field by field (loadBalancer, connectionPool, outlierDetection) by
// its portLevelSettings for the port, then by the subset's trafficPolicy and its port settings.
// When several DestinationRules name one service, the one naming it exactly beats a wildcard,
// then one in the service's namespace, then namespace/name order; the others get a warning.
import type { DestinationRule } from '../../config/types.js';
import { objectKey } from '../../config/types.js';
import type {
  DestinationPolicy,
  LbPolicy,
  OutlierPolicy,
  PoolPolicy,
  RateLimitPolicy,
} from '../resilience/types.js';
import { parseDurationMs } from './duration.js';
import { serviceKey, type PolicySource, type RouteTable } from './route-table.js';
import type { ServiceIndex } from './services.js';
import type { IstioDestinationRuleSpec, IstioTrafficPolicy } from './spec-types.js';
import type { ServiceRef } from './types.js';
import type { WarningSink } from './warnings.js';

/** Istio's default when no DestinationRule sets a load balancer. */
const DEFAULT_LB: LbPolicy = Object.freeze({ kind: 'LEAST_REQUEST' });
const DEFAULT_POLICY: DestinationPolicy = Object.freeze({ lb: DEFAULT_LB });

/** The traffic policy for a service port and subset; Istio's defaults when no DestinationRule applies. */
export function destinationPolicy(
  table: RouteTable,
  service: ServiceRef,
  port?: number,
  subset?: string,
): DestinationPolicy {
  return table.policies.get(serviceKey(service))?.resolve(port, subset) ?? DEFAULT_POLICY;
}

/** One trafficPolicy, converted; absent fields inherit when merged. */
interface PolicyParts {
  lb?: LbPolicy;
  outlier?: OutlierPolicy;
  pool?: PoolPolicy;
  rateLimit?: RateLimitPolicy;
}

/**
 * Local rate limiting has no field in Istio's API (Istio configures Envoy's local_ratelimit
 * through an EnvoyFilter), so ambit reads it from this DestinationRule annotation:
 * `<tokens>/<interval>` with an optional `burst <max>`, e.g. `100/1s` or `10/1s burst 20` —
 * Envoy's token bucket (tokens_per_fill, fill_interval, max_tokens; max defaults to tokens).
 * It applies per waypoint instance to every port and subset of the rule's host.
 */
export const ANNOTATION_LOCAL_RATE_LIMIT = 'ambit.dev/local-rate-limit';
const RATE_LIMIT_FORMAT = /^\s*(\d+)\s*\/\s*(\S+?)(?:\s+burst\s+(\d+))?\s*$/;

/** Parses the annotation; undefined (with a warning) when it is malformed. */
export function parseRateLimit(
  value: string,
  object: string,
  warn: WarningSink,
): RateLimitPolicy | undefined {
  const field = `metadata.annotations["${ANNOTATION_LOCAL_RATE_LIMIT}"]`;
  const m = RATE_LIMIT_FORMAT.exec(value);
  const fillIntervalMs = m ? parseDurationMs(m[2]!) : undefined;
  const tokensPerFill = m ? Number(m[1]) : 0;
  const maxTokens = m?.[3] !== undefined ? Number(m[3]) : tokensPerFill;
  if (
    !m ||
    fillIntervalMs === undefined ||
    fillIntervalMs < 1 ||
    tokensPerFill < 1 ||
    maxTokens < tokensPerFill
  ) {
    warn.add(
      object,
      field,
      'INVALID_VALUE',
      `${JSON.stringify(value)} is not "<tokens>/<interval>[ burst <max>]" with tokens ≥ 1, interval ≥ 1ms and max ≥ tokens (e.g. "100/1s"); no rate limit applied`,
    );
    return undefined;
  }
  return { tokensPerFill, fillIntervalMs, maxTokens };
}

interface ConvertedPolicy {
  base: PolicyParts;
  ports: Map<number, PolicyParts>;
}

export function compileDestinationRules(
  rules: readonly DestinationRule[],
  index: ServiceIndex,
  warn: WarningSink,
): Map<string, PolicySource> {
  const chosen = new Map<string, { rule: DestinationRule; exact: boolean }>();
  for (const rule of rules) {
    const object = objectKey(rule);
    const spec = rule.spec as unknown as IstioDestinationRuleSpec;
    const namespace = rule.metadata.namespace ?? 'default';
    const targets = index.resolveHost(spec.host, namespace);
    if (targets.length === 0) {
      warn.add(object, 'spec.host', 'UNKNOWN_SERVICE', `no service is named by host ${spec.host}`);
    }
    if (spec.workloadSelector !== undefined) {
      warn.add(
        object,
        'spec.workloadSelector',
        'UNSUPPORTED_FIELD',
        'workloadSelector is not supported by ambit; ignored',
      );
    }
    const exact = !spec.host.includes('*');
    for (const svc of targets) {
      const key = serviceKey(svc);
      const prev = chosen.get(key);
      if (!prev || beats({ rule, exact }, prev, svc.namespace)) {
        if (prev) conflict(warn, prev.rule, object, svc.hostname);
        chosen.set(key, { rule, exact });
      } else conflict(warn, rule, objectKey(prev.rule), svc.hostname);
    }
  }
  const converted = new Map<DestinationRule, PolicySource>();
  const out = new Map<string, PolicySource>();
  for (const [key, { rule }] of chosen) {
    let source = converted.get(rule);
    if (!source) converted.set(rule, (source = convertRule(rule, warn)));
    out.set(key, source);
  }
  return out;
}

function beats(
  a: { rule: DestinationRule; exact: boolean },
  b: { rule: DestinationRule; exact: boolean },
  serviceNamespace: string,
): boolean {
  if (a.exact !== b.exact) return a.exact;
  const aLocal = a.rule.metadata.namespace === serviceNamespace;
  const bLocal = b.rule.metadata.namespace === serviceNamespace;
  return aLocal && !bLocal;
}

function conflict(warn: WarningSink, loser: DestinationRule, winner: string, hostname: string): void {
  warn.add(
    objectKey(loser),
    'spec.host',
    'ROUTE_CONFLICT',
    `${winner} also applies to ${hostname} and takes precedence; this DestinationRule is ignored for it`,
  );
}

function convertRule(rule: DestinationRule, warn: WarningSink): PolicySource {
  const object = objectKey(rule);
  const spec = rule.spec as unknown as IstioDestinationRuleSpec;
  const top = convertPolicy(spec.trafficPolicy, object, 'spec.trafficPolicy', warn);
  const limit = rule.metadata.annotations?.[ANNOTATION_LOCAL_RATE_LIMIT];
  if (limit !== undefined) {
    const rateLimit = parseRateLimit(limit, object, warn);
    if (rateLimit) top.base.rateLimit = rateLimit;
  }
  const subsets = new Map<string, Record<string, string>>();
  const subsetPolicies = new Map<string, ConvertedPolicy>();
  (spec.subsets ?? []).forEach((s, i) => {
    subsets.set(s.name, { ...(s.labels ?? {}) });
    if (s.trafficPolicy) {
      subsetPolicies.set(
        s.name,
        convertPolicy(s.trafficPolicy, object, `spec.subsets[${i}].trafficPolicy`, warn),
      );
    }
  });
  const cache = new Map<string, DestinationPolicy>();
  return {
    object,
    subsets,
    resolve(port, subset) {
      const key = `${port ?? ''}|${subset ?? ''}`;
      let p = cache.get(key);
      if (!p) {
        const layers = [top, subset === undefined ? undefined : subsetPolicies.get(subset)];
        let merged: PolicyParts = {};
        for (const layer of layers) {
          if (!layer) continue;
          merged = { ...merged, ...layer.base };
          const atPort = port === undefined ? undefined : layer.ports.get(port);
          if (atPort) merged = { ...merged, ...atPort };
        }
        p = Object.freeze({ ...merged, lb: merged.lb ?? DEFAULT_LB });
        cache.set(key, p);
      }
      return p;
    },
  };
}

const POLICY_FIELDS = ['loadBalancer', 'connectionPool', 'outlierDetection', 'tls', 'portLevelSettings'];

function convertPolicy(
  tp: IstioTrafficPolicy | undefined,
  object: string,
  field: string,
  warn: WarningSink,
): ConvertedPolicy {
  const out: ConvertedPolicy = { base: {}, ports: new Map() };
  if (!tp) return out;
  out.base = convertParts(tp, object, field, warn);
  warn.unknownFields(object, field, tp, POLICY_FIELDS);
  (tp.portLevelSettings ?? []).forEach((pl, i) => {
    const f = `${field}.portLevelSettings[${i}]`;
    warn.unknownFields(object, f, pl, [...POLICY_FIELDS.filter((k) => k !== 'portLevelSettings'), 'port']);
    const port = pl.port?.number;
    if (port === undefined) {
      warn.add(object, `${f}.port`, 'INVALID_VALUE', 'port.number is required; these settings are ignored');
      return;
    }
    out.ports.set(port, convertParts(pl, object, f, warn));
  });
  return out;
}

function convertParts(tp: IstioTrafficPolicy, object: string, field: string, warn: WarningSink): PolicyParts {
  const parts: PolicyParts = {};
  if (tp.loadBalancer) {
    const lb = loadBalancer(tp.loadBalancer, object, `${field}.loadBalancer`, warn);
    if (lb) parts.lb = lb;
  }
  if (tp.outlierDetection)
    parts.outlier = outlier(tp.outlierDetection, object, `${field}.outlierDetection`, warn);
  if (tp.connectionPool) parts.pool = pool(tp.connectionPool, object, `${field}.connectionPool`, warn);
  const mode = tp.tls?.mode;
  if (mode !== undefined && mode !== 'ISTIO_MUTUAL') {
    warn.add(
      object,
      `${field}.tls.mode`,
      'UNSUPPORTED_FIELD',
      `tls mode ${mode} is ignored: waypoint-to-workload traffic always uses HBONE mutual TLS`,
    );
  }
  return parts;
}

function loadBalancer(
  lb: NonNullable<IstioTrafficPolicy['loadBalancer']>,
  object: string,
  field: string,
  warn: WarningSink,
): LbPolicy | undefined {
  warn.unknownFields(object, field, lb, ['simple', 'consistentHash']);
  const ch = lb.consistentHash;
  if (ch) {
    const f = `${field}.consistentHash`;
    warn.unknownFields(object, f, ch, ['httpHeaderName', 'httpCookie', 'useSourceIp']);
    if (lb.simple !== undefined) {
      warn.add(
        object,
        `${field}.simple`,
        'IGNORED',
        'simple and consistentHash are exclusive; consistentHash is used',
      );
    }
    if (ch.httpHeaderName)
      return { kind: 'CONSISTENT_HASH', by: { header: ch.httpHeaderName.toLowerCase() } };
    if (ch.httpCookie) {
      const ttlMs = parseDurationMs(ch.httpCookie.ttl);
      return {
        kind: 'CONSISTENT_HASH',
        by: ttlMs === undefined ? { cookie: ch.httpCookie.name } : { cookie: ch.httpCookie.name, ttlMs },
      };
    }
    if (ch.useSourceIp) return { kind: 'CONSISTENT_HASH', by: { sourceIp: true } };
    warn.add(
      object,
      f,
      'UNSUPPORTED_FIELD',
      'no supported hash key (httpHeaderName, httpCookie, useSourceIp); the default load balancer is used',
    );
    return undefined;
  }
  switch (lb.simple) {
    case undefined:
    case 'UNSPECIFIED':
      return undefined;
    case 'ROUND_ROBIN':
    case 'LEAST_REQUEST':
    case 'RANDOM':
      return { kind: lb.simple };
    case 'LEAST_CONN': // Istio's deprecated name for LEAST_REQUEST
      return { kind: 'LEAST_REQUEST' };
    default:
      warn.add(
        object,
        `${field}.simple`,
        'UNSUPPORTED_FIELD',
        `load balancer ${lb.simple} is not supported; LEAST_REQUEST is used`,
      );
      return undefined;
  }
}

function outlier(
  od: NonNullable<IstioTrafficPolicy['outlierDetection']>,
  object: string,
  field: string,
  warn: WarningSink,
): OutlierPolicy {
  warn.unknownFields(object, field, od, [
    'consecutive5xxErrors',
    'consecutiveGatewayErrors',
    'interval',
    'baseEjectionTime',
    'maxEjectionPercent',
  ]);
  // Istio: consecutive5xxErrors defaults to 5 and 0 turns it off; gateway errors are off unless set.
  const c5xx = od.consecutive5xxErrors ?? 5;
  const cgw = od.consecutiveGatewayErrors ?? 0;
  const out: OutlierPolicy = {
    intervalMs: parseDurationMs(od.interval) ?? 10_000,
    baseEjectionMs: parseDurationMs(od.baseEjectionTime) ?? 30_000,
    maxEjectionPercent: od.maxEjectionPercent ?? 10,
  };
  if (c5xx > 0) out.consecutive5xx = c5xx;
  if (cgw > 0) out.consecutiveGatewayErrors = cgw;
  return out;
}

function pool(
  cp: NonNullable<IstioTrafficPolicy['connectionPool']>,
  object: string,
  field: string,
  warn: WarningSink,
): PoolPolicy {
  warn.unknownFields(object, field, cp, ['tcp', 'http']);
  warn.unknownFields(object, `${field}.tcp`, cp.tcp, ['maxConnections']);
  warn.unknownFields(object, `${field}.http`, cp.http, [
    'http1MaxPendingRequests',
    'http2MaxRequests',
    'maxRequestsPerConnection',
    'idleTimeout',
  ]);
  const out: PoolPolicy = {};
  if (cp.tcp?.maxConnections !== undefined) out.maxConnections = cp.tcp.maxConnections;
  if (cp.http?.http1MaxPendingRequests !== undefined)
    out.http1MaxPendingRequests = cp.http.http1MaxPendingRequests;
  if (cp.http?.http2MaxRequests !== undefined) out.http2MaxRequests = cp.http.http2MaxRequests;
  if (cp.http?.maxRequestsPerConnection !== undefined)
    out.maxRequestsPerConnection = cp.http.maxRequestsPerConnection;
  const idle = parseDurationMs(cp.http?.idleTimeout);
  if (idle !== undefined) out.idleTimeoutMs = idle;
  return out;
}
