#!/usr/bin/env node
// `npm run conformance`: builds dist/ (the mesh's processes run it), runs the Gateway API mesh
// conformance test (test/conformance/gateway-api-mesh.test.ts) against a local mesh on
// 127.0.226.0/24 and has it write the run's ConformanceReport to
// conformance/reports/<gatewayAPIVersion>/ambit-<version>-report.yaml; then prints the
// profiles' results from that file. Exit status: the test's (0 = every test passed).
//
// AMBIT_CONFORMANCE_ORG, AMBIT_CONFORMANCE_URL and AMBIT_CONFORMANCE_CONTACT fill the report's
// implementation fields; AMBIT_CONFORMANCE_VERBOSE=1 prints every answer that did not match yet.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { version } = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
const npx = process.platform === 'win32' ? 'npx.cmd' : 'npx';
const started = Date.now();

const build = spawnSync(npx, ['tsc', '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
if (build.status !== 0) {
  console.error(
    'conformance: the build failed (npx tsc -p tsconfig.json); not running the suite on a stale dist/',
  );
  process.exit(build.status ?? 1);
}

const run = spawnSync(npx, ['vitest', 'run', 'test/conformance/gateway-api-mesh.test.ts'], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, AMBIT_CONFORMANCE_REPORT: 'default' },
});

const reports = path.join(root, 'conformance', 'reports');
const name = `ambit-${version}-report.yaml`;
const written = existsSync(reports)
  ? readdirSync(reports)
      .map((d) => path.join(reports, d, name))
      .filter((f) => existsSync(f) && statSync(f).mtimeMs >= started)
  : [];
if (written.length === 0) {
  console.error('conformance: the run wrote no report (did the mesh start?)');
  process.exit(run.status || 1);
}
const report = parse(readFileSync(written[0], 'utf8'));
console.log(`\nreport: ${path.relative(root, written[0])}`);
for (const p of report.profiles) {
  const ext = p.extended ? `, extended ${p.extended.result} ${JSON.stringify(p.extended.statistics)}` : '';
  console.log(`  ${p.name}: core ${p.core.result} ${JSON.stringify(p.core.statistics)}${ext}`);
}
if (report.succeededProvisionalTests) {
  console.log(`  provisional tests passed: ${report.succeededProvisionalTests.join(', ')}`);
}
process.exit(run.status ?? 1);
