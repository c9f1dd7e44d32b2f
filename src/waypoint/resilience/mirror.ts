// Traffic mirroring (Istio `mirror` / `mirrors`, Gateway API RequestMirror): the decision to
// send a copy and the authority the copy carries. The waypoint sends the copy fire-and-forget
// and discards its response.
import { hit } from './fault.js';
import type { RandomSource } from './types.js';

/** Whether to mirror this request; `percent` 0–100, fractional allowed (Istio default 100). */
export function shouldMirror(percent: number, random: RandomSource): boolean {
  return hit(percent, random);
}

/**
 * The Host/:authority of a mirrored request: Envoy appends `-shadow` to the host so the
 * mirror's backend can tell copies apart ("echo:8080" → "echo-shadow:8080"). The suffix goes
 * on the host name, before any port, and IPv6 literals keep their brackets.
 */
export function shadowAuthority(authority: string): string {
  const bracket = authority.startsWith('[') ? authority.indexOf(']') : -1;
  const colon = authority.lastIndexOf(':');
  const hasPort = bracket >= 0 ? colon > bracket : colon >= 0 && authority.indexOf(':') === colon;
  if (!hasPort) return `${authority}-shadow`;
  return `${authority.slice(0, colon)}-shadow${authority.slice(colon)}`;
}
