// FileSource: the config held in a folder of manifests, kept current as files change.
// Every reload rereads the folder (cheap: config folders are small, unchanged text is not reparsed)
// and publishes the content difference. A broken document never removes config that was working:
// the objects it produced last time stay in force until it is fixed (the last-good rule).
import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import { errorMessage } from '../common/errors.js';
import { componentLogger, type Logger } from '../common/log.js';
import { locationOf, type ConfigError } from './config-error.js';
import { diffSnapshots, isEmptyChange } from './diff.js';
import { mergeParses, parseManifests, unreadable, type LoadedObject, type ManifestParse } from './load.js';
import { listManifestFiles, readManifestFile } from './manifest-files.js';
import { isSupportedKind } from './schema.js';
import {
  objectKey,
  type ConfigChange,
  type ConfigSnapshot,
  type ConfigSource,
  type KubeResource,
  type ObjectKey,
} from './types.js';

export interface FileSourceOptions {
  dir: string;
  logger?: Logger;
  /** Quiet time after the last file event before reloading, so multi-step saves land as one. */
  debounceMs?: number;
  /** Poll interval, used when the OS refuses to watch a directory (or always, with `poll`). */
  pollMs?: number;
  /** Poll instead of watching, e.g. on network file systems where watches see nothing. */
  poll?: boolean;
}

type Listener = (change: ConfigChange, snapshot: ConfigSnapshot) => void;

/** What a file contributed at the last reload. */
interface FileState {
  text: string | undefined;
  parse: ManifestParse;
  /** Objects in force from this file: the valid ones now plus the last good of broken ones. */
  entries: LoadedObject[];
}

// A steady stream of events must not postpone a reload forever (a change applies within 1 s).
const MAX_DELAY_MS = 500;

export class FileSource implements ConfigSource {
  private readonly dir: string;
  private readonly log: Logger;
  private readonly debounceMs: number;
  private readonly pollMs: number;
  private polling: boolean;
  private files = new Map<string, FileState>();
  private snap: ConfigSnapshot = { objects: new Map() };
  private readonly listeners: Listener[] = [];
  private currentErrors: ConfigError[] = [];
  private currentWarnings: ConfigError[] = [];
  private currentDegraded: LoadedObject[] = [];
  private reported = new Set<string>();
  private readonly watchers = new Map<string, FSWatcher>();
  private timer: NodeJS.Timeout | undefined;
  private firstEventAt: number | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private fingerprint = '';
  private running: Promise<void> | undefined;
  private again = false;
  private state: 'new' | 'started' | 'stopped' = 'new';

  constructor(opts: FileSourceOptions) {
    this.dir = opts.dir;
    this.log = opts.logger ?? componentLogger('config', { 'config.dir': opts.dir });
    this.debounceMs = opts.debounceMs ?? 30;
    this.pollMs = opts.pollMs ?? 500;
    this.polling = opts.poll ?? false;
  }

