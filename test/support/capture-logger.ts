// A pino logger whose JSON lines tests can read back (level debug and up), for asserting on what
// a component logged without parsing stdout.
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';

export function captureLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n'))
        if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), lines };
}
