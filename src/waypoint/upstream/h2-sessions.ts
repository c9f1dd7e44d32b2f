// Upstream HTTP/2 sessions of the waypoint: per endpoint, a few HTTP/2 sessions (each over one
// HBONE tunnel to endpointIP:port, opened as the waypoint), a bound on the streams open on each,
// and a bounded FIFO of requests waiting for a stream. Envoy's HTTP/2 pool does the same: it
// never opens more streams than the peer's SETTINGS_MAX_CONCURRENT_STREAMS (and its own cap),
// opens another connection when they are full, queues requests in the cluster's pending queue
// and answers 503 overflow past `max_pending_requests` (default 1 024).
//
// Why the bound matters (reproduced with the l7 bench at 5 000 req/s of h2c): without it every
// downstream stream became an upstream stream on the one session; nghttp2 queued those beyond
// the peer's limit, the session stopped making progress, memory grew by ~25 KB per stream, and
// when the clients left, cancelling tens of thousands of queued streams took nghttp2 many
// seconds of CPU (its queue is searched per cancelled stream). A request waiting here is just an
// entry in an array: abandoned, it is removed at once and never reaches the upstream.
import http2 from 'node:http2';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../common/log.js';
import { socketOf } from '../http/stream-adapter.js';
import type { UpstreamEndpoint } from './upstream.js';

/** Streams the waypoint opens at most on one upstream session (the peer's limit when lower). */
export const H2_UPSTREAM_MAX_STREAMS = 100;
/** Sessions per endpoint before requests queue (Envoy opens another connection when one is full). */
export const H2_UPSTREAM_MAX_SESSIONS = 4;
/** Requests waiting for a stream per endpoint before 503 overflow (Envoy's max_pending_requests default). */
export const H2_UPSTREAM_MAX_PENDING = 1024;

/** A stream slot on an upstream session; `release` once the stream has closed (idempotent). */
export type H2Slot =
  | { ok: true; session: http2.ClientHttp2Session; release(): void }
  | { ok: false; error: 'overflow'; reason: 'pending requests overflow' }
  | { ok: false; error: 'connect-failure' }
  | { ok: false; error: 'cancelled' };

interface Session {
  /** Resolves once the tunnel is open and the session created. */
  ready: Promise<http2.ClientHttp2Session>;
  session?: http2.ClientHttp2Session;
  /** Streams open (or being opened) on it. */
  active: number;
  dead: boolean;
}

interface Waiter {
  grant(slot: H2Slot): void;
}

interface EndpointSessions {
  sessions: Session[];
  pending: Waiter[];
}

export interface H2SessionOptions {
  idleMs: number;
  maxStreams?: number;
  maxSessions?: number;
  maxPending?: number;
}

export class UpstreamH2Sessions {
  private readonly endpoints = new Map<string, EndpointSessions>();
  private readonly maxStreams: number;
  private readonly maxSessions: number;
  private readonly maxPending: number;

  constructor(
    private readonly dial: (ep: UpstreamEndpoint) => Promise<Duplex>,
    private readonly log: Logger,
    private readonly opts: H2SessionOptions,
  ) {
    this.maxStreams = opts.maxStreams ?? H2_UPSTREAM_MAX_STREAMS;
    this.maxSessions = opts.maxSessions ?? H2_UPSTREAM_MAX_SESSIONS;
    this.maxPending = opts.maxPending ?? H2_UPSTREAM_MAX_PENDING;
  }

  /**
   * A stream slot on a session to `ep`: at once when a session has room (or a new one may be
   * opened), else after the requests queued before it; overflow when the queue is full;
   * `cancelled` when `signal` aborts while waiting.
   */
  acquire(ep: UpstreamEndpoint, signal: AbortSignal): Promise<H2Slot> {
    if (signal.aborted) return Promise.resolve({ ok: false, error: 'cancelled' });
    const key = `${ep.workload.uid}|${ep.authority}`;
    let e = this.endpoints.get(key);
    if (!e) {
      e = { sessions: [], pending: [] };
      this.endpoints.set(key, e);
    }
    const s = e.pending.length === 0 ? this.roomIn(e, ep, key) : undefined;
    if (s) return this.take(e, s, key);
    if (e.pending.length >= this.maxPending)
      return Promise.resolve({ ok: false, error: 'overflow', reason: 'pending requests overflow' });
    const entry = e;
    return new Promise((resolve) => {
      const waiter: Waiter = {
        grant: (slot) => {
          signal.removeEventListener('abort', onAbort);
          resolve(slot);
        },
      };
      const onAbort = (): void => {
        const i = entry.pending.indexOf(waiter);
        if (i >= 0) entry.pending.splice(i, 1);
        resolve({ ok: false, error: 'cancelled' });
      };
      signal.addEventListener('abort', onAbort, { once: true });
      entry.pending.push(waiter);
    });
  }

