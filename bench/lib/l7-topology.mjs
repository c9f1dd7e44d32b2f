// The l7 benchmark topology on loopback 127.0.62.0/24: one backend (HTTP/1.1 and h2c) on the
// server pod IP, and the paths under test that lead to it:
//   direct                  loadgen → app
//   ambit L4 only           loadgen → SOCKS5 (client pod, node-1) ═HBONE═▶ node-2 → app (pod IP)
//   haproxy, N rules        loadgen → haproxy (HTTP mode, N route rules) → app
//   ambit waypoint, N rules loadgen → SOCKS5 (node-1) ═HBONE═▶ waypoint (HTTPRoute with N rules)
//                           ═HBONE═▶ node-2 → app (service VIP, bound to the waypoint)
// N is 1 and 1 000. Each ambit process and each haproxy is its own process, for CPU and RSS.
import { fork } from 'node:child_process';
import { mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { progress } from './stats.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const O = 62;
export const L7_ADDR = {
  node1: `127.0.${O}.1`,
  node2: `127.0.${O}.2`,
  controlPlane: `127.0.${O}.5`,
  client: `127.0.${O}.10`,
  server: `127.0.${O}.11`,
  haproxy: `127.0.${O}.20`, // + index of the rule set
  vip: `127.0.${O}.101`, // + index of the rule set
  waypoint: `127.0.${O}.200`,
};
/** Backend ports: HTTP/1.1 and h2c (the Service names them `http` and `http2-h2c`). */
export const L7_PORTS = { h1: 8080, h2c: 8082, source: 9000, hold: 9100 };
/** Route rule counts compared: one rule, and 999 non-matching path prefixes before the match. */
export const RULE_SETS = [1, 1000];
/** The path every benchmark request asks for; the matching rule is PathPrefix ROUTE_PREFIX. */
export const ROUTE_PREFIX = '/bench';
export const REQUEST_PATH = '/bench/item';
export const NAMESPACE = 'bench-l7';

const ruleLabel = (n) => `${n.toLocaleString('en-US').replace(/,/g, ' ')} rule${n === 1 ? '' : 's'}`;

/** Gateway API allows at most 16 rules per HTTPRoute (as the CRD does); more take more routes. */
const RULES_PER_ROUTE = 16;

/**
 * HTTPRoute objects attached to `service`:`port` carrying `count` rules in all: `count - 1` path
 * prefixes that never match (`/nomatch-0001` …), then the one that matches, in the last route.
 * Routes on one Service port are merged, as Istio does, so 1 000 rules take 63 HTTPRoutes.
 */
function httpRoutes(count, service, port, name) {
  const backend = `backendRefs: [{name: ${service}, port: ${port}}]`;
  const rule = (prefix) => `  - matches: [{path: {type: PathPrefix, value: ${prefix}}}]\n    ${backend}`;
  const rules = [];
  for (let i = 1; i < count; i++) rules.push(rule(`/nomatch-${String(i).padStart(4, '0')}`));
  rules.push(rule(ROUTE_PREFIX));
  const routes = [];
  for (let i = 0; i * RULES_PER_ROUTE < rules.length; i++) {
    const suffix = rules.length > RULES_PER_ROUTE ? `-${String(i).padStart(3, '0')}` : '';
    routes.push(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${name}${suffix}, namespace: ${NAMESPACE}}
spec:
  parentRefs: [{group: '', kind: Service, name: ${service}, port: ${port}}]
  rules:
${rules.slice(i * RULES_PER_ROUTE, (i + 1) * RULES_PER_ROUTE).join('\n')}`);
  }
  return routes;
}

export function l7Manifests() {
  const a = L7_ADDR;
  const docs = [
    `apiVersion: v1
kind: Namespace
metadata: {name: ${NAMESPACE}, labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}}`,
    `apiVersion: v1
kind: Node
metadata: {name: node-1}
status: {addresses: [{type: InternalIP, address: ${a.node1}}]}`,
    `apiVersion: v1
kind: Node
metadata: {name: node-2}
status: {addresses: [{type: InternalIP, address: ${a.node2}}]}`,
    `apiVersion: v1
kind: Pod
metadata: {name: client, namespace: ${NAMESPACE}, labels: {app: client}}
spec: {nodeName: node-1, serviceAccountName: client}
status: {podIP: ${a.client}}`,
    `apiVersion: v1
kind: Pod
metadata: {name: server, namespace: ${NAMESPACE}, labels: {app: server}}
spec: {nodeName: node-2, serviceAccountName: server}
status: {podIP: ${a.server}}`,
    // The waypoint for the namespace (istio.io/waypoint-for: service, the default): services
    // reach it through the namespace label; pod IPs do not (the L4-only path).
    `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: ${NAMESPACE}, labels: {istio.io/waypoint-for: service}, annotations: {ambit.dev/node: node-1}}
spec:
  gatewayClassName: istio-waypoint
  addresses: [{type: IPAddress, value: ${a.waypoint}}]
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]`,
  ];
  RULE_SETS.forEach((n, i) => {
    const svc = `l7-${n}`;
    docs.push(`apiVersion: v1
