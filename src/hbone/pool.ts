// HBONE client: a pool of mutual-TLS HTTP/2 connections, each carrying up to 100 CONNECT
// streams. Keyed by (source identity, source IP, destination address, expected identity), as
// ztunnel's pool is. Dialing is single-flight per key: a burst of N new tunnels to a fresh
// destination costs ceil(N / 100) handshakes, never N. Idle connections close after 5 minutes;
// HTTP/2 pings detect dead peers. Connection state transitions are logged ("Connecting ->
// Ready", "Ready -> Draining", "-> Closed"). A connection carries new streams only while both
// certificates of its handshake (ours and the peer's leaf) are valid: it drains at the earlier
// notAfter, and acquire() re-checks the clock before each stream (timers can run late), so a
// new stream never rides a connection authenticated by an expired certificate; it dials again.
import http2 from 'node:http2';
import type { ClientHttp2Session, ClientHttp2Stream, OutgoingHttpHeaders } from 'node:http2';
import tls from 'node:tls';
import { X509Certificate, randomFillSync } from 'node:crypto';
import type { Logger } from '../common/log.js';
import { AmbitError, errorMessage } from '../common/errors.js';
import { formatSocketAddr, type HostPort, type SocketAddr } from '../common/addr.js';
import { clientTlsOptions, type TlsIdentity } from './tls.js';
import { defaultTcpConnect, type TcpConnect } from '../common/tcp-connect.js';
import {
  CONNECT_TIMEOUT_MS,
  H2_CLIENT_HEADER_LIST,
  H2_CONNECTION_WINDOW,
  H2_MAX_FRAME_SIZE,
  H2_STREAM_WINDOW,
  PING_INTERVAL_MS,
  PING_TIMEOUT_MS,
  POOL_IDLE_TIMEOUT_MS,
  POOL_MAX_STREAMS_PER_CONNECTION,
} from './constants.js';

export interface TunnelRequest {
  /** Certificate of the source workload's identity. */
  source: TlsIdentity;
  /** Source pod IP: the HBONE connection is bound to it, so the far side sees who dials. */
  sourceIp: string;
  /** Source address of the app connection, sent as `forwarded: for=`. */
  clientAddr: HostPort;
  /** Where to dial: destination pod IP (or waypoint) and port 15008. */
  hboneAddr: HostPort;
  /** SPIFFE id the server must present. */
  expectedIdentity: string;
  /** CONNECT :authority, e.g. "10.0.0.5:8080". */
  authority: SocketAddr;
}

/** Stream buffer: larger than the 16 KiB default so a burst moves in one write (see bench/README.md). */
const STREAM_HIGH_WATER_MARK = 256 * 1024;

type SessionState = 'Connecting' | 'Ready' | 'Draining' | 'Closed';

interface PooledSession {
  id: number;
  session: ClientHttp2Session;
  state: SessionState;
  active: number;
  maxStreams: number;
  idleTimer?: NodeJS.Timeout;
  pingTimer?: NodeJS.Timeout;
  pingSentAt?: number;
  /** Earlier notAfter (ms) of the two certificates this connection was authenticated with. */
  expiresAt: number;
  expiryTimer?: NodeJS.Timeout;
}

interface KeyState {
  sessions: PooledSession[];
  dialing?: Promise<PooledSession>;
}

export interface PoolStats {
  keys: number;
  connections: number;
  streams: number;
  handshakes: number;
}

export class HbonePool {
  private readonly keys = new Map<string, KeyState>();
  private nextId = 1;
  private handshakes = 0;
  private closed = false;

  constructor(
    private readonly logger: Logger,
    private readonly opts: {
      maxStreams?: number;
      idleMs?: number;
      pingIntervalMs?: number;
      pingTimeoutMs?: number;
      /** How the TCP connection is opened; netns mode opens it from inside the source pod. */
      connect?: TcpConnect;
    } = {},
  ) {}

