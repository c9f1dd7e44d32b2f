// The Gateway API mesh conformance profile (GAMMA; MESH-HTTP and MESH-GRPC, gateway-api v1.5.1
// at 4564255a) against one real local mesh on 127.0.226.0/24: `ambit up`'s runner (control plane,
// two node proxies, the waypoint, each a child process), the suite's base topology translated by
// topology.ts, an echo on every pod (echo-server.ts), requests from the suite's client pods through
// their SOCKS5 listeners (echo-client.ts). Each test applies its manifests to the running mesh
// (hot reload), runs its cases until they converge (runner.ts), then removes them.
// With AMBIT_CONFORMANCE_REPORT=<file> the run writes its ConformanceReport there (report.ts);
// `npm run conformance` sets it to "default": conformance/reports/<version>/ambit-<version>-report.yaml.
import { mkdtemp, rm, writeFile, mkdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Mesh } from '../../src/cli/mesh-runner.js';
import type { MeshCase, MeshTest } from './case-types.js';
import { CORE_TESTS } from './cases-core.js';
import { EXTENDED_TESTS } from './cases-extended.js';
import { GRPC_TESTS } from './cases-grpc.js';
import { MeshClient } from './echo-client.js';
import { startEcho, type EchoServers } from './echo-server.js';
import { buildReport, isSupported, reportPath, writeReport, type TestResult } from './report.js';
import { applyManifests, awaitCase, checkWeights, type RunContext } from './runner.js';
import { CONSUMER_NS, MESH_NS, buildTopology, firstPod } from './topology.js';

const OCTET = 226;
const topo = buildTopology(OCTET);
const TESTS: MeshTest[] = [...CORE_TESTS, ...EXTENDED_TESTS, ...GRPC_TESTS];
const results: TestResult[] = [];
const echoes: EchoServers[] = [];
const clients = new Map<string, MeshClient>();
/** Warning and error lines of the mesh processes, "<component> <json>". */
const logs: string[] = [];
let mesh: Mesh | undefined;
let root = '';
let configDir = '';

function clientFor(c: MeshCase): MeshClient {
  const pod =
    c.from === 'consumer/echo-v1'
      ? firstPod(topo, CONSUMER_NS, 'v1')
      : firstPod(topo, MESH_NS, c.from === 'echo-v2' ? 'v2' : 'v1');
  let client = clients.get(pod.ip);
  if (!client) clients.set(pod.ip, (client = new MeshClient(pod.ip)));
  return client;
}

const ctx: RunContext = {
  get configDir() {
    return configDir;
  },
  client: clientFor,
  resolveHost: (host) =>
    host
      ?.replace('{echo-v2.podIP}', firstPod(topo, MESH_NS, 'v2').ip)
      .replace(/\{clusterIP:([^}]+)\}/, (_m, svc: string) => topo.serviceIPs.get(svc) ?? svc),
  log: (line) => {
    if (process.env.AMBIT_CONFORMANCE_VERBOSE) console.log(line);
  },
};

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'ambit-conformance-'));
  configDir = path.join(root, 'config');
  await mkdir(configDir);
  await writeFile(path.join(configDir, 'mesh.yaml'), topo.yaml);
  for (const pod of topo.pods) echoes.push(await startEcho(pod));
  let waypointReady!: () => void;
  const ready = new Promise<void>((r) => (waypointReady = r));
  mesh = await Mesh.start({
    configDir,
    stateDir: path.join(root, 'state'),
    controlPlaneAddr: topo.controlPlane,
    env: { AMBIT_LOG_LEVEL: 'info' },
    onLog: (component, line) => {
      // Warnings and errors only (access lines would be thousands), bounded all the same.
      if (/"level":[4-6]0/.test(line) && logs.length < 5_000) logs.push(`${component} ${line}`);
      if (component === `waypoint/${MESH_NS}/waypoint` && line.includes('"waypoint ready"')) waypointReady();
    },
  });
  await Promise.race([
    ready,
    new Promise((_, reject) =>
      setTimeout(() => reject(new Error('the waypoint did not get ready in 20 s')), 20_000),
    ),
  ]);
}, 60_000);

