// One L4 connection's record, from accept to its one access line (after ztunnel's
// ConnectionResult, istio/ztunnel src/proxy/metrics.rs, and the waypoint's recordExchange):
// opened at accept with the typed facts known then (source and destination addresses and
// identities), given the route and the policy decision as they happen, and finished exactly
// once — completed, failed, denied, closed by a policy change, or handed to the HTTP path. The
// finish writes the metrics (telemetry/connection-telemetry.ts: the `istio_tcp_*` series) and the
// one access line. `runRecorded` is the `finally` guard: a handler that throws or returns without
// finishing still yields one line and one closed metric, as ztunnel's `Drop` records an
// unrecorded result.
//
// Field names are the ones the access log has always had (telemetry/README.md): `src.addr`,
// `src.identity`, `src.workload`, `src.namespace`, `dst.addr`, `dst.workload`, `dst.namespace`,
// `dst.identity`, `dst.service`, `response_flags`, `bytes_sent`, `bytes_recv`, `duration_ms`, …
import type { Logger } from '../common/log.js';
import { errorMessage } from '../common/errors.js';
import {
  responseFlagFor,
  type ConnectionResult,
  type ConnectionTelemetry,
} from '../telemetry/connection-telemetry.js';
import type { ByteCounts, ConnectionOpen, ResponseFlag } from '../telemetry/metrics.js';

/** One side of a connection as the access line names it. */
export interface RecordPeer {
  /** "ip:port" as seen on the wire (or the `forwarded` claim, for the log only). */
  addr?: string;
  /** A verified SPIFFE identity (mTLS peer, our own certificate, or the one we expect). */
  identity?: string;
  workload?: { name: string; namespace: string };
}

/** What is known at accept. */
export interface RecordAccept {
  src: RecordPeer;
  dst: RecordPeer;
  /** The metric labels' facts (reporter, peers, principals); counted on `count()`. */
  open: ConnectionOpen;
  /** Further context fields for every line (e.g. `trace_id`, `dst.target`, `protocol`). */
  fields?: Record<string, unknown>;
  /** When the connection was accepted (ms), default now. */
  start?: number;
}

/** A policy decision as the denial lines name it (proxy/authz.ts and waypoint/policy/authz-tcp.ts). */
export interface RecordDecision {
  policy?: string | null;
  ruleIndex?: number | null;
  reason: string;
}

/** How a connection ended; exactly one of these per record. */
export type RecordOutcome =
  'complete' | 'failed' | 'denied' | 'closed-by-policy' | 'handed-off' | 'unfinished';

export class ConnectionRecord {
  readonly start: number;
  /** The access-line fields collected so far. */
  readonly fields: Record<string, unknown>;
  private metrics?: ConnectionResult;
  private bytes?: () => ByteCounts;
  private outcomeValue?: RecordOutcome;
  private readonly open: ConnectionOpen;

  constructor(
    private readonly log: Logger,
    private readonly telemetry: ConnectionTelemetry,
    accept: RecordAccept,
  ) {
    this.start = accept.start ?? Date.now();
    this.open = accept.open;
    const { src, dst } = accept;
    this.fields = {
      start_time: new Date(this.start).toISOString(),
      connection_security_policy: accept.open.securityPolicy,
      'src.addr': src.addr,
      'src.identity': src.identity,
      'src.workload': src.workload?.name,
      'src.namespace': src.workload?.namespace,
      'dst.addr': dst.addr,
      'dst.workload': dst.workload?.name,
      'dst.namespace': dst.workload?.namespace,
      'dst.identity': dst.identity,
      ...accept.fields,
    };
  }

  /** Undefined while the connection is open. */
  get outcome(): RecordOutcome | undefined {
    return this.outcomeValue;
  }

  get finished(): boolean {
    return this.outcomeValue !== undefined;
  }

  get reporter(): ConnectionOpen['reporter'] {
    return this.open.reporter;
  }

  /** Adds facts as they are learnt (the route, the upstream, the decision's policy). */
  set(fields: Record<string, unknown>): void {
    Object.assign(this.fields, fields);
  }

  /**
   * Counts the connection opened (`response_flags="-"`) with the facts given at accept, updated by
   * `facts` (the destination a route chose). Once: a second call is ignored. Failures before this
   * (no route yet) are logged, not counted, as ztunnel's early denials are.
   */
  count(facts: Partial<ConnectionOpen> = {}): void {
    if (this.metrics || this.finished) return;
    this.metrics = this.telemetry.opened({ ...this.open, ...facts });
    if (this.bytes) this.metrics.trackBytes(this.bytes);
  }

  /** Where the byte counts come from (Istio's direction: received = client → server). */
  trackBytes(bytes: () => ByteCounts): void {
    this.bytes = bytes;
    this.metrics?.trackBytes(bytes);
  }