  /** Opens a CONNECT stream; resolves once the server answered 200 (it has reached the app). */
  async connect(req: TunnelRequest): Promise<ClientHttp2Stream> {
    const ps = await this.acquire(req);
    let stream: ClientHttp2Stream;
    try {
      stream = ps.session.request(connectHeaders(req), {
        endStream: false,
        highWaterMark: STREAM_HIGH_WATER_MARK,
      } as http2.ClientSessionRequestOptions);
    } catch (err) {
      this.release(ps);
      throw new AmbitError(
        'HBONE_CONNECT_REFUSED',
        `could not open a stream to ${req.authority}: ${errorMessage(err)}`,
      );
    }
    stream.once('close', () => this.release(ps));
    // Errors are reported through awaitResponse and then the splice; a late one must not crash us.
    stream.on('error', () => {});
    return await awaitResponse(stream, req);
  }

  stats(): PoolStats {
    let connections = 0;
    let streams = 0;
    for (const k of this.keys.values()) {
      connections += k.sessions.length;
      for (const s of k.sessions) streams += s.active;
    }
    return { keys: this.keys.size, connections, streams, handshakes: this.handshakes };
  }

  /** Closes every pooled connection (GOAWAY; open streams may finish). */
  close(): void {
    this.closed = true;
    for (const k of this.keys.values()) for (const s of k.sessions) this.transition(s, 'Draining');
  }

  private keyOf(req: TunnelRequest): string {
    return `${req.source.spiffeId}|${req.sourceIp}|${req.hboneAddr.host}:${req.hboneAddr.port}|${req.expectedIdentity}`;
  }

  private async acquire(req: TunnelRequest): Promise<PooledSession> {
    if (this.closed) throw new AmbitError('HBONE_CONNECT_REFUSED', 'pool is closed');
    const key = this.keyOf(req);
    let ks = this.keys.get(key);
    if (!ks) this.keys.set(key, (ks = { sessions: [] }));
    for (;;) {
      const now = Date.now();
      for (const s of ks.sessions) if (s.state === 'Ready' && now >= s.expiresAt) this.expire(s);
      const ready = ks.sessions.find((s) => s.state === 'Ready' && s.active < s.maxStreams);
      if (ready) {
        ready.active++;
        if (ready.idleTimer) clearTimeout(ready.idleTimer);
        ready.idleTimer = undefined;
        return ready;
      }
      const state = ks;
      state.dialing ??= this.dial(req, key, state).finally(() => (state.dialing = undefined));
      await state.dialing;
    }
  }

  private release(ps: PooledSession): void {
    ps.active--;
    if (ps.active === 0 && ps.state === 'Ready') {
      ps.idleTimer = setTimeout(
        () => this.transition(ps, 'Draining'),
        this.opts.idleMs ?? POOL_IDLE_TIMEOUT_MS,
      );
      ps.idleTimer.unref();
    }
  }

