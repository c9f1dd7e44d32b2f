// How scripts/fuzz.mjs gets a loadable Jazzer.js addon on glibc < 2.38 (Debian 12: 2.36). The
// prebuilt @jazzer.js/fuzzer Linux addon was linked against glibc 2.38 and libstdc++ 13, but the
// only things it imports from them that glibc 2.36 / libstdc++ 12 lack are __isoc23_strtol,
// __isoc23_strtoul and std::ios_base_library_init(). When loading fails for exactly that, this
// makes a compatible copy in node_modules/.cache/ambit-jazzer/<key>/ (never in the tracked tree,
// never editing node_modules/@jazzer.js in place):
//   isoc23.so   fuzz/compat/isoc23.c compiled with `cc -shared -fPIC` (the three symbols);
//   fuzzer/     @jazzer.js/fuzzer's dist/ and package.json, plus its linux-x64 addon with those
//               three symbols' version requirements dropped (elf-versions.mjs);
// and runs Jazzer with LD_PRELOAD=isoc23.so and `--require fuzz/compat/redirect.cjs`, which
// resolves `@jazzer.js/fuzzer` to the copy. <key> hashes the addon and these sources, so an
// upgrade or an edit makes a new copy. See fuzz/README.md.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { dropVersions } from './elf-versions.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The versions the addon needs beyond glibc 2.36 / libstdc++ 12, and the symbols needing them. */
export const NEWER = {
  'GLIBC_2.38': ['__isoc23_strtol', '__isoc23_strtoul'],
  'GLIBCXX_3.4.32': ['_ZSt21ios_base_library_initv'],
};

/**
 * How to start a Node process that can load @jazzer.js/fuzzer: `{ nodeArgs, env, note }`, or
 * `{ error }` saying why not (the caller then uses its random engine).
 */
export function jazzerLaunch(root) {
  const plain = probe(root, [], {});
  if (plain.ok) return { nodeArgs: [], env: {}, note: 'prebuilt addon' };
  const missing = [...plain.why.matchAll(/version `([^']+)' not found/g)].map((m) => m[1]);
  if (process.platform !== 'linux' || process.arch !== 'x64' || missing.length === 0)
    return { error: `jazzer's native addon does not load here (${plain.why})` };
  const unknown = missing.filter((v) => !(v in NEWER));
  if (unknown.length)
    return { error: `jazzer's addon needs ${unknown.join(', ')}, which no compat copy provides` };

  const pkg = path.join(root, 'node_modules', '@jazzer.js', 'fuzzer');
  const addon = path.join(pkg, 'prebuilds', 'fuzzer-linux-x64.node');
  const shimSrc = path.join(here, 'isoc23.c');
  const key = createHash('sha256');
  for (const f of [addon, shimSrc, path.join(here, 'elf-versions.mjs'), path.join(pkg, 'package.json')])
    key.update(readFileSync(f));
  const dir = path.join(root, 'node_modules', '.cache', 'ambit-jazzer', key.digest('hex').slice(0, 16));
  const rel = path.relative(root, dir);
  if (!existsSync(path.join(dir, 'ok'))) {
    const cc = spawnSync('cc', ['--version'], { encoding: 'utf8' });
    if (cc.error || cc.status !== 0)
      return {
        error: `jazzer's prebuilt addon needs glibc 2.38 (${missing.join(', ')} missing) and no C compiler (cc) is here to build the compat shim`,
      };
    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    try {
      mkdirSync(path.join(tmp, 'fuzzer', 'prebuilds'), { recursive: true });
      const build = spawnSync(
        'cc',
        ['-shared', '-fPIC', '-O2', '-o', path.join(tmp, 'isoc23.so'), shimSrc, '-lstdc++'],
        { encoding: 'utf8' },
      );
      if (build.status !== 0)
        throw new Error(`cc failed: ${(build.stderr || String(build.error)).slice(0, 300)}`);
      cpSync(path.join(pkg, 'dist'), path.join(tmp, 'fuzzer', 'dist'), { recursive: true });
      cpSync(path.join(pkg, 'package.json'), path.join(tmp, 'fuzzer', 'package.json'));
      const { out } = dropVersions(readFileSync(addon), NEWER);
      writeFileSync(path.join(tmp, 'fuzzer', 'prebuilds', 'fuzzer-linux-x64.node'), out);
      writeFileSync(path.join(tmp, 'ok'), '');
      rmSync(dir, { recursive: true, force: true });
      renameSync(tmp, dir);
      // copies made from an older addon or older compat sources are no longer used
      for (const old of readdirSync(path.dirname(dir)))
        if (/^[0-9a-f]{16}$/.test(old) && old !== path.basename(dir))
          rmSync(path.join(path.dirname(dir), old), { recursive: true, force: true });
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true });
      return { error: `could not make the jazzer compat copy in ${rel}: ${err?.message ?? err}` };
    }
  }
  const preload = [path.join(dir, 'isoc23.so'), process.env.LD_PRELOAD].filter(Boolean).join(':');
  const env = { LD_PRELOAD: preload, AMBIT_JAZZER_FUZZER: path.join(dir, 'fuzzer') };
  const nodeArgs = ['--require', path.join(here, 'redirect.cjs')];
  const compat = probe(root, nodeArgs, env);
  if (!compat.ok) return { error: `jazzer's compat copy in ${rel} does not load either (${compat.why})` };
  return {
    nodeArgs,
    env,
    note: `prebuilt addon needs ${missing.join(', ')}; using the compat copy in ${rel} (isoc23.so preloaded, those version needs dropped)`,
  };
}

function probe(root, nodeArgs, env) {
  const r = spawnSync(process.execPath, [...nodeArgs, '-e', "require('@jazzer.js/fuzzer')"], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 30_000,
  });
  if (r.status === 0) return { ok: true };
  const why = r.error
    ? String(r.error)
    : (r.stderr.match(/Error: .*/)?.[0] ?? r.stderr.split('\n')[0] ?? `exit ${r.status}`);
  return { ok: false, why: why.slice(0, 300) };
}