  /** Loads the folder and starts watching it. Rejects (CONFIG_INVALID) if the folder cannot be read. */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error('FileSource.start() called twice');
    this.state = 'started';
    this.running = this.reloadOnce(true).finally(() => (this.running = undefined));
    try {
      await this.running;
    } catch (err) {
      await this.stop();
      throw err;
    }
    if (this.polling) this.startPolling();
    this.log.info(
      {
        objects: this.snap.objects.size,
        errors: this.currentErrors.length,
        watch: this.polling ? 'poll' : 'fs.watch',
      },
      'config loaded',
    );
  }

  snapshot(): ConfigSnapshot {
    return this.snap;
  }

  /** Listeners added before start() also hear the first load, as a change from nothing. */
  onChange(listener: Listener): void {
    this.listeners.push(listener);
  }

  /** The problems in the folder as it is now (what `ambit ctl analyze` shows). */
  errors(): readonly ConfigError[] {
    return this.currentErrors;
  }

  /** Policies in force in their degraded, fail-closed form (authz-degrade.ts). */
  degraded(): readonly LoadedObject[] {
    return this.currentDegraded;
  }

  /** Documents that are valid but not read by ambit, such as Deployments. */
  warnings(): readonly ConfigError[] {
    return this.currentWarnings;
  }

  /** Rereads the folder now; resolves once the folder has been read after this call. */
  reload(): Promise<void> {
    if (this.state !== 'started') return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.reloadLoop().finally(() => (this.running = undefined));
    return this.running;
  }

  async stop(): Promise<void> {
    this.state = 'stopped';
    clearTimeout(this.timer);
    clearInterval(this.pollTimer);
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    await this.running;
  }

  private async reloadLoop(): Promise<void> {
    do {
      this.again = false;
      try {
        await this.reloadOnce(false);
      } catch (err) {
        this.log.error({ err }, 'config reload failed; keeping the current config');
      }
    } while (this.again && this.state === 'started');
  }

  private async reloadOnce(initial: boolean): Promise<void> {
    let listing;
    try {
      listing = await listManifestFiles(this.dir);
    } catch (err) {
      if (initial) throw err;
      this.log.warn({ err: errorMessage(err) }, 'cannot list the config folder; keeping the current config');
      return;
    }
    // Watch before reading, so a write that lands while we read still triggers another reload;
    // a directory watched for the first time may have gained files since the listing, so look again.
    if (this.syncWatchers(listing.dirs)) this.changed();
    const next = new Map<string, FileState>();
    for (const file of listing.files) {
      const state = await this.readFile(file, this.files.get(file));
      if (state) next.set(file, state);
    }
    if (this.state === 'stopped') return;
    this.files = next;
    this.publish();
  }

  /** The file's new state; undefined if it vanished since the listing (the next event rescans). */
  private async readFile(file: string, prev: FileState | undefined): Promise<FileState | undefined> {
    const text = await readManifestFile(file);
    if (text === undefined) return undefined;
    if (typeof text === 'string' && prev && text === prev.text) return prev;
    const parse = typeof text === 'string' ? parseManifests(text, file) : unreadable(file, text);
    const entries = keepLastGood(prev, parse);
    const kept = entries.filter((e) => !parse.entries.includes(e)).map((e) => e.key);
    if (kept.length > 0)
      this.log.warn({ file, kept }, 'invalid config; the last good version of these objects stays in force');
    return { text: typeof text === 'string' ? text : undefined, parse, entries };
  }

  private publish(): void {
    const merged = mergeParses([...this.files.values()].map((f) => ({ ...f.parse, entries: f.entries })));
    const objects = new Map<ObjectKey, KubeResource>(merged.entries.map((e) => [e.key, e.object]));
    const change = diffSnapshots(this.snap.objects, objects);
    this.currentErrors = merged.errors;
    this.currentWarnings = merged.warnings;
    this.currentDegraded = merged.entries.filter((e) => e.degraded);
    this.report();
    if (isEmptyChange(change)) return;
    this.snap = { objects };
    this.log.info(
      { upserted: change.upserted.map(objectKey), deleted: change.deleted.map(objectKey) },
      `config changed: ${change.upserted.length} upserted, ${change.deleted.length} deleted`,
    );
    for (const listener of this.listeners) {
      try {
        listener(change, this.snap);
      } catch (err) {
        this.log.error({ err }, 'config change listener threw');
      }
    }
  }

  /** Logs each problem once, when it appears, and notes when it goes away. */
  private report(): void {
    const now = new Set<string>();
    for (const e of [...this.currentErrors, ...this.currentWarnings]) {
      const text = e.toString();
      now.add(text);
      if (this.reported.has(text)) continue;
      if (e.code === 'CONFIG_UNKNOWN_FIELD') this.log.warn({ file: e.file, code: e.code }, text);
      else if (this.currentWarnings.includes(e)) this.log.info({ file: e.file }, text);
      else this.log.warn({ file: e.file, code: e.code }, text);
    }
    for (const e of this.currentDegraded) {
      const text = `${locationOf(e)}: ${e.key} failed validation and is in force degraded: ${e.degraded!.join('; ')}`;
      now.add(text);
      if (!this.reported.has(text))
        this.log.warn({ file: e.file, object: e.key, code: 'CONFIG_POLICY_DEGRADED' }, text);
    }
    for (const text of this.reported) if (!now.has(text)) this.log.info(`fixed: ${text}`);
    this.reported = now;
  }

  // One non-recursive watch per directory: it works the same on every platform and Node 20
  // release (recursive watching on Linux arrived late and had gaps), and a watch on the directory
  // rather than on each file also sees editors that save by writing a temp file and renaming it.
  /** Returns whether a directory is newly watched. */
  private syncWatchers(dirs: readonly string[]): boolean {
    if (this.polling || this.state !== 'started') return false;
    let added = false;
    const wanted = new Set(dirs);
    for (const [dir, w] of this.watchers) {
      if (!wanted.has(dir)) {
        w.close();
        this.watchers.delete(dir);
      }
    }
    for (const dir of dirs) {
      if (this.watchers.has(dir)) continue;
      try {
        const w = watch(dir, { persistent: true }, () => this.changed());
        w.on('error', () => {
          w.close();
          this.watchers.delete(dir);
          this.changed();
        });
        this.watchers.set(dir, w);
        added = true;
      } catch (err) {
        this.log.warn(
          { err: errorMessage(err), dir },
          `cannot watch the config folder; polling every ${this.pollMs} ms`,
        );
        for (const other of this.watchers.values()) other.close();
        this.watchers.clear();
        this.polling = true;
        this.startPolling();
        return false;
      }
    }
    return added;
  }

  private startPolling(): void {
    if (this.pollTimer || this.state !== 'started') return;
    this.pollTimer = setInterval(() => void this.poll(), this.pollMs);
  }

  // Cheap: a listing and a stat per file; the reload itself only runs when something moved.
  private async poll(): Promise<void> {
    try {
      const { files } = await listManifestFiles(this.dir);
      const parts = await Promise.all(
        files.map(async (f) => {
          const s = await stat(f).catch(() => undefined);
          return `${f}:${s?.mtimeMs}:${s?.size}:${s?.ino}`;
        }),
      );
      const fingerprint = parts.join('\n');
      if (fingerprint !== this.fingerprint) {
        this.fingerprint = fingerprint;
        this.changed();
      }
    } catch {
      // The folder is gone for now; the reload path reports that, the poll just tries again.
    }
  }

  private changed(): void {
    if (this.state !== 'started') return;
    const now = Date.now();
    this.firstEventAt ??= now;
    clearTimeout(this.timer);
    const wait = Math.max(0, Math.min(this.debounceMs, this.firstEventAt + MAX_DELAY_MS - now));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.firstEventAt = undefined;
      void this.reload();
    }, wait);
  }
}

