// The change between two snapshots, by content: an object counts as upserted only if something in
// it differs, so a reload that re-reads unchanged files tells nobody anything.
import type { ConfigChange, KubeResource, ObjectKey } from './types.js';

export function diffSnapshots(
  before: ReadonlyMap<ObjectKey, KubeResource>,
  after: ReadonlyMap<ObjectKey, KubeResource>,
): ConfigChange {
  const change: ConfigChange = { upserted: [], deleted: [] };
  for (const [key, obj] of after) {
    const old = before.get(key);
    if (old === undefined || !sameContent(old, obj)) change.upserted.push(obj);
  }
  for (const [key, old] of before) {
    if (!after.has(key)) change.deleted.push({ kind: old.kind, metadata: old.metadata });
  }
  return change;
}

export function isEmptyChange(change: ConfigChange): boolean {
  return change.upserted.length === 0 && change.deleted.length === 0;
}

/** Deep equality of plain JSON-like values; key order does not matter, list order does. */
export function sameContent(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((x, i) => sameContent(x, b[i]));
  }
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  const keys = Object.keys(ra).filter((k) => ra[k] !== undefined);
  if (keys.length !== Object.keys(rb).filter((k) => rb[k] !== undefined).length) return false;
  return keys.every((k) => Object.hasOwn(rb, k) && sameContent(ra[k], rb[k]));
}
