import { describe, expect, it } from 'vitest';
import { seeded } from '../../support/random.js';
import {
  backoffMs,
  RetryBudget,
  runWithRetries,
  shouldRetry,
  type AttemptResult,
} from '../../../src/waypoint/resilience/retry.js';
import {
  DEFAULT_RETRY_BACKOFF,
  defaultRetryPolicy,
  type AttemptOutcome,
  type RetryOn,
  type RetryPolicy,
} from '../../../src/waypoint/resilience/types.js';

function policy(retryOn: RetryOn[], over: Partial<RetryPolicy> = {}): RetryPolicy {
  return {
    attempts: 2,
    retryOn: new Set(retryOn),
    retriableStatusCodes: [],
    backoff: { ...DEFAULT_RETRY_BACKOFF },
    ...over,
  };
}

const noSleep = (): Promise<void> => Promise.resolve();
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('shouldRetry follows Envoy retry_on semantics', () => {
  const cases: [RetryOn[], AttemptOutcome, boolean][] = [
    // 5xx: any 5xx, and every failure without a response
    [['5xx'], { status: 500 }, true],
    [['5xx'], { status: 503 }, true],
    [['5xx'], { status: 599 }, true],
    [['5xx'], { status: 499 }, false],
    [['5xx'], { status: 200 }, false],
    [['5xx'], { status: 409 }, false],
    [['5xx'], { error: 'connect-failure' }, true],
    [['5xx'], { error: 'reset' }, true],
    [['5xx'], { error: 'refused-stream' }, true],
    [['5xx'], { error: 'timeout' }, true],
    [['5xx'], { error: 'overflow' }, false],
    // gateway-error: 502/503/504 and failures without a response
    [['gateway-error'], { status: 502 }, true],
    [['gateway-error'], { status: 503 }, true],
    [['gateway-error'], { status: 504 }, true],
    [['gateway-error'], { status: 500 }, false],
    [['gateway-error'], { status: 501 }, false],
    [['gateway-error'], { error: 'connect-failure' }, true],
    [['gateway-error'], { error: 'reset' }, true],
    [['gateway-error'], { error: 'timeout' }, true],
    [['gateway-error'], { error: 'overflow' }, false],
    // connect-failure: only that
    [['connect-failure'], { error: 'connect-failure' }, true],
    [['connect-failure'], { error: 'reset' }, false],
    [['connect-failure'], { error: 'timeout' }, false],
    [['connect-failure'], { status: 503 }, false],
    // reset: any failure without a response, never a status
    [['reset'], { error: 'reset' }, true],
    [['reset'], { error: 'connect-failure' }, true],
    [['reset'], { error: 'timeout' }, true],
    [['reset'], { error: 'refused-stream' }, true],
    [['reset'], { status: 503 }, false],
    // refused-stream: only that
    [['refused-stream'], { error: 'refused-stream' }, true],
    [['refused-stream'], { error: 'reset' }, false],
    [['refused-stream'], { status: 503 }, false],
    // retriable-4xx: 409 only
    [['retriable-4xx'], { status: 409 }, true],
    [['retriable-4xx'], { status: 404 }, false],
    [['retriable-4xx'], { status: 429 }, false],
    [['retriable-4xx'], { status: 503 }, false],
    // nothing configured
    [[], { status: 503 }, false],
    [[], { error: 'connect-failure' }, false],
    // combinations
    [['connect-failure', 'retriable-4xx'], { status: 409 }, true],
    [['connect-failure', 'retriable-4xx'], { error: 'connect-failure' }, true],
    [['connect-failure', 'retriable-4xx'], { status: 503 }, false],
    // no status and no error: nothing to judge
    [['5xx'], {}, false],
  ];
  it.each(cases)('retryOn %j, outcome %j → %s', (on, outcome, expected) => {
    expect(shouldRetry(policy(on), outcome)).toBe(expected);
  });

  it.each([
    [{ status: 503 }, true],
    [{ status: 429 }, true],
    [{ status: 500 }, false],
    [{ status: 200 }, false],
    [{ error: 'reset' as const }, false],
  ])('retriable-status-codes [503, 429], outcome %j → %s', (outcome, expected) => {
    expect(
      shouldRetry(policy(['retriable-status-codes'], { retriableStatusCodes: [503, 429] }), outcome),
    ).toBe(expected);
  });

  it('ignores retriableStatusCodes unless retriable-status-codes is in retryOn', () => {
    expect(shouldRetry(policy(['connect-failure'], { retriableStatusCodes: [503] }), { status: 503 })).toBe(
      false,
    );
  });

  it("Istio's default policy retries connect failures, refused streams, gRPC unavailable/cancelled and 503", () => {
    const p = defaultRetryPolicy();
    expect(p.attempts).toBe(2);
    expect(shouldRetry(p, { error: 'connect-failure' })).toBe(true);
    expect(shouldRetry(p, { error: 'refused-stream' })).toBe(true);
    expect(shouldRetry(p, { status: 503 })).toBe(true);
    expect(shouldRetry(p, { status: 200, grpcStatus: 14 })).toBe(true);
    expect(shouldRetry(p, { status: 200, grpcStatus: 1 })).toBe(true);
    expect(shouldRetry(p, { status: 200, grpcStatus: 13 })).toBe(false);
    expect(shouldRetry(p, { status: 500 })).toBe(false);
    expect(shouldRetry(p, { error: 'reset' })).toBe(false);
  });

  it.each<[RetryOn, number]>([
    ['cancelled', 1],
    ['deadline-exceeded', 4],
    ['resource-exhausted', 8],
    ['internal', 13],
    ['unavailable', 14],
  ])('gRPC %s retries grpc-status %i only', (on, code) => {
    const p = policy([on]);
    expect(shouldRetry(p, { status: 200, grpcStatus: code })).toBe(true);
    expect(shouldRetry(p, { status: 200, grpcStatus: 0 })).toBe(false);
    expect(shouldRetry(p, { status: 200, grpcStatus: code === 14 ? 13 : 14 })).toBe(false);
    expect(shouldRetry(p, { status: 503 })).toBe(false);
  });
});

