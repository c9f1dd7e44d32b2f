// Istio `retries` → RetryPolicy, as istiod converts them (pilot/pkg/networking/core/route/retry):
// attempts <= 0 turns retries off; an unset retryOn keeps Istio's default (connect-failure,
// refused-stream, unavailable, cancelled, 503); numbers in retryOn are retriable status codes
// and imply retriable-status-codes; gRPC status names (unavailable…) retry by grpc-status;
// values ambit does not know are reported.
import { DEFAULT_RETRY_BACKOFF, RETRY_ON_VALUES, defaultRetryPolicy } from '../resilience/types.js';
import type { RetryOn, RetryPolicy } from '../resilience/types.js';
import { parseDurationMs } from './duration.js';

export interface IstioRetries {
  attempts?: number;
  perTryTimeout?: string;
  retryOn?: string;
  backoff?: string;
}

/** `warn(message, subfield)` reports what cannot be honoured. */
export function istioRetry(r: IstioRetries, warn: (message: string, subfield: string) => void): RetryPolicy {
  const policy = defaultRetryPolicy();
  policy.attempts = Math.max(0, r.attempts ?? 0);
  if (policy.attempts === 0) return policy;
  if (r.retryOn !== undefined && r.retryOn.trim() !== '') {
    const on = new Set<RetryOn>();
    const codes: number[] = [];
    for (const raw of r.retryOn.split(',')) {
      const v = raw.trim();
      if (v === '') continue;
      if (/^\d{3}$/.test(v)) codes.push(Number(v));
      else if ((RETRY_ON_VALUES as readonly string[]).includes(v)) on.add(v as RetryOn);
      else warn(`retryOn value ${JSON.stringify(v)} is not supported by ambit; ignored`, '.retryOn');
    }
    if (codes.length > 0) on.add('retriable-status-codes');
    policy.retryOn = on;
    policy.retriableStatusCodes = codes;
  }
  const perTry = parseDurationMs(r.perTryTimeout);
  if (perTry !== undefined) policy.perTryTimeoutMs = perTry;
  const base = parseDurationMs(r.backoff);
  policy.backoff =
    base !== undefined && base > 0 ? { baseMs: base, maxMs: base * 10 } : { ...DEFAULT_RETRY_BACKOFF };
  return policy;
}
