// The waypoint's HTTP front: takes tunnels whose protocol was detected (waypoint.ts) and serves
// HTTP/1.1 (`http1.ts`: keep-alive, chunked, Upgrade passed through) or HTTP/2 prior knowledge
// (`http2.ts`: h2c, gRPC with trailers and streaming) on them. Each hands its requests to the
// one pipeline (`pipeline.ts`), which carries a request to its record (`request-record.ts`,
// `onRequest`) and calls the protocol as an adapter (`http/adapter.ts`) for framing.
// Upstream HTTP/1.1 connections are pooled and kept alive (`h1-pool.ts`); HTTP/2 shares a few
// sessions per endpoint (`h2-sessions.ts`). Every upstream connection is an HBONE tunnel
// opened *as the waypoint*.
import http from 'node:http';
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import type { SocketAddr } from '../../common/addr.js';
import type { Workload } from '../../xds/resources.js';
import type { HttpProxyDeps } from './http-types.js';
import type { TunnelContext } from '../tunnel-context.js';
import { socketOf } from './stream-adapter.js';
import { RequestPipeline } from '../pipeline.js';
import { UpstreamHttp1Pool, UPSTREAM_IDLE_MS, type H1PoolStats } from '../upstream/h1-pool.js';
import { Http1Adapter } from './http1.js';
import { Http2Adapter } from './http2.js';

/** Headers over this are refused with 431 (Istio/Envoy's default limit is 60 KiB). */
export const MAX_HEADER_BYTES = 60 * 1024;

/**
 * Streams a downstream h2c / gRPC connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
 * Envoy's default is 2^31-1, but its edge best practices set 100, as nghttp2 recommends; without
 * a limit one client could open any number of streams and each costs memory until answered.
 * A client that opens more gets RST_STREAM REFUSED_STREAM (nghttp2), which tells it the request
 * was not processed and may be retried.
 */
export const H2_DOWNSTREAM_MAX_STREAMS = 100;

export class HttpProxy {
  private readonly h1: http.Server;
  private readonly h2: http2.Http2Server;
  private readonly contexts = new WeakMap<object, TunnelContext>();
  /** Set around h2.emit('connection'): the server creates the session (and emits 'session') synchronously. */
  private pendingH2?: TunnelContext;
  private readonly pool: UpstreamHttp1Pool;
  private readonly http2: Http2Adapter;

  constructor(deps: HttpProxyDeps) {
    const log = deps.logger.child({ part: 'http' });
    const pipeline = new RequestPipeline(deps, log);
    const dial = (ep: { workload: Workload; authority: SocketAddr }) =>
      deps.connect(ep.workload, ep.authority);
    this.pool = new UpstreamHttp1Pool(dial, log, deps.upstreamIdleMs ?? UPSTREAM_IDLE_MS);
    const contextOf = (o: object) => this.contexts.get(o);
    const http1 = new Http1Adapter(pipeline, this.pool, contextOf, log, (socket) =>
      this.h1.emit('connection', socket),
    );
    this.http2 = new Http2Adapter(pipeline, contextOf, dial, log, deps.upstreamIdleMs ?? UPSTREAM_IDLE_MS);

    this.h1 = http.createServer({ maxHeaderSize: MAX_HEADER_BYTES, requireHostHeader: false }, (req, res) =>
      http1.onRequest(req, res),
    );
    this.h1.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) =>
      http1.onClientError(err, socket),
    );
    this.h1.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) =>
      http1.onUpgrade(req, socket, head),
    );
    // HTTP/1.1 CONNECT inside a tunnel: refused (Envoy's default), never a way past the pipeline.
    this.h1.on('connect', (req: http.IncomingMessage, socket: Duplex) => http1.onConnect(req, socket));
    this.h2 = http2.createServer({
      maxSessionMemory: 16,
      settings: { maxHeaderListSize: MAX_HEADER_BYTES, maxConcurrentStreams: H2_DOWNSTREAM_MAX_STREAMS },
    });
    this.h2.on('session', (session) => {
      if (this.pendingH2) this.contexts.set(session, this.pendingH2);
    });
    this.h2.on('stream', (stream, headers) => this.http2.onStream(stream, headers));
    this.h2.on('sessionError', (err) => log.debug({ err: err.message }, 'h2 session error'));
  }

  /** Serves HTTP/1.1 on a tunnel whose first bytes have been unshifted back. */
  serveHttp1(tunnel: Duplex, ctx: TunnelContext): void {
    const sock = socketOf(tunnel);
    this.contexts.set(sock, ctx);
    this.h1.emit('connection', sock);
  }

  /** Serves HTTP/2 (h2c prior knowledge, gRPC) on a tunnel. */
  serveHttp2(tunnel: Duplex, ctx: TunnelContext): void {
    this.pendingH2 = ctx;
    try {
      this.h2.emit('connection', socketOf(tunnel));
    } finally {
      this.pendingH2 = undefined;
    }
  }

  /** Upstream HTTP/1.1 connections: opened, reused, open now. */
  upstreamStats(): H1PoolStats {
    return this.pool.stats();
  }

  close(): void {
    this.pool.close();
    this.http2.close();
  }
}
