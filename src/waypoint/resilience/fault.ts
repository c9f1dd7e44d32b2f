// Fault injection (Istio VirtualService `fault`, Envoy's HTTP fault filter): decide, per
// request, whether to delay it and whether to abort it. The waypoint does the waiting and the
// answering; this file only decides, so it can be tested with a scripted random source.
import type { FaultPolicy, RandomSource } from './types.js';

export interface FaultDecision {
  /** Wait this long before going on (the delay comes before the abort, as in Envoy). */
  delayMs?: number;
  /** Answer with this status instead of forwarding. */
  abortStatus?: number;
}

/**
 * Delay and abort are drawn independently, each with its own random number, as Envoy's fault
 * filter does; so with delay 50 % and abort 50 %, a quarter of requests get both.
 * Percentages may be fractional (Istio `percentage.value` is a double); 0 never fires, 100
 * always does.
 */
export function decideFault(policy: FaultPolicy | undefined, random: RandomSource): FaultDecision {
  const decision: FaultDecision = {};
  if (!policy) return decision;
  if (policy.delay && policy.delay.ms > 0 && hit(policy.delay.percent, random)) {
    decision.delayMs = policy.delay.ms;
  }
  if (policy.abort && hit(policy.abort.percent, random)) {
    decision.abortStatus = policy.abort.status;
  }
  return decision;
}

/** True with probability `percent` / 100. Draws a number only when the outcome is in doubt. */
export function hit(percent: number, random: RandomSource): boolean {
  if (!(percent > 0)) return false;
  if (percent >= 100) return true;
  return random() * 100 < percent;
}

/** Envoy's body for an injected abort, which tests and users recognise. */
export const FAULT_ABORT_BODY = 'fault filter abort';
