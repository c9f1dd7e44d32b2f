// Inbound: an HBONE CONNECT stream for a local pod, in phases (after ztunnel's inbound.rs):
// build the context (the connection's record) → the inbound gate authorizes (L4 policy,
// proxy/inbound-gate.ts) → connect to the app → only then answer 200 → the gate registers it →
// splice → record once. A policy denial answers 401, an app that refuses 503. A policy change
// closes registered tunnels no longer allowed (the gate's reevaluate), as ztunnel does.
import http2 from 'node:http2';
import type { Socket } from 'node:net';
import type { Logger } from '../common/log.js';
import type { InboundTunnel } from '../hbone/server.js';
import { spiffeIdOf, type Workload } from '../xds/resources.js';
import type { ProxyState } from '../proxy/state.js';
import type { PolicyStore } from '../proxy/policy-store.js';
import type { AuthzConnection } from '../proxy/authz.js';
import { connectTcp } from '../proxy/connect-tcp.js';
import { defaultTcpConnect, type TcpConnect } from '../common/tcp-connect.js';
import { spliceToApp } from '../proxy/inbound-splice.js';
import { resetStream } from '../proxy/splice.js';
import { ConnectionRecord, runRecorded } from '../proxy/connection-record.js';
import type { InboundGate } from '../proxy/inbound-gate.js';
import { tunnelSourceAddr, tunnelSourceIp } from '../proxy/tunnel-peer.js';
import { NO_TELEMETRY, type ConnectionTelemetry } from '../telemetry/connection-telemetry.js';
import { traceIdOf } from '../telemetry/access-log.js';

export class Inbound {
  private readonly log: Logger;

  constructor(
    private readonly state: ProxyState,
    private readonly policies: PolicyStore,
    logger: Logger,
    /** Authorize → register for re-evaluation; shared with plaintext inbound (proxy.ts). */
    private readonly gate: InboundGate,
    private readonly telemetry: ConnectionTelemetry = NO_TELEMETRY,
    /** How the app is reached; netns mode connects from inside the pod, marked (not recaptured). */
    private readonly connect: TcpConnect = defaultTcpConnect,
  ) {
    this.log = logger.child({ direction: 'inbound' });
  }

  /** One tunnel, recorded exactly once whatever happens (runRecorded is the guard). */
  handle(tunnel: InboundTunnel, pod: Workload): Promise<void> {
    const srcIp = tunnelSourceIp(tunnel);
    const srcWorkload = this.state.workloadByAddress(srcIp);
    const { target, peerIdentity } = tunnel;
    const record = new ConnectionRecord(this.log, this.telemetry, {
      src: { addr: tunnelSourceAddr(tunnel), identity: peerIdentity, workload: srcWorkload },
      dst: { addr: `${target.host}:${target.port}`, identity: spiffeIdOf(pod), workload: pod },
      fields: { trace_id: traceIdOf(tunnel.headers.traceparent) },
      open: {
        reporter: 'destination',
        source: srcWorkload,
        sourcePrincipal: peerIdentity,
        destination: pod,
        destinationPrincipal: spiffeIdOf(pod),
        destinationService: this.guessService(pod, target.port),
        securityPolicy: 'mutual_tls',
      },
    });
    return runRecorded(
      record,
      () => this.serve(tunnel, pod, srcIp, record),
      () => resetStream(tunnel.stream, http2.constants.NGHTTP2_INTERNAL_ERROR),
    );
  }

  private async serve(tunnel: InboundTunnel, pod: Workload, srcIp: string, record: ConnectionRecord) {
    const { stream, target, peerIdentity } = tunnel;
    // Counted once the tunnel is read, denied or not (telemetry/README.md).
    record.count();
    // Authorize on verified facts only: the mTLS identity and the TCP peer address. The
    // `forwarded` header is the source's claim and feeds only the access log.
    const conn: AuthzConnection = {
      srcIdentity: peerIdentity,
      srcIp,
      dstIp: target.host,
      dstPort: target.port,
    };
    const entry = {
      record,
      conn,
      policies: () => this.policies.forWorkload(this.state.workload(pod.uid) ?? pod),
      dst: pod,
    };
    if (!this.gate.authorize(entry, { status: 401 }).allow) {
      if (!stream.destroyed) stream.respond({ ':status': INBOUND_DENY_STATUS }, { endStream: true });
      return;
    }

    let app: Socket;
    try {
      // In local mode every address is on loopback, so the app can see the real source IP.
      // netns mode delivers with the client's address as the source where it can (sourceAddress).
      const deliver: TcpConnect = (o) => this.connect({ ...o, sourceAddress: srcIp });
      app = await connectTcp(target, isLoopback(srcIp) ? srcIp : undefined, deliver).catch((err) => {
        if ((err as NodeJS.ErrnoException).code === 'EADDRNOTAVAIL')
          return connectTcp(target, undefined, deliver);
        throw err;
      });
    } catch (err) {
      record.fail('CONNECT', 'connection failed: app refused', { status: 503 }, err);
      if (!stream.destroyed) stream.respond({ ':status': 503 }, { endStream: true });
      return;
    }
    if (stream.destroyed) {
      record.fail('CONNECT', 'connection failed', { reason: 'the tunnel closed before the app answered' });
      app.destroy();
      return;
    }
    // Reset the stream (the source proxy closes the app's socket) and drop the app side.
    const untrack = this.gate.track(entry, () => {
      resetStream(stream, http2.constants.NGHTTP2_CANCEL);
      app.destroy();
    });
    stream.respond({ ':status': 200 });
    await spliceToApp({ downstream: stream, app, record, untrack });
  }

  /** The service a connection to `port` of `pod` most likely came through (ztunnel's guess_inbound_service). */
  private guessService(pod: Workload, port: number) {
    for (const [key, ports] of Object.entries(pod.services)) {
      if (!ports.some((p) => p.targetPort === port || (p.targetPort === 0 && p.servicePort === port)))
        continue;
      const svc = this.state.serviceByHostname(key.slice(key.indexOf('/') + 1));
      if (svc) return svc;
    }
    return undefined;
  }
}

function isLoopback(ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1';
}

export const INBOUND_DENY_STATUS = http2.constants.HTTP_STATUS_UNAUTHORIZED;
