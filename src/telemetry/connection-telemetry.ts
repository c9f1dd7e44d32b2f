// What the proxies' data path (proxy/connection-record.ts, for the node proxy and the waypoint)
// sees of telemetry: one result per connection that counts it opened, reads its bytes, and closes
// it exactly once with a response flag; the access-log decision for completed connections; recent
// denials for the admin endpoint and the service graph; and the L4 authorization counters as
// metrics. `NO_TELEMETRY` keeps the data path free of checks when nothing is wired.
import { Counter, type Registry } from 'prom-client';
import { isAmbitError } from '../common/errors.js';
import type { AccessLogPolicy } from './access-log.js';
import type { ByteCounts, ConnectionOpen, L4Metrics, ResponseFlag, TcpConnectionMetrics } from './metrics.js';

export interface DenialRecord {
  time: string;
  srcIdentity?: string;
  srcIp: string;
  dstWorkload: string;
  dstNamespace: string;
  dstPort: number;
  /** "ns/name" of the deciding policy; null when no ALLOW policy matched. */
  policy: string | null;
  reason: string;
  /** "denied" at connect, or "closed" when a policy change ended an open connection. */
  kind: 'denied' | 'closed';
}

export interface ConnectionResult {
  trackBytes(bytes: () => ByteCounts): void;
  close(flag?: ResponseFlag): void;
}

export interface ConnectionTelemetry {
  opened(open: ConnectionOpen): ConnectionResult;
  /** True when the record of a connection that ended normally is to be written. */
  logComplete(): boolean;
  denied(d: DenialRecord): void;
}

const NOOP_RESULT: ConnectionResult = { trackBytes() {}, close() {} };

export const NO_TELEMETRY: ConnectionTelemetry = {
  opened: () => NOOP_RESULT,
  logComplete: () => true,
  denied() {},
};

/** Recent denials, newest last, bounded. */
export class DenialLog {
  private readonly items: DenialRecord[] = [];
  constructor(private readonly capacity = 100) {}
  add(d: DenialRecord): void {
    this.items.push(d);
    if (this.items.length > this.capacity) this.items.shift();
  }
  list(): DenialRecord[] {
    return [...this.items];
  }
}

export function connectionTelemetry(
  metrics: L4Metrics | undefined,
  access: AccessLogPolicy,
  denials: DenialLog,
): ConnectionTelemetry {
  return {
    opened: metrics ? (open) => resultOf(metrics.connectionOpened(open)) : () => NOOP_RESULT,
    logComplete: () => access.logComplete(),
    denied: (d) => denials.add(d),
  };
}

function resultOf(m: TcpConnectionMetrics): ConnectionResult {
  return { trackBytes: (b) => m.trackBytes(b), close: (f) => m.close(f) };
}

/** One place maps a failure to ztunnel's response flag. */
export function responseFlagFor(err: unknown): ResponseFlag {
  if (isAmbitError(err)) {
    switch (err.code) {
      case 'HBONE_POLICY_DENIED':
        return 'DENY';
      case 'HBONE_TLS_FAILURE':
        return 'TLS_FAILURE';
      case 'HBONE_IDENTITY_MISMATCH':
        return 'IDENTITY_ERROR';
      // Cut mid-transfer (proxy/splice.ts): Envoy's access-log flags UC / DC
      // (envoyproxy.io, configuration/observability/access_log/usage, %RESPONSE_FLAGS%).
      case 'UPSTREAM_RESET':
        return 'UC';
      case 'DOWNSTREAM_RESET':
        return 'DC';
      default:
        return 'CONNECT';
    }
  }
  return 'CONNECT';
}

/** The L4 authorization counters a proxy keeps (proxy/inbound-gate.ts `AuthzCounters` fits). */
export interface AuthzCounterSource {
  allowed: number;
  closedByPolicyChange: number;
  deniedByPolicy: ReadonlyMap<string, number>;
}

/**
 * The inbound L4 authorization counters as metrics (bounded: one series per deciding policy). A
 * waypoint also denies on its TCP path (waypoint/policy/authz-tcp.ts): given `tcpDenied`, the denied
 * counter carries `protocol` — "hbone" for the inbound gate's 401, "tcp" for the TCP path.
 */
export function registerAuthzCounters(
  registry: Registry,
  read: () => AuthzCounterSource,
  tcpDenied?: () => ReadonlyMap<string, number>,
): void {
  const registers = [registry];
  new Counter({
    name: 'ambit_authz_allowed_total',
    help: 'Inbound connections allowed by L4 authorization',
    registers,
    collect() {
      this.reset();
      this.inc(read().allowed);
    },
  });
  new Counter({
    name: 'ambit_authz_denied_total',
    help: tcpDenied
      ? 'Connections denied by policy, by deciding policy and where (hbone: the inbound L4 gate, 401 at CONNECT or closed on a policy change; tcp: the TCP-path policy)'
      : 'Inbound connections denied (at connect or closed on a policy change), by deciding policy',
    labelNames: tcpDenied ? ['policy', 'protocol'] : ['policy'],
    registers,
    collect() {
      this.reset();
      for (const [policy, n] of read().deniedByPolicy)
        this.inc(tcpDenied ? { policy, protocol: 'hbone' } : { policy }, n);
      if (tcpDenied) for (const [policy, n] of tcpDenied()) this.inc({ policy, protocol: 'tcp' }, n);
    },
  });
  new Counter({
    name: 'ambit_authz_closed_by_policy_change_total',
    help: 'Open connections closed because a policy change no longer allows them',
    registers,
    collect() {
      this.reset();
      this.inc(read().closedByPolicyChange);
    },
  });
}
