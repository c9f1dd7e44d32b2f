// The entries of one service, indexed by what their path condition needs, so a request is only
// tested against entries whose path could match: an exact path, a literal prefix (PathPrefix,
// Istio prefix, the literal start of a regex), or anything. Entries keep their order number,
// and first() returns the lowest-numbered entry that matches, so the index never changes which
// route wins (Gateway API precedence and Istio first-match are both "first in the list").
import type { L7Request, RouteAction } from './types.js';

/** What an entry's path condition requires; the entry's own test still checks everything. */
export type PathKey = { exact: string } | { prefix: string } | undefined;

/** One match of one rule, with what to do when it matches. */
export interface RouteEntry {
  /** Every condition of the match (path, method, headers, query, ...); cheapest first. */
  test: (req: L7Request) => boolean;
  /** Service ports the entry applies to; undefined = every port. */
  ports?: ReadonlySet<number>;
  /** A shared, frozen action, or one built per request (redirects, port-dependent backends). */
  action: RouteAction | ((req: L7Request) => RouteAction);
  /** What the path must be or start with, for the index; undefined = no such requirement. */
  pathKey?: PathKey;
}

interface Indexed {
  entry: RouteEntry;
  order: number;
}

export class RouteIndex {
  private readonly any: Indexed[] = [];
  private readonly exact = new Map<string, Indexed[]>();
  private readonly prefix = new Map<string, Indexed[]>();
  /** Distinct prefix lengths, ascending. */
  private lengths: number[] = [];
  private count = 0;

  /** Appends an entry; entries are tried in the order they are added. */
  add(entry: RouteEntry): void {
    const item = { entry, order: this.count++ };
    const key = entry.pathKey;
    if (key === undefined) this.any.push(item);
    else if ('exact' in key) push(this.exact, key.exact, item);
    else {
      if (!this.prefix.has(key.prefix)) {
        this.lengths = [...new Set([...this.lengths, key.prefix.length])].sort((a, b) => a - b);
      }
      push(this.prefix, key.prefix, item);
    }
  }

  get size(): number {
    return this.count;
  }

  /** The first entry (in order) that matches the request on this port. */
  first(req: L7Request, port: number): RouteEntry | undefined {
    const path = req.path;
    let best = scan(this.any, req, port, undefined);
    const exact = this.exact.get(path);
    if (exact) best = scan(exact, req, port, best);
    for (const len of this.lengths) {
      if (len > path.length) break;
      const list = this.prefix.get(len === path.length ? path : path.slice(0, len));
      if (list) best = scan(list, req, port, best);
    }
    return best?.entry;
  }
}

function push(map: Map<string, Indexed[]>, key: string, item: Indexed): void {
  const list = map.get(key);
  if (list) list.push(item);
  else map.set(key, [item]);
}

/** The first matching item of `list` that comes before `best`, else `best`. */
function scan(list: Indexed[], req: L7Request, port: number, best: Indexed | undefined): Indexed | undefined {
  for (const item of list) {
    if (best && item.order >= best.order) return best;
    const e = item.entry;
    if (e.ports && !e.ports.has(port)) continue;
    if (e.test(req)) return item;
  }
  return best;
}

/**
 * The literal text every match of an RE2 pattern starts with ("/api/v[0-9]+" → "/api/v"), or ""
 * when there is none or the pattern is not simple enough to be sure (alternation, flags).
 */
export function regexLiteralPrefix(pattern: string): string {
  if (pattern.includes('|') || pattern.startsWith('(?')) return '';
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if ('\\^$.|?*+()[]{}'.includes(c)) {
      // A quantifier applies to the last literal character, which is then optional.
      if ('?*{'.includes(c)) out = out.slice(0, -1);
      break;
    }
    out += c;
  }
  return out;
}
