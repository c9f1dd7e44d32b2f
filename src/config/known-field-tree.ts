// The shape of a field table and the walk that finds the keys a table does not define. Kept
// apart from the tables (known-fields-*.ts) and from the per-kind lookup (known-fields.ts) so
// the tables can use `mapOf` without an import cycle.

/** A map with free keys (labels, header names, port numbers) whose values all have `values`'s fields. */
export class MapOf {
  constructor(readonly values: FieldTree) {}
}
export const mapOf = (values: FieldTree): MapOf => new MapOf(values);

/**
 * `true` = a leaf (any value, not looked into: scalars, lists of scalars, free maps such as
 * labels or a `google.protobuf.Struct`); an object = a mapping with exactly these keys; `[tree]`
 * = a list of them; `MapOf` = a mapping with any keys whose values are `tree`.
 */
export type FieldTree = true | MapOf | { readonly [field: string]: FieldTree } | readonly [FieldTree];

export interface UnknownField {
  /** Path from the object's root, e.g. `['spec', 'http', 0, 'route', 0, 'weigth']`. */
  path: PropertyKey[];
  field: string;
  /** The known field it is closest to, when it looks like a typo of one. */
  suggestion?: string;
}

/** Every key in `value` that `tree` does not define, depth first in document order. */
export function unknownFields(value: unknown, tree: FieldTree, at: PropertyKey[] = []): UnknownField[] {
  if (tree === true || value === null || typeof value !== 'object') return [];
  const out: UnknownField[] = [];
  if (Array.isArray(tree)) {
    if (Array.isArray(value)) value.forEach((v, i) => out.push(...unknownFields(v, tree[0], [...at, i])));
    return out;
  }
  if (Array.isArray(value)) return out;
  const entries = Object.entries(value as Record<string, unknown>);
  if (tree instanceof MapOf) {
    for (const [key, v] of entries) out.push(...unknownFields(v, tree.values, [...at, key]));
    return out;
  }
  const known = tree as Record<string, FieldTree>;
  for (const [key, v] of entries) {
    const sub = Object.hasOwn(known, key) ? known[key] : undefined;
    if (sub === undefined) {
      const suggestion = closest(key, Object.keys(known));
      out.push({ path: [...at, key], field: key, ...(suggestion ? { suggestion } : {}) });
    } else out.push(...unknownFields(v, sub, [...at, key]));
  }
  return out;
}

/** A known name within edit distance 2 (a swap counts as one), case-insensitively. */
function closest(word: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const k of known) {
    // Lengths more than 2 apart are never within distance 2; skipping them also keeps a hostile
    // megabyte-long key from costing a quadratic distance table.
    if (Math.abs(word.length - k.length) > 2) continue;
    const d = distance(word.toLowerCase(), k.toLowerCase());
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best;
}

// Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps.
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [
    i,
    ...Array<number>(b.length).fill(0),
  ]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}
