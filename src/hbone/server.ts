// HBONE server: one per local pod on podIP:15008. Terminates mutual TLS with the pod's own
// certificate, accepts HTTP/2 CONNECT streams, validates them, and hands each valid tunnel to
// the caller (nodeproxy/inbound.ts), which decides policy and connects to the app. Protocol errors
// are answered here: 400 for a malformed request, and connection close for non-TLS or non-h2.
import http2 from 'node:http2';
import type { ServerHttp2Stream, IncomingHttpHeaders, Http2Session, SecureServerOptions } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import type { Logger } from '../common/log.js';
import { parseSocketAddr, type HostPort, type Ip } from '../common/addr.js';
import { ConnectionTracker, drainServer } from '../common/drain.js';
import { serverTlsOptions, peerSpiffeId, trustDomainOf, describeLeaf, type TlsIdentity } from './tls.js';
import { FORBIDDEN_TARGET_PORTS } from '../common/ports.js';
import {
  H2_CONNECTION_WINDOW,
  SERVER_HANDSHAKE_TIMEOUT_MS,
  SERVER_IDLE_TIMEOUT_MS,
  SERVER_MAX_SESSIONS_PER_PEER,
  H2_MAX_FRAME_SIZE,
  H2_SERVER_HEADER_LIST,
  H2_SERVER_MAX_STREAMS,
  H2_STREAM_WINDOW,
} from './constants.js';

/** A validated CONNECT stream, before it is answered. */
export interface InboundTunnel {
  stream: ServerHttp2Stream;
  /** Target from :authority, already checked to be this pod's IP. */
  target: HostPort & { host: Ip };
  /** SPIFFE id proven by the client certificate. */
  peerIdentity: string;
  /** TCP peer of the HBONE connection (the source node proxy, bound to the source pod IP). */
  peerAddr: HostPort;
  headers: IncomingHttpHeaders;
}

export interface HboneServerOptions {
  podIp: Ip;
  port: number;
  identity: TlsIdentity;
  trustDomain: string;
  logger: Logger;
  onTunnel(tunnel: InboundTunnel): void;
  /**
   * Which :authority targets this server accepts; returns a refusal (status and reason) or
   * undefined. Default: only this pod's own IP. A waypoint accepts the services and workloads
   * bound to it instead.
   */
  checkTarget?(target: HostPort & { host: Ip }): { status: number; reason: string } | undefined;
  /** A listening socket made elsewhere (netns mode: inside the pod's namespace) instead of binding here. */
  listenFd?(): number;
  /** Limits; Istio's numbers by default (constants.ts). Tests shorten them. */
  limits?: { handshakeTimeoutMs?: number; idleTimeoutMs?: number; maxSessionsPerPeer?: number };
}

export class HboneServer {
  private readonly server: http2.Http2SecureServer;
  private readonly sessions = new ConnectionTracker();
  private readonly log: Logger;
  /** TCP connections per peer IP, counted from accept (handshakes in progress included). */
  private readonly perPeer = new Map<string, number>();
  private readonly capLogged = new Map<string, number>();
  private readonly limits: { handshakeTimeoutMs: number; idleTimeoutMs: number; maxSessionsPerPeer: number };

