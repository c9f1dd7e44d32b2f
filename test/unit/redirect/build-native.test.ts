// scripts/build-native.mjs runs from package.json "install": whatever is missing, it must exit 0
// with one line saying what and that netns mode is unavailable. Runs on a copy of the tree so
// the real build/ folder is left alone.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repo = path.resolve(import.meta.dirname, '..', '..', '..');
let tree: string;

beforeAll(() => {
  tree = mkdtempSync(path.join(tmpdir(), 'ambit-build-native-'));
  mkdirSync(path.join(tree, 'scripts'));
  cpSync(path.join(repo, 'scripts', 'build-native.mjs'), path.join(tree, 'scripts', 'build-native.mjs'));
  for (const f of ['binding.gyp', 'ambit-native.c'])
    cpSync(path.join(repo, 'src', 'redirect', 'native', f), path.join(tree, 'src', 'redirect', 'native', f));
});
afterAll(() => rmSync(tree, { recursive: true, force: true }));

function runScript(env: NodeJS.ProcessEnv) {
  const r = spawnSync(process.execPath, [path.join(tree, 'scripts', 'build-native.mjs')], {
    env: { ...process.env, npm_config_node_gyp: '', ...env },
    encoding: 'utf8',
    timeout: 120_000,
  });
  const status = JSON.parse(
    readFileSync(path.join(tree, 'src', 'redirect', 'native', 'build', 'status.json'), 'utf8'),
  );
  return { code: r.status, out: `${r.stdout}${r.stderr}`, status };
}

describe.runIf(process.platform === 'linux')('scripts/build-native.mjs', () => {
  it('exits 0 with one clear line when the C compiler named by CC does not exist', () => {
    const r = runScript({ CC: '/nonexistent/cc' });
    expect(r.code).toBe(0);
    expect(r.out.trim()).toBe(
      'ambit: native socket helpers not built: no C compiler found (/nonexistent/cc); netns mode (ambit up --netns) is unavailable',
    );
    expect(r.status).toMatchObject({ ok: false, reason: 'no C compiler found (/nonexistent/cc)' });
  });

  it('exits 0 when PATH has no cc at all', () => {
    const r = runScript({ CC: '', PATH: '/nonexistent' });
    expect(r.code).toBe(0);
    expect(r.out).toContain('no C compiler found (cc)');
  });

  it('exits 0 and names the missing node headers', () => {
    const r = runScript({ npm_config_nodedir: '/nonexistent/node' });
    expect(r.code).toBe(0);
    expect(r.out).toContain('node headers not found (/nonexistent/node/include/node/node_api.h)');
    expect(r.out).toContain('netns mode (ambit up --netns) is unavailable');
  });

  it('exits 0 and says the build failed when the C source does not compile', () => {
    const broken = mkdtempSync(path.join(tmpdir(), 'ambit-build-broken-'));
    try {
      cpSync(tree, broken, { recursive: true });
      cpSync(path.join(repo, 'package.json'), path.join(broken, 'package.json'));
      const c = path.join(broken, 'src', 'redirect', 'native', 'ambit-native.c');
      rmSync(c);
      cpSync(path.join(repo, 'scripts', 'build-native.mjs'), c); // JavaScript is no C
      const r = spawnSync(process.execPath, [path.join(broken, 'scripts', 'build-native.mjs')], {
        env: { ...process.env, npm_config_node_gyp: '' },
        encoding: 'utf8',
        timeout: 120_000,
      });
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(
        /native socket helpers not built: build failed: .*netns mode .* is unavailable \(log: /,
      );
    } finally {
      rmSync(broken, { recursive: true, force: true });
    }
  });
});
