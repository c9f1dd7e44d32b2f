#!/usr/bin/env node
// `npm run fuzz -- [--minutes N | --seconds N] [--targets a,b] [--engine auto|jazzer|random]
//                  [--no-properties]`
// Runs the fuzz targets in fuzz/targets/ (SOCKS5, HBONE request validation, xDS decode, manifest
// loading) for the time given (default 1 minute, split evenly), then the fast-check properties of
// test/fuzz/ in a loop with fresh seeds for the rest.
//
// Engines: `jazzer` is coverage-guided (@jazzer.js/core: libFuzzer in a native addon, with the
// dist/ code under test instrumented). Its prebuilt Linux addon needs glibc 2.38; on Debian 12
// (2.36) fuzz/compat/jazzer.mjs makes a compatible copy in node_modules/.cache (a shim for the
// three newer symbols, built with cc, and a copy of the addon without those version needs). When
// even that cannot load (no compiler, another platform), `auto` (the default) says why and uses
// `random`: the same targets fed random inputs and mutations of their seeds (not
// coverage-guided), so the run still means something.
//
// Exit status: 0 nothing found, 1 a target or property failed (the input is saved under
// fuzz/crashes/ and printed), 2 the fuzzing itself could not run (CI does not fail on that).
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { jazzerLaunch } from '../fuzz/compat/jazzer.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const value = (f) => (args.indexOf(f) >= 0 ? args[args.indexOf(f) + 1] : undefined);
const seconds = value('--seconds') ? Number(value('--seconds')) : Number(value('--minutes') ?? 1) * 60;
const engineWanted = value('--engine') ?? 'auto';
const withProperties = !args.includes('--no-properties');
const targetsDir = path.join(root, 'fuzz', 'targets');
const crashDir = path.join(root, 'fuzz', 'crashes');
const all = (await readdir(targetsDir))
  .filter((f) => f.endsWith('.mjs'))
  .map((f) => f.slice(0, -4))
  .sort();
const targets = value('--targets') ? value('--targets').split(',') : all;

if (!(seconds > 0)) usage(`bad duration`);
for (const t of targets) if (!all.includes(t)) usage(`unknown target ${t} (have: ${all.join(', ')})`);
if (!existsSync(path.join(root, 'dist', 'nodeproxy', 'socks5.js')))
  infra('dist/ is not built: run `npm run build` (npm run fuzz does it first)');

// A parser may warn through process.emitWarning (yaml on collection keys): counted, not printed
// once per input.
let processWarnings = 0;
process.removeAllListeners('warning');
process.on('warning', () => processWarnings++);

const launch = pickEngine();
const engine = launch ? 'jazzer' : 'random';
const share = withProperties ? 0.5 : 1;
const perTarget = Math.max(1, Math.floor((seconds * share) / targets.length));
const summary = [];
let found = 0;

for (const t of targets) {
  const r = launch ? await runJazzer(t, perTarget) : await runRandom(t, perTarget);
  summary.push({ target: t, engine, ...r });
  console.log(
    `fuzz: ${t} (${engine}) ${r.inputs} inputs in ${perTarget} s${r.cov ? `, ${r.cov}` : ''}, ${r.findings} finding(s)${r.note ? `: ${r.note}` : ''}`,
  );
  found += r.findings;
}
if (withProperties) {
  const r = runProperties(Math.max(5, seconds - perTarget * targets.length));
  summary.push({ target: 'test/fuzz properties', engine: 'fast-check', ...r });
  console.log(
    `fuzz: properties ${r.rounds} rounds, ${r.inputs} inputs per property, ${r.findings} failing round(s)${r.note ? `: ${r.note}` : ''}`,
  );
  found += r.findings;
}
if (processWarnings)
  console.log(`fuzz: ${processWarnings} process warning(s) emitted by the code under test (not findings)`);
console.log(`fuzz: ${found ? `${found} finding(s)` : 'nothing found'}`);
process.exit(found ? 1 : 0);

function usage(why) {
  console.error(
    `fuzz: ${why}\nusage: npm run fuzz -- [--minutes N | --seconds N] [--targets ${all.join(',')}] [--engine auto|jazzer|random] [--no-properties]`,
  );
  process.exit(2);
}