  constructor(private readonly opts: HboneServerOptions) {
    this.limits = {
      handshakeTimeoutMs: opts.limits?.handshakeTimeoutMs ?? SERVER_HANDSHAKE_TIMEOUT_MS,
      idleTimeoutMs: opts.limits?.idleTimeoutMs ?? SERVER_IDLE_TIMEOUT_MS,
      maxSessionsPerPeer: opts.limits?.maxSessionsPerPeer ?? SERVER_MAX_SESSIONS_PER_PEER,
    };
    this.log = opts.logger.child({ listener: 'hbone', addr: `${opts.podIp}:${opts.port}` });
    const options: SecureServerOptions = {
      ...serverTlsOptions(opts.identity),
      allowHTTP1: false,
      maxSessionMemory: 64,
      settings: {
        enablePush: false,
        initialWindowSize: H2_STREAM_WINDOW,
        maxFrameSize: H2_MAX_FRAME_SIZE,
        maxConcurrentStreams: H2_SERVER_MAX_STREAMS,
        maxHeaderListSize: H2_SERVER_HEADER_LIST,
      },
      unknownProtocolTimeout: 1000,
      // A peer that opens TCP and never finishes the handshake (slowloris) is cut here; Node
      // emits tlsClientError, logged below. Node's default is 120 s. ztunnel's tls_server
      // (hyper_util.rs) bounds it through the tls-listener crate (see constants.ts).
      handshakeTimeout: this.limits.handshakeTimeoutMs,
    };
    this.server = http2.createSecureServer(options);
    this.server.on('connection', (socket: Socket) => {
      if (!this.admit(socket)) return;
      socket.setNoDelay(true);
      // Tracked as well as sessions: a session closed gracefully leaves its socket ending, and
      // towards a peer that can no longer be reached (its pod is gone) that lasts minutes; the
      // drain deadline must end it, or stop() never returns.
      this.sessions.track(socket);
    });
    this.server.on('session', (s) => this.onSession(s));
    this.server.on('stream', (stream, headers) => this.onStream(stream, headers));
    this.server.on('tlsClientError', (err: Error, socket: TLSSocket) => {
      // A socket already gone (refused by the per-peer cap, which logged once per 10 s, or a
      // peer that hung up mid-handshake) has no address left: one warn per such socket would
      // let a flood become a log flood, so those go to debug.
      const gone = socket.remoteAddress === undefined;
      this.log[gone ? 'debug' : 'warn'](
        { 'src.addr': `${socket.remoteAddress}:${socket.remotePort}`, err: err.message },
        'hbone: TLS handshake failed',
      );
      socket.destroy();
    });
    this.server.on('unknownProtocol', (socket: Socket) => {
      this.log.warn(
        { 'src.addr': `${socket.remoteAddress}:${socket.remotePort}` },
        'hbone: client did not negotiate ALPN h2; closing',
      );
      socket.destroy();
    });
  }

