// Gateway API rule parts that do not depend on the match: filters (header modifiers, URL
// rewrite, redirect, mirror), backendRefs with weights, timeouts and the experimental retry.
import type { MirrorPolicy, RetryOn, RetryPolicy } from '../resilience/types.js';
import { DEFAULT_RETRY_BACKOFF } from '../resilience/types.js';
import { EMPTY_HEADERS, mergeModifiers } from './actions.js';
import { parseDurationMs } from './duration.js';
import type { ServiceIndex } from './services.js';
import type { GwBackendRef, GwFilter, GwHeaderModifier, GwPathModifier } from './spec-types.js';
import type { BackendRef, HeaderModifier, WeightedBackend } from './types.js';
import type { WarningSink } from './warnings.js';

/** Where a warning goes: the object and the field path of the thing being converted. */
export interface Origin {
  object: string;
  namespace: string;
  field: string;
  warn: WarningSink;
}

export interface RuleFilters {
  requestHeaders: HeaderModifier;
  responseHeaders: HeaderModifier;
  rewrite?: { hostname?: string; path?: GwPathModifier };
  redirect?: NonNullable<GwFilter['requestRedirect']>;
  mirror: MirrorPolicy<BackendRef>[];
  /** A filter ambit cannot apply and must not skip: the rule answers 500 (Gateway API rule). */
  fail?: string;
}

export function headerModifier(m: GwHeaderModifier | undefined): HeaderModifier {
  if (!m) return EMPTY_HEADERS;
  return {
    set: (m.set ?? []).map((p) => ({ name: p.name.toLowerCase(), value: p.value })),
    add: (m.add ?? []).map((p) => ({ name: p.name.toLowerCase(), value: p.value })),
    remove: (m.remove ?? []).map((n) => n.toLowerCase()),
  };
}

export function ruleFilters(filters: GwFilter[] | undefined, at: Origin, index: ServiceIndex): RuleFilters {
  const out: RuleFilters = { requestHeaders: EMPTY_HEADERS, responseHeaders: EMPTY_HEADERS, mirror: [] };
  (filters ?? []).forEach((f, i) => {
    const field = `${at.field}.filters[${i}]`;
    switch (f.type) {
      case 'RequestHeaderModifier':
        out.requestHeaders = mergeModifiers(out.requestHeaders, headerModifier(f.requestHeaderModifier));
        break;
      case 'ResponseHeaderModifier':
        out.responseHeaders = mergeModifiers(out.responseHeaders, headerModifier(f.responseHeaderModifier));
        break;
      case 'URLRewrite':
        out.rewrite = f.urlRewrite;
        break;
      case 'RequestRedirect':
        out.redirect = f.requestRedirect;
        break;
      case 'RequestMirror': {
        const m = f.requestMirror;
        if (!m) break;
        const backend = backendRef(
          m.backendRef,
          { ...at, field: `${field}.requestMirror.backendRef` },
          index,
        );
        if (backend.invalid) break; // already warned; a mirror is best effort
        out.mirror.push({ backend: stripWeight(backend), percent: mirrorPercent(m) });
        break;
      }
      case 'CORS':
        at.warn.add(
          at.object,
          field,
          'UNSUPPORTED_FIELD',
          'the CORS filter is not supported by ambit; ignored',
        );
        break;
      default:
        // ExtensionRef, ExternalAuth: skipping them could let through what they exist to stop.
        out.fail = `filter ${f.type} is not supported by ambit`;
        at.warn.add(
          at.object,
          field,
          'UNSUPPORTED_FIELD',
          `filter ${f.type} is not supported; as the Gateway API requires for a filter that cannot be applied, requests matching this rule get 500`,
        );
    }
  });
  return out;
}

function mirrorPercent(m: NonNullable<GwFilter['requestMirror']>): number {
  let p = 100;
  if (m.percent !== undefined) p = m.percent;
  else if (m.fraction) p = (m.fraction.numerator / (m.fraction.denominator ?? 100)) * 100;
  return Math.min(100, Math.max(0, p));
}

function stripWeight(b: WeightedBackend): BackendRef {
  return { service: b.service, port: b.port };
}

/**
 * One backendRef. Only core Services are supported; anything else is kept as an invalid backend
 * so its share of traffic gets 500, as the Gateway API specifies for refs that do not resolve.
 */