describe('backoffMs is full jitter under min(max, (2^n − 1) · base)', () => {
  const p = policy(['5xx']);
  it.each([
    // retry, random, expected ms (defaults: base 25, max 250)
    [1, 0, 0],
    [1, 0.5, 12],
    [1, 0.9999, 24],
    [2, 0.9999, 74],
    [3, 0.9999, 174],
    [4, 0.9999, 249], // 375 capped at 250
    [10, 0.9999, 249],
    [100, 0.9999, 249],
    [0, 0.9999, 0],
  ])('retry %i with random %f → %i ms', (retry, r, expected) => {
    expect(backoffMs(retry, p, () => r)).toBe(expected);
  });

  it('uses the configured base and max', () => {
    const custom = policy(['5xx'], { backoff: { baseMs: 100, maxMs: 1000 } });
    expect(backoffMs(1, custom, () => 0.9999)).toBe(99);
    expect(backoffMs(3, custom, () => 0.9999)).toBe(699);
    expect(backoffMs(5, custom, () => 0.9999)).toBe(999);
  });

  it('never waits with a zero base', () => {
    expect(backoffMs(3, policy(['5xx'], { backoff: { baseMs: 0, maxMs: 0 } }), () => 0.9)).toBe(0);
  });

  it('stays within its bound over many draws', () => {
    const random = seeded(7);
    for (let n = 1; n <= 6; n++) {
      const bound = Math.min(250, (2 ** n - 1) * 25);
      for (let i = 0; i < 200; i++) {
        const ms = backoffMs(n, p, random);
        expect(ms).toBeGreaterThanOrEqual(0);
        expect(ms).toBeLessThan(bound);
      }
    }
  });
});

