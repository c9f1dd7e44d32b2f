// Retries for the waypoint: which outcomes are retried (Envoy's `retry_on` semantics), the
// jittered exponential backoff between tries, the retry budget that keeps retries from
// multiplying an outage, and `runWithRetries`, which drives the tries with per-try and route
// timeouts. The decisions are pure; time and randomness are injected.
import {
  GRPC_RETRY_ON,
  type AttemptOutcome,
  type Clock,
  type RandomSource,
  type RetryPolicy,
} from './types.js';

/** Envoy's retry_budget defaults: 20 % of active requests, at least 3 concurrent retries. */
export const DEFAULT_BUDGET_PERCENT = 20;
export const DEFAULT_MIN_RETRY_CONCURRENCY = 3;

const GATEWAY_ERRORS = new Set([502, 503, 504]);
const RETRIABLE_4XX = new Set([409]);

/**
 * Whether `policy.retryOn` asks for `outcome` to be retried. Attempts left, budget and
 * deadline are checked by the caller (`runWithRetries`).
 *
 * Follows Envoy's `RetryStateImpl`: any failure without a response (connect failure, reset,
 * refused stream, per-try timeout) is retried by `5xx`, `gateway-error` and `reset`, because
 * it becomes a 503/504; `connect-failure` and `refused-stream` only retry their own failure;
 * a local overflow is never retried. gRPC values retry the grpc-status of a trailers-only
 * response (`unavailable` → 14 …); the HTTP ones still apply to its HTTP status.
 */
export function shouldRetry(policy: RetryPolicy, outcome: AttemptOutcome): boolean {
  const on = policy.retryOn;
  if (outcome.error !== undefined) {
    switch (outcome.error) {
      case 'overflow':
        return false;
      case 'connect-failure':
        return on.has('connect-failure') || on.has('5xx') || on.has('gateway-error') || on.has('reset');
      case 'refused-stream':
        return on.has('refused-stream') || on.has('5xx') || on.has('gateway-error') || on.has('reset');
      case 'reset':
      case 'timeout':
        return on.has('5xx') || on.has('gateway-error') || on.has('reset');
    }
  }
  if (outcome.grpcStatus !== undefined)
    for (const [name, code] of GRPC_RETRY_ON) if (code === outcome.grpcStatus && on.has(name)) return true;
  const status = outcome.status;
  if (status === undefined) return false;
  if (on.has('5xx') && status >= 500 && status <= 599) return true;
  if (on.has('gateway-error') && GATEWAY_ERRORS.has(status)) return true;
  if (on.has('retriable-4xx') && RETRIABLE_4XX.has(status)) return true;
  if (on.has('retriable-status-codes') && policy.retriableStatusCodes.includes(status)) return true;
  return false;
}

/**
 * The wait before retry number `retry` (1 for the first retry): Envoy's
 * `JitteredExponentialBackOffStrategy`, uniformly random in [0, min(max, (2^retry − 1) · base)).
 * With the defaults that is 0–25 ms, 0–75 ms, 0–175 ms, then 0–250 ms.
 */
export function backoffMs(retry: number, policy: Pick<RetryPolicy, 'backoff'>, random: RandomSource): number {
  const { baseMs, maxMs } = policy.backoff;
  if (retry < 1 || baseMs <= 0) return 0;
  // 2^31 is far past any max; capping the exponent keeps the arithmetic exact.
  const multiplier = 2 ** Math.min(retry, 31) - 1;
  const ceiling = Math.min(maxMs, multiplier * baseMs);
  return Math.floor(random() * ceiling);
}

export interface RetryBudgetOptions {
  /** Concurrent retries allowed, as a percentage of active requests (default 20). */
  budgetPercent?: number;
  /** Concurrent retries always allowed, whatever the active count (default 3). */
  minRetryConcurrency?: number;
}

