// Small multimap helpers the ambient index builds its lookups from: object keys, and
// "namespace key=value → object keys" for labels and selectors.
import type { ObjectMeta } from '../config/types.js';

export const keyOf = (m: Pick<ObjectMeta, 'name' | 'namespace'>) => `${m.namespace ?? 'default'}/${m.name}`;
export const labelKey = (ns: string, k: string, v: string) => `${ns}\u0000${k}=${v}`;

export function addTo<K, V>(map: Map<K, Set<V>>, k: K, v: V): void {
  let set = map.get(k);
  if (!set) map.set(k, (set = new Set()));
  set.add(v);
}

export function removeFrom<K, V>(map: Map<K, Set<V>>, k: K, v: V): void {
  const set = map.get(k);
  if (set?.delete(v) && set.size === 0) map.delete(k);
}

/** Adds (or removes) `key` under each "ns k=v" of `pairs` (a pod's labels, a service's selector). */
export function indexPairs(
  map: Map<string, Set<string>>,
  meta: Pick<ObjectMeta, 'namespace'>,
  pairs: Record<string, string> | undefined,
  key: string,
  add: boolean,
): void {
  for (const [k, v] of Object.entries(pairs ?? {})) {
    const lk = labelKey(meta.namespace ?? 'default', k, v);
    if (add) addTo(map, lk, key);
    else removeFrom(map, lk, key);
  }
}