describe('RetryBudget', () => {
  it('allows max(minRetryConcurrency, budgetPercent of active) concurrent retries', () => {
    const budget = new RetryBudget();
    expect(budget.limit()).toBe(3); // nothing active: the minimum
    const ends = Array.from({ length: 50 }, () => budget.begin());
    expect(budget.limit()).toBe(10); // 20 % of 50
    for (let i = 0; i < 10; i++) expect(budget.tryAcquire()).toBe(true);
    expect(budget.tryAcquire()).toBe(false);
    expect(budget.stats()).toEqual({ active: 50, activeRetries: 10, granted: 10, denied: 1 });
    budget.release();
    expect(budget.tryAcquire()).toBe(true);
    for (const end of ends) end();
    expect(budget.stats().active).toBe(0);
  });

  it.each([
    [{}, 0, 3],
    [{}, 14, 3],
    [{}, 15, 3],
    [{}, 20, 4],
    [{}, 1000, 200],
    [{ budgetPercent: 50 }, 10, 5],
    [{ budgetPercent: 0, minRetryConcurrency: 1 }, 1000, 1],
    [{ minRetryConcurrency: 0 }, 4, 0],
  ])('options %j with %i active → limit %i', (options, active, expected) => {
    const budget = new RetryBudget(options);
    for (let i = 0; i < active; i++) budget.begin();
    expect(budget.limit()).toBe(expected);
  });

  it('counts a request once however often its end function is called', () => {
    const budget = new RetryBudget();
    const end = budget.begin();
    end();
    end();
    expect(budget.stats().active).toBe(0);
  });
});