  private async dial(req: TunnelRequest, key: string, ks: KeyState): Promise<PooledSession> {
    const id = this.nextId++;
    const log = this.logger.child({
      conn: id,
      'dst.hbone_addr': `${req.hboneAddr.host}:${req.hboneAddr.port}`,
    });
    log.debug(
      { 'src.identity': req.source.spiffeId, 'dst.identity': req.expectedIdentity },
      'hbone pool: -> Connecting',
    );
    this.handshakes++;
    const socket = await tlsConnect(req, this.opts.connect ?? defaultTcpConnect);
    const session = http2.connect(`https://${formatSocketAddr(req.hboneAddr.host, req.hboneAddr.port)}`, {
      createConnection: () => socket,
      maxSessionMemory: 64,
      settings: {
        enablePush: false,
        initialWindowSize: H2_STREAM_WINDOW,
        maxFrameSize: H2_MAX_FRAME_SIZE,
        maxHeaderListSize: H2_CLIENT_HEADER_LIST,
      },
    });
    const ps: PooledSession = {
      id,
      session,
      state: 'Connecting',
      active: 0,
      maxStreams: this.opts.maxStreams ?? POOL_MAX_STREAMS_PER_CONNECTION,
      expiresAt: certificatesExpireAt(socket, req.source),
    };
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new AmbitError('HBONE_TIMEOUT', 'HTTP/2 settings not received within 10 s')),
        CONNECT_TIMEOUT_MS,
      );
      session.once('remoteSettings', (settings) => {
        clearTimeout(timer);
        ps.maxStreams = Math.min(ps.maxStreams, settings.maxConcurrentStreams ?? Infinity);
        resolve();
      });
      session.once('error', (err) => {
        clearTimeout(timer);
        reject(
          new AmbitError(
            'HBONE_TLS_FAILURE',
            `HTTP/2 handshake with ${req.hboneAddr.host} failed: ${err.message}`,
          ),
        );
      });
      // TLS 1.3: the client finishes its handshake before the server has checked the client
      // certificate; a server that refuses it just closes. Without this the dial waited 10 s.
      session.once('close', () => {
        clearTimeout(timer);
        reject(
          new AmbitError(
            'HBONE_TLS_FAILURE',
            `${req.hboneAddr.host} closed the connection during the handshake (did it refuse our certificate?)`,
          ),
        );
      });
    }).catch((err) => {
      session.destroy();
      throw err;
    });
    if (ps.expiresAt <= Date.now()) {
      session.destroy();
      throw new AmbitError(
        'HBONE_TLS_FAILURE',
        `connection to ${req.hboneAddr.host} was made with a certificate that is already expired (ours or the peer's)`,
      );
    }
    session.setLocalWindowSize(H2_CONNECTION_WINDOW);
    session.on('error', (err) => log.debug({ err: err.message }, 'hbone pool: session error'));
    session.once('goaway', () => this.transition(ps, 'Draining'));
    session.once('close', () => {
      this.transition(ps, 'Closed');
      ks.sessions = ks.sessions.filter((s) => s !== ps);
      if (ks.sessions.length === 0 && !ks.dialing) this.keys.delete(key);
    });
    ps.pingTimer = setInterval(() => this.ping(ps, log), this.opts.pingIntervalMs ?? PING_INTERVAL_MS);
    ps.pingTimer.unref();
    // setTimeout holds at most ~24.8 days; a longer-lived connection is re-armed on the way.
    const armExpiry = () => {
      const wait = Math.max(0, ps.expiresAt - Date.now());
      ps.expiryTimer = setTimeout(
        () => (wait > MAX_TIMER_MS ? armExpiry() : this.expire(ps)),
        Math.min(wait, MAX_TIMER_MS),
      );
      ps.expiryTimer.unref();
    };
    armExpiry();
    ks.sessions.push(ps);
    this.transition(ps, 'Ready', log);
    return ps;
  }

  /** A certificate of this connection expired: no new stream on it; open ones finish. */
  private expire(ps: PooledSession): void {
    if (ps.state !== 'Ready') return;
    this.logger.info(
      { conn: ps.id, streams: ps.active, 'cert.expired_at': new Date(ps.expiresAt).toISOString() },
      'hbone pool: a certificate of this connection expired; draining it, new streams dial again',
    );
    this.transition(ps, 'Draining');
  }

  private ping(ps: PooledSession, log: Logger): void {
    const now = Date.now();
    if (ps.pingSentAt !== undefined) {
      const timeout = this.opts.pingTimeoutMs ?? PING_TIMEOUT_MS;
      if (now - ps.pingSentAt > timeout) {
        log.warn({ timeout_ms: timeout }, 'hbone pool: peer did not answer HTTP/2 ping; closing connection');
        // With an error: destroyed without one, Node ends every open stream with code 0 and no
        // 'error', which looks like END_STREAM; the streams must fail (splice.ts resets the apps).
        ps.session.destroy(
          new AmbitError('HBONE_TIMEOUT', `peer did not answer an HTTP/2 ping within ${timeout} ms`),
        );
      }
      return;
    }
    ps.pingSentAt = now;
    const sent = ps.session.ping((err) => {
      if (!err) ps.pingSentAt = undefined;
    });
    if (!sent) ps.pingSentAt = undefined;
  }

  private transition(ps: PooledSession, to: SessionState, log?: Logger): void {
    if (ps.state === to || ps.state === 'Closed') return;
    const from = ps.state;
    ps.state = to;
    (log ?? this.logger).debug({ conn: ps.id, streams: ps.active }, `hbone pool: ${from} -> ${to}`);
    if (to === 'Draining') {
      if (ps.idleTimer) clearTimeout(ps.idleTimer);
      if (!ps.session.closed && !ps.session.destroyed) ps.session.close();
    }
    if (to === 'Closed') {
      if (ps.idleTimer) clearTimeout(ps.idleTimer);
      if (ps.pingTimer) clearInterval(ps.pingTimer);
    }
    if (to !== 'Ready' && ps.expiryTimer) clearTimeout(ps.expiryTimer);
  }
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/** The earlier notAfter of our leaf and the peer's leaf (ms); now when either cannot be read. */
function certificatesExpireAt(socket: tls.TLSSocket, own: TlsIdentity): number {
  try {
    const peer = socket.getPeerX509Certificate();
    const mine = new X509Certificate(own.certChainPem[0] ?? '');
    if (!peer) return Date.now();
    return Math.min(Date.parse(peer.validTo), Date.parse(mine.validTo));
  } catch {
    return Date.now(); // unreadable: never reuse this connection for another stream
  }
}

