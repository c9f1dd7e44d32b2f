// Finding and reading manifest files: which files in a folder are config, in which order, and
// reading one without letting a vanished, unreadable or oversized file throw.
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { AmbitError, errorMessage } from '../common/errors.js';
import { ConfigError } from './config-error.js';

export const MANIFEST_EXTENSIONS = ['.yaml', '.yml', '.json'];
/** Bigger files are refused rather than parsed: no real config folder comes near this. */
export const MAX_FILE_BYTES = 16 * 1024 * 1024;

/** The file's text, a ConfigError saying why it cannot be used, or undefined if it is gone. */
export async function readManifestFile(file: string): Promise<string | ConfigError | undefined> {
  try {
    const { size } = await stat(file);
    if (size > MAX_FILE_BYTES) {
      return new ConfigError({
        file,
        document: 0,
        message: `file is ${size} bytes; the limit is ${MAX_FILE_BYTES}`,
      });
    }
    return await readFile(file, 'utf8');
  } catch (err) {
    // Deleted between listing and reading: the caller's next listing will not show it either.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return new ConfigError({ file, document: 0, message: `cannot read: ${errorMessage(err)}` });
  }
}

/**
 * Manifest files below `dir` (sorted, joined to `dir`) and the directories holding them.
 * Dot-entries are skipped: editors' swap files and the `..data` trees of mounted ConfigMaps.
 * Symlinked files are followed (a ConfigMap mount is made of them); symlinked directories are
 * not, so a link loop cannot hang the loader.
 */
export async function listManifestFiles(dir: string): Promise<{ files: string[]; dirs: string[] }> {
  let top;
  try {
    top = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    throw new AmbitError('CONFIG_INVALID', `cannot read config directory ${dir}: ${errorMessage(err)}`, {
      cause: err,
    });
  }
  const files: string[] = [];
  const dirs: string[] = [dir];
  const pending: [string, typeof top][] = [[dir, top]];
  while (pending.length > 0) {
    const [at, entries] = pending.pop()!;
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const full = path.join(at, entry.name);
      if (entry.isDirectory()) {
        const sub = await readdir(full, { withFileTypes: true }).catch(() => undefined);
        if (sub) {
          dirs.push(full);
          pending.push([full, sub]);
        }
      } else if (MANIFEST_EXTENSIONS.includes(path.extname(entry.name).toLowerCase())) {
        if (entry.isFile() || (entry.isSymbolicLink() && (await stat(full).catch(() => undefined))?.isFile()))
          files.push(full);
      }
    }
  }
  files.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return { files, dirs };
}
