// One pino root logger per process; components take a child with `component` set.
// AMBIT_LOG_LEVEL picks the level (default info). Output is one JSON object per line on stdout:
// `ambit up` reads these lines from its children and prints them with a component prefix.
import { pino, type Logger } from 'pino';

export type { Logger };

let root: Logger | undefined;

export function rootLogger(): Logger {
  root ??= pino({
    level: process.env.AMBIT_LOG_LEVEL ?? 'info',
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
  return root;
}

export function componentLogger(component: string, bindings: Record<string, unknown> = {}): Logger {
  return rootLogger().child({ component, ...bindings });
}
