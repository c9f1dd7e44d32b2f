// Outlier detection (DestinationRule `outlierDetection`, Envoy's outlier detector), one
// detector per destination: count consecutive 5xx and gateway errors per endpoint, eject an
// endpoint that reaches a threshold for base × (times ejected) — capped, as Envoy, at
// max(300 s, base) — while never ejecting more than maxEjectionPercent of the endpoints and
// never the last one, and let it back when its time is up. Time comes from an injected clock
// and is evaluated lazily, so nothing here needs a timer.
import type { AttemptOutcome, Clock, OutlierPolicy } from './types.js';

/** Envoy's default `max_ejection_time`. */
export const DEFAULT_MAX_EJECTION_MS = 300_000;

export type EjectionReason = 'consecutive-5xx' | 'consecutive-gateway-errors';

/** What happened, for a log line ("endpoint 10.0.0.3:8080 ejected for 30000 ms"). */
export type OutlierEvent =
  | { type: 'ejected'; endpoint: string; reason: EjectionReason; ejectionMs: number; times: number }
  | { type: 'returned'; endpoint: string; ejectedForMs: number }
  | { type: 'ejection-skipped'; endpoint: string; reason: EjectionReason; ejected: number; total: number };

interface EndpointState {
  consecutive5xx: number;
  consecutiveGateway: number;
  /** Envoy's eject-time backoff: grows with each ejection, shrinks per healthy interval. */
  backoff: number;
  ejectedAt?: number;
  ejectionMs?: number;
  /** When it last came back (or the backoff last shrank), for the per-interval decrease. */
  healthySince?: number;
}

export class OutlierDetector {
  readonly policy: OutlierPolicy;
  readonly #clock: Clock;
  readonly #states = new Map<string, EndpointState>();
  readonly #listeners = new Set<(event: OutlierEvent) => void>();
  #ejected = 0;

  constructor(policy: OutlierPolicy, clock: Clock = performance.now.bind(performance)) {
    this.policy = policy;
    this.#clock = clock;
  }