describe('runWithRetries', () => {
  function scripted(outcomes: AttemptOutcome[]): {
    calls: number[];
    attempt: (n: number) => Promise<AttemptResult<string>>;
  } {
    const calls: number[] = [];
    return {
      calls,
      attempt: async (n) => {
        calls.push(n);
        return { ...(outcomes[n - 1] ?? { status: 200 }), response: `try ${n}` };
      },
    };
  }

  it('returns the first success without retrying', async () => {
    const s = scripted([{ status: 200 }]);
    const result = await runWithRetries(s.attempt, policy(['5xx']), new RetryBudget(), { sleep: noSleep });
    expect(result).toEqual({ outcome: { status: 200, response: 'try 1' }, attempts: 1, stop: 'success' });
  });

  it('retries a 503 and returns the success', async () => {
    const s = scripted([{ status: 503 }, { status: 200 }]);
    const result = await runWithRetries(s.attempt, policy(['5xx']), new RetryBudget(), { sleep: noSleep });
    expect(result.outcome.status).toBe(200);
    expect(result.outcome.response).toBe('try 2');
    expect(result.attempts).toBe(2);
  });

  it('stops with not-replayable when the request cannot be sent again', async () => {
    const s = scripted([{ status: 503 }, { status: 200 }]);
    const result = await runWithRetries(s.attempt, policy(['5xx']), new RetryBudget(), {
      sleep: noSleep,
      canRetry: () => false,
    });
    expect(result).toMatchObject({ outcome: { status: 503 }, attempts: 1, stop: 'not-replayable' });
    expect(s.calls).toEqual([1]);
  });

  it('makes 1 + attempts tries, then returns the last failure', async () => {
    const s = scripted([{ status: 503 }, { status: 503 }, { status: 502 }, { status: 200 }]);
    const result = await runWithRetries(s.attempt, policy(['5xx'], { attempts: 2 }), undefined, {
      sleep: noSleep,
    });
    expect(s.calls).toEqual([1, 2, 3]);
    expect(result).toMatchObject({ outcome: { status: 502 }, attempts: 3, stop: 'attempts-exhausted' });
  });

  it('does not retry an outcome the policy does not name', async () => {
    const s = scripted([{ status: 500 }]);
    const result = await runWithRetries(s.attempt, policy(['gateway-error']), undefined, { sleep: noSleep });
    expect(result).toMatchObject({ attempts: 1, stop: 'success', outcome: { status: 500 } });
  });

  it('makes a single try without a policy', async () => {
    const s = scripted([{ status: 503 }]);
    const result = await runWithRetries(s.attempt, undefined, undefined, { sleep: noSleep });
    expect(result.attempts).toBe(1);
  });

  it('treats an attempt that throws as a reset', async () => {
    let n = 0;
    const result = await runWithRetries(
      async () => {
        if (++n === 1) throw new Error('socket hang up');
        return { status: 200 };
      },
      policy(['reset']),
      undefined,
      { sleep: noSleep },
    );
    expect(result).toMatchObject({ attempts: 2, outcome: { status: 200 } });
  });

  it('waits the jittered backoff between tries and reports each retry', async () => {
    const waits: number[] = [];
    const retries: unknown[] = [];
    const s = scripted([{ status: 503 }, { error: 'reset' }, { status: 200 }]);
    await runWithRetries(s.attempt, policy(['5xx'], { attempts: 3 }), undefined, {
      random: () => 0.5,
      sleep: async (ms) => {
        waits.push(ms);
      },
      onRetry: (info) => retries.push(info),
    });
    expect(waits).toEqual([12, 37]);
    expect(retries).toEqual([
      { attempt: 1, outcome: { status: 503 }, backoffMs: 12 },
      { attempt: 2, outcome: { error: 'reset' }, backoffMs: 37 },
    ]);
  });

  it('stops when the budget refuses a retry', async () => {
    const budget = new RetryBudget({ minRetryConcurrency: 0 });
    const s = scripted([{ status: 503 }, { status: 200 }]);
    const result = await runWithRetries(s.attempt, policy(['5xx']), budget, { sleep: noSleep });
    expect(result).toMatchObject({ attempts: 1, stop: 'budget-exhausted', outcome: { status: 503 } });
    expect(budget.stats()).toEqual({ active: 0, activeRetries: 0, granted: 0, denied: 1 });
  });

  it('gives back its budget slots and its active count when done', async () => {
    const budget = new RetryBudget();
    const s = scripted([{ status: 503 }, { status: 503 }, { status: 503 }]);
    await runWithRetries(s.attempt, policy(['5xx']), budget, { sleep: noSleep });
    expect(budget.stats()).toEqual({ active: 0, activeRetries: 0, granted: 2, denied: 0 });
  });

  it('times out a hanging try after perTryTimeout, aborts it and retries', async () => {
    const aborted: number[] = [];
    const result = await runWithRetries(
      (n, signal) =>
        n < 3
          ? new Promise<AttemptResult<never>>(() => signal.addEventListener('abort', () => aborted.push(n)))
          : Promise.resolve({ status: 200 }),
      policy(['5xx'], { perTryTimeoutMs: 5 }),
      undefined,
      { sleep: noSleep },
    );
    expect(result).toMatchObject({ attempts: 3, stop: 'success', outcome: { status: 200 } });
    expect(aborted).toEqual([1, 2]);
  });

  it('reports a per-try timeout on the last try as such', async () => {
    const result = await runWithRetries(
      () => new Promise<AttemptResult<never>>(() => undefined),
      policy(['connect-failure'], { perTryTimeoutMs: 5 }),
      undefined,
      { sleep: noSleep },
    );
    expect(result).toEqual({
      outcome: { error: 'timeout' },
      attempts: 1,
      stop: 'success',
      timedOut: 'per-try',
    });
  });

  it('ends everything at the route timeout, even in the middle of a try', async () => {
    let signalSeen: AbortSignal | undefined;
    const started = performance.now();
    const result = await runWithRetries(
      (_n, signal) => {
        signalSeen = signal;
        return new Promise<AttemptResult<never>>(() => undefined);
      },
      policy(['5xx'], { perTryTimeoutMs: 1000 }),
      undefined,
      { timeoutMs: 15, sleep: noSleep },
    );
    expect(result).toEqual({
      outcome: { error: 'timeout' },
      attempts: 1,
      stop: 'deadline',
      timedOut: 'route',
    });
    expect(signalSeen?.aborted).toBe(true);
    expect(performance.now() - started).toBeLessThan(500);
  });

  it('does not start a retry whose backoff would end past the deadline', async () => {
    let now = 0;
    const s = scripted([{ status: 503 }, { status: 200 }]);
    const result = await runWithRetries(
      async (n) => {
        now += 90;
        return s.attempt(n);
      },
      policy(['5xx']),
      undefined,
      { timeoutMs: 100, clock: () => now, random: () => 0.9999, sleep: noSleep },
    );
    expect(result).toMatchObject({ attempts: 1, stop: 'deadline', outcome: { status: 503 } });
  });

  it('stops when the downstream goes away', async () => {
    const downstream = new AbortController();
    const result = await runWithRetries(
      async () => {
        downstream.abort();
        return { status: 503 };
      },
      policy(['5xx']),
      undefined,
      { sleep: noSleep, signal: downstream.signal },
    );
    expect(result).toMatchObject({ attempts: 1, stop: 'cancelled' });
  });
});