function tlsConnect(req: TunnelRequest, connect: TcpConnect): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const tcp = connect({
      host: req.hboneAddr.host,
      port: req.hboneAddr.port,
      localAddress: req.sourceIp,
      noDelay: true,
    });
    const socket = tls.connect({ socket: tcp, ...clientTlsOptions(req.source, req.expectedIdentity) });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new AmbitError(
          'HBONE_TIMEOUT',
          `connect to ${req.hboneAddr.host}:${req.hboneAddr.port} timed out after 10 s (is something blocking HBONE port 15008?)`,
        ),
      );
    }, CONNECT_TIMEOUT_MS);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      if (socket.alpnProtocol !== 'h2') {
        socket.destroy();
        reject(new AmbitError('HBONE_TLS_FAILURE', `peer ${req.hboneAddr.host} did not negotiate ALPN h2`));
        return;
      }
      resolve(socket);
    });
    const onError = (err: Error) => {
      clearTimeout(timer);
      tcp.destroy();
      if (err instanceof AmbitError) return reject(err);
      const code = (err as NodeJS.ErrnoException).code;
      const kind =
        code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' ? 'HBONE_CONNECT_REFUSED' : 'HBONE_TLS_FAILURE';
      reject(
        new AmbitError(
          kind,
          `HBONE connect to ${req.hboneAddr.host}:${req.hboneAddr.port} failed: ${err.message}`,
          { cause: err },
        ),
      );
    };
    socket.once('error', onError);
    tcp.once('error', onError);
  });
}

// Trace ids come from a pool refilled 4 KiB at a time: one randomFillSync per ~170 tunnels
// instead of two per tunnel.
const randomPool = Buffer.alloc(4096);
let randomOffset = randomPool.length;
function randomHex(bytes: number): string {
  if (randomOffset + bytes > randomPool.length) {
    randomFillSync(randomPool);
    randomOffset = 0;
  }
  randomOffset += bytes;
  return randomPool.toString('hex', randomOffset - bytes, randomOffset);
}

function connectHeaders(req: TunnelRequest): OutgoingHttpHeaders {
  return {
    ':method': 'CONNECT',
    ':authority': req.authority,
    forwarded: `for="${formatSocketAddr(req.clientAddr.host, req.clientAddr.port)}"`,
    traceparent: `00-${randomHex(16)}-${randomHex(8)}-01`,
  };
}

function awaitResponse(stream: ClientHttp2Stream, req: TunnelRequest): Promise<ClientHttp2Stream> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      reject(new AmbitError('HBONE_TIMEOUT', `no response to CONNECT ${req.authority} within 10 s`));
    }, CONNECT_TIMEOUT_MS);
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(new AmbitError('HBONE_CONNECT_REFUSED', `CONNECT ${req.authority} failed: ${err.message}`));
    };
    const onClose = () => onError(new Error(`stream closed before a response (code ${stream.rstCode})`));
    stream.once('error', onError);
    stream.once('close', onClose);
    stream.once('response', (headers) => {
      clearTimeout(timer);
      stream.off('error', onError);
      stream.off('close', onClose);
      const status = Number(headers[':status']);
      if (status === 200) return resolve(stream);
      stream.close();
      const code =
        status === 401 || status === 403
          ? 'HBONE_POLICY_DENIED'
          : status === 503
            ? 'HBONE_UPSTREAM_FAILED'
            : 'HBONE_BAD_REQUEST';
      reject(new AmbitError(code, `CONNECT ${req.authority} answered ${status}`));
    });
  });
}
