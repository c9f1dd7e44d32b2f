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
import { FORBIDDEN_TARGET_PORTS } from '../common/ports.js';
import { spiffeIdOf, type Workload } from '../xds/resources.js';
import type { ProxyState } from '../proxy/state.js';
import type { PolicyStore } from '../proxy/policy-store.js';
import type { AuthzConnection, AuthzDecision } from '../proxy/authz.js';
import { connectTcp } from '../proxy/connect-tcp.js';
import { spliceToApp } from '../proxy/inbound-splice.js';
import { ConnectionRecord, runRecorded } from '../proxy/connection-record.js';
import type { InboundGate } from '../proxy/inbound-gate.js';
import { NO_TELEMETRY, type ConnectionTelemetry } from '../telemetry/connection-telemetry.js';
import type { TcpConnect } from '../common/tcp-connect.js';

/** The name istiod gives the policy STRICT compiles to; a denial by it is "PeerAuthentication STRICT". */
const STRICT_POLICY_SUFFIX = '/istio_converted_static_strict';

export interface PlaintextInboundDeps {
  state: ProxyState;
  policies: PolicyStore;
  logger: Logger;
  /** Authorize → register for re-evaluation; the same gate as HBONE inbound (proxy.ts). */
  gate: InboundGate;
  /** How to reach the app: from inside the pod's namespace, marked, so it is not captured again. */
  connect: TcpConnect;
  telemetry?: ConnectionTelemetry;
}

export class PlaintextInbound {
  private readonly log: Logger;
  private readonly telemetry: ConnectionTelemetry;

  constructor(private readonly deps: PlaintextInboundDeps) {
    this.log = deps.logger.child({ direction: 'inbound', listener: 'plaintext' });
    this.telemetry = deps.telemetry ?? NO_TELEMETRY;
  }

  /** One connection, recorded exactly once whatever happens (runRecorded is the guard). */
  handle(client: Socket, pod: Workload, dst: { ip: string; port: number }): Promise<void> {
    client.pause();
    const srcIp = client.remoteAddress ?? '';
    const src = this.deps.state.workloadByAddress(srcIp);
    const record = new ConnectionRecord(this.log, this.telemetry, {
      src: { addr: `${srcIp}:${client.remotePort}`, workload: src },
      dst: { addr: `${dst.ip}:${dst.port}`, identity: spiffeIdOf(pod), workload: pod },
      open: {
        reporter: 'destination',
        source: src,
        destination: pod,
        destinationPrincipal: spiffeIdOf(pod),
        securityPolicy: 'unknown',
      },
    });
    return runRecorded(
      record,
      () => this.serve(client, pod, dst, srcIp, record),
      () => client.resetAndDestroy(),
    );
  }

  private async serve(
    client: Socket,
    pod: Workload,
    dst: { ip: string; port: number },
    srcIp: string,
    record: ConnectionRecord,
  ): Promise<void> {
    if (FORBIDDEN_TARGET_PORTS.has(dst.port) || !pod.addresses.includes(dst.ip as Ip)) {
      // Not counted: no app port was asked for (a probe of the proxy's own ports).
      record.refuse(
        'connection refused: plaintext to a proxy port',
        `${dst.ip}:${dst.port} is not an app port of this pod`,
      );
      client.resetAndDestroy();
      return;
    }
    record.count();
    // No peer identity in plaintext: the policies see the source IP only.
    const conn: AuthzConnection = { srcIp, dstIp: dst.ip, dstPort: dst.port };
    const entry = {
      record,
      conn,
      policies: () => this.deps.policies.forWorkload(this.deps.state.workload(pod.uid) ?? pod),
      dst: pod,
      explain: strictReason,
    };
    if (!this.deps.gate.authorize(entry).allow) {
      client.resetAndDestroy();
      return;
    }
    let app: Socket;
    try {
      app = await connectTcp({ host: dst.ip, port: dst.port }, undefined, (o) =>
        this.deps.connect({ ...o, sourceAddress: srcIp }),
      );
    } catch (err) {
      record.fail('CONNECT', 'connection failed: app refused', {}, err);
      client.resetAndDestroy();
      return;
    }
    if (client.destroyed) {
      record.fail('CONNECT', 'connection failed', { reason: 'the client closed before the app answered' });
      app.destroy();
      return;
    }
    // A refusal resets the client, as ztunnel does.
    const untrack = this.deps.gate.track(entry, () => {
      client.resetAndDestroy();
      app.destroy();
    });
    client.resume();
    await spliceToApp({ downstream: client, app, record, untrack });
  }
}

/** A denial by the policy STRICT compiles to reads as what it is. */
function strictReason(d: AuthzDecision): string {
  return d.policy?.endsWith(STRICT_POLICY_SUFFIX)
    ? `plaintext refused: PeerAuthentication STRICT (${d.reason})`
    : d.reason;
}