function infra(why) {
  console.error(`fuzz: cannot run: ${why}`);
  process.exit(2);
}

/** How to launch jazzer when its native addon (or the compat copy) loads here; else null (random). */
function pickEngine() {
  if (engineWanted === 'random') return null;
  const l = jazzerLaunch(root);
  if (!l.error) {
    console.log(`fuzz: engine jazzer (${l.note})`);
    return l;
  }
  const msg = `${l.error}; using the random engine (targets fed random and mutated inputs, not coverage-guided)`;
  if (engineWanted === 'jazzer') infra(l.error);
  console.log(`fuzz: ${msg}`);
  return null;
}

/**
 * One libFuzzer run of `target` for `secs` seconds, synchronous mode (the targets are), coverage
 * from the instrumented dist/ code. Its corpus lives in node_modules/.cache/ambit-jazzer/corpus/
 * (seeded with the target's `seeds`, kept between runs); fuzz/corpus/<target>, if present, is
 * read too. A crash or timeout input is written to fuzz/crashes/<target>-crash-<sha1>.
 */
async function runJazzer(target, secs) {
  const mod = await import(pathToFileURL(path.join(targetsDir, `${target}.mjs`)).href);
  const corpus = path.join(root, 'node_modules', '.cache', 'ambit-jazzer', 'corpus', target);
  await mkdir(corpus, { recursive: true });
  for (const s of mod.seeds ?? []) {
    const b = Buffer.from(s);
    await writeFile(path.join(corpus, `seed-${createHash('sha1').update(b).digest('hex')}`), b);
  }
  await mkdir(crashDir, { recursive: true });
  const extra = path.join(root, 'fuzz', 'corpus', target);
  const r = spawnSync(
    process.execPath,
    [
      ...launch.nodeArgs,
      path.join(root, 'node_modules', '@jazzer.js', 'core', 'dist', 'cli.js'),
      path.join(targetsDir, `${target}.mjs`),
      corpus,
      ...(existsSync(extra) ? [extra] : []),
      '--sync',
      // the code under test, and the target's own checks (their compares guide the mutations)
      '--includes',
      `${path.join(root, 'dist')}${path.sep}`,
      '--includes',
      `${targetsDir}${path.sep}`,
      '--excludes',
      'node_modules',
      '--',
      `-max_total_time=${secs}`,
      `-artifact_prefix=${crashDir}${path.sep}${target}-`,
      '-print_final_stats=1',
      '-use_value_profile=1', // integer/string compare distances as features: finds magic values
    ],
    {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, ...launch.env },
      timeout: (secs + 20) * 1000,
      killSignal: 'SIGKILL',
      maxBuffer: 64 * 1024 * 1024,
    },
  );
  const out = `${r.stdout}\n${r.stderr}`;
  const inputs = Number(
    out.match(/stat::number_of_executed_units:\s*(\d+)/)?.[1] ?? out.match(/Done (\d+) runs/)?.[1] ?? 0,
  );
  // libFuzzer status lines: "#N INITED cov: A ft: B corp: ..." first, the last one is the latest.
  const stats = [...out.matchAll(/^#\d+\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/gm)];
  const cov = stats.length
    ? `cov ${stats[0][1]}→${stats.at(-1)[1]} ft ${stats[0][2]}→${stats.at(-1)[2]} corpus ${stats.at(-1)[3]}`
    : 'no coverage line (it stopped during startup)';
  if (r.error?.code === 'ETIMEDOUT')
    infra(`jazzer did not stop on ${target} within ${secs + 20} s (killed): ${out.slice(-500)}`);
  if (r.status === 0) return { inputs, cov, findings: 0 };
  const artifact = out.match(/Test unit written to (\S+)/)?.[1];
  if (artifact) {
    const input = readFileSync(artifact);
    // "==PID== Uncaught Exception: Error: ..." or "==PID== ERROR: libFuzzer: timeout ...", then
    // the JS stack (its first frames say where in dist/ it failed).
    const what = out.match(/==\d+== (.*)/)?.[1] ?? 'finding';
    const where = out
      .split('\n')
      .filter((l) => /^\s+at /.test(l))
      .slice(0, 3)
      .map((l) => l.trim())
      .join(' | ');
    return {
      inputs,
      cov,
      findings: 1,
      note: `${what}${where ? ` | ${where}` : ''} (input: ${path.relative(root, artifact)}, hex ${input.subarray(0, 64).toString('hex')})`,
    };
  }
  infra(`jazzer exited ${r.status ?? r.signal} on ${target} without a finding: ${out.slice(-800)}`);
}

/** Random bytes and mutations of the target's seeds, for `secs` seconds; stops at the first throw. */
async function runRandom(target, secs) {
  const mod = await import(pathToFileURL(path.join(targetsDir, `${target}.mjs`)).href);
  const seeds = (mod.seeds ?? []).map((s) => Buffer.from(s));
  const end = Date.now() + secs * 1000;
  let inputs = 0;
  while (Date.now() < end) {
    for (let i = 0; i < 200; i++) {
      const input = next(seeds);
      inputs++;
      try {
        await mod.fuzz(input);
      } catch (err) {
        await mkdir(crashDir, { recursive: true });
        const file = path.join(
          crashDir,
          `${target}-${createHash('sha256').update(input).digest('hex').slice(0, 16)}`,
        );
        await writeFile(file, input);
        return {
          inputs,
          findings: 1,
          note: `${err?.stack?.split('\n').slice(0, 3).join(' ')} (input: ${path.relative(root, file)}, hex ${input.subarray(0, 64).toString('hex')})`,
        };
      }
    }
  }
  return { inputs, findings: 0 };
}

function next(seeds) {
  if (seeds.length === 0 || randomInt(8) === 0) return randomBytes(randomInt(0, 300));
  let b = Buffer.from(seeds[randomInt(seeds.length)]);
  for (let n = randomInt(1, 5); n > 0; n--) b = mutate(b, seeds);
  return b;
}

function mutate(b, seeds) {
  const at = b.length ? randomInt(b.length) : 0;
  switch (randomInt(7)) {
    case 0: // flip a bit
      if (b.length) b[at] ^= 1 << randomInt(8);
      return b;
    case 1: // an interesting byte
      if (b.length) b[at] = [0, 1, 0x7f, 0x80, 0xff, 0x3a, 0x2f, 0x2e, 0x25, 0x0a][randomInt(10)];
      return b;
    case 2: // insert random bytes
      return Buffer.concat([b.subarray(0, at), randomBytes(randomInt(1, 16)), b.subarray(at)]);
    case 3: // delete a range
      return Buffer.concat([b.subarray(0, at), b.subarray(at + randomInt(1, 16))]);
    case 4: {
      // splice with another seed
      const other = seeds[randomInt(seeds.length)];
      return Buffer.concat([b.subarray(0, at), other.subarray(randomInt(other.length || 1))]);
    }
    case 5: // repeat a chunk
      return Buffer.concat([b.subarray(0, at), b.subarray(at, at + randomInt(1, 32)), b.subarray(at)]);
    default: // truncate
      return b.subarray(0, at);
  }
}

/** The vitest properties of test/fuzz/ with many inputs and a fresh seed per round, for `secs`. */
function runProperties(secs) {
  const runsPerProperty = 5000;
  const end = Date.now() + secs * 1000;
  let rounds = 0;
  let findings = 0;
  const notes = [];
  do {
    const seed = randomInt(2 ** 31 - 1);
    const r = spawnSync('npx', ['vitest', 'run', 'test/fuzz', '--reporter=dot'], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, FC_NUM_RUNS: String(runsPerProperty), FC_SEED: String(seed) },
      timeout: Math.max(60_000, end - Date.now() + 60_000),
      maxBuffer: 64 * 1024 * 1024,
    });
    rounds++;
    if (r.status !== 0) {
      if (!/Counterexample|AssertionError|Property failed|FAIL/.test(`${r.stdout}${r.stderr}`))
        infra(`vitest could not run the properties: ${(r.stderr || r.stdout).slice(-500)}`);
      findings++;
      notes.push(
        `seed ${seed}: ${(r.stdout.match(/Counterexample: .*/g) ?? ['see vitest output']).join(' | ')}`,
      );
      console.log(r.stdout.slice(-4000));
      break;
    }
  } while (Date.now() < end);
  return { rounds, inputs: rounds * runsPerProperty, findings, note: notes.join('; ') };
}
