// The control plane's view of the manifests in netns mode: a mirror of the user's folder with
// every 127.x address rewritten (address-map.ts), kept current while the user edits the folder.
// The control plane watches the mirror like any folder, so labelling a namespace in the user's
// file reaches the node agents the same way it does in local mode (one extra hop, ~debounce).
// Files are written whole (temp file + rename) so the watcher never reads half a file. An address
// the rule cannot map refuses the start (UnmappableAddressError); later, the file keeps its last
// mapped version and the problem is reported.
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { listManifestFiles } from '../config/manifest-files.js';
import { rewriteManifestText } from './address-map.js';

export interface ManifestMirrorOptions {
  sourceDir: string;
  mirrorDir: string;
  onWarning?: (message: string) => void;
  /**
   * Called with a folder holding the next mirror before the control plane can see it (not for
   * the first one): netns mode builds a new pod's namespace here, so that the pod exists on the
   * network before it exists in the mesh, as a CNI plugin makes it before the pod gets its IP.
   */
  beforePublish?: (stagedDir: string) => Promise<void>;
  /** Called after a change was published (not after the first one). */
  onChange?: () => void;
  debounceMs?: number;
}

/** Addresses the netns rule cannot map, each naming file, line and object (address-map.ts). */
export class UnmappableAddressError extends Error {
  constructor(readonly places: string[]) {
    super(
      `netns mode cannot map every address the manifests use, so it does not start:\n  ${places.join('\n  ')}`,
    );
  }
}

export class ManifestMirror {
  private watcher?: FSWatcher;
  private timer?: NodeJS.Timeout;
  private poll?: NodeJS.Timeout;
  private syncing: Promise<void> = Promise.resolve();
  /** What the staging folder and the mirror hold, by relative path. */
  private staged = new Map<string, string>();
  private published = new Map<string, string>();
  private warned = new Set<string>();

  constructor(private readonly opts: ManifestMirrorOptions) {}

  get stagingDir(): string {
    return `${this.opts.mirrorDir}.staging`;
  }

  /** Writes the first mirror, then follows the source folder. */
  async start(): Promise<void> {
    for (const d of [this.opts.mirrorDir, this.stagingDir]) {
      await rm(d, { recursive: true, force: true });
      await mkdir(d, { recursive: true });
    }
    await this.stage(true); // throws UnmappableAddressError: netns mode refuses to start
    await this.publish();
    try {
      this.watcher = watch(this.opts.sourceDir, { recursive: true }, () => this.schedule());
      this.watcher.on('error', () => this.startPolling());
    } catch {
      this.startPolling();
    }
  }

  stop(): void {
    this.watcher?.close();
    if (this.timer) clearTimeout(this.timer);
    if (this.poll) clearInterval(this.poll);
  }

  /** Resolves once every change seen so far is in the mirror. */
  flush(): Promise<void> {
    return this.syncing;
  }

  private startPolling(): void {
    this.watcher?.close();
    this.poll ??= setInterval(() => this.schedule(), 500);
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.syncing = this.syncing.then(() => this.sync()).catch(() => {});
    }, this.opts.debounceMs ?? 20);
  }

  private async sync(): Promise<void> {
    if (!(await this.stage())) return;
    await this.opts.beforePublish?.(this.stagingDir);
    await this.publish();
    this.opts.onChange?.();
  }

  /** Rewrites the source folder into the staging folder; true when something changed. */
  private async stage(first = false): Promise<boolean> {
    const next = new Map<string, string>();
    const unmappable: string[] = [];
    const { files } = await listManifestFiles(this.opts.sourceDir);
    for (const file of files) {
      const rel = path.relative(this.opts.sourceDir, file);
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch {
        continue; // vanished between listing and reading
      }
      const { text: mapped, warnings, errors } = rewriteManifestText(text);
      for (const w of warnings) {
        const key = `${rel}: ${w}`;
        if (!this.warned.has(key)) this.opts.onWarning?.(key);
        this.warned.add(key);
      }
      if (errors.length > 0) {
        // Never half-mapped: the file keeps its last mapped version (none before the first).
        unmappable.push(...errors.map((e) => `${rel}: ${e}`));
        const prev = this.staged.get(rel);
        if (prev !== undefined) next.set(rel, prev);
        continue;
      }
      next.set(rel, mapped);
    }
    for (const e of unmappable) {
      if (!this.warned.has(e)) this.opts.onWarning?.(`${e}; this file's last mapped version stays in force`);
      this.warned.add(e);
    }
    if (first && unmappable.length > 0) throw new UnmappableAddressError(unmappable);
    const changed = await writeFolder(this.stagingDir, this.staged, next);
    this.staged = next;
    return changed;
  }

  /** Makes the mirror hold exactly what is staged. */
  private async publish(): Promise<void> {
    await writeFolder(this.opts.mirrorDir, this.published, this.staged);
    this.published = new Map(this.staged);
  }
}

/** Brings `dir` (holding `have`) to `want`: whole-file writes, removals; true when anything changed. */
async function writeFolder(
  dir: string,
  have: Map<string, string>,
  want: Map<string, string>,
): Promise<boolean> {
  let changed = false;
  for (const [rel, text] of want) {
    if (have.get(rel) === text) continue;
    const dest = path.join(dir, rel);
    await mkdir(path.dirname(dest), { recursive: true });
    const tmp = path.join(path.dirname(dest), `.${path.basename(dest)}.tmp`);
    await writeFile(tmp, text);
    await rename(tmp, dest);
    changed = true;
  }
  for (const rel of have.keys()) {
    if (want.has(rel)) continue;
    await rm(path.join(dir, rel), { force: true });
    changed = true;
  }
  return changed;
}
