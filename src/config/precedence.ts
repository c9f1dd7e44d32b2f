// The tie-break between objects of equal standing: the oldest creationTimestamp first, then
// "namespace/name" in alphabetical order.
//
// Gateway API (apis/v1/httproute_types.go, HTTPRouteRule.Matches): "If ties still exist across
// multiple Routes, matching precedence MUST be determined ... The oldest Route based on creation
// timestamp ... The Route appearing first in alphabetical order by "<namespace>/<name>"."
// Istio does the same for its own kinds (pilot/pkg/model sortConfigByCreationTime; the
// PeerAuthentication reference: of several policies at one level "the oldest one" applies).
//
// Kubernetes always sets metadata.creationTimestamp; manifests in files may carry one. An
// object without one sorts as Go's zero time does in istiod: before every dated object.

export interface Dated {
  metadata: { name: string; namespace?: string; creationTimestamp?: string };
}

/** Milliseconds since the epoch, or -Infinity when absent or unreadable (Go's zero time). */
export function creationTime(o: Dated): number {
  const t = o.metadata.creationTimestamp;
  if (t === undefined) return Number.NEGATIVE_INFINITY;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? Number.NEGATIVE_INFINITY : ms;
}

/** Sort comparator: oldest first, then "namespace/name". */
export function byCreationThenName(a: Dated, b: Dated): number {
  const ta = creationTime(a);
  const tb = creationTime(b);
  if (ta !== tb) return ta < tb ? -1 : 1;
  const ka = `${a.metadata.namespace ?? ''}/${a.metadata.name}`;
  const kb = `${b.metadata.namespace ?? ''}/${b.metadata.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/** A copy of `objects` in precedence order (the input is left as it is). */
export function inPrecedenceOrder<T extends Dated>(objects: Iterable<T>): T[] {
  return [...objects].sort(byCreationThenName);
}