describe('retries under load', () => {
  it('turn a backend failing 30 % of attempts into ≥ 99 % success (2 000 requests, 3 retries)', async () => {
    const backend = seeded(42);
    const budget = new RetryBudget();
    const p = policy(['5xx'], { attempts: 3 });
    let ok = 0;
    let tries = 0;
    for (let i = 0; i < 2000; i++) {
      const result = await runWithRetries(
        async () => {
          tries++;
          return backend() < 0.3 ? { status: 503 } : { status: 200 };
        },
        p,
        budget,
        { sleep: noSleep, random: backend },
      );
      if (result.outcome.status === 200) ok++;
    }
    // Without retries about 70 % succeed; with 4 tries the expected failure rate is 0.3^4 = 0.81 %.
    expect(ok / 2000).toBeGreaterThanOrEqual(0.99);
    expect(tries).toBeGreaterThan(2000);
    expect(budget.stats().denied).toBe(0);
  });

  it('the budget stops a retry storm when the backend fails every attempt', async () => {
    const concurrency = 100;
    const total = 2000;
    const p = policy(['5xx'], { attempts: 3 });

    async function drive(
      budget: RetryBudget | undefined,
    ): Promise<{ tries: number; maxRetriesInFlight: number }> {
      let tries = 0;
      let retriesInFlight = 0;
      let maxRetriesInFlight = 0;
      let started = 0;
      const worker = async (): Promise<void> => {
        while (started < total) {
          started++;
          await runWithRetries(
            async (n) => {
              tries++;
              if (n > 1) maxRetriesInFlight = Math.max(maxRetriesInFlight, ++retriesInFlight);
              await tick();
              if (n > 1) retriesInFlight--;
              return { status: 503 };
            },
            p,
            budget,
            { sleep: noSleep },
          );
        }
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
      return { tries, maxRetriesInFlight };
    }

    const unbudgeted = await drive(undefined);
    expect(unbudgeted.tries).toBe(total * 4); // every request tried four times: load × 4

    const budget = new RetryBudget();
    const budgeted = await drive(budget);
    const retries = budgeted.tries - total;
    // At most 20 % of the 100 requests in flight are retrying at once, so retries add at most
    // 20 / 80 = 25 % to the load (plus the few the minimum concurrency lets through at the end).
    expect(budgeted.maxRetriesInFlight).toBeLessThanOrEqual(0.2 * concurrency);
    expect(retries).toBeLessThanOrEqual(0.25 * total + budget.minRetryConcurrency * 4);
    expect(budget.stats().denied).toBeGreaterThan(0);
    expect(budget.stats()).toMatchObject({ active: 0, activeRetries: 0 });
  });
});
