// Inbound plaintext (netns/K8s mode): a connection to a captured pod that did not come over
// HBONE, redirected by the pod's rules to :15006. Same phases as inbound.ts, without a tunnel:
// build the context → authorize → connect to the app → splice → record once.
//
// There is no peer identity, so L4 AuthorizationPolicy sees only the source IP (principal and
// namespace unauthenticated). PeerAuthentication needs nothing special here: istiod compiles
// STRICT into a DENY "no principal present" policy the workload names
// (controlplane/authz-convert.ts), which refuses every plaintext connection; PERMISSIVE and
// DISABLE add no such policy, so plaintext is delivered if the other policies allow it. A
// refusal resets the client (as ztunnel does) and logs one line with the reason.
import type { Socket } from 'node:net';
import type { Logger } from '../common/log.js';
import type { Ip } from '../common/addr.js';
import { errorMessage } from '../common/errors.js';
import { FORBIDDEN_TARGET_PORTS } from '../common/ports.js';
import { spiffeIdOf, type Workload } from '../xds/resources.js';
import type { ProxyState } from '../proxy/state.js';
import type { PolicyStore } from '../proxy/policy-store.js';
import { evaluate, type AuthzConnection, type AuthzDecision } from '../proxy/authz.js';
import { connectTcp } from '../proxy/connect-tcp.js';
import { spliceToApp } from '../proxy/inbound-splice.js';
import { NO_TELEMETRY, type ConnectionTelemetry } from '../telemetry/connection-telemetry.js';
import type { TcpConnect } from '../common/tcp-connect.js';

/** The name istiod gives the policy STRICT compiles to; a denial by it is "PeerAuthentication STRICT". */
const STRICT_POLICY_SUFFIX = '/istio_converted_static_strict';

interface OpenPlaintext {
  pod: Workload;
  conn: AuthzConnection;
  client: Socket;
  app: Socket;
  fields: Record<string, unknown>;
}

export interface PlaintextInboundDeps {
  state: ProxyState;
  policies: PolicyStore;
  logger: Logger;
  /** How to reach the app: from inside the pod's namespace, marked, so it is not captured again. */
  connect: TcpConnect;
  telemetry?: ConnectionTelemetry;
}

export class PlaintextInbound {
  private readonly log: Logger;
  private readonly open = new Set<OpenPlaintext>();
  private readonly telemetry: ConnectionTelemetry;

  constructor(private readonly deps: PlaintextInboundDeps) {
    this.log = deps.logger.child({ direction: 'inbound', listener: 'plaintext' });
    this.telemetry = deps.telemetry ?? NO_TELEMETRY;
    // A policy change (or a workload's policy list) re-checks open plaintext connections too.
    deps.policies.on('change', () => this.reevaluate());
    deps.state.on('change', () => this.reevaluate());
  }

  async handle(client: Socket, pod: Workload, dst: { ip: string; port: number }): Promise<void> {
    const start = Date.now();
    client.pause();
    const srcIp = client.remoteAddress ?? '';
    const src = this.deps.state.workloadByAddress(srcIp);
    const fields: Record<string, unknown> = {
      start_time: new Date(start).toISOString(),
      connection_security_policy: 'unknown',
      'src.addr': `${srcIp}:${client.remotePort}`,
      'src.workload': src?.name,
      'src.namespace': src?.namespace,
      'dst.addr': `${dst.ip}:${dst.port}`,
      'dst.workload': pod.name,
      'dst.namespace': pod.namespace,
      'dst.identity': spiffeIdOf(pod),
    };
    if (FORBIDDEN_TARGET_PORTS.has(dst.port) || !pod.addresses.includes(dst.ip as Ip)) {
      this.log.warn(
        { ...fields, reason: `${dst.ip}:${dst.port} is not an app port of this pod` },
        'connection refused: plaintext to a proxy port',
      );
      client.resetAndDestroy();
      return;
    }
    const conn: AuthzConnection = { srcIp, dstIp: dst.ip, dstPort: dst.port };
    const decision = evaluate(this.deps.policies.forWorkload(pod), conn);
    const record = this.telemetry.opened({
      reporter: 'destination',
      source: src,
      destination: pod,
      destinationPrincipal: spiffeIdOf(pod),
      securityPolicy: 'unknown',
    });
    if (!decision.allow) {
      record.close('DENY');
      this.logDenial(fields, conn, decision, 'connection denied by policy');
      client.resetAndDestroy();
      return;
    }
    let app: Socket;
    try {
      app = await connectTcp({ host: dst.ip, port: dst.port }, undefined, (o) =>
        this.deps.connect({ ...o, sourceAddress: srcIp }),
      );
    } catch (err) {
      record.close('CONNECT');
      this.log.warn(
        { ...fields, response_flags: 'CONNECT', error: errorMessage(err), duration_ms: Date.now() - start },
        'connection failed: app refused',
      );
      client.resetAndDestroy();
      return;
    }
    if (client.destroyed) {
      record.close('CONNECT');
      app.destroy();
      return;
    }
    const entry: OpenPlaintext = { pod, conn, client, app, fields };
    this.open.add(entry);
    client.resume();
    const untrack = () => this.open.delete(entry);
    await spliceToApp(
      { downstream: client, app, record, decision, fields, start, untrack },
      this.log,
      this.telemetry,
    );
  }

  /** Closes open plaintext connections that the current policies no longer allow. */
  reevaluate(): void {
    for (const t of [...this.open]) {
      const pod = this.deps.state.workload(t.pod.uid) ?? t.pod;
      const decision = evaluate(this.deps.policies.forWorkload(pod), t.conn);
      if (decision.allow) continue;
      this.open.delete(t);
      this.logDenial(t.fields, t.conn, decision, 'connection closed: policy no longer allows it');
      t.client.resetAndDestroy();
      t.app.destroy();
    }
  }

  openCount(): number {
    return this.open.size;
  }

  private logDenial(
    fields: Record<string, unknown>,
    conn: AuthzConnection,
    d: AuthzDecision,
    msg: string,
  ): void {
    const strict = d.policy?.endsWith(STRICT_POLICY_SUFFIX) ?? false;
    this.telemetry.denied({
      time: new Date().toISOString(),
      srcIp: conn.srcIp,
      dstWorkload: String(fields['dst.workload']),
      dstNamespace: String(fields['dst.namespace']),
      dstPort: conn.dstPort,
      policy: d.policy ?? null,
      reason: strict ? 'plaintext refused: PeerAuthentication STRICT' : d.reason,
      kind: msg.startsWith('connection closed') ? 'closed' : 'denied',
    });
    this.log.warn(
      {
        ...fields,
        'src.ip': conn.srcIp,
        'dst.port': conn.dstPort,
        policy: d.policy ?? null,
        'policy.rule': d.ruleIndex ?? null,
        reason: strict ? `plaintext refused: PeerAuthentication STRICT (${d.reason})` : d.reason,
        response_flags: 'DENY',
      },
      msg,
    );
  }
}
