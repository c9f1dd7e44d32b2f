// Inbound: an HBONE CONNECT stream for a local pod, in phases (after ztunnel's inbound.rs):
// build the context → authorize (L4 policy, proxy/authz.ts) → connect to the app → only then
// answer 200 → splice → record once. A policy denial answers 401, an app that refuses 503.
// Open tunnels are registered with the attributes they were authorized on, so that a policy
// change re-checks them and closes those no longer allowed (as ztunnel does).
import http2 from 'node:http2';
import type { Socket } from 'node:net';
import type { Logger } from '../common/log.js';
import { errorMessage } from '../common/errors.js';
import type { InboundTunnel } from '../hbone/server.js';
import { spiffeIdOf, type Workload } from '../xds/resources.js';
import type { ProxyState } from '../proxy/state.js';
import type { PolicyStore } from '../proxy/policy-store.js';
import { evaluate, type AuthzConnection, type AuthzDecision } from '../proxy/authz.js';
import { connectTcp } from '../proxy/connect-tcp.js';
import { defaultTcpConnect, type TcpConnect } from '../common/tcp-connect.js';
import { spliceToApp } from '../proxy/inbound-splice.js';
import { resetStream } from '../proxy/splice.js';
import {
  NO_TELEMETRY,
  type ConnectionTelemetry,
  type DenialRecord,
} from '../telemetry/connection-telemetry.js';
import { traceIdOf } from '../telemetry/access-log.js';

/** In-memory L4 authorization counters; the telemetry issue exports them. */
export interface AuthzCounters {
  allowed: number;
  denied: number;
  /** Open connections closed because a policy change no longer allows them. */
  closedByPolicyChange: number;
  /** Denials (new and closed) per deciding policy ("ns/name", or "(no ALLOW matched)"). */
  deniedByPolicy: Map<string, number>;
}

interface OpenTunnel {
  tunnel: InboundTunnel;
  podUid: string;
  pod: Workload;
  conn: AuthzConnection;
  app: Socket;
  fields: Record<string, unknown>;
}

export class Inbound {
  private readonly log: Logger;
  readonly counters: AuthzCounters = {
    allowed: 0,
    denied: 0,
    closedByPolicyChange: 0,
    deniedByPolicy: new Map(),
  };
  private readonly open = new Set<OpenTunnel>();

  constructor(
    private readonly state: ProxyState,
    private readonly policies: PolicyStore,
    logger: Logger,
    private readonly telemetry: ConnectionTelemetry = NO_TELEMETRY,
    /** How the app is reached; netns mode connects from inside the pod, marked (not recaptured). */
    private readonly connect: TcpConnect = defaultTcpConnect,
  ) {
    this.log = logger.child({ direction: 'inbound' });
  }