  /** A connection that was spliced to its end (`error`: how the splice broke, if it did). */
  complete(error?: Error): void {
    const flag = error ? responseFlagFor(error) : '-';
    if (!this.finish('complete', flag)) return;
    if (!error && !this.telemetry.logComplete()) return;
    this.write(error ? 'warn' : 'info', 'connection complete', {
      response_flags: flag,
      ...this.byteFields(),
      duration_ms: Date.now() - this.start,
      ...(error ? { error: error.message } : {}),
    });
  }

  /** A connection that failed before its splice (unknown host, upstream refused, app refused). */
  fail(flag: ResponseFlag, msg: string, extra: Record<string, unknown> = {}, err?: unknown): void {
    if (!this.finish('failed', flag)) return;
    this.write('warn', msg, {
      response_flags: flag,
      ...(err !== undefined ? { error: errorMessage(err) } : {}),
      duration_ms: Date.now() - this.start,
      ...extra,
    });
  }

  /** Refused before any route or policy (a probe of a proxy port): one warn line, not counted. */
  refuse(msg: string, reason: string): void {
    if (!this.finish('failed', '-')) return;
    this.write('warn', msg, { reason });
  }

  /** Denied by policy at accept: counted (opened + closed with the flag) and always logged. */
  deny(d: RecordDecision, extra: Record<string, unknown> = {}, flag: ResponseFlag = 'DENY'): void {
    this.count();
    if (!this.finish('denied', flag)) return;
    this.write('warn', 'connection denied by policy', {
      ...decisionFields(d),
      response_flags: flag,
      ...extra,
    });
  }

  /**
   * An open connection a policy change no longer allows; the caller cuts its sockets. A tunnel
   * handed to the HTTP path is still the gate's to close, so its close is written too.
   */
  closedByPolicy(d: RecordDecision, extra: Record<string, unknown> = {}): void {
    if (this.outcomeValue === 'handed-off') this.outcomeValue = undefined;
    if (!this.finish('closed-by-policy', 'DENY')) return;
    this.write('warn', 'connection closed: policy no longer allows it', {
      ...decisionFields(d),
      response_flags: 'DENY',
      ...this.byteFields(),
      duration_ms: Date.now() - this.start,
      ...extra,
    });
  }

  /** The tunnel carries HTTP: each request is recorded by the waypoint's request record instead. */
  handOff(): void {
    this.finish('handed-off', '-');
  }

  /** The guard's finish: whatever a handler left open is recorded as an error (one line, warn). */
  abandon(err: unknown): void {
    const flag = responseFlagFor(err);
    // An error escaping the HTTP path after the hand-off is still written (not counted as TCP).
    if (this.outcomeValue === 'handed-off') this.outcomeValue = undefined;
    else this.count();
    if (!this.finish('unfinished', flag)) return;
    this.write('warn', 'connection failed', {
      response_flags: flag,
      error: errorMessage(err),
      ...this.byteFields(),
      duration_ms: Date.now() - this.start,
    });
  }

  /** Marks the record finished and closes its metric; false when it already was. */
  private finish(outcome: RecordOutcome, flag: ResponseFlag): boolean {
    if (this.outcomeValue !== undefined) return false;
    this.outcomeValue = outcome;
    this.metrics?.close(flag);
    return true;
  }

  private write(level: 'info' | 'warn', msg: string, extra: Record<string, unknown>): void {
    this.log[level]({ ...this.fields, ...extra }, msg);
  }

  /**
   * Bytes from this proxy's point of view, as ztunnel logs them: the source reporter sent what
   * the client sent (received, in Istio's metric direction); everyone else sent what the server
   * answered.
   */
  private byteFields(): { bytes_sent?: number; bytes_recv?: number } {
    if (!this.bytes) return {};
    const b = this.bytes();
    return this.open.reporter === 'source'
      ? { bytes_sent: b.received, bytes_recv: b.sent }
      : { bytes_sent: b.sent, bytes_recv: b.received };
  }
}

/**
 * Runs one connection's handler; whatever it leaves unfinished (or throws) is recorded once, and
 * `cleanup` (cut the connection's sockets) runs after a throw so nothing is left half open. The
 * error is not rethrown: listeners call handlers fire-and-forget, and the record is its report.
 */
export async function runRecorded(
  record: ConnectionRecord,
  handler: () => Promise<void>,
  cleanup?: () => void,
): Promise<void> {
  try {
    await handler();
  } catch (err) {
    record.abandon(err);
    cleanup?.();
    return;
  }
  if (!record.finished) record.abandon(new Error('the handler returned without recording the connection'));
}

function decisionFields(d: RecordDecision): Record<string, unknown> {
  return { policy: d.policy ?? null, 'policy.rule': d.ruleIndex ?? null, reason: d.reason };
}
