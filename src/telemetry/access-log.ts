// Access-log policy for per-connection records: off, full, or a sampled ratio of successful
// connections (`--access-log off|full|sample:0.1`, or AMBIT_ACCESS_LOG). Failures, denials and
// policy closes are operational events: they are always logged, whatever the mode.
import { AmbitError } from '../common/errors.js';

export type AccessLogMode = { kind: 'off' } | { kind: 'full' } | { kind: 'sample'; ratio: number };

export const DEFAULT_ACCESS_LOG: AccessLogMode = { kind: 'full' };

export function parseAccessLogMode(text: string): AccessLogMode {
  const t = text.trim().toLowerCase();
  if (t === 'off' || t === 'none' || t === 'false') return { kind: 'off' };
  if (t === 'full' || t === 'on' || t === 'true' || t === '') return { kind: 'full' };
  const m = /^sample:(\d*\.?\d+)$/.exec(t);
  if (m) {
    const ratio = Number(m[1]);
    if (ratio >= 0 && ratio <= 1) return ratio === 0 ? { kind: 'off' } : { kind: 'sample', ratio };
  }
  throw new AmbitError(
    'CONFIG_INVALID',
    `access log mode ${JSON.stringify(text)} is not off, full or sample:RATIO (RATIO between 0 and 1)`,
  );
}

export function formatAccessLogMode(m: AccessLogMode): string {
  return m.kind === 'sample' ? `sample:${m.ratio}` : m.kind;
}

/** Decides, per completed connection, whether its record is written. */
export class AccessLogPolicy {
  constructor(
    public mode: AccessLogMode = DEFAULT_ACCESS_LOG,
    private readonly random: () => number = Math.random,
  ) {}

  logComplete(): boolean {
    switch (this.mode.kind) {
      case 'off':
        return false;
      case 'full':
        return true;
      case 'sample':
        return this.random() < this.mode.ratio;
    }
  }
}

/** The trace id of a W3C `traceparent` header ("00-<trace id>-<span id>-<flags>"), if well formed. */
export function traceIdOf(traceparent: unknown): string | undefined {
  if (typeof traceparent !== 'string') return undefined;
  const m = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(traceparent.trim());
  return m?.[1];
}