kind: Service
metadata: {name: ${svc}, namespace: ${NAMESPACE}}
spec:
  clusterIP: ${vipFor(i)}
  selector: {app: server}
  ports:
  - {name: http, port: ${L7_PORTS.h1}, targetPort: ${L7_PORTS.h1}}
  - {name: http2-h2c, port: ${L7_PORTS.h2c}, targetPort: ${L7_PORTS.h2c}}`);
    for (const [proto, port] of [
      ['h1', L7_PORTS.h1],
      ['h2c', L7_PORTS.h2c],
    ])
      docs.push(...httpRoutes(n, svc, port, `${svc}-${proto}`));
  });
  return docs.join('\n---\n') + '\n';
}

const lastOctet = (ip, plus) => ip.replace(/\d+$/, (d) => String(Number(d) + plus));
const vipFor = (i) => lastOctet(L7_ADDR.vip, i);
const haproxyFor = (i) => lastOctet(L7_ADDR.haproxy, i);

/**
 * Starts the app, the mesh (control plane, 2 node proxies, the waypoint) and haproxy (one per
 * rule set, skipped with a message when not installed). Returns
 * { paths: [{ name, kind, rules?, target(proto) → loadgen options, procs() → [[role, pid]],
 *   prepare?() (restarts the waypoint) }], stop() }.
 */
export async function startL7Topology({ withPeers = true } = {}) {
  const { Mesh } = await import(path.join(here, '..', '..', 'dist', 'cli', 'mesh-runner.js'));
  const root = await mkdtemp(path.join(tmpdir(), 'ambit-bench-l7-'));
  await mkdir(path.join(root, 'config'));
  await writeFile(path.join(root, 'config', 'bench-l7.yaml'), l7Manifests());
  const stops = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => {});
    await rm(root, { recursive: true, force: true });
  };
  try {
    const a = L7_ADDR;
    const app = fork(
      path.join(here, 'app.mjs'),
      [a.server, String(L7_PORTS.h1), String(L7_PORTS.source), String(L7_PORTS.hold), String(L7_PORTS.h2c)],
      { stdio: 'inherit' },
    );
    stops.push(async () => app.kill());
    await new Promise((resolve, reject) => {
      app.once('message', resolve);
      app.once('exit', (code) => reject(new Error(`backend app exited (${code})`)));
    });
    progress('l7: starting the mesh (control plane + 2 node proxies + waypoint)');
    // Errors and exits of mesh processes during the run, for the report (logs are at warn).
    const events = [];
    let restarting = false; // the suite's own restarts of the waypoint are not events
    const onLog = (component, line) => {
      let rec;
      try {
        rec = JSON.parse(line);
      } catch {
        return;
      }
      if ((rec.level ?? 0) < 50 && !/exited/.test(rec.msg ?? '')) return;
      if (restarting && /^waypoint\/.* exited$/.test(rec.msg ?? '')) return;
      if (events.length < 50)
        events.push(
          `${new Date().toISOString().slice(11, 19)} ${component}: ${rec.msg}${rec.err ? ` (${rec.err.message ?? rec.err})` : ''}`,
        );
    };
    const mesh = await Mesh.start({
      onLog,
      configDir: path.join(root, 'config'),
      stateDir: path.join(root, 'state'),
      controlPlaneAddr: `${a.controlPlane}:15012`,
      env: { AMBIT_LOG_LEVEL: process.env.AMBIT_LOG_LEVEL ?? 'warn' },
      startApps: false,
    });
    stops.push(() => mesh.stop());
    const port = (proto) => L7_PORTS[proto];
    const socks = { host: a.client, port: 15080 };
    const nodes = () => [
      ['node-1', mesh.pid('node/node-1')],
      ['node-2', mesh.pid('node/node-2')],
    ];
    const paths = [
      {
        name: 'direct',
        kind: 'baseline',
        target: (p) => ({ host: a.server, port: port(p) }),
        procs: () => [],
      },
      {
        name: 'ambit L4 only',
        kind: 'ambit',
        target: (p) => ({ socks, host: a.server, port: port(p) }),
        procs: nodes,
      },
    ];
    if (withPeers) paths.push(...(await startHaproxies(stops)));
    RULE_SETS.forEach((n, i) =>
      paths.push({
        name: `ambit waypoint, ${ruleLabel(n)}`,
        kind: 'waypoint',
        rules: n,
        target: (p) => ({ socks, host: vipFor(i), port: port(p) }),
        procs: () => [['waypoint', mesh.pid(`waypoint/${NAMESPACE}/waypoint`)], ...nodes()],
        prepare: async () => {
          restarting = true;
          try {
            await mesh.restart(`waypoint/${NAMESPACE}/waypoint`);
          } finally {
            restarting = false;
          }
        },
      }),
    );
    return { paths, mesh, backendPid: app.pid, events, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function startHaproxies(stops) {
  let peers;
  try {
    peers = await import(path.join(here, '..', 'peers', 'peers.mjs'));
  } catch (err) {
    progress(`peers unavailable (${err.message}); no haproxy in the l7 suite`);
    return [];
  }
  const out = [];
  for (const [i, n] of RULE_SETS.entries()) {
    const host = haproxyFor(i);
    try {
      const h = await peers.startHaproxy({
        listen: { host, port: L7_PORTS.h1 },
        target: { host: L7_ADDR.server, port: L7_PORTS.h1 },
        h2c: { listen: { host, port: L7_PORTS.h2c }, target: { host: L7_ADDR.server, port: L7_PORTS.h2c } },
        routes: { count: n, prefix: ROUTE_PREFIX },
      });
      stops.push(() => h.stop());
      out.push({
        name: `haproxy, ${ruleLabel(n)}`,
        kind: 'peer',
        rules: n,
        target: (p) => ({ host, port: L7_PORTS[p] }),
        procs: () => h.pids.map((pid) => ['haproxy', pid]),
      });
      progress(`haproxy (${ruleLabel(n)}): started`);
    } catch (err) {
      progress(`haproxy (${ruleLabel(n)}): skipped (${err.message})`);
    }
  }
  return out;
}
