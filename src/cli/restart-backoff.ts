// When a supervised mesh component (control plane, node proxy, waypoint) that died is started
// again, and how loudly. `ambit up` plays the DaemonSet/Deployment: the kubelet restarts a crashed
// container with an exponential back-off, 10 s doubling to a 5 min cap, reset once the container
// has run 10 min without a problem (Kubernetes docs, "Pod Lifecycle", container restart policy;
// MaxContainerBackOff in pkg/kubelet). A developer's mesh on a
// laptop wants the proxy back within a second, so the same shape with smaller numbers: 100 ms
// doubling, capped at 5 s, reset after 10 s of running. Pure: the caller owns processes and time.
//
// Log noise in a crash loop is bounded: the first `loudRestarts` restarts of a loop are logged,
// with what the child printed; after that one restart per `summaryEveryMs` is (saying how many
// restarts and child log lines were not shown), and the children in between are quiet.

export interface RestartPolicy {
  /** Delay before the first restart of a loop (default 100 ms); doubles with each restart. */
  initialMs: number;
  /** Longest delay between two restarts (default 5 s). */
  maxMs: number;
  /** A run this long counts as stable: the next crash starts a new loop at initialMs (default 10 s). */
  stableMs: number;
  /** Restarts of a loop that are logged in full (default 5). */
  loudRestarts: number;
  /** After those, one restart per this interval is logged (default 60 s). */
  summaryEveryMs: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = {
  initialMs: 100,
  maxMs: 5000,
  stableMs: 10_000,
  loudRestarts: 5,
  summaryEveryMs: 60_000,
};

/** What to do about one exit. */
export interface RestartDecision {
  delayMs: number;
  /** 1 for the first restart of a loop. */
  restart: number;
  /** Log this restart and forward the next child's output; otherwise both are counted only. */
  loud: boolean;
  /** Restarts not logged since the last logged one (only on a loud restart after quiet ones). */
  quietRestarts: number;
  /** Child log lines not shown since the last logged restart. */
  quietLines: number;
}

/** The restart state of one component. */
export class RestartBackoff {
  private readonly policy: RestartPolicy;
  private restarts = 0;
  private startedAt = 0;
  private lastLoudAt = -Infinity;
  private quietRestarts = 0;
  private quietLines = 0;
  /** Whether the next run's output is forwarded (set by `exited`). */
  loud = true;

  constructor(policy: Partial<RestartPolicy> = {}) {
    this.policy = { ...DEFAULT_RESTART_POLICY, ...policy };
  }

  /** The component (re)started at `now`. */
  started(now: number): void {
    this.startedAt = now;
  }

  /** The component ran stably: the loop is over (the caller logs that it is back, if it was looping). */
  ranStably(now: number): number | undefined {
    if (now - this.startedAt < this.policy.stableMs || this.restarts === 0) return undefined;
    const was = this.restarts;
    this.reset();
    return was;
  }

  get stableMs(): number {
    return this.policy.stableMs;
  }

  /** A child log line of a quiet run was dropped. */
  countQuietLine(): void {
    this.quietLines++;
  }

  /** The component exited at `now`: how long to wait before starting it again, and whether to say so. */
  exited(now: number): RestartDecision {
    if (now - this.startedAt >= this.policy.stableMs) this.reset();
    this.restarts++;
    const p = this.policy;
    const delayMs = Math.min(p.maxMs, p.initialMs * 2 ** Math.min(this.restarts - 1, 30));
    const loud = this.restarts <= p.loudRestarts || now - this.lastLoudAt >= p.summaryEveryMs;
    const decision: RestartDecision = {
      delayMs,
      restart: this.restarts,
      loud,
      quietRestarts: loud ? this.quietRestarts : 0,
      quietLines: loud ? this.quietLines : 0,
    };
    if (loud) {
      this.lastLoudAt = now;
      this.quietRestarts = 0;
      this.quietLines = 0;
    } else this.quietRestarts++;
    this.loud = loud;
    return decision;
  }

  private reset(): void {
    this.restarts = 0;
    this.quietRestarts = 0;
    this.quietLines = 0;
    this.lastLoudAt = -Infinity;
    this.loud = true;
  }
}

/** The log line of a restart: "restarting node/node-1 in 400ms (exit code 1, restart 3)". */
export function restartMessage(
  name: string,
  d: RestartDecision,
  exit: { code: number | null; signal: NodeJS.Signals | null },
): string {
  const how = exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code}`;
  const quiet =
    d.quietRestarts > 0
      ? `; crash loop: ${d.quietRestarts} restarts and ${d.quietLines} log lines not shown since the last report`
      : '';
  return `restarting ${name} in ${d.delayMs}ms (${how}, restart ${d.restart}${quiet})`;
}
