// Inbound: an HBONE CONNECT stream for a local pod, in phases (after ztunnel's inbound.rs):
// build the context → authorize (L4 policy, node/authz.ts) → connect to the app → only then
// answer 200 → splice → record once. A policy denial answers 401, an app that refuses 503.
// Open tunnels are registered with the attributes they were authorized on, so that a policy
// change re-checks them and closes those no longer allowed (as ztunnel does).
import http2 from 'node:http2';
import type { Socket } from 'node:net';
import type { Logger } from '../common/log.js';
import { errorMessage } from '../common/errors.js';
import type { InboundTunnel } from '../hbone/server.js';
import { spiffeIdOf, type Workload } from '../xds/resources.js';
import type { ProxyState } from './state.js';
import type { PolicyStore } from './policy-store.js';
import { evaluate, type AuthzConnection, type AuthzDecision } from './authz.js';
import { connectTcp } from './outbound.js';
import { splice } from './splice.js';

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
  ) {
    this.log = logger.child({ direction: 'inbound' });
  }

  async handle(tunnel: InboundTunnel, pod: Workload): Promise<void> {
    const start = Date.now();
    const { stream, target, peerIdentity, peerAddr } = tunnel;
    const srcIp = unmapV4(peerAddr.host);
    const srcWorkload = this.state.workloadByAddress(srcIp);
    const fields: Record<string, unknown> = {
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
    if (!decision.allow) {
      this.recordDenial(decision);
      this.log.warn(
        { ...fields, 'src.ip': srcIp, 'dst.port': target.port, ...decisionFields(decision), status: 401 },
        'connection denied by policy',
      );
      if (!stream.destroyed) stream.respond({ ':status': INBOUND_DENY_STATUS }, { endStream: true });
      return;
    }
    this.counters.allowed++;

    let app: Socket;
    try {
      // In local mode every address is on loopback, so the app can see the real source IP.
      app = await connectTcp(target, isLoopback(srcIp) ? srcIp : undefined).catch((err) => {
        if ((err as NodeJS.ErrnoException).code === 'EADDRNOTAVAIL') return connectTcp(target);
        throw err;
      });
    } catch (err) {
      this.log.warn(
        { ...fields, status: 503, error: errorMessage(err), duration_ms: Date.now() - start },
        'connection failed: app refused',
      );
      if (!stream.destroyed) stream.respond({ ':status': 503 }, { endStream: true });
      return;
    }
    if (stream.destroyed) {
      app.destroy();
      return;
    }
    const entry: OpenTunnel = { tunnel, podUid: pod.uid, pod, conn, app, fields };
    this.open.add(entry);
    stream.respond({ ':status': 200 });
    const result = await splice(stream, app);
    this.open.delete(entry);
    this.log.info(
      {
        ...fields,
        bytes_sent: app.bytesRead,
        bytes_recv: app.bytesWritten,
        duration_ms: Date.now() - start,
        ...(result.error ? { error: result.error.message } : {}),
      },
      'connection complete',
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
      this.log.warn(
        { ...t.fields, 'src.ip': t.conn.srcIp, 'dst.port': t.conn.dstPort, ...decisionFields(decision) },
        'connection closed: policy no longer allows it',
      );
      // Reset the stream (the source proxy closes the app's socket) and drop the app side.
      if (!t.tunnel.stream.destroyed) t.tunnel.stream.close(http2.constants.NGHTTP2_CANCEL);
      t.app.destroy();
    }
  }

  openCount(): number {
    return this.open.size;
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
