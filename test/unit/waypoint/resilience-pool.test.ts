import { describe, expect, it } from 'vitest';
import { failureAnswer } from '../../../src/waypoint/resilience/failure-answer.js';
import {
  ConnectionPoolLimiter,
  overflowAnswer,
  type PoolAcquireResult,
} from '../../../src/waypoint/resilience/pool.js';

type Granted = Extract<PoolAcquireResult, { ok: true }>;

function granted(result: PoolAcquireResult | 'queue'): Granted {
  if (result === 'queue' || !result.ok)
    throw new Error(`expected a connection, got ${JSON.stringify(result)}`);
  return result;
}

describe('ConnectionPoolLimiter', () => {
  it('queues beyond maxConnections and overflows beyond http1MaxPendingRequests', async () => {
    const pool = new ConnectionPoolLimiter({ maxConnections: 1, http1MaxPendingRequests: 1 });
    const first = granted(await pool.acquire());
    expect(first).toMatchObject({ fresh: true, connection: { id: 1, requests: 1 } });

    let secondResult: PoolAcquireResult | undefined;
    const second = pool.acquire().then((r) => (secondResult = r));
    expect(pool.stats()).toMatchObject({ connections: 1, active: 1, pending: 1 });

    expect(await pool.acquire()).toEqual({ ok: false, reason: 'pending requests overflow' });
    expect(pool.stats().overflows).toBe(1);

    expect(first.release()).toEqual({ closeConnection: false });
    await second;
    expect(secondResult).toMatchObject({ ok: true, fresh: false, connection: { id: 1, requests: 2 } });
    expect(pool.stats()).toMatchObject({ connections: 1, active: 1, pending: 0 });
  });

  it('overflows at once when http2MaxRequests requests are active', () => {
    const pool = new ConnectionPoolLimiter({ http2MaxRequests: 2 });
    const a = granted(pool.tryAcquire());
    granted(pool.tryAcquire());
    expect(pool.tryAcquire()).toEqual({ ok: false, reason: 'max requests overflow' });
    a.release();
    expect(granted(pool.tryAcquire()).fresh).toBe(false); // reuses the idle connection
  });

  it('checks max requests before queueing (Envoy order)', () => {
    const pool = new ConnectionPoolLimiter({
      http2MaxRequests: 1,
      maxConnections: 1,
      http1MaxPendingRequests: 10,
    });
    granted(pool.tryAcquire());
    expect(pool.tryAcquire()).toEqual({ ok: false, reason: 'max requests overflow' });
  });

  it.each([
    [{}, 'unlimited: every request gets a connection'],
    [{ maxConnections: 1000 }, 'under the connection limit'],
  ])('%j: %s', (policy, _what) => {
    const pool = new ConnectionPoolLimiter(policy);
    for (let i = 0; i < 100; i++) expect(granted(pool.tryAcquire()).fresh).toBe(true);
    expect(pool.stats()).toMatchObject({ connections: 100, active: 100 });
  });

  it('without http1MaxPendingRequests, queues without limit', () => {
    const pool = new ConnectionPoolLimiter({ maxConnections: 1 });
    granted(pool.tryAcquire());
    for (let i = 0; i < 50; i++) void pool.acquire();
    expect(pool.stats().pending).toBe(50);
    expect(pool.tryAcquire()).toBe('queue');
  });

  it('retires a connection after maxRequestsPerConnection requests', () => {
    const pool = new ConnectionPoolLimiter({ maxRequestsPerConnection: 2 });
    const a = granted(pool.tryAcquire());
    expect(a.release()).toEqual({ closeConnection: false });
    const b = granted(pool.tryAcquire());
    expect(b).toMatchObject({ fresh: false, connection: { id: 1, requests: 2 } });
    expect(b.release()).toEqual({ closeConnection: true });
    const c = granted(pool.tryAcquire());
    expect(c).toMatchObject({ fresh: true, connection: { id: 2, requests: 1 } });
    expect(pool.stats().connections).toBe(1);
  });

  it('forgets a connection the upstream closed and opens a new one for the queue', async () => {
    const pool = new ConnectionPoolLimiter({ maxConnections: 1 });
    const a = granted(pool.tryAcquire());
    const waiting = pool.acquire();
    a.release({ closed: true });
    expect(granted(await waiting)).toMatchObject({ fresh: true, connection: { id: 2 } });
  });

  it('serves queued requests oldest first', async () => {
    const pool = new ConnectionPoolLimiter({ maxConnections: 1 });
    const a = granted(pool.tryAcquire());
    const order: number[] = [];
    const waits = [1, 2, 3].map((n) =>
      pool.acquire().then((r) => {
        order.push(n);
        granted(r).release();
      }),
    );
    a.release();
    await Promise.all(waits);
    expect(order).toEqual([1, 2, 3]);
    expect(pool.stats()).toMatchObject({ connections: 1, idle: 1, active: 0, pending: 0 });
  });

  it('drops a queued request whose signal aborts', async () => {
    const pool = new ConnectionPoolLimiter({ maxConnections: 1 });
    const a = granted(pool.tryAcquire());
    const controller = new AbortController();
    const waiting = pool.acquire(controller.signal);
    controller.abort();
    expect(await waiting).toEqual({ ok: false, reason: 'pending request cancelled' });
    expect(pool.stats().pending).toBe(0);
    a.release();
    expect(pool.stats()).toMatchObject({ idle: 1, active: 0 });
    const aborted = new AbortController();
    aborted.abort();
    granted(pool.tryAcquire());
    expect(await pool.acquire(aborted.signal)).toEqual({ ok: false, reason: 'pending request cancelled' });
  });

  it('counts a release once', () => {
    const pool = new ConnectionPoolLimiter({});
    const a = granted(pool.tryAcquire());
    a.release();
    a.release();
    expect(pool.stats()).toMatchObject({ active: 0, idle: 1, connections: 1 });
  });

  it('keys connections: an idle connection serves only its own endpoint', () => {
    const pool = new ConnectionPoolLimiter({});
    granted(pool.tryAcquire('a')).release();
    const b = granted(pool.tryAcquire('b'));
    expect(b).toMatchObject({ fresh: true, connection: { id: 2, key: 'b' } });
    expect(granted(pool.tryAcquire('a'))).toMatchObject({ fresh: false, connection: { id: 1, key: 'a' } });
  });

  it('at maxConnections, closes an idle connection of another endpoint instead of queueing', () => {
    const pool = new ConnectionPoolLimiter({ maxConnections: 1 });
    const evicted: number[] = [];
    pool.onEvict((id) => evicted.push(id));
    granted(pool.tryAcquire('a')).release();
    expect(granted(pool.tryAcquire('b'))).toMatchObject({ fresh: true, connection: { id: 2, key: 'b' } });
    expect(evicted).toEqual([1]);
    expect(pool.stats()).toMatchObject({ connections: 1, idle: 0, active: 1 });
  });

  it('hands a connection released for one endpoint to a waiter for another (evicting it)', async () => {
    const pool = new ConnectionPoolLimiter({ maxConnections: 1 });
    const evicted: number[] = [];
    pool.onEvict((id) => evicted.push(id));
    const a = granted(pool.tryAcquire('a'));
    const waiting = pool.acquire(undefined, 'b');
    a.release();
    expect(granted(await waiting)).toMatchObject({ fresh: true, connection: { key: 'b' } });
    expect(evicted).toEqual([1]);
  });

  it('forgets an idle connection that died (discard) and serves the queue with a new one', async () => {
    const pool = new ConnectionPoolLimiter({ maxConnections: 2 });
    const a = granted(pool.tryAcquire('a'));
    granted(pool.tryAcquire('a'));
    a.release();
    expect(pool.discard(a.connection.id)).toBe(true);
    expect(pool.discard(a.connection.id)).toBe(false);
    expect(pool.stats()).toMatchObject({ connections: 1, idle: 0 });
    expect(granted(pool.tryAcquire('a')).fresh).toBe(true);
  });

  it('gives multiplexed (HTTP/2) requests a slot under http2MaxRequests, shared with HTTP/1', () => {
    const pool = new ConnectionPoolLimiter({ http2MaxRequests: 2 });
    const one = pool.tryAcquireRequest();
    granted(pool.tryAcquire());
    expect(pool.tryAcquireRequest()).toEqual({ ok: false, reason: 'max requests overflow' });
    if (!one.ok) throw new Error('expected a slot');
    one.release();
    one.release();
    expect(pool.stats().active).toBe(1);
    expect(pool.tryAcquireRequest().ok).toBe(true);
  });

  it('answers an overflow as Envoy does', () => {
    expect(overflowAnswer()).toEqual({
      status: 503,
      headers: { 'x-envoy-overloaded': 'true', 'content-type': 'text/plain' },
      body: 'upstream connect error or disconnect/reset before headers. reset reason: overflow',
    });
  });
});

describe('failureAnswer', () => {
  it.each([
    ['timeout', 504, 'upstream request timeout', 'UT'],
    [
      'connect-failure',
      503,
      'upstream connect error or disconnect/reset before headers. reset reason: connection failure',
      'UF',
    ],
    [
      'reset',
      503,
      'upstream connect error or disconnect/reset before headers. reset reason: connection termination',
      'UC',
    ],
    [
      'refused-stream',
      503,
      'upstream connect error or disconnect/reset before headers. reset reason: remote refused stream reset',
      'UR',
    ],
    [
      'overflow',
      503,
      'upstream connect error or disconnect/reset before headers. reset reason: overflow',
      'UO',
    ],
  ] as const)('%s → %i "%s" (%s)', (error, status, body, flag) => {
    expect(failureAnswer(error)).toMatchObject({ status, body, responseFlag: flag });
  });
});
