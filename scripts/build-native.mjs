#!/usr/bin/env node
// Builds ambit's native socket helpers (src/redirect/native, an N-API addon in C) at install time.
// Run by package.json "install"; also by hand: `node scripts/build-native.mjs`.
//
// It must never fail `npm ci`: no compiler, no Node headers, no Python, no make or a build error
// print one line saying what is missing and that netns mode is unavailable, record the reason in
// src/redirect/native/build/status.json (read by src/redirect/native.ts) and exit 0.
// node-gyp is told where the running Node's headers are (--nodedir), because it would otherwise
// try to download them and the machines that build ambit reach no network but the npm registry.
// AMBIT_SKIP_NATIVE=1 skips the build.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const addonDir = path.join(root, 'src', 'redirect', 'native');
const buildDir = path.join(addonDir, 'build');
const addonFile = path.join(buildDir, 'Release', 'ambit_native.node');
const BUILD_TIMEOUT_MS = 5 * 60_000;

main();

function main() {
  if (process.env.AMBIT_SKIP_NATIVE === '1') return giveUp('skipped (AMBIT_SKIP_NATIVE=1)');
  if (process.platform !== 'linux')
    return giveUp(`network namespaces are Linux only (this is ${process.platform})`);

  const cc = process.env.CC || 'cc';
  if (!runs(cc, ['--version'])) return giveUp(`no C compiler found (${cc})`);
  if (!runs('make', ['--version'])) return giveUp('no make found (make)');
  const python = findPython();
  if (!python) return giveUp('no Python 3 found (python3), which node-gyp needs');

  const nodedir = process.env.npm_config_nodedir || path.resolve(process.execPath, '..', '..');
  const header = path.join(nodedir, 'include', 'node', 'node_api.h');
  if (!existsSync(header)) return giveUp(`node headers not found (${header})`);

  const gyp = findNodeGyp();
  if (!gyp) return giveUp("node-gyp not found (npm's bundled copy)");

  const args = [gyp, 'rebuild', '--directory', addonDir, `--nodedir=${nodedir}`, `--python=${python}`];
  const r = spawnSync(process.execPath, args, {
    cwd: addonDir,
    encoding: 'utf8',
    timeout: BUILD_TIMEOUT_MS,
    env: { ...process.env, npm_config_nodedir: nodedir },
  });
  const log = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  if (r.status !== 0 || !existsSync(addonFile)) {
    const why = r.error ? r.error.message : lastErrorLine(log);
    return giveUp(`build failed: ${why}`, log);
  }
  record({ ok: true, reason: '' }, log);
  console.log(`ambit: native socket helpers built (${path.relative(root, addonFile)})`);
}

function giveUp(reason, log = '') {
  record({ ok: false, reason }, log);
  console.log(
    `ambit: native socket helpers not built: ${reason}; netns mode (ambit up --netns) is unavailable` +
      (log ? ` (log: ${path.relative(root, path.join(buildDir, 'build.log'))})` : ''),
  );
  process.exitCode = 0;
}

function record(status, log) {
  try {
    mkdirSync(buildDir, { recursive: true });
    writeFileSync(
      path.join(buildDir, 'status.json'),
      JSON.stringify({ ...status, at: new Date().toISOString() }, null, 2) + '\n',
    );
    if (log) writeFileSync(path.join(buildDir, 'build.log'), log);
  } catch {
    // A read-only install tree: native.ts then reports the addon as missing, which is still true.
  }
}

function runs(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: 'ignore', timeout: 30_000 });
  return !r.error && r.status === 0;
}

function findPython() {
  const candidates = [process.env.PYTHON, process.env.npm_config_python, 'python3', 'python'].filter(Boolean);
  for (const p of candidates) {
    const r = spawnSync(p, ['-c', 'import sys; print(sys.version_info[0])'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    if (!r.error && r.status === 0 && r.stdout.trim() === '3') return p;
  }
  return undefined;
}

// npm sets npm_config_node_gyp for lifecycle scripts; by hand, look in npm's own folder.
function findNodeGyp() {
  const candidates = [process.env.npm_config_node_gyp];
  const npmDirs = [
    process.env.npm_execpath && path.resolve(path.dirname(process.env.npm_execpath), '..'),
    path.resolve(process.execPath, '..', '..', 'lib', 'node_modules', 'npm'),
    path.resolve(process.execPath, '..', 'node_modules', 'npm'),
  ].filter(Boolean);
  for (const dir of npmDirs) {
    try {
      candidates.push(createRequire(path.join(dir, 'package.json')).resolve('node-gyp/bin/node-gyp.js'));
    } catch {
      // not this one
    }
  }
  try {
    candidates.push(createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not installed locally either
  }
  return candidates.find((c) => c && existsSync(c));
}

function lastErrorLine(log) {
  const lines = log.split('\n').map((l) => l.trim());
  const err = lines.find((l) => /\berror\b/i.test(l) && !/^gyp (ERR!|info)/.test(l));
  if (err) return err;
  return (
    lines
      .filter((l) => l.startsWith('gyp ERR!'))
      .slice(0, 2)
      .join(' ') || 'unknown error'
  );
}
