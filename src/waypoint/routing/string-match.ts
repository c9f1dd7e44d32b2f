// Value tests compiled once per route: exact, prefix, path-segment prefix, and regular
// expressions written for RE2 (Envoy, Istio and Gateway API implementations use RE2, which
// always matches the whole value). A pattern is translated to a JS RegExp once; a construct
// RE2 does not have (lookaround, backreference) is refused, so a pattern that works in Istio
// means the same here and one that Istio would reject is reported instead of half-working.

/** Tests one value; `undefined` means the header / parameter is absent. */
export type ValueTest = (value: string | undefined) => boolean;

/** The result of compiling a user's pattern: the RegExp, or why it was refused. */
export type Re2Result = { ok: true; re: RegExp } | { ok: false; error: string };

const NOT_RE2: [RegExp, string][] = [
  [/\(\?<?[=!]/, 'lookaround assertions ((?=, (?!, (?<=, (?<!) are not RE2 syntax'],
  [/\\[1-9]|\\k</, 'backreferences are not RE2 syntax'],
  [/\\Q/, '\\Q...\\E quoting is not supported'],
  [/\[\[:[a-z]+:\]/, 'POSIX classes such as [[:alpha:]] are not supported'],
  [/\(\?[imsU-]+[:)]/, 'inline flags are only supported at the start of the pattern'],
];

/**
 * Compiles an RE2 pattern into a RegExp that must match the whole value, as RE2 full-match does;
 * with `search`, a global RegExp that finds every match (for substitutions).
 */
export function compileRe2(pattern: string, ignoreCase = false, search = false): Re2Result {
  let source = pattern;
  let flags = ignoreCase ? 'i' : '';
  // A leading (?i) / (?s) / (?is) sets flags for the whole pattern, as in RE2.
  const lead = /^\(\?([is]+)\)/.exec(source);
  if (lead) {
    for (const f of lead[1]!) if (!flags.includes(f)) flags += f;
    source = source.slice(lead[0].length);
  }
  for (const [bad, why] of NOT_RE2) {
    if (bad.test(source)) return { ok: false, error: why };
  }
  source = source
    .replace(/\(\?P</g, '(?<') // RE2 named group
    .replace(/\\A/g, '^')
    .replace(/\\z/g, '$');
  if (/\\p[A-Za-z{]/.test(source)) flags += 'u';
  try {
    // search: every match anywhere in the value (a substitution, Envoy's RegexMatchAndSubstitute).
    return { ok: true, re: search ? new RegExp(source, `${flags}g`) : new RegExp(`^(?:${source})$`, flags) };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}

export function exactTest(expected: string, ignoreCase = false): ValueTest {
  if (!ignoreCase) return (v) => v === expected;
  const lower = expected.toLowerCase();
  return (v) => v !== undefined && v.toLowerCase() === lower;
}

/** Istio `prefix`: a plain string prefix ("/foo" matches "/foobar"). */
export function prefixTest(prefix: string, ignoreCase = false): ValueTest {
  if (!ignoreCase) return (v) => v !== undefined && v.startsWith(prefix);
  const lower = prefix.toLowerCase();
  return (v) => v !== undefined && v.toLowerCase().startsWith(lower);
}

/**
 * Gateway API PathPrefix: whole path segments. `prefix` has no trailing slash ("" for "/"):
 * "/foo" matches "/foo", "/foo/" and "/foo/bar", not "/foobar".
 */
export function segmentPrefixTest(prefix: string): ValueTest {
  if (prefix === '') return (v) => v !== undefined;
  const withSlash = `${prefix}/`;
  return (v) => v !== undefined && (v === prefix || v.startsWith(withSlash));
}

export function regexTest(re: RegExp): ValueTest {
  return (v) => v !== undefined && re.test(v);
}

export const presentTest: ValueTest = (v) => v !== undefined;

/** A header's value as one string: repeated headers are joined with "," as Envoy does. */
export function headerValue(raw: string | string[] | undefined): string | undefined {
  if (raw === undefined || typeof raw === 'string') return raw;
  return raw.join(',');
}
