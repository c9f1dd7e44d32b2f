// The one inbound L4 gate, used by every listener that accepts a connection for a workload or a
// waypoint: HBONE inbound (nodeproxy/inbound.ts), plaintext inbound (nodeproxy/inbound-plaintext.ts) and
// the waypoint's own inbound (waypoint/waypoint.ts). Three steps, always in this order:
//   authorize  — evaluate the policies that govern the destination (proxy/authz.ts) on verified
//                facts only; a denial is counted, kept for /debug/denials and recorded (one line);
//   register   — an admitted connection is kept with the attributes it was authorized on, so a
//                policy or workload change re-checks it and closes it when no longer allowed
//                (ztunnel's inbound policy watcher, istio/ztunnel src/proxy/connection_manager.rs);
//   record     — through the connection's ConnectionRecord (proxy/connection-record.ts).
// The caller owns the I/O: what to answer on a denial (401, a reset) and how to cut the sockets.
import { errorMessage } from '../common/errors.js';
import type { ConnectionTelemetry, DenialRecord } from '../telemetry/connection-telemetry.js';
import type { ConnectionRecord } from './connection-record.js';
import { evaluate, type AuthzConnection, type AuthzDecision, type EvalPolicy } from './authz.js';

/** In-memory L4 authorization counters (exported as the ambit_authz_* metrics). */
export interface AuthzCounters {
  allowed: number;
  denied: number;
  /** Open connections closed because a policy change no longer allows them. */
  closedByPolicyChange: number;
  /** Denials (new and closed) per deciding policy ("ns/name", or "(no ALLOW matched)"). */
  deniedByPolicy: Map<string, number>;
}

/** One connection at the gate. */
export interface GateEntry {
  record: ConnectionRecord;
  /** The verified facts it is authorized on (never a client's claim such as `forwarded`). */
  conn: AuthzConnection;
  /** The policies governing it now; read again at each re-evaluation. */
  policies: () => EvalPolicy[];
  /** The destination for /debug/denials. */
  dst: { name: string; namespace: string };
  /** Rewrites a denial's reason for the log (e.g. plaintext refused by PeerAuthentication STRICT). */
  explain?: (d: AuthzDecision) => string;
  /**
   * A further decision the connection was admitted on after the gate (the waypoint's TCP-path
   * policy, waypoint/policy/authz-tcp.ts), re-checked with the L4 policies; a throw denies.
   */
  recheck?: () => AuthzDecision;
}

export class InboundGate {
  readonly counters: AuthzCounters = {
    allowed: 0,
    denied: 0,
    closedByPolicyChange: 0,
    deniedByPolicy: new Map(),
  };
  private readonly open = new Map<GateEntry, () => void>();

  constructor(private readonly telemetry: ConnectionTelemetry) {}

  /**
   * Step 1. Denied: counted, kept, recorded (`extra` joins the line, e.g. `status: 401`); the
   * caller answers and returns. Allowed: counted and noted on the record.
   */
  authorize(e: GateEntry, extra: Record<string, unknown> = {}): AuthzDecision {
    const decision = evaluate(e.policies(), e.conn);
    if (!decision.allow) {
      this.denied(e, decision, 'denied');
      e.record.deny(this.logged(e, decision), { ...this.where(e), ...extra });
      return decision;
    }
    this.counters.allowed++;
    e.record.set({ 'authz.decision': 'allow', 'authz.policy': decision.policy ?? null });
    return decision;
  }

  /**
   * Step 2. Keeps an admitted connection for re-evaluation; `close` cuts its sockets. Returns the
   * untrack function for its end: false when a policy change already closed it.
   */
  track(e: GateEntry, close: () => void): () => boolean {
    this.open.set(e, close);
    return () => this.open.delete(e);
  }

  /** Re-checks every open connection against the current policies; closes those now denied. */
  reevaluate(): void {
    for (const [e, close] of [...this.open]) {
      // Already recorded (denied on the TCP path, failed): nothing left to close.
      if (e.record.finished && e.record.outcome !== 'handed-off') {
        this.open.delete(e);
        continue;
      }
      const decision = decide(e);
      if (decision.allow) continue;
      this.open.delete(e);
      this.counters.closedByPolicyChange++;
      this.denied(e, decision, 'closed');
      e.record.closedByPolicy(this.logged(e, decision), this.where(e));
      close();
    }
  }

  openCount(): number {
    return this.open.size;
  }

  private denied(e: GateEntry, d: AuthzDecision, kind: DenialRecord['kind']): void {
    this.counters.denied++;
    const key = d.policy ?? '(no ALLOW matched)';
    this.counters.deniedByPolicy.set(key, (this.counters.deniedByPolicy.get(key) ?? 0) + 1);
    this.telemetry.denied({
      time: new Date().toISOString(),
      srcIdentity: e.conn.srcIdentity,
      srcIp: e.conn.srcIp,
      dstWorkload: e.dst.name,
      dstNamespace: e.dst.namespace,
      dstPort: e.conn.dstPort,
      policy: d.policy ?? null,
      reason: e.explain?.(d) ?? d.reason,
      kind,
    });
  }

  private logged(e: GateEntry, d: AuthzDecision): AuthzDecision {
    return e.explain ? { ...d, reason: e.explain(d) } : d;
  }

  private where(e: GateEntry): Record<string, unknown> {
    return { 'src.ip': e.conn.srcIp, 'dst.port': e.conn.dstPort };
  }
}

/** The L4 policies' decision, then the entry's own re-check (fail closed if it throws). */
function decide(e: GateEntry): AuthzDecision {
  const d = evaluate(e.policies(), e.conn);
  if (!d.allow || !e.recheck) return d;
  try {
    return e.recheck();
  } catch (err) {
    return { allow: false, reason: `policy could not be evaluated: ${errorMessage(err)}` };
  }
}
