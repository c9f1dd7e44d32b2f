// Upstream HTTP/1.1 connections of the waypoint, kept alive and reused. Each connection is one
// HBONE CONNECT stream to endpointIP:port (as the waypoint), seen as a socket (`socketOf`), and
// carries one request at a time. Per destination, `ConnectionPoolLimiter` (resilience/pool.ts)
// decides reuse, new connection, queue or overflow, keyed by endpoint (workload uid +
// authority), so `tcp.maxConnections` counts real connections and `maxRequestsPerConnection`
// retires them; this file maps the limiter's connection ids to the sockets.
//
// Why an earlier keep-alive attempt hung: a pooled tunnel whose backend closed while it was idle
// was half-closed (the destination node proxy ended the stream, its app socket gone) but stayed
// writable on our side (`allowHalfOpen`), so it was reused; the request reached the node proxy,
// whose splice had already unpiped, and no answer or error ever came back. Here the peer's end
// closes the connection at once (`allowHalfOpen: false`), a dead or half-closed connection is
// never handed out, and idle connections close before the backend's `Keep-Alive: timeout` hint.
import http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../common/log.js';
import { ConnectionPoolLimiter, type PoolOverflowReason } from '../resilience/pool.js';
import { socketOf, type SocketLike } from '../http/stream-adapter.js';
import type { UpstreamEndpoint } from './upstream.js';

/**
 * How long an upstream connection may stay idle. Istio's `idleTimeout` default is 1 h; the
 * waypoint keeps HBONE streams (slots on the destination's HTTP/2 connection) for 60 s only,
 * and less when the backend announces a shorter keep-alive.
 */
export const UPSTREAM_IDLE_MS = 60_000;

export interface H1Request {
  method: string;
  path: string;
  headers: http.OutgoingHttpHeaders;
}

export type H1Exchange =
  | { ok: true; request: http.ClientRequest; reused: boolean }
  | { ok: false; error: 'connect-failure' }
  | { ok: false; error: 'overflow'; reason: PoolOverflowReason };

type Lease = Extract<Awaited<ReturnType<ConnectionPoolLimiter['acquire']>>, { ok: true }>;

interface PooledConnection {
  id: number;
  socket: SocketLike;
  limiter: ConnectionPoolLimiter;
  /** The destination ended the stream (its app closed): never reused. */
  peerEnded: boolean;
  /** Listens while idle: any byte then closes the connection. */
  onIdleData: () => void;
  /** The request on it now; undefined while idle. */
  lease?: Lease;
  idleTimer?: NodeJS.Timeout;
}

export interface H1PoolStats {
  /** Connections (HBONE streams) opened since start. */
  opened: number;
  /** Requests sent on a connection that had carried one before. */
  reused: number;
  open: number;
}

export class UpstreamHttp1Pool {
  private readonly conns = new WeakMap<ConnectionPoolLimiter, Map<number, PooledConnection>>();
  /** For pod-addressed requests, which have no destination (and so no DestinationRule). */
  private readonly fallback = new ConnectionPoolLimiter({});
  private readonly all = new Set<PooledConnection>();
  private opened = 0;
  private reusedCount = 0;

  constructor(
    private readonly dial: (ep: UpstreamEndpoint) => Promise<Duplex>,
    private readonly log: Logger,
    private readonly idleMs = UPSTREAM_IDLE_MS,
  ) {}

  /**
   * A request to `ep` on a pooled connection (the body is the caller's to write). Waits in the
   * limiter's queue when `maxConnections` is reached; `signal` abandons the wait.
   */
  async request(
    limiter: ConnectionPoolLimiter | undefined,
    ep: UpstreamEndpoint,
    req: H1Request,
    signal?: AbortSignal,
  ): Promise<H1Exchange> {
    const lim = limiter ?? this.fallback;
    const key = `${ep.workload.uid}|${ep.authority}`;
    for (;;) {
      const lease = await lim.acquire(signal, key);
      if (!lease.ok) return { ok: false, error: 'overflow', reason: lease.reason };
      let conn = this.connsOf(lim).get(lease.connection.id);
      if (lease.fresh) {
        let tunnel: Duplex;
        try {
          tunnel = await this.dial(ep);
        } catch {
          lease.release({ closed: true });
          return { ok: false, error: 'connect-failure' };
        }
        conn = this.register(lim, lease.connection.id, tunnel);
      } else if (!conn || !usable(conn)) {
        // Closed while idle and not yet forgotten: drop it and ask again.
        lease.release({ closed: true });
        if (conn) this.closeConn(conn);
        continue;
      } else this.reusedCount++;
      clearTimeout(conn.idleTimer);
      conn.socket.off('data', conn.onIdleData);
      let request: http.ClientRequest;
      try {
        request = http.request({
          method: req.method,
          path: req.path,
          // An explicit keep-alive: without an agent Node would send `connection: close`.
          headers: { ...req.headers, connection: 'keep-alive' },
          createConnection: () => conn.socket as unknown as Socket,
        });
      } catch (err) {
        // A path or header Node refuses (a rewrite gone wrong): nothing was sent.
        this.idle(conn, lease, this.idleMsOf(conn));
        throw err;
      }
      conn.lease = lease;
      this.watch(conn, request);
      return { ok: true, request, reused: !lease.fresh };
    }
  }

