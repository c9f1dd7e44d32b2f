// Durations as Istio (Go: "1h30m", "1.5s", "250ms") and Gateway API (GEP-2257) write them.
// The config schemas have already checked the syntax; this only converts.

const UNIT_MS: Record<string, number> = {
  h: 3_600_000,
  m: 60_000,
  s: 1000,
  ms: 1,
  us: 0.001,
  µs: 0.001,
  ns: 0.000_001,
};
const PART = /(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)/y;

/**
 * Milliseconds, rounded up so that a non-zero duration never becomes 0 (0 means "none" in the
 * route action); undefined when the text is not a duration.
 */
export function parseDurationMs(text: string | undefined): number | undefined {
  if (text === undefined || text === '') return undefined;
  PART.lastIndex = 0;
  let total = 0;
  let end = 0;
  for (let m = PART.exec(text); m; m = PART.exec(text)) {
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    end = PART.lastIndex;
  }
  if (end !== text.length) return undefined;
  return Math.ceil(total);
}
