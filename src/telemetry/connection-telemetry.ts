// What the node proxy's data path (node/outbound.ts, node/inbound.ts) sees of telemetry: one
// result per connection that counts it opened, reads its bytes, and closes it exactly once with a
// response flag; the access-log decision for completed connections; and recent denials for the
// admin endpoint and the service graph. `NO_TELEMETRY` keeps the data path free of checks when
// nothing is wired.
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
