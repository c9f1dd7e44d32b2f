#!/usr/bin/env node
// `npm run fuzz -- [--minutes N | --seconds N] [--targets a,b] [--engine auto|jazzer|random]
//                  [--no-properties]`
// Runs the fuzz targets in fuzz/targets/ (SOCKS5, HBONE request validation, xDS decode, manifest
// loading) for the time given (default 1 minute, split evenly), then the fast-check properties of
// test/fuzz/ in a loop with fresh seeds for the rest.
//
// Engines: `jazzer` is coverage-guided (@jazzer.js/core, libFuzzer in a native addon). Its npm
// package ships prebuilt addons, but the Linux one needs glibc 2.38: on an older system (Debian 12
// has 2.36) the addon cannot load, and building it needs cmake, a compiler and Node headers from
// the network. `auto` (the default) then says why and uses `random`: the same targets fed random
// inputs and mutations of their seeds (not coverage-guided), so the run still means something.
//
// Exit status: 0 nothing found, 1 a target or property failed (the input is saved under
// fuzz/crashes/ and printed), 2 the fuzzing itself could not run (CI does not fail on that).
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

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
if (!existsSync(path.join(root, 'dist', 'node', 'socks5.js')))
  infra('dist/ is not built: run `npm run build` (npm run fuzz does it first)');

// A parser may warn through process.emitWarning (yaml on collection keys): counted, not printed
// once per input.
let processWarnings = 0;
process.removeAllListeners('warning');
process.on('warning', () => processWarnings++);

const engine = pickEngine();
const share = withProperties ? 0.5 : 1;
const perTarget = Math.max(1, Math.floor((seconds * share) / targets.length));
const summary = [];
let found = 0;

for (const t of targets) {
  const r = engine === 'jazzer' ? runJazzer(t, perTarget) : await runRandom(t, perTarget);
  summary.push({ target: t, engine, ...r });
  console.log(
    `fuzz: ${t} (${engine}) ${r.inputs} inputs in ${perTarget} s, ${r.findings} finding(s)${r.note ? `: ${r.note}` : ''}`,
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

/** jazzer when its native addon loads here, otherwise random (and why). */
function pickEngine() {
  if (engineWanted === 'random') return 'random';
  const probe = spawnSync(process.execPath, ['-e', "require('@jazzer.js/fuzzer')"], {
    cwd: root,
    encoding: 'utf8',
  });
  if (probe.status === 0) return 'jazzer';
  const why = (probe.stderr.match(/Error: .*/)?.[0] ?? probe.stderr.split('\n')[0] ?? '').slice(0, 200);
  const msg = `jazzer's native addon does not load here (${why}); using the random engine (targets fed random and mutated inputs, not coverage-guided)`;
  if (engineWanted === 'jazzer') infra(msg);
  console.log(`fuzz: ${msg}`);
  return 'random';
}

function runJazzer(target, secs) {
  const corpus = path.join(root, 'fuzz', 'corpus', target);
  const r = spawnSync(
    process.execPath,
    [
      path.join(root, 'node_modules', '@jazzer.js', 'core', 'dist', 'cli.js'),
      path.join(targetsDir, `${target}.mjs`),
      ...(existsSync(corpus) ? [corpus] : []),
      '--includes',
      'dist/',
      '--',
      `-max_total_time=${secs}`,
      `-artifact_prefix=${crashDir}/${target}-`,
    ],
    { cwd: root, encoding: 'utf8', timeout: (secs + 60) * 1000, maxBuffer: 64 * 1024 * 1024 },
  );
  const out = `${r.stdout}\n${r.stderr}`;
  const inputs = Number(out.match(/Done (\d+) runs/)?.[1] ?? out.match(/#(\d+)\s+DONE/)?.[1] ?? 0);
  if (r.status === 0) return { inputs, findings: 0 };
  if (/==\d+== ERROR|Uncaught Exception|crash-/.test(out))
    return {
      inputs,
      findings: 1,
      note: out
        .split('\n')
        .filter((l) => /Error|crash-|artifact/.test(l))
        .slice(0, 5)
        .join(' | '),
    };
  infra(`jazzer exited ${r.status} on ${target} without a finding: ${out.slice(-500)}`);
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
