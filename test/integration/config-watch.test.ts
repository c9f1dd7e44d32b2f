// FileSource against a real temporary folder: files are written, renamed and deleted the way
// people and editors do, and the test waits for the change events (or log lines) that result.
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isAmbitError } from '../../src/common/errors.js';
import { FileSource, type FileSourceOptions } from '../../src/config/file-source.js';
import { objectKey, type ConfigChange, type Pod } from '../../src/config/types.js';

/** A change must reach listeners within this long of the write. */
/** A change must apply within this (the file source's promise)… */
const DEADLINE_MS = 1000;
/** …but waiting gives up only after this, so a loaded machine fails the latency assertions, not every test. */
const WAIT_MS = 5000;

const pod = (name: string, labels: Record<string, string>, port = 8080) => `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  labels: ${JSON.stringify(labels)}
spec:
  nodeName: node-1
  containers: [{name: app, ports: [{containerPort: ${port}}]}]
status:
  podIP: 10.0.0.${name.length}
`;
const ns = (name: string) => `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${name}}\n`;

interface LogLine {
  level: number;
  msg: string;
}

/** A FileSource on a temp folder, with its changes and log lines as awaitable events. */
class Harness {
  readonly changes: ConfigChange[] = [];
  readonly logs: LogLine[] = [];
  private waiters: (() => void)[] = [];
  source!: FileSource;

  constructor(readonly dir: string) {}

  async start(opts: Partial<FileSourceOptions> = {}): Promise<void> {
    const logger = pino(
      { level: 'debug' },
      { write: (s: string) => this.push(() => this.logs.push(JSON.parse(s) as LogLine)) },
    );
    this.source = new FileSource({ dir: this.dir, logger, ...opts });
    this.source.onChange((change) => this.push(() => this.changes.push(change)));
    await this.source.start();
  }

  file(name: string): string {
    return path.join(this.dir, name);
  }

  write(name: string, text: string): Promise<void> {
    return writeFile(this.file(name), text);
  }

  /** Runs `act` and resolves with the first change after it, failing if none comes in time. */
  async change(act: () => Promise<unknown>): Promise<ConfigChange & { ms: number }> {
    const seen = this.changes.length;
    const t0 = Date.now();
    await act();
    await this.until(() => this.changes.length > seen, 'a config change');
    return { ...this.changes[seen]!, ms: Date.now() - t0 };
  }

  /** Resolves when a log line containing `text` has been written. */
  async logged(text: string): Promise<void> {
    await this.until(
      () => this.logs.some((l) => l.msg.includes(text)),
      `a log line with ${JSON.stringify(text)}`,
    );
  }

  count(text: string): number {
    return this.logs.filter((l) => l.msg.includes(text)).length;
  }

  private push(record: () => void): void {
    record();
    for (const w of this.waiters.splice(0)) w();
  }