  async handle(tunnel: InboundTunnel, pod: Workload): Promise<void> {
    const start = Date.now();
    const { stream, target, peerIdentity, peerAddr } = tunnel;
    const srcIp = unmapV4(peerAddr.host);
    const srcWorkload = this.state.workloadByAddress(srcIp);
    const fields: Record<string, unknown> = {
      start_time: new Date(start).toISOString(),
      trace_id: traceIdOf(tunnel.headers.traceparent),
      connection_security_policy: 'mutual_tls',
      'src.addr': forwardedFor(tunnel) ?? `${peerAddr.host}:${peerAddr.port}`,
      'src.identity': peerIdentity,
      'src.workload': srcWorkload?.name,
      'src.namespace': srcWorkload?.namespace,
      'dst.addr': `${target.host}:${target.port}`,
      'dst.workload': pod.name,
      'dst.namespace': pod.namespace,
      'dst.identity': spiffeIdOf(pod),
    };

    // Authorize on verified facts only: the mTLS identity and the TCP peer address. The
    // `forwarded` header is the source's claim and feeds only the access log.
    const conn: AuthzConnection = {
      srcIdentity: peerIdentity,
      srcIp,
      dstIp: target.host,
      dstPort: target.port,
    };
    const decision = evaluate(this.policies.forWorkload(pod), conn);
    const record = this.telemetry.opened({
      reporter: 'destination',
      source: srcWorkload,
      sourcePrincipal: peerIdentity,
      destination: pod,
      destinationPrincipal: spiffeIdOf(pod),
      destinationService: this.guessService(pod, target.port),
      securityPolicy: 'mutual_tls',
    });
    if (!decision.allow) {
      record.close('DENY');
      this.recordDenial(decision);
      this.telemetry.denied(denialOf(fields, srcIp, target.port, decision, 'denied'));
      this.log.warn(
        {
          ...fields,
          'src.ip': srcIp,
          'dst.port': target.port,
          ...decisionFields(decision),
          response_flags: 'DENY',
          status: 401,
        },
        'connection denied by policy',
      );
      if (!stream.destroyed) stream.respond({ ':status': INBOUND_DENY_STATUS }, { endStream: true });
      return;
    }
    this.counters.allowed++;

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
      record.close('CONNECT');
      this.log.warn(
        {
          ...fields,
          status: 503,
          response_flags: 'CONNECT',
          error: errorMessage(err),
          duration_ms: Date.now() - start,
        },
        'connection failed: app refused',
      );
      if (!stream.destroyed) stream.respond({ ':status': 503 }, { endStream: true });
      return;
    }
    if (stream.destroyed) {
      record.close('CONNECT');
      app.destroy();
      return;
    }
    const entry: OpenTunnel = { tunnel, podUid: pod.uid, pod, conn, app, fields };
    this.open.add(entry);
    stream.respond({ ':status': 200 });
    const untrack = () => this.open.delete(entry); // false: reevaluate() removed it
    await spliceToApp(
      { downstream: stream, app, record, decision, fields, start, untrack },
      this.log,
      this.telemetry,
    );
  }

  /** Re-checks every open tunnel against the current policies; closes those now denied. */
  reevaluate(): void {
    for (const t of [...this.open]) {
      const pod = this.state.workload(t.podUid) ?? t.pod;
      const decision = evaluate(this.policies.forWorkload(pod), t.conn);
      if (decision.allow) continue;
      this.open.delete(t);
      this.recordDenial(decision);
      this.counters.closedByPolicyChange++;
      this.telemetry.denied(denialOf(t.fields, t.conn.srcIp, t.conn.dstPort, decision, 'closed'));
      this.log.warn(
        { ...t.fields, 'src.ip': t.conn.srcIp, 'dst.port': t.conn.dstPort, ...decisionFields(decision) },
        'connection closed: policy no longer allows it',
      );
      // Reset the stream (the source proxy closes the app's socket) and drop the app side.
      resetStream(t.tunnel.stream, http2.constants.NGHTTP2_CANCEL);
      t.app.destroy();
    }
  }

  openCount(): number {
    return this.open.size;
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

  private recordDenial(d: AuthzDecision): void {
    this.counters.denied++;
    const key = d.policy ?? '(no ALLOW matched)';
    this.counters.deniedByPolicy.set(key, (this.counters.deniedByPolicy.get(key) ?? 0) + 1);
  }
}

function decisionFields(d: AuthzDecision): Record<string, unknown> {
  return { policy: d.policy ?? null, 'policy.rule': d.ruleIndex ?? null, reason: d.reason };
}

function denialOf(
  fields: Record<string, unknown>,
  srcIp: string,
  dstPort: number,
  d: AuthzDecision,
  kind: DenialRecord['kind'],
): DenialRecord {
  return {
    time: new Date().toISOString(),
    srcIdentity: fields['src.identity'] as string | undefined,
    srcIp,
    dstWorkload: String(fields['dst.workload']),
    dstNamespace: String(fields['dst.namespace']),
    dstPort,
    policy: d.policy ?? null,
    reason: d.reason,
    kind,
  };
}

function forwardedFor(t: InboundTunnel): string | undefined {
  const f = t.headers.forwarded;
  const m = typeof f === 'string' ? /for="?([^";,]+)"?/.exec(f) : null;
  return m?.[1];
}

function unmapV4(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

function isLoopback(ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1';
}

export const INBOUND_DENY_STATUS = http2.constants.HTTP_STATUS_UNAUTHORIZED;
