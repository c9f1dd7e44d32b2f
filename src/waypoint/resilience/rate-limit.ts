// Local rate limiting (Envoy's local_ratelimit filter, as Istio configures it through an
// EnvoyFilter): a token bucket per destination that answers 429 when it is empty. Tokens are
// added in whole fills at the fill interval, as Envoy's timer does, computed lazily from the
// injected clock instead of with a timer.
import type { Clock, RateLimitPolicy } from './types.js';

export type RateLimitDecision =
  | { allowed: true; remaining: number }
  | {
      allowed: false;
      /** Milliseconds until the next fill adds tokens: the 429's reset time. */
      resetMs: number;
    };

/** Envoy's 429 body and header for a local rate limit. */
export const RATE_LIMITED_BODY = 'local_rate_limited';
export const RATE_LIMITED_HEADER = 'x-envoy-ratelimited';

export class TokenBucket {
  readonly policy: RateLimitPolicy;
  readonly #clock: Clock;
  #tokens: number;
  /** Clock time of the last whole fill (or of creation). */
  #lastFill: number;

  constructor(policy: RateLimitPolicy, clock: Clock = performance.now.bind(performance)) {
    if (!(policy.fillIntervalMs > 0) || !(policy.maxTokens > 0) || !(policy.tokensPerFill > 0)) {
      throw new RangeError(
        `rate limit needs maxTokens, tokensPerFill and fillIntervalMs > 0, got ${JSON.stringify(policy)}`,
      );
    }
    this.policy = policy;
    this.#clock = clock;
    this.#tokens = policy.maxTokens; // Envoy starts with a full bucket
    this.#lastFill = clock();
  }

  /** Take one token: allowed, or refused with the time until the next fill. */
  take(): RateLimitDecision {
    const now = this.#refill();
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return { allowed: true, remaining: this.#tokens };
    }
    return { allowed: false, resetMs: Math.max(0, this.#lastFill + this.policy.fillIntervalMs - now) };
  }

  /** Tokens available now. */
  tokens(): number {
    this.#refill();
    return this.#tokens;
  }

  #refill(): number {
    const now = this.#clock();
    const fills = Math.floor((now - this.#lastFill) / this.policy.fillIntervalMs);
    if (fills > 0) {
      this.#tokens = Math.min(this.policy.maxTokens, this.#tokens + fills * this.policy.tokensPerFill);
      this.#lastFill += fills * this.policy.fillIntervalMs;
    }
    return now;
  }
}

/**
 * Headers for a rate-limit answer, Envoy's `x-envoy-ratelimited` plus the draft IETF
 * RateLimit fields Envoy emits when asked (`x-ratelimit-limit/-remaining/-reset`, reset in
 * whole seconds, rounded up).
 */
export function rateLimitHeaders(
  policy: RateLimitPolicy,
  decision: RateLimitDecision,
): Record<string, string> {
  const common = { 'x-ratelimit-limit': String(policy.maxTokens) };
  if (decision.allowed) return { ...common, 'x-ratelimit-remaining': String(Math.floor(decision.remaining)) };
  return {
    ...common,
    'x-ratelimit-remaining': '0',
    'x-ratelimit-reset': String(Math.ceil(decision.resetMs / 1000)),
    [RATE_LIMITED_HEADER]: 'true',
  };
}