  stats(): H1PoolStats {
    return { opened: this.opened, reused: this.reusedCount, open: this.all.size };
  }

  /** Closes every pooled connection (stop). */
  close(): void {
    for (const c of this.all) this.closeConn(c);
  }

  /** Ends one connection (gracefully: the adapter ends the HBONE stream); 'close' does the books. */
  private closeConn(conn: PooledConnection): void {
    clearTimeout(conn.idleTimer);
    if (!conn.socket.destroyed) conn.socket.destroy();
  }

  private connsOf(limiter: ConnectionPoolLimiter): Map<number, PooledConnection> {
    let map = this.conns.get(limiter);
    if (!map) {
      const created = new Map<number, PooledConnection>();
      // An idle connection closed to make room for another endpoint (maxConnections).
      limiter.onEvict((id) => {
        const c = created.get(id);
        if (c) this.closeConn(c);
      });
      this.conns.set(limiter, (map = created));
    }
    return map;
  }

  private register(limiter: ConnectionPoolLimiter, id: number, tunnel: Duplex): PooledConnection {
    const socket = socketOf(tunnel, false);
    const conn: PooledConnection = { id, socket, limiter, peerEnded: false, onIdleData: () => {} };
    conn.onIdleData = () => {
      this.log.debug({ 'upstream.conn': id }, 'upstream sent bytes on an idle connection; closing');
      this.closeConn(conn);
    };
    // Seen on the tunnel itself, whether or not anyone reads the idle socket.
    tunnel.once('end', () => {
      conn.peerEnded = true;
      if (!conn.lease) this.closeConn(conn);
    });
    const map = this.connsOf(limiter);
    map.set(id, conn);
    this.all.add(conn);
    this.opened++;
    socket.on('error', () => {}); // reported to the request in flight, if any
    socket.once('close', () => {
      clearTimeout(conn.idleTimer);
      map.delete(id);
      this.all.delete(conn);
      if (conn.lease) conn.lease.release({ closed: true });
      else limiter.discard(id);
      conn.lease = undefined;
    });
    return conn;
  }

  /** When the exchange is over: back to the pool ('free': response read, request sent) or closed. */
  private watch(conn: PooledConnection, request: http.ClientRequest): void {
    let hintMs = this.idleMsOf(conn);
    request.once('response', (res) => {
      const hint = /timeout=(\d+)/.exec(String(res.headers['keep-alive'] ?? ''))?.[1];
      // As Node's agent: stop a second before the server's announced timeout.
      if (hint !== undefined) hintMs = Math.min(hintMs, Number(hint) * 1000 - 1000);
    });
    conn.socket.once('free', () => {
      const lease = conn.lease;
      if (!lease) return;
      conn.lease = undefined;
      this.idle(conn, lease, hintMs);
    });
  }

  /** DestinationRule `connectionPool.http.idleTimeout`, else the pool's default. */
  private idleMsOf(conn: PooledConnection): number {
    return conn.limiter.policy.idleTimeoutMs ?? this.idleMs;
  }

  /** The request on `conn` is over: back to the pool for `idleMs`, or closed if it cannot be reused. */
  private idle(conn: PooledConnection, lease: Lease, idleMs: number): void {
    const reusable = idleMs > 0 && usable(conn);
    const { closeConnection } = lease.release({ closed: !reusable });
    if (!reusable || closeConnection) return this.closeConn(conn);
    // Read while idle, so a close is seen; bytes from the backend now belong to no request
    // (Envoy closes such a connection too), and must never be read as the next one's answer.
    conn.socket.on('data', conn.onIdleData);
    conn.idleTimer = setTimeout(() => {
      this.log.debug({ 'upstream.conn': conn.id, idle_ms: idleMs }, 'upstream connection idle; closing');
      this.closeConn(conn);
    }, idleMs);
    conn.idleTimer.unref();
  }
}

/** A connection that can carry another request: open both ways. */
function usable(c: PooledConnection): boolean {
  return !c.peerEnded && !c.socket.destroyed && c.socket.writable && !c.socket.readableEnded;
}
