// Turns the JSON log lines of ambit's processes into one readable line each, prefixed with the
// component that wrote it (for `ambit up`; `--log-format json` passes the JSON through).

const LEVELS: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};
const SKIP = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'component']);

export function formatLogLine(component: string, line: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return `[${component}] ${line}`;
  }
  if (typeof rec !== 'object' || rec === null) return `[${component}] ${line}`;
  const time = typeof rec.time === 'string' ? rec.time.slice(11, 23) : '';
  const level = LEVELS[Number(rec.level)] ?? 'INFO';
  const fields = Object.entries(rec)
    .filter(([k, v]) => !SKIP.has(k) && v !== undefined && v !== null)
    .map(
      ([k, v]) =>
        `${k}=${typeof v === 'string' ? (/\s/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v)}`,
    )
    .join(' ');
  return `${time} ${level.padEnd(5)} [${component}] ${String(rec.msg ?? '')}${fields ? '  ' + fields : ''}`;
}
