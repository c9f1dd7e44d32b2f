// What the long-running subcommands (`up`, `node`, `waypoint`) share: the `--cert-ttl` flag and
// waiting for the signal that stops them. Here, not in main.ts, so `up.ts` need not import the
// entry point (issue 14: no cycles).
import { UsageError } from './usage-error.js';

/** The CA's cap on a workload certificate's lifetime (controlplane/ca.ts DEFAULT_MAX_TTL_SECONDS). */
const MAX_CERT_TTL_SECONDS = 7 * 24 * 3600;

/**
 * `--cert-ttl SECONDS` of `up`, `node` and `waypoint`: a whole number of seconds from 1 to 7 days
 * (the CA caps longer requests silently, so a longer value is refused here, where it is typed).
 */
export function certTtlFlag(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_CERT_TTL_SECONDS)
    throw new UsageError(
      `--cert-ttl must be a whole number of seconds from 1 to ${MAX_CERT_TTL_SECONDS} (7 days, the CA's cap), not ${JSON.stringify(value)}`,
    );
  return n;
}

/** Resolves on SIGINT/SIGTERM (or when the parent of an IPC child goes away). */
export function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
    process.once('disconnect', () => resolve());
  });
}
