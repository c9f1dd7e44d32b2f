// Connection pool limits for one destination (DestinationRule `connectionPool`, Envoy's
// circuit breakers). The limiter models HTTP/1-style upstream connections — one request at a
// time on each — and decides, for each request, whether it gets a connection now, waits in
// the pending queue, or overflows; the caller answers an overflow with a 503 (`overflowAnswer`).
// It counts; it opens no sockets: the waypoint's HTTP/1.1 pool (`../h1-pool.ts`) maps each
// connection id to a real keep-alive connection. Envoy's order is followed: the max-requests
// check comes first, then an idle connection, then a new one, then the pending queue.
// Connections are keyed (the endpoint): an idle connection serves only its own key, and one
// idle for another key is closed (`onEvict`) rather than let `maxConnections` starve a new key.
// Multiplexed upstreams (HTTP/2) take only a request slot (`tryAcquireRequest`).
import { failureAnswer } from './failure-answer.js';
import type { PoolPolicy } from './types.js';

export type PoolOverflowReason =
  'max requests overflow' | 'pending requests overflow' | 'pending request cancelled';

/** A virtual upstream connection handed to one request at a time. */
export interface PoolConnection {
  readonly id: number;
  /** Requests this connection has carried, counting the current one. */
  readonly requests: number;
  /** What the connection leads to (the endpoint); '' when the caller does not key. */
  readonly key: string;
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

/** A request slot on a multiplexed upstream; `release` is idempotent. */
export type PoolRequestResult = { ok: true; release(): void } | { ok: false; reason: PoolOverflowReason };

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
  key: string;
}

interface Waiter {
  key: string;
  grant: (result: PoolAcquireResult) => void;
}

export class ConnectionPoolLimiter {
  readonly policy: PoolPolicy;
  /** Idle connections per key, the most recently used last. */
  readonly #idle = new Map<string, Connection[]>();
  readonly #pending: Waiter[] = [];
  #idleCount = 0;
  #connections = 0;
  #active = 0;
  #overflows = 0;
  #nextId = 1;
  #onEvict?: (id: number) => void;

  constructor(policy: PoolPolicy = {}) {
    this.policy = policy;
  }

  /** Called with the id of an idle connection the limiter closed to make room for another key. */
  onEvict(handler: (id: number) => void): void {
    this.#onEvict = handler;
  }

  /**
   * Get a connection for one request. Resolves at once with a connection or an overflow, or
   * later when a queued request gets a connection; `signal` abandons a queued request.
   */
  acquire(signal?: AbortSignal, key = ''): Promise<PoolAcquireResult> {
    const now = this.tryAcquire(key);
    if (now !== 'queue') return Promise.resolve(now);
    return new Promise((resolve) => {
      const waiter: Waiter = {
        key,
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
  tryAcquire(key = ''): PoolAcquireResult | 'queue' {
    if (this.#requestsFull()) return this.#overflow('max requests overflow');
    const granted = this.#grant(key);
    if (granted) return granted;
    const max = this.policy.http1MaxPendingRequests;
    if (max !== undefined && this.#pending.length >= max) return this.#overflow('pending requests overflow');
    return 'queue';
  }

  /** A request on a multiplexed (HTTP/2) upstream: only `http2MaxRequests` applies. */
  tryAcquireRequest(): PoolRequestResult {
    if (this.#requestsFull()) return this.#overflow('max requests overflow');
    this.#active++;
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        this.#active--;
        this.#servePending();
      },
    };
  }

  /** An idle connection died (peer closed it, idle timeout): forget it. False if it was not idle. */
  discard(id: number): boolean {
    for (const [key, list] of this.#idle) {
      const i = list.findIndex((c) => c.id === id);
      if (i < 0) continue;
      list.splice(i, 1);
      if (list.length === 0) this.#idle.delete(key);
      this.#idleCount--;
      this.#connections--;
      this.#servePending();
      return true;
    }
    return false;
  }

  stats(): PoolStats {
    return {
      connections: this.#connections,
      idle: this.#idleCount,
      active: this.#active,
      pending: this.#pending.length,
      overflows: this.#overflows,
    };
  }

  #requestsFull(): boolean {
    const max = this.policy.http2MaxRequests;
    return max !== undefined && this.#active >= max;
  }

  /** An idle connection of `key`, else a new one below maxConnections (evicting an idle one of another key if need be). */
  #grant(key: string): PoolAcquireResult | undefined {
    const list = this.#idle.get(key);
    const idle = list?.pop();
    if (idle) {
      if (list!.length === 0) this.#idle.delete(key);
      this.#idleCount--;
      return this.#lease(idle, false);
    }
    const max = this.policy.maxConnections;
    if (max !== undefined && this.#connections >= max) {
      const evicted = this.#evictOne();
      if (evicted === undefined) return undefined;
      this.#onEvict?.(evicted);
    } else this.#connections++;
    return this.#lease({ id: this.#nextId++, requests: 0, key }, true);
  }

  /** Removes the least recently used idle connection (any key); its slot goes to the caller. */
  #evictOne(): number | undefined {
    for (const [key, list] of this.#idle) {
      const c = list.shift();
      if (!c) continue;
      if (list.length === 0) this.#idle.delete(key);
      this.#idleCount--;
      return c.id;
    }
    return undefined;
  }

  #lease(connection: Connection, fresh: boolean): PoolAcquireResult {
    connection.requests++;
    this.#active++;
    let released = false;
    return {
      ok: true,
      connection: { id: connection.id, requests: connection.requests, key: connection.key },
      fresh,
      release: (opts = {}) => {
        if (released) return { closeConnection: false };
        released = true;
        this.#active--;
        const max = this.policy.maxRequestsPerConnection;
        const closeConnection = !opts.closed && max !== undefined && max > 0 && connection.requests >= max;
        if (opts.closed || closeConnection) this.#connections--;
        else {
          const list = this.#idle.get(connection.key) ?? [];
          list.push(connection);
          this.#idle.set(connection.key, list);
          this.#idleCount++;
        }
        this.#servePending();
        return { closeConnection };
      },
    };
  }

  /** Hand freed capacity to queued requests, oldest first. */
  #servePending(): void {
    while (this.#pending.length > 0) {
      if (this.#requestsFull()) return;
      const result = this.#grant(this.#pending[0]!.key);
      if (!result) return;
      this.#pending.shift()!.grant(result);
    }
  }

  #overflow(reason: PoolOverflowReason): { ok: false; reason: PoolOverflowReason } {
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