export function backendRef(ref: GwBackendRef, at: Origin, index: ServiceIndex): WeightedBackend {
  const weight = ref.weight ?? 1;
  const group = ref.group ?? '';
  const kind = ref.kind ?? 'Service';
  const namespace = ref.namespace ?? at.namespace;
  const { ref: service, known } = index.refByName(namespace, ref.name);
  const backend: WeightedBackend = { service, port: ref.port ?? 0, weight };
  if ((group !== '' && group !== 'core') || kind !== 'Service') {
    const reason = `backendRef kind ${group ? `${group}/` : ''}${kind} is not supported (only core Services)`;
    at.warn.add(at.object, at.field, 'UNSUPPORTED_FIELD', `${reason}; its share of requests gets 500`);
    return { ...backend, invalid: { status: 500, reason } };
  }
  if (ref.port === undefined) {
    const reason = `backendRef to Service ${namespace}/${ref.name} has no port`;
    at.warn.add(at.object, at.field, 'INVALID_VALUE', `${reason}; its share of requests gets 500`);
    return { ...backend, invalid: { status: 500, reason } };
  }
  // A backendRef to another namespace needs no ReferenceGrant on a route attached to a Service
  // (GEP-1294: mesh routes "can send traffic to backendRefs in any namespace. Unlike Gateway
  // bound routes, this is allowed without a ReferenceGrant"), so it is not worth a warning.
  if (!known) {
    at.warn.add(
      at.object,
      at.field,
      'UNKNOWN_BACKEND',
      weight === 0
        ? `Service ${namespace}/${ref.name} does not exist (its weight is 0, so no request is sent to it)`
        : `Service ${namespace}/${ref.name} does not exist; requests sent to it get 500 (gRPC: UNAVAILABLE) until it does`,
    );
  }
  // A reference to a Service that does not exist is invalid, and the requests that would have
  // been routed to it get 500 (gateway-api apis/v1/httproute_types.go, HTTPRouteRule.BackendRefs:
  // "When a HTTPBackendRef is invalid, 500 status codes MUST be returned ..."); GRPCRoute's
  // rule is UNAVAILABLE instead (grpcroute_types.go, GRPCRouteRule.BackendRefs), which a 503
  // becomes. Decided per request, as the Service may appear later.
  backend.unknownServiceStatus = at.object.startsWith('GRPCRoute/') ? 503 : 500;
  return backend;
}

/** The rule's backends: weight-0 refs dropped (they get no traffic), per-backend filters applied. */
export function ruleBackends(
  refs: GwBackendRef[] | undefined,
  at: Origin,
  index: ServiceIndex,
): WeightedBackend[] {
  const out: WeightedBackend[] = [];
  (refs ?? []).forEach((ref, i) => {
    const field = `${at.field}.backendRefs[${i}]`;
    const b = backendRef(ref, { ...at, field }, index);
    if (b.weight === 0) return;
    (ref.filters ?? []).forEach((f, j) => {
      if (f.type === 'RequestHeaderModifier') {
        b.requestHeaders = mergeModifiers(
          b.requestHeaders ?? EMPTY_HEADERS,
          headerModifier(f.requestHeaderModifier),
        );
      } else if (f.type === 'ResponseHeaderModifier') {
        b.responseHeaders = mergeModifiers(
          b.responseHeaders ?? EMPTY_HEADERS,
          headerModifier(f.responseHeaderModifier),
        );
      } else {
        at.warn.add(
          at.object,
          `${field}.filters[${j}]`,
          'UNSUPPORTED_FIELD',
          `backendRef filter ${f.type} is not supported by ambit; ignored`,
        );
      }
    });
    out.push(b);
  });
  return out;
}

/** HTTPRoute `retry` (GEP-1731), converted as istiod does: 2 attempts unless set; codes retried. */
export function gatewayRetry(
  retry: { codes?: number[]; attempts?: number; backoff?: string } | undefined,
  perTryTimeoutMs: number | undefined,
): RetryPolicy | undefined {
  if (!retry) return undefined;
  const on: RetryOn[] = ['connect-failure', 'refused-stream'];
  const codes = retry.codes ?? [];
  if (codes.length > 0) on.push('retriable-status-codes');
  const baseMs = parseDurationMs(retry.backoff);
  return {
    attempts: retry.attempts ?? 2,
    ...(perTryTimeoutMs !== undefined ? { perTryTimeoutMs } : {}),
    retryOn: new Set(on),
    retriableStatusCodes: [...codes],
    backoff:
      baseMs !== undefined && baseMs > 0 ? { baseMs, maxMs: baseMs * 10 } : { ...DEFAULT_RETRY_BACKOFF },
  };
}
