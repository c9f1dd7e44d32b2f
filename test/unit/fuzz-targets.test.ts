// The fuzz targets (fuzz/targets/*.mjs, run by `npm run fuzz` and CI's bounded pass) import the
// compiled dist/. A module moved in src/ would leave a target importing nothing, and the fuzz pass
// then reports "could not run" instead of failing: this loads every target so such a move fails
// here, in the suite (`npm test` compiles dist/ first).
import { readdirSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const dir = path.join(root, 'fuzz', 'targets');
const targets = readdirSync(dir).filter((f) => f.endsWith('.mjs'));

describe('fuzz targets load against dist/', () => {
  it('has targets and a built dist/', () => {
    expect(targets.length).toBeGreaterThan(0);
    expect(existsSync(path.join(root, 'dist', 'nodeproxy', 'socks5.js'))).toBe(true);
  });
  it.each(targets)('%s imports and exports fuzz()', async (f) => {
    const mod = (await import(pathToFileURL(path.join(dir, f)).href)) as { fuzz?: unknown };
    expect(typeof mod.fuzz).toBe('function');
  });
});