  /** Binds; rejects if the address is unavailable so start-up fails loudly. */
  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      const fd = this.opts.listenFd?.();
      const at = fd === undefined ? { host: this.opts.podIp, port: this.opts.port, backlog: 1024 } : { fd };
      this.server.listen(at, () => {
        this.server.off('error', reject);
        this.server.on('error', (err) => this.log.error({ err: err.message }, 'hbone: server error'));
        resolve();
      });
    });
    this.log.info(
      { identity: this.opts.identity.spiffeId, ...describeLeaf(this.opts.identity) },
      'hbone: listening',
    );
  }

  address(): HostPort {
    return { host: this.opts.podIp, port: this.opts.port };
  }

  /** Certificate rotation: new handshakes use the new certificate, open sessions are untouched. */
  setIdentity(identity: TlsIdentity): void {
    this.server.setSecureContext(serverTlsOptions(identity));
    this.log.info({ identity: identity.spiffeId, ...describeLeaf(identity) }, 'hbone: certificate updated');
  }

  async stop(graceMs = 5000): Promise<void> {
    for (const s of this.sessionsList.keys()) s.close();
    await drainServer(this.server, this.sessions, graceMs);
  }

  /** Open sessions with what was proven at the handshake: read once, not per stream. */
  private readonly sessionsList = new Map<
    Http2Session,
    { peerIdentity: string; peerAddr: HostPort; expiresAt: number }
  >();

  private onSession(session: Http2Session): void {
    const socket = session.socket as TLSSocket;
    const peer = peerSpiffeId(socket);
    if (!peer || trustDomainOf(peer) !== this.opts.trustDomain) {
      this.log.warn(
        { 'src.addr': `${socket.remoteAddress}:${socket.remotePort}`, 'src.identity': peer ?? null },
        `hbone: client identity not in trust domain ${this.opts.trustDomain}; closing`,
      );
      session.destroy();
      return;
    }
    session.setLocalWindowSize(H2_CONNECTION_WINDOW);
    this.sessions.track(session);
    this.sessionsList.set(session, {
      peerIdentity: peer,
      peerAddr: { host: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 },
      expiresAt: sessionExpiry(socket),
    });
    session.once('close', () => this.sessionsList.delete(session));
    session.on('error', (err) => this.log.debug({ err: err.message }, 'hbone: session error'));
    this.watchIdle(session, socket);
  }

  /**
   * Closes (GOAWAY) a session that has carried no stream for the idle timeout, so a peer cannot
   * hold sessions open for ever. Open streams, however quiet, keep it: a long idle TCP flow is
   * legitimate. Pings do not count as use.
   */
  private watchIdle(session: Http2Session, socket: TLSSocket): void {
    let open = 0;
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      timer = setTimeout(() => {
        this.log.debug(
          { 'src.addr': `${socket.remoteAddress}:${socket.remotePort}`, idle_ms: this.limits.idleTimeoutMs },
          'hbone: closing idle session',
        );
        session.close();
      }, this.limits.idleTimeoutMs);
      timer.unref();
    };
    arm();
    session.on('stream', (stream: ServerHttp2Stream) => {
      open++;
      if (timer) clearTimeout(timer);
      timer = undefined;
      stream.once('close', () => {
        if (--open === 0 && !session.closed && !session.destroyed) arm();
      });
    });
    session.once('close', () => timer && clearTimeout(timer));
  }

  /** Per-peer cap on concurrent connections, checked at accept (before the TLS handshake). */
  private admit(socket: Socket): boolean {
    const ip = socket.remoteAddress ?? '';
    const n = (this.perPeer.get(ip) ?? 0) + 1;
    if (n > this.limits.maxSessionsPerPeer) {
      const now = Date.now();
      // One line per peer per 10 s: a flood must not become a log flood.
      if ((this.capLogged.get(ip) ?? 0) + 10_000 < now) {
        this.capLogged.set(ip, now);
        this.log.warn(
          { 'src.ip': ip, limit: this.limits.maxSessionsPerPeer },
          'hbone: too many concurrent sessions from one peer; refusing new connections',
        );
      }
      socket.destroy();
      return false;
    }
    this.perPeer.set(ip, n);
    socket.once('close', () => {
      const left = (this.perPeer.get(ip) ?? 1) - 1;
      if (left <= 0) this.perPeer.delete(ip);
      else this.perPeer.set(ip, left);
    });
    return true;
  }

  private onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on('error', () => {}); // resets are normal; the splice reports them
    const peer = stream.session ? this.sessionsList.get(stream.session) : undefined;
    if (!peer) {
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    const { peerIdentity, peerAddr } = peer;
    // The pool drains a connection at the earlier notAfter of its two certificates; a client
    // that does not is refused here: no new stream rides an expired authentication.
    if (Date.now() >= peer.expiresAt) {
      this.log.warn(
        { 'src.identity': peerIdentity, 'src.addr': `${peerAddr.host}:${peerAddr.port}` },
        "hbone: new stream on a session whose certificate (ours or the peer's) has expired; refusing it and closing the session",
      );
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      stream.session?.close();
      return;
    }
    const reject = (status: number, reason: string) => {
      this.log.warn(
        { 'src.identity': peerIdentity, 'src.addr': `${peerAddr.host}:${peerAddr.port}`, status, reason },
        'hbone: request refused',
      );
      if (!stream.destroyed && !stream.headersSent)
        stream.respond({ ':status': status }, { endStream: true });
    };
    if (headers[':method'] !== 'CONNECT')
      return reject(400, `method ${String(headers[':method'])} is not CONNECT`);
    const authority = headers[':authority'];
    const target = typeof authority === 'string' ? parseSocketAddr(authority) : undefined;
    if (!target) return reject(400, `malformed :authority ${JSON.stringify(authority)}`);
    // Before any policy: a mesh port is the proxy itself, never an app (ztunnel refuses these
    // as SelfCall via cfg.illegal_ports in inbound.rs and answers 503; we answer 400 because the
    // request can never succeed and must not look like a transient upstream failure).
    if (FORBIDDEN_TARGET_PORTS.has(target.port))
      return reject(400, `target port ${target.port} is a mesh proxy port, never a CONNECT target`);
    if (this.opts.checkTarget) {
      const refusal = this.opts.checkTarget(target);
      if (refusal) return reject(refusal.status, refusal.reason);
    } else if (target.host !== this.opts.podIp) {
      return reject(400, `:authority ${authority} is not this pod (${this.opts.podIp}); refusing to forward`);
    }
    this.opts.onTunnel({ stream, target, peerIdentity, peerAddr, headers });
  }
}

/** The earlier notAfter (ms) of the two leaves of an accepted session; now when unreadable. */
function sessionExpiry(socket: TLSSocket): number {
  try {
    const peer = socket.getPeerX509Certificate();
    const own = socket.getX509Certificate();
    if (!peer || !own) return Date.now();
    return Math.min(Date.parse(peer.validTo), Date.parse(own.validTo));
  } catch {
    return Date.now();
  }
}