export interface RetryBudgetStats {
  /** Requests in flight (each counted once, however many tries it makes). */
  active: number;
  /** Retries in flight, from `tryAcquire` to `release`. */
  activeRetries: number;
  /** Retries let through. */
  granted: number;
  /** Retries refused because the budget was spent (Envoy `upstream_rq_retry_overflow`). */
  denied: number;
}

/**
 * Envoy's retry budget: at any moment, concurrent retries may not exceed
 * max(minRetryConcurrency, budgetPercent % of active requests). One budget per destination.
 * When every request fails, retries then add at most that share of load, instead of
 * multiplying it by the attempt count.
 */
export class RetryBudget {
  readonly budgetPercent: number;
  readonly minRetryConcurrency: number;
  #active = 0;
  #activeRetries = 0;
  #granted = 0;
  #denied = 0;

  constructor(options: RetryBudgetOptions = {}) {
    this.budgetPercent = options.budgetPercent ?? DEFAULT_BUDGET_PERCENT;
    this.minRetryConcurrency = options.minRetryConcurrency ?? DEFAULT_MIN_RETRY_CONCURRENCY;
  }

  /** Count a request as active until the returned function is called (idempotent). */
  begin(): () => void {
    this.#active++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.#active--;
    };
  }

  /** The number of concurrent retries allowed right now. */
  limit(): number {
    return Math.max(this.minRetryConcurrency, Math.floor((this.#active * this.budgetPercent) / 100));
  }

  /** Take a retry slot; false (and counted as denied) when the budget is spent. */
  tryAcquire(): boolean {
    if (this.#activeRetries >= this.limit()) {
      this.#denied++;
      return false;
    }
    this.#activeRetries++;
    this.#granted++;
    return true;
  }

  /** Give back a slot taken by `tryAcquire`. */
  release(): void {
    if (this.#activeRetries > 0) this.#activeRetries--;
  }

  stats(): RetryBudgetStats {
    return {
      active: this.#active,
      activeRetries: this.#activeRetries,
      granted: this.#granted,
      denied: this.#denied,
    };
  }
}

/** One attempt's result: the outcome, plus whatever the caller wants back (the response). */
export type AttemptResult<R> = AttemptOutcome & { response?: R };

/** Why `runWithRetries` stopped. */
export type RetryStop =
  | 'success' // the outcome is not retriable under the policy (a success or a final answer)
  | 'attempts-exhausted'
  | 'budget-exhausted'
  | 'deadline' // the route timeout fired, or no time was left for another try
  | 'cancelled' // the downstream went away (options.signal)
  | 'not-replayable'; // the request could not be sent again (options.canRetry said no)

export interface RetryResult<R> {
  outcome: AttemptResult<R>;
  /** Tries made, including the first. */
  attempts: number;
  stop: RetryStop;
  /** Which timeout produced a `timeout` outcome, when one did: the caller answers 504. */
  timedOut?: 'per-try' | 'route';
}

export interface RunRetriesOptions {
  /** Route timeout for all tries together, from the start of the call; none when absent or 0. */
  timeoutMs?: number;
  clock?: Clock;
  random?: RandomSource;
  /** Waits `ms` or until `signal` aborts; injectable so tests need not sleep. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** The downstream went away: stop trying. */
  signal?: AbortSignal;
  /**
   * Whether the request can still be sent again (a streamed body past the buffer limit cannot);
   * asked only when the outcome would be retried.
   */
  canRetry?: () => boolean;
  /** Called before each retry, for a log line. */
  onRetry?: (info: { attempt: number; outcome: AttemptOutcome; backoffMs: number }) => void;
}

/**
 * Run `attempt` until it gives a non-retriable outcome, the attempts run out, the budget
 * refuses a retry or the route deadline passes. `attempt(n, signal)` gets the 1-based try
 * number and a signal aborted on its per-try or route timeout; it should resolve with an
 * outcome rather than throw (a throw counts as a reset).
 */
export async function runWithRetries<R>(
  attempt: (n: number, signal: AbortSignal) => Promise<AttemptResult<R>>,
  policy: RetryPolicy | undefined,
  budget: RetryBudget | undefined,
  options: RunRetriesOptions = {},
): Promise<RetryResult<R>> {
  const clock = options.clock ?? performance.now.bind(performance);
  const random = options.random ?? Math.random;
  const sleep = options.sleep ?? abortableSleep;
  const start = clock();
  const deadline = options.timeoutMs ? start + options.timeoutMs : Infinity;
  const maxTries = 1 + Math.max(0, policy?.attempts ?? 0);
  const endActive = budget?.begin();
  let holdsRetry = false;
  try {
    for (let n = 1; ; n++) {
      const remaining = deadline - clock();
      // Envoy caps each try at what is left of the route timeout.
      const perTry = Math.min(policy?.perTryTimeoutMs || Infinity, remaining);
      const { outcome, timedOut } = await runOneTry(attempt, n, perTry, remaining <= perTry, options.signal);
      if (holdsRetry) {
        budget?.release();
        holdsRetry = false;
      }
      const result = (stop: RetryStop): RetryResult<R> => ({
        outcome,
        attempts: n,
        stop,
        ...(timedOut ? { timedOut } : {}),
      });
      if (options.signal?.aborted) return result('cancelled');
      if (timedOut === 'route') return result('deadline');
      if (!policy || !shouldRetry(policy, outcome)) return result('success');
      if (n >= maxTries) return result('attempts-exhausted');
      if (options.canRetry && !options.canRetry()) return result('not-replayable');
      const wait = backoffMs(n, policy, random);
      // No point waiting for a try that cannot start before the deadline: answer now with
      // the real failure rather than a 504 later.
      if (clock() + wait >= deadline) return result('deadline');
      if (budget && !budget.tryAcquire()) return result('budget-exhausted');
      holdsRetry = budget !== undefined;
      options.onRetry?.({ attempt: n, outcome: stripResponse(outcome), backoffMs: wait });
      if (wait > 0) await sleep(wait, options.signal ?? NEVER_ABORTED);
      if (options.signal?.aborted) return result('cancelled');
    }
  } finally {
    if (holdsRetry) budget?.release();
    endActive?.();
  }
}

const NEVER_ABORTED = new AbortController().signal;

async function runOneTry<R>(
  attempt: (n: number, signal: AbortSignal) => Promise<AttemptResult<R>>,
  n: number,
  timeoutMs: number,
  timeoutIsRoute: boolean,
  downstream: AbortSignal | undefined,
): Promise<{ outcome: AttemptResult<R>; timedOut?: 'per-try' | 'route' }> {
  if (timeoutMs <= 0) return { outcome: { error: 'timeout' }, timedOut: 'route' };
  const controller = new AbortController();
  const onDownstreamAbort = (): void => controller.abort(downstream?.reason);
  downstream?.addEventListener('abort', onDownstreamAbort, { once: true });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    if (Number.isFinite(timeoutMs)) timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  try {
    const tried = attempt(n, controller.signal).catch((): AttemptResult<R> => ({ error: 'reset' }));
    const first = await Promise.race([tried, timeout]);
    if (first === 'timeout') {
      controller.abort(new Error(`${timeoutIsRoute ? 'route' : 'per-try'} timeout after ${timeoutMs} ms`));
      return { outcome: { error: 'timeout' }, timedOut: timeoutIsRoute ? 'route' : 'per-try' };
    }
    return { outcome: first };
  } finally {
    clearTimeout(timer);
    downstream?.removeEventListener('abort', onDownstreamAbort);
  }
}

function stripResponse(outcome: AttemptOutcome): AttemptOutcome {
  return {
    ...(outcome.status !== undefined ? { status: outcome.status } : {}),
    ...(outcome.grpcStatus !== undefined ? { grpcStatus: outcome.grpcStatus } : {}),
    ...(outcome.error !== undefined ? { error: outcome.error } : {}),
  };
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