  private until(done: () => boolean, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} within ${WAIT_MS} ms`)), WAIT_MS);
      const check = () => {
        if (done()) {
          clearTimeout(timer);
          resolve();
        } else this.waiters.push(check);
      };
      check();
    });
  }
}

const keys = (c: ConfigChange) => ({
  upserted: c.upserted.map(objectKey),
  deleted: c.deleted.map(objectKey),
});

describe.each([
  ['watching', {}],
  ['polling', { poll: true }],
] as [string, Partial<FileSourceOptions>][])('FileSource (%s)', (_mode, opts) => {
  let h: Harness;
  beforeEach(async () => {
    h = new Harness(await mkdtemp(path.join(tmpdir(), 'ambit-watch-')));
  });
  afterEach(async () => {
    await h.source?.stop();
    await rm(h.dir, { recursive: true, force: true });
  });

  it('applies a new file within a second', async () => {
    await h.start(opts);
    const change = await h.change(() => h.write('pods.yaml', pod('web', { app: 'web' })));
    expect(keys(change)).toEqual({ upserted: ['Pod/default/web'], deleted: [] });
    expect(change.ms).toBeLessThan(DEADLINE_MS);
    expect(h.source.snapshot().objects.has('Pod/default/web')).toBe(true);
  });

  it('reports an edited pod label as an upsert of that pod only', async () => {
    await h.write('pods.yaml', `${pod('web', { app: 'web' })}---\n${pod('db', { app: 'db' })}`);
    await h.start(opts);
    const change = await h.change(() =>
      h.write('pods.yaml', `${pod('web', { app: 'web', version: 'v2' })}---\n${pod('db', { app: 'db' })}`),
    );
    expect(keys(change)).toEqual({ upserted: ['Pod/default/web'], deleted: [] });
    expect((change.upserted[0] as Pod).metadata.labels).toEqual({ app: 'web', version: 'v2' });
  });

  it('keeps the last good pod while its document is broken, logs the error once, and applies the fix', async () => {
    await h.write('pods.yaml', `${pod('web', { app: 'web' })}---\n${pod('db', { app: 'db' })}`);
    await h.write('other.yaml', ns('a'));
    await h.start(opts);
    const before = h.source.snapshot().objects.get('Pod/default/web');

    const broken = `${pod('web', { app: 'web', version: 'v2' }, 0)}---\n${pod('db', { app: 'db' })}`;
    await h.write('pods.yaml', broken);
    // Errors name file:line, the line of the bad value.
    const line = broken.split('\n').findIndex((l) => l.includes('containerPort: 0')) + 1;
    expect(line).toBeGreaterThan(1);
    const text = `${h.file('pods.yaml')}:${line}: spec.containers[0].ports[0].containerPort: must be between 1 and 65535`;
    await h.logged(text);
    expect(h.source.snapshot().objects.get('Pod/default/web')).toBe(before);
    expect(h.source.errors().map(String)).toEqual([text]);

    // Another change elsewhere does not repeat the error in the log.
    await h.change(() => h.write('other.yaml', ns('b')));
    expect(h.count(text)).toBe(1);

    const fixed = await h.change(() =>
      h.write(
        'pods.yaml',
        `${pod('web', { app: 'web', version: 'v2' }, 9090)}---\n${pod('db', { app: 'db' })}`,
      ),
    );
    expect(keys(fixed)).toEqual({ upserted: ['Pod/default/web'], deleted: [] });
    expect(h.source.errors()).toEqual([]);
    await h.logged(`fixed: ${text}`);
  });

  it('keeps every object of a file with a YAML syntax error', async () => {
    await h.write('pods.yaml', `${pod('web', { app: 'web' })}---\n${pod('db', { app: 'db' })}`);
    await h.start(opts);
    await h.write('pods.yaml', `${pod('web', { app: 'web' })}---\nmetadata: [unclosed\n`);
    await h.logged('YAML syntax error');
    expect([...h.source.snapshot().objects.keys()]).toEqual(['Pod/default/web', 'Pod/default/db']);
  });

  it('removes the objects of a deleted file', async () => {
    await h.write('a.yaml', ns('a'));
    await h.write('b.yaml', ns('b'));
    await h.start(opts);
    const change = await h.change(() => rm(h.file('a.yaml')));
    expect(keys(change)).toEqual({ upserted: [], deleted: ['Namespace/a'] });
  });

  it('sees a file written elsewhere and renamed into place, as editors save', async () => {
    await h.write('pods.yaml', pod('web', { app: 'web' }));
    await h.start(opts);
    const change = await h.change(async () => {
      await h.write('.pods.yaml.swp', pod('web', { app: 'web', edited: 'yes' }));
      await rename(h.file('.pods.yaml.swp'), h.file('pods.yaml'));
    });
    expect(keys(change)).toEqual({ upserted: ['Pod/default/web'], deleted: [] });
    expect(change.ms).toBeLessThan(DEADLINE_MS);
  });

  it('picks up files in a new subdirectory', async () => {
    await h.start(opts);
    const change = await h.change(async () => {
      await mkdir(h.file('team-a'));
      await h.write('team-a/ns.yaml', ns('team-a'));
    });
    expect(keys(change)).toEqual({ upserted: ['Namespace/team-a'], deleted: [] });
  });

  it('tells no one when a file is rewritten with the same content', async () => {
    await h.write('a.yaml', ns('a'));
    await h.start(opts);
    const change = await h.change(async () => {
      await h.write('a.yaml', ns('a'));
      await h.write('a.yaml', `# same objects\n${ns('a')}`);
      await h.write('b.yaml', ns('b'));
    });
    expect(keys(change)).toEqual({ upserted: ['Namespace/b'], deleted: [] });
  });
});

describe('FileSource start-up', () => {
  it('rejects a missing folder with CONFIG_INVALID', async () => {
    const source = new FileSource({ dir: path.join(tmpdir(), 'ambit-does-not-exist', String(process.pid)) });
    const err = await source.start().catch((e: unknown) => e);
    expect(isAmbitError(err, 'CONFIG_INVALID')).toBe(true);
  });

  it('gives the first load to listeners registered before start, and reports current errors', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'ambit-watch-'));
    try {
      await writeFile(path.join(dir, 'a.yaml'), `${ns('a')}---\n${ns('Bad_Name')}`);
      const h = new Harness(dir);
      await h.start();
      await h.source.stop();
      expect(h.changes.map(keys)).toEqual([{ upserted: ['Namespace/a'], deleted: [] }]);
      expect(h.source.errors().map((e) => e.path)).toEqual(['metadata.name']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
