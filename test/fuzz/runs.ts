// How many inputs each property gets. CI: the default (a few seconds for the whole folder).
// `npm run fuzz` raises FC_NUM_RUNS and sets FC_SEED to a fresh seed per round, so a long run
// explores further; a failure prints the seed and path that replay it (fast-check's report).
import type { Parameters } from 'fast-check';

const fromEnv = Number(process.env.FC_NUM_RUNS);
/** Inputs per property (FC_NUM_RUNS, default 300). */
export const NUM_RUNS = Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : 300;
const seed = Number(process.env.FC_SEED);

/** fast-check parameters for one property; `scale` shrinks the count for expensive properties. */
export function runs(scale = 1): Parameters<unknown> {
  return {
    numRuns: Math.max(1, Math.round(NUM_RUNS * scale)),
    ...(Number.isInteger(seed) ? { seed } : {}),
  };
}