  /** Listen for ejections and returns; returns the unsubscribe function. */
  on(listener: (event: OutlierEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * The destination's current endpoints: new ones are tracked, gone ones forgotten.
   * `healthy()` calls this itself, so most callers need not.
   */
  setEndpoints(ids: Iterable<string>): void {
    const keep = new Set(ids);
    for (const [id, state] of this.#states) {
      if (keep.has(id)) continue;
      if (state.ejectedAt !== undefined) this.#ejected--;
      this.#states.delete(id);
    }
    for (const id of keep) if (!this.#states.has(id)) this.#states.set(id, freshState());
  }

  /**
   * Record the result of a request to `endpoint`. A 5xx, or a failure without a response
   * (which the waypoint answers with a 502/503/504), counts; 502/503/504 and failures without
   * a response also count as gateway errors; a 500 resets the gateway count; anything else
   * resets both. A local overflow says nothing about the endpoint and is ignored.
   */
  record(endpoint: string, outcome: AttemptOutcome): void {
    if (outcome.error === 'overflow') return;
    const now = this.#clock();
    this.#evaluate(now);
    let state = this.#states.get(endpoint);
    if (!state) {
      state = freshState();
      this.#states.set(endpoint, state);
    }
    const failed = outcome.error !== undefined || (outcome.status !== undefined && outcome.status >= 500);
    if (!failed) {
      state.consecutive5xx = 0;
      state.consecutiveGateway = 0;
      return;
    }
    const gateway = outcome.error !== undefined || isGatewayStatus(outcome.status);
    state.consecutive5xx++;
    state.consecutiveGateway = gateway ? state.consecutiveGateway + 1 : 0;
    if (state.ejectedAt !== undefined) return; // answers still in flight when it was ejected
    const { consecutive5xx, consecutiveGatewayErrors } = this.policy;
    if (consecutiveGatewayErrors && state.consecutiveGateway >= consecutiveGatewayErrors) {
      this.#eject(endpoint, state, 'consecutive-gateway-errors', now);
    } else if (consecutive5xx && state.consecutive5xx >= consecutive5xx) {
      this.#eject(endpoint, state, 'consecutive-5xx', now);
    }
  }

  isEjected(endpoint: string): boolean {
    this.#evaluate(this.#clock());
    return this.#states.get(endpoint)?.ejectedAt !== undefined;
  }

  /**
   * The endpoints not ejected, in their order. Also tells the detector the current endpoint
   * set. Never empty when `endpoints` is not: should everything be ejected (endpoints were
   * removed under it), all are returned, like Envoy's panic mode.
   */
  healthy<E>(endpoints: readonly E[], idOf: (endpoint: E) => string): E[] {
    this.setEndpoints(endpoints.map(idOf));
    this.#evaluate(this.#clock());
    const healthy = endpoints.filter((e) => this.#states.get(idOf(e))?.ejectedAt === undefined);
    return healthy.length > 0 ? healthy : [...endpoints];
  }

  /** Endpoints ejected now. */
  ejected(): string[] {
    this.#evaluate(this.#clock());
    return [...this.#states].filter(([, s]) => s.ejectedAt !== undefined).map(([id]) => id);
  }

  #eject(endpoint: string, state: EndpointState, reason: EjectionReason, now: number): void {
    const total = this.#states.size;
    if (!this.#mayEject(total)) {
      this.#emit({ type: 'ejection-skipped', endpoint, reason, ejected: this.#ejected, total });
      return;
    }
    const base = this.policy.baseEjectionMs;
    const max = Math.max(DEFAULT_MAX_EJECTION_MS, base);
    // Envoy stops growing the backoff once it has reached the maximum ejection time.
    if (base * state.backoff < max) state.backoff++;
    state.ejectedAt = now;
    state.ejectionMs = Math.min(base * state.backoff, max);
    this.#ejected++;
    this.#emit({ type: 'ejected', endpoint, reason, ejectionMs: state.ejectionMs, times: state.backoff });
  }

  /**
   * Whether one more endpoint may go: at least one always stays; otherwise the share ejected
   * after this one must be within maxEjectionPercent, except that one ejection is always
   * allowed (Envoy: "will eject at least one host regardless of the value").
   */
  #mayEject(total: number): boolean {
    if (this.#ejected + 1 >= total) return false;
    if (this.#ejected === 0) return true;
    return (100 * (this.#ejected + 1)) / total <= this.policy.maxEjectionPercent;
  }

  /**
   * Return endpoints whose time is up — at that moment, rather than at Envoy's next interval
   * tick — and shrink the backoff of endpoints healthy for a whole interval since their return.
   */
  #evaluate(now: number): void {
    if (this.#states.size === 0) return;
    const interval = this.policy.intervalMs;
    for (const [id, state] of this.#states) {
      if (state.ejectedAt !== undefined && state.ejectionMs !== undefined) {
        if (now - state.ejectedAt < state.ejectionMs) continue;
        const ejectedForMs = now - state.ejectedAt;
        delete state.ejectedAt;
        delete state.ejectionMs;
        // As Envoy: start counting afresh, so a couple of new errors cannot re-eject at once.
        state.consecutive5xx = 0;
        state.consecutiveGateway = 0;
        state.healthySince = now;
        this.#ejected--;
        this.#emit({ type: 'returned', endpoint: id, ejectedForMs });
      } else if (state.backoff > 0 && state.healthySince !== undefined && interval > 0) {
        const intervals = Math.floor((now - state.healthySince) / interval);
        if (intervals > 0) {
          state.backoff = Math.max(0, state.backoff - intervals);
          state.healthySince += intervals * interval;
        }
      }
    }
  }

  #emit(event: OutlierEvent): void {
    for (const listener of this.#listeners) listener(event);
  }
}

function freshState(): EndpointState {
  return { consecutive5xx: 0, consecutiveGateway: 0, backoff: 0 };
}

function isGatewayStatus(status: number | undefined): boolean {
  return status === 502 || status === 503 || status === 504;
}
