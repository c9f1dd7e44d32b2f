// Policy shapes for the waypoint's resilience features (issue 4, part 5).
// W2 (routing) fills these from HTTPRoute / VirtualService / DestinationRule; the deciders in
// this folder read them. They are internal types: validation and defaults happen at the edge
// (routing compiles them), so every field here is already checked.

/** A value of Envoy's `retry_on` / Istio's `retries.retryOn` that ambit supports. */
export type RetryOn =
  | '5xx'
  | 'gateway-error'
  | 'connect-failure'
  | 'reset'
  | 'retriable-4xx'
  | 'refused-stream'
  | 'retriable-status-codes'
  // gRPC (Envoy `x-envoy-retry-grpc-on`): the grpc-status of a trailers-only response
  | 'cancelled'
  | 'deadline-exceeded'
  | 'internal'
  | 'resource-exhausted'
  | 'unavailable';

/** Every supported `retryOn` value, for validation at the edge. */
export const RETRY_ON_VALUES: readonly RetryOn[] = [
  '5xx',
  'gateway-error',
  'connect-failure',
  'reset',
  'retriable-4xx',
  'refused-stream',
  'retriable-status-codes',
  'cancelled',
  'deadline-exceeded',
  'internal',
  'resource-exhausted',
  'unavailable',
];

/** gRPC retryOn values and the grpc-status each retries (Envoy `RetryStateImpl`). */
export const GRPC_RETRY_ON: ReadonlyMap<RetryOn, number> = new Map<RetryOn, number>([
  ['cancelled', 1],
  ['deadline-exceeded', 4],
  ['resource-exhausted', 8],
  ['internal', 13],
  ['unavailable', 14],
]);

export interface RetryBackoff {
  /** Envoy `base_interval`, default 25 ms. */
  baseMs: number;
  /** Envoy `max_interval`, default 10 × base = 250 ms. */
  maxMs: number;
}

export interface RetryPolicy {
  /** Retries after the first try (Istio `attempts`, Envoy `num_retries`): 2 means up to 3 tries. */
  attempts: number;
  perTryTimeoutMs?: number;
  retryOn: Set<RetryOn>;
  /** HTTP statuses retried when `retryOn` has `retriable-status-codes`. */
  retriableStatusCodes: number[];
  backoff: RetryBackoff;
}

/** Envoy's default retry backoff (base 25 ms, max 10 × base). */
export const DEFAULT_RETRY_BACKOFF: Readonly<RetryBackoff> = { baseMs: 25, maxMs: 250 };

/**
 * Istio's default retry policy when a route sets none: 2 retries on connect-failure,
 * refused-stream, gRPC unavailable and cancelled, and 503.
 */
export function defaultRetryPolicy(): RetryPolicy {
  return {
    attempts: 2,
    retryOn: new Set<RetryOn>([
      'connect-failure',
      'refused-stream',
      'unavailable',
      'cancelled',
      'retriable-status-codes',
    ]),
    retriableStatusCodes: [503],
    backoff: { ...DEFAULT_RETRY_BACKOFF },
  };
}

export interface FaultPolicy {
  /** Delay this percentage (0–100) of requests by `ms`. */
  delay?: { percent: number; ms: number };
  /** Answer this percentage (0–100) of requests with `status` without contacting a backend. */
  abort?: { percent: number; status: number };
}

export type ConsistentHashKey = { header: string } | { cookie: string; ttlMs?: number } | { sourceIp: true };

export type LbPolicy =
  { kind: 'ROUND_ROBIN' | 'LEAST_REQUEST' | 'RANDOM' } | { kind: 'CONSISTENT_HASH'; by: ConsistentHashKey };

export interface OutlierPolicy {
  /** Eject after this many consecutive 5xx (502/503/504 and connect failures count too). */
  consecutive5xx?: number;
  /** Eject after this many consecutive gateway errors (502/503/504, connect failures). */
  consecutiveGatewayErrors?: number;
  /** How often ejections are re-evaluated (Istio `interval`, default 10 s). */
  intervalMs: number;
  /** Ejection time = base × times ejected (Istio `baseEjectionTime`, default 30 s). */
  baseEjectionMs: number;
  /** Upper bound on ejected endpoints, percent of the set (Istio default 10). */
  maxEjectionPercent: number;
}

export interface PoolPolicy {
  /** Max concurrent upstream connections (Istio `tcp.maxConnections`). */
  maxConnections?: number;
  /** Max requests queued waiting for a connection (Istio `http.http1MaxPendingRequests`). */
  http1MaxPendingRequests?: number;
  /** Max concurrent requests to the destination (Istio `http.http2MaxRequests`). */
  http2MaxRequests?: number;
  /** Requests per connection before it is closed (Istio `http.maxRequestsPerConnection`). */
  maxRequestsPerConnection?: number;
  /** How long an upstream connection may stay idle in the pool (Istio `http.idleTimeout`). */
  idleTimeoutMs?: number;
}

export interface RateLimitPolicy {
  tokensPerFill: number;
  fillIntervalMs: number;
  maxTokens: number;
}

/** Mirror a share of requests to another backend; `B` is the routing layer's backend reference. */
export interface MirrorPolicy<B = unknown> {
  backend: B;
  /** 0–100; Istio's default when a mirror is set without a percentage is 100. */
  percent: number;
}

/** Per-destination policy from a DestinationRule's trafficPolicy. */
export interface DestinationPolicy {
  lb: LbPolicy;
  outlier?: OutlierPolicy;
  pool?: PoolPolicy;
  rateLimit?: RateLimitPolicy;
}

/** A source of uniformly distributed numbers in [0, 1), like Math.random; injected for tests. */
export type RandomSource = () => number;

/** Milliseconds on a monotonic clock; injected for tests. */
export type Clock = () => number;

/**
 * Why an upstream attempt produced no response: failed to connect, reset (or disconnected)
 * before the response headers, an HTTP/2 REFUSED_STREAM, a per-try or route timeout, or a
 * local pool/circuit-breaker overflow (which Envoy never retries).
 */
export type UpstreamError = 'connect-failure' | 'reset' | 'refused-stream' | 'timeout' | 'overflow';

/** What one upstream attempt came to: a response status, or an error before any response. */
export interface AttemptOutcome {
  status?: number;
  /** grpc-status of a trailers-only gRPC response (the status is known with the headers). */
  grpcStatus?: number;
  error?: UpstreamError;
}