/**
 * The objects a file puts in force after a reload: its valid objects, plus, for each broken
 * document, the objects that document produced last time. Those are matched by kind/namespace/
 * name, and by position when the file still has as many documents. When it cannot be told what
 * a broken document held (a YAML syntax error, an unreadable file, or documents added or removed
 * in the same save as a document without a readable name), nothing from the file is dropped.
 */
export function keepLastGood(
  prev: { parse: ManifestParse; entries: readonly LoadedObject[] } | undefined,
  parse: ManifestParse,
): LoadedObject[] {
  if (!prev || parse.errors.length === 0) return parse.entries;
  const samePositions = prev.parse.documents === parse.documents;
  const keys = new Set<ObjectKey>();
  const documents = new Set<number>();
  let everything = false;
  for (const e of parse.errors) {
    const key =
      e.kind && e.name !== undefined && isSupportedKind(e.kind)
        ? objectKey({ kind: e.kind, metadata: { name: e.name, namespace: e.namespace } })
        : undefined;
    if (e.code === 'CONFIG_YAML' || e.document === 0 || (!key && !samePositions)) everything = true;
    if (key) keys.add(key);
    if (samePositions) documents.add(e.document);
  }
  // A degraded stand-in (authz-degrade.ts) only serves where nothing better exists: an edit that
  // breaks a policy that was good keeps the good version; a degraded one is replaced by the newer.
  const good = new Set(prev.entries.filter((p) => !p.degraded).map((p) => p.key));
  const replaced = new Set(parse.entries.filter((e) => e.degraded && good.has(e.key)).map((e) => e.key));
  const now = new Set(parse.entries.map((e) => e.key));
  const kept = prev.entries.filter(
    (p) =>
      (replaced.has(p.key) && !p.degraded) ||
      (!now.has(p.key) && (everything || keys.has(p.key) || documents.has(p.document))),
  );
  return [...parse.entries.filter((e) => !replaced.has(e.key)), ...kept];
}