afterAll(async () => {
  if (process.env.AMBIT_CONFORMANCE_VERBOSE) {
    for (const l of logs) console.log(l);
  }
  for (const c of clients.values()) c.close();
  await mesh?.stop();
  for (const e of echoes) await e.close();
  const out = process.env.AMBIT_CONFORMANCE_REPORT;
  if (out && results.length) {
    const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    const report = buildReport(results, {
      organization: process.env.AMBIT_CONFORMANCE_ORG ?? 'ambit',
      project: 'ambit',
      // The project has no public address yet: a reserved .invalid name (RFC 2606) says so.
      url: process.env.AMBIT_CONFORMANCE_URL ?? 'https://ambit.invalid/',
      version: pkg.version,
      contact: [process.env.AMBIT_CONFORMANCE_CONTACT ?? 'ambit maintainers (no public contact yet)'],
    });
    const file =
      out === 'default' ? reportPath(fileURLToPath(new URL('../..', import.meta.url)), pkg.version) : out;
    writeReport(file, report);
  }
  if (root) await rm(root, { recursive: true, force: true });
}, 30_000);

describe.sequential('Gateway API mesh conformance (MESH-HTTP, MESH-GRPC), local mode', () => {
  for (const test of TESTS) {
    if (!isSupported(test)) {
      it.skip(`${test.shortName} (needs a feature ambit does not claim)`, () => {});
      continue;
    }
    it(`${test.shortName}: ${test.description}`, async () => {
      const remove = await applyManifests(ctx, test);
      try {
        for (const c of test.cases) await awaitCase(ctx, c);
        if (test.weight) {
          const shares = await checkWeights(
            ctx,
            clientFor({ name: 'weights', request: test.weight.request }),
            test.weight,
          );
          ctx.log(`  ${test.shortName} weights: ${shares}`);
        }
        results.push({ test, outcome: 'passed' });
      } catch (err) {
        results.push({ test, outcome: 'failed' });
        throw err;
      } finally {
        await remove();
      }
      expect(results.at(-1)?.outcome).toBe('passed');
    }, 90_000);
  }
});

describe.sequential('beyond the suite, on the same mesh (not counted in the report)', () => {
  // MeshClusterIPMatching with the address itself: the suite dials names; a client that dials
  // the cluster IP must get that Service's routes whatever Host it sends (the waypoint routes on
  // the VIP of the HBONE CONNECT, not on Host).
  const byAddress: MeshTest = {
    shortName: 'ClusterIPByAddress',
    description: "dialling a cluster IP takes that Service's routes whatever the Host header",
    features: ['Mesh', 'MeshClusterIPMatching', 'HTTPRoute', 'HTTPRouteResponseHeaderModification'],
    manifests: ['mesh-frontend.yaml'],
    cases: [
      {
        name: "echo-v2's cluster IP with Host echo-v1: the echo-v2 route applies",
        request: { host: `{clusterIP:${MESH_NS}/echo-v2}`, headers: { Host: 'echo-v1' } },
        responseHeaders: { 'X-Header-Set': 'set' },
        backend: 'echo-v2',
      },
      {
        name: "echo-v1's cluster IP with Host echo-v2: no route applies",
        request: { host: `{clusterIP:${MESH_NS}/echo-v1}`, headers: { Host: 'echo-v2' } },
        absentResponseHeaders: ['X-Header-Set'],
        backend: 'echo-v1',
      },
    ],
  };
  it('a redirect keeps the query exactly as sent (Envoy RedirectAction.strip_query is false by default)', async () => {
    const test: MeshTest = {
      shortName: 'RedirectKeepsQuery',
      description: '',
      features: ['Mesh', 'HTTPRoute'],
      manifests: ['httproute-redirect-host-and-status.yaml'],
      cases: [
        {
          name: '/hostname-redirect?a=b%20c&flag -> the same query',
          request: { path: '/hostname-redirect?a=b%20c&flag' },
          status: [302],
          redirect: { host: 'example.org', path: '/hostname-redirect', query: 'a=b%20c&flag' },
        },
      ],
    };
    const remove = await applyManifests(ctx, test);
    try {
      await awaitCase(ctx, test.cases[0]!);
    } finally {
      await remove();
    }
  }, 30_000);

  it(
    byAddress.description,
    async () => {
      const remove = await applyManifests(ctx, byAddress);
      try {
        for (const c of byAddress.cases) await awaitCase(ctx, c);
      } finally {
        await remove();
      }
    },
    30_000,
  );

  it('the translated topology and every test manifest load without a warning (but the weight-0 echo-v3)', () => {
    // Issue 13 #11: no unknown-field or conversion warnings on the conformance manifests. The one
    // expected: grpcroute-weight.yaml names a Service echo-v3 that does not exist, at weight 0.
    const warnings = logs.filter(
      (l) =>
        /^(controlplane|waypoint\/)/.test(l) && /"level":40/.test(l) && !l.includes('echo-v3 does not exist'),
    );
    expect(warnings).toEqual([]);
    expect(logs.some((l) => l.includes('echo-v3 does not exist'))).toBe(true);
  });
});
