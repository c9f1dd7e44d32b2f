// Pieces of route actions shared by the Gateway API and Istio converters: header edits, the
// Location of a redirect, path rewriting, and freezing the actions shared between requests.
import type { HeaderModifier, HeaderPair, L7Request, Rewrite } from './types.js';

export const EMPTY_HEADERS: HeaderModifier = Object.freeze({
  set: Object.freeze([]) as unknown as HeaderPair[],
  add: Object.freeze([]) as unknown as HeaderPair[],
  remove: Object.freeze([]) as unknown as string[],
});

export function isEmptyModifier(m: HeaderModifier): boolean {
  return m.set.length === 0 && m.add.length === 0 && m.remove.length === 0;
}

/** `b` applied after `a`, as one modifier (a later `set` wins over an earlier one). */
export function mergeModifiers(a: HeaderModifier, b: HeaderModifier): HeaderModifier {
  if (isEmptyModifier(a)) return b;
  if (isEmptyModifier(b)) return a;
  const setNames = new Set(b.set.map((p) => p.name));
  return {
    set: [...a.set.filter((p) => !setNames.has(p.name)), ...b.set],
    add: [...a.add, ...b.add],
    remove: [...a.remove, ...b.remove],
  };
}

/**
 * The path to forward after a rewrite. `pathPrefix` replaces the first `from.length` characters
 * (the part the prefix match matched, compared without case for Istio's ignoreUriCase); a result
 * of "" becomes "/". Gateway API ReplacePrefixMatch is compiled into this form with the trailing
 * slashes of both prefixes removed, which gives its path-segment results ("/foo" → "/" turns
 * "/foo/bar" into "/bar").
 */
export function rewritePath(path: string, rewrite: Rewrite | undefined): string {
  if (!rewrite) return path;
  if (rewrite.path !== undefined) return rewrite.path;
  if (rewrite.regex) return substituteAll(path, rewrite.regex.pattern, rewrite.regex.substitution);
  const p = rewrite.pathPrefix;
  if (!p) return path;
  if (path.slice(0, p.from.length).toLowerCase() !== p.from.toLowerCase()) return path;
  const out = p.to + path.slice(p.from.length);
  return out === '' ? '/' : out.startsWith('/') ? out : `/${out}`;
}

/**
 * Every match of `pattern` (a global RegExp) in `value` replaced by `substitution`, read as RE2
 * writes it (envoy/type/matcher/v3/regex.proto RegexMatchAndSubstitute: "all matches in the
 * subject string are replaced"; `\1` is capture group 1): `\0`..`\9` a group (empty when it did
 * not take part), `\\` one backslash. Any other character, `$` included, is literal.
 */
export function substituteAll(value: string, pattern: RegExp, substitution: string): string {
  return value.replace(pattern, (...args: unknown[]) => {
    // replace() passes the match, the groups, then the offset (the first number).
    const groups = args.slice(
      0,
      args.findIndex((a) => typeof a === 'number'),
    );
    return substitution.replace(/\\(\d|\\)/g, (_all, what: string) => {
      if (what === '\\') return '\\';
      const g = groups[Number(what)];
      return typeof g === 'string' ? g : '';
    });
  });
}

/** The highest `\N` an RE2 rewrite string refers to (Envoy refuses one above the group count). */
export function maxSubstitutionGroup(substitution: string): number {
  let max = 0;
  for (const m of substitution.matchAll(/\\(\d|\\)/g)) if (m[1] !== '\\') max = Math.max(max, Number(m[1]));
  return max;
}

/** The host part of a Host / :authority value ("[::1]:8080" → "[::1]"). */
export function hostOf(authority: string): string {
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    return end < 0 ? authority : authority.slice(0, end + 1);
  }
  const colon = authority.lastIndexOf(':');
  return colon < 0 ? authority : authority.slice(0, colon);
}

/** The port of a Host / :authority value, if it has one. */
export function portOf(authority: string): number | undefined {
  const m = /:(\d{1,5})$/.exec(authority);
  return m && !authority.endsWith(']') ? Number(m[1]) : undefined;
}

const WELL_KNOWN_PORTS: Record<string, number> = { http: 80, https: 443 };

export function defaultPortOf(scheme: string): number | undefined {
  return WELL_KNOWN_PORTS[scheme.toLowerCase()];
}

/** An absolute Location; a port that is the scheme's default is left out, and the query is kept. */
export function formatLocation(
  scheme: string,
  host: string,
  port: number | undefined,
  path: string,
  req: L7Request,
): string {
  const showPort = port !== undefined && port !== defaultPortOf(scheme);
  const query = req.rawQuery ?? req.query.toString();
  return `${scheme}://${host}${showPort ? `:${port}` : ''}${path}${query ? `?${query}` : ''}`;
}

/** Freezes an action and everything in it, so a caller that mutates a shared action fails loudly. */
export function deepFreeze<T>(value: T): T {
  if (value === null || typeof value !== 'object' || Object.isFrozen(value)) return value;
  if (value instanceof Set || value instanceof Map || value instanceof RegExp) return value;
  for (const v of Object.values(value)) deepFreeze(v);
  return Object.freeze(value);
}

/** All conditions of one match as a single test; cheap conditions should come first. */
export function allOf(tests: ((req: L7Request) => boolean)[]): (req: L7Request) => boolean {
  if (tests.length === 0) return () => true;
  if (tests.length === 1) return tests[0]!;
  if (tests.length === 2) {
    const [a, b] = tests as [(req: L7Request) => boolean, (req: L7Request) => boolean];
    return (req) => a(req) && b(req);
  }
  return (req) => {
    for (const t of tests) if (!t(req)) return false;
    return true;
  };
}