  /** Streams open and requests waiting, over all endpoints (tests, debugging). */
  stats(): { sessions: number; active: number; pending: number } {
    let sessions = 0;
    let active = 0;
    let pending = 0;
    for (const e of this.endpoints.values()) {
      sessions += e.sessions.length;
      pending += e.pending.length;
      for (const s of e.sessions) active += s.active;
    }
    return { sessions, active, pending };
  }

  close(): void {
    for (const e of this.endpoints.values()) {
      for (const w of e.pending.splice(0)) w.grant({ ok: false, error: 'cancelled' });
      for (const s of e.sessions) void s.ready.then((x) => x.close()).catch(() => {});
    }
    this.endpoints.clear();
  }

  /** A session with a free stream, or a new one while under maxSessions. */
  private roomIn(e: EndpointSessions, ep: UpstreamEndpoint, key: string): Session | undefined {
    for (const s of e.sessions) if (!s.dead && s.active < this.limitOf(s)) return s;
    if (e.sessions.length >= this.maxSessions) return undefined;
    const s = this.open(e, ep, key);
    e.sessions.push(s);
    return s;
  }

  private limitOf(s: Session): number {
    const peer = s.session?.remoteSettings.maxConcurrentStreams;
    return peer !== undefined && peer > 0 ? Math.min(peer, this.maxStreams) : this.maxStreams;
  }

  private take(e: EndpointSessions, s: Session, key: string): Promise<H2Slot> {
    s.active++;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      s.active--;
      this.servePending(e, key);
    };
    return s.ready.then(
      (session): H2Slot => {
        if (session.closed || session.destroyed) {
          release();
          return { ok: false, error: 'connect-failure' };
        }
        return { ok: true, session, release };
      },
      (): H2Slot => {
        release();
        return { ok: false, error: 'connect-failure' };
      },
    );
  }

  /** Hands freed streams (or a new session) to the oldest waiting requests. */
  private servePending(e: EndpointSessions, key: string): void {
    while (e.pending.length > 0) {
      const ep = this.endpointOf.get(key);
      const s = ep ? this.roomIn(e, ep, key) : undefined;
      if (!s) return;
      const w = e.pending.shift()!;
      void this.take(e, s, key).then((slot) => w.grant(slot));
    }
  }

  /** The endpoint each key was opened for (a new session may be needed while requests wait). */
  private readonly endpointOf = new Map<string, UpstreamEndpoint>();

  private open(e: EndpointSessions, ep: UpstreamEndpoint, key: string): Session {
    this.endpointOf.set(key, ep);
    const s: Session = {
      ready: undefined as unknown as Promise<http2.ClientHttp2Session>,
      active: 0,
      dead: false,
    };
    const drop = (): void => {
      if (s.dead) return;
      s.dead = true;
      const i = e.sessions.indexOf(s);
      if (i >= 0) e.sessions.splice(i, 1);
      if (e.sessions.length === 0 && e.pending.length === 0 && this.endpoints.get(key) === e) {
        this.endpoints.delete(key);
        this.endpointOf.delete(key);
      }
      // Requests waiting may get a new session.
      this.servePending(e, key);
    };
    s.ready = this.dial(ep).then((tunnel) => {
      const session = http2.connect(`http://${ep.authority}`, {
        // The peer's end closes the session (no half-open session that takes requests and never answers).
        createConnection: () => socketOf(tunnel, false) as unknown as Socket,
      });
      s.session = session;
      session.on('error', (err) => {
        this.log.debug({ 'upstream.addr': ep.authority, err: err.message }, 'upstream h2 session error');
        drop();
      });
      session.once('close', drop);
      session.once('goaway', drop);
      session.setTimeout(this.opts.idleMs, () => {
        drop();
        session.close();
      });
      // Peer's SETTINGS may lower (or raise) the stream limit: serve waiting requests.
      session.on('remoteSettings', () => this.servePending(e, key));
      return session;
    });
    s.ready.catch(drop);
    return s;
  }
}
