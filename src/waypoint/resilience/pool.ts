// Connection pool limits for one destination (DestinationRule `connectionPool`, Envoy's
// circuit breakers). The limiter models HTTP/1-style upstream connections — one request at a
// time on each — and decides, for each request, whether it gets a connection now, waits in
// the pending queue, or overflows; the caller answers an overflow with a 503 (`overflowAnswer`).
// It counts; it opens no sockets. Envoy's order is followed: the max-requests check comes
// first, then an idle connection, then a new one, then the pending queue.
import { failureAnswer } from './failure-answer.js';
import type { PoolPolicy } from './types.js';

export type PoolOverflowReason =
  'max requests overflow' | 'pending requests overflow' | 'pending request cancelled';

/** A virtual upstream connection handed to one request at a time. */
export interface PoolConnection {
  readonly id: number;
  /** Requests this connection has carried, counting the current one. */
  readonly requests: number;
}

export type PoolAcquireResult =
  | {
      ok: true;
      connection: PoolConnection;
      /** True when this request opens the connection (the caller dials). */
      fresh: boolean;
      /**
       * The request is done. `closed`: the upstream connection died, don't reuse it. Returns
       * whether the caller should close the connection (maxRequestsPerConnection reached).
       */
      release(opts?: { closed?: boolean }): { closeConnection: boolean };
    }
  | { ok: false; reason: PoolOverflowReason };

export interface PoolStats {
  connections: number;
  idle: number;
  active: number;
  pending: number;
  overflows: number;
}

interface Connection {
  id: number;
  requests: number;
}

interface Waiter {
  grant: (result: PoolAcquireResult) => void;
}

export class ConnectionPoolLimiter {
  readonly policy: PoolPolicy;
  readonly #idle: Connection[] = [];
  readonly #pending: Waiter[] = [];
  #connections = 0;
  #active = 0;
  #overflows = 0;
  #nextId = 1;

  constructor(policy: PoolPolicy = {}) {
    this.policy = policy;
  }

  /**
   * Get a connection for one request. Resolves at once with a connection or an overflow, or
   * later when a queued request gets a connection; `signal` abandons a queued request.
   */
  acquire(signal?: AbortSignal): Promise<PoolAcquireResult> {
    const now = this.tryAcquire();
    if (now !== 'queue') return Promise.resolve(now);
    return new Promise((resolve) => {
      const waiter: Waiter = {
        grant: (result) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(result);
        },
      };
      const onAbort = (): void => {
        const i = this.#pending.indexOf(waiter);
        if (i >= 0) this.#pending.splice(i, 1);
        resolve({ ok: false, reason: 'pending request cancelled' });
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.push(waiter);
    });
  }

  /** The decision without waiting: a connection, an overflow, or 'queue' (room in the queue). */
  tryAcquire(): PoolAcquireResult | 'queue' {
    const { http2MaxRequests, http1MaxPendingRequests, maxConnections } = this.policy;
    if (http2MaxRequests !== undefined && this.#active >= http2MaxRequests)
      return this.#overflow('max requests overflow');
    const idle = this.#idle.pop();
    if (idle) return this.#lease(idle, false);
    if (maxConnections === undefined || this.#connections < maxConnections) {
      this.#connections++;
      return this.#lease({ id: this.#nextId++, requests: 0 }, true);
    }
    if (http1MaxPendingRequests !== undefined && this.#pending.length >= http1MaxPendingRequests) {
      return this.#overflow('pending requests overflow');
    }
    return 'queue';
  }

  stats(): PoolStats {
    return {
      connections: this.#connections,
      idle: this.#idle.length,
      active: this.#active,
      pending: this.#pending.length,
      overflows: this.#overflows,
    };
  }

  #lease(connection: Connection, fresh: boolean): PoolAcquireResult {
    connection.requests++;
    this.#active++;
    let released = false;
    return {
      ok: true,
      connection: { id: connection.id, requests: connection.requests },
      fresh,
      release: (opts = {}) => {
        if (released) return { closeConnection: false };
        released = true;
        this.#active--;
        const max = this.policy.maxRequestsPerConnection;
        const closeConnection = !opts.closed && max !== undefined && max > 0 && connection.requests >= max;
        if (opts.closed || closeConnection) this.#connections--;
        else this.#idle.push(connection);
        this.#servePending();
        return { closeConnection };
      },
    };
  }

  /** Hand freed capacity to queued requests, oldest first. */
  #servePending(): void {
    while (this.#pending.length > 0) {
      const { http2MaxRequests, maxConnections } = this.policy;
      if (http2MaxRequests !== undefined && this.#active >= http2MaxRequests) return;
      let result: PoolAcquireResult;
      const idle = this.#idle.pop();
      if (idle) result = this.#lease(idle, false);
      else if (maxConnections === undefined || this.#connections < maxConnections) {
        this.#connections++;
        result = this.#lease({ id: this.#nextId++, requests: 0 }, true);
      } else return;
      this.#pending.shift()!.grant(result);
    }
  }

  #overflow(reason: PoolOverflowReason): PoolAcquireResult {
    this.#overflows++;
    return { ok: false, reason };
  }
}

/**
 * The answer to an overflow, as Envoy gives it: 503, `x-envoy-overloaded: true` and its
 * "reset reason: overflow" body. The limiter's reason goes in the access log.
 */
export function overflowAnswer(): { status: 503; headers: Record<string, string>; body: string } {
  const { status, headers, body } = failureAnswer('overflow');
  return { status: status as 503, headers, body };
}
