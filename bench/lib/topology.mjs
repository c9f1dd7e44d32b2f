// The benchmark topology on loopback 127.0.60.0/24: a backend app on the "server" pod IP and
// the paths under test that lead to it — direct, ambit (two node proxies, entered by SOCKS5 as
// the "client" pod), and the C peers when installed (stunnel pair, nghttpx pair, haproxy pair);
// with AMBIT_ZTUNNEL_BIN, the ztunnel pairs in their own network namespaces (lib/ztunnel.mjs).
import { fork, spawn } from 'node:child_process';
import { mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { progress } from './stats.mjs';
import { twoNodeManifests } from './manifests.mjs';
import { ambitWorkersPath } from './ambit-workers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const O = 60;
export const ADDR = {
  node1: `127.0.${O}.1`,
  node2: `127.0.${O}.2`,
  controlPlane: `127.0.${O}.5`,
  client: `127.0.${O}.10`,
  server: `127.0.${O}.11`,
  peerClient: `127.0.${O}.20`,
  peerServer: `127.0.${O}.21`,
};
export const PORTS = { http: 8080, source: 9000, hold: 9100 };

const manifests = twoNodeManifests('bench', ADDR);

/** Runs the load generator in its own process; resolves with its JSON result. */
export function loadgen(opts) {
  return new Promise((resolve, reject) => {
    // `netns`: run it inside that network namespace (the ztunnel pair's client side), with
    // `ip netns exec`, which execs the load generator itself (same pid, no extra process).
    const argv = [process.execPath, path.join(here, 'loadgen.mjs'), JSON.stringify(opts)];
    const [cmd, ...args] = opts.netns ? ['ip', 'netns', 'exec', opts.netns, ...argv] : argv;
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (c) => {
      out += c;
      if (opts.mode === 'idle' && out.includes('"open"') && opts.onOpen) {
        const first = JSON.parse(out.split('\n')[0]);
        opts.onOpen(first, () => p.stdin.end());
        opts.onOpen = undefined;
      }
    });
    const limit = (opts.warmupMs ?? 0) + (opts.durationMs ?? 0) + (opts.mode === 'idle' ? 300_000 : 60_000);
    const timer = setTimeout(() => p.kill('SIGKILL'), limit);
    p.on('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`loadgen ${opts.mode} exited ${code}`));
      resolve(JSON.parse(out.trim().split('\n').pop()));
    });
  });
}

/**
 * Whether a path is selected by `--only` (comma-separated, case-insensitive parts of path names;
 * "direct" baselines always run, as every ratio needs them).
 */
export function selects(only, name) {
  if (!only) return true;
  if (name.startsWith('direct')) return true;
  return only
    .toLowerCase()
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)
    .some((x) => name.toLowerCase().includes(x));
}

/**
 * Starts the app, the mesh and every available peer. Returns the list of paths:
 * { name, kind: 'baseline' | 'peer' | 'ambit' | 'ztunnel', target(port) → loadgen options, pids(),
 *   processes(port) → [{ pid, role, helper }], activate?(), deactivate?() }.
 * A path with `activate` is started only while it is measured (the ztunnel pairs).
 * `only`: see selects(); the mesh and the peers are not started when none of theirs is selected.
 */
export async function startTopology({ withPeers = true, only } = {}) {
  const { Mesh } = await import(path.join(here, '..', '..', 'dist', 'cli', 'mesh-runner.js'));
  const root = await mkdtemp(path.join(tmpdir(), 'ambit-bench-'));
  await mkdir(path.join(root, 'config'));
  await writeFile(path.join(root, 'config', 'bench.yaml'), manifests);
  const stops = [];
  const app = fork(
    path.join(here, 'app.mjs'),
    [ADDR.server, String(PORTS.http), String(PORTS.source), String(PORTS.hold)],
    { stdio: 'inherit' },
  );
  await new Promise((r) => app.once('message', r));
  stops.push(async () => app.kill());
  const logLevel = process.env.AMBIT_LOG_LEVEL ?? 'warn';
  const paths = [
    {
      name: 'direct',
      kind: 'baseline',
      target: (port) => ({ host: ADDR.server, port }),
      pids: () => [],
      processes: () => [],
    },
  ];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => {});
    await rm(root, { recursive: true, force: true });
  };
  let mesh;
  try {
    if (withPeers) paths.push(...(await startPeers(root, stops, (name) => selects(only, name))));
    if (selects(only, 'ambit')) {
      progress('starting the mesh (control plane + 2 node proxies)');
      mesh = await Mesh.start({
        configDir: path.join(root, 'config'),
        stateDir: path.join(root, 'state'),
        controlPlaneAddr: `${ADDR.controlPlane}:15012`,
        env: { AMBIT_LOG_LEVEL: logLevel },
      });
      stops.push(() => mesh.stop());
      const nodes = () => [mesh.pid('node/node-1'), mesh.pid('node/node-2')];
      paths.push({
        name: 'ambit',
        kind: 'ambit',
        idleTunnels: true,
        target: (port) => ({ socks: { host: ADDR.client, port: 15080 }, host: ADDR.server, port }),
        pids: nodes,
        processes: () => [
          { pid: nodes()[0], role: 'node proxy client side (node-1)', helper: false },
          { pid: nodes()[1], role: 'node proxy server side (node-2)', helper: false },
        ],
      });
    }
    // Two workers per node proxy (issue 16 item 1), its own mesh, up only while measured.
    if (selects(only, 'ambit, 2 workers')) {
      const p = ambitWorkersPath({ Mesh, root, ports: PORTS, logLevel });
      paths.push(p);
      stops.push(() => p.deactivate());
    }
    const zt = await startZtunnelPaths(root, stops, { only, logLevel });
    paths.push(...zt.paths);
    return { paths, mesh, ztunnel: zt.info, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * The ztunnel pairs (bench/lib/ztunnel.mjs), one worker thread (as ambit's one event loop) and as
 * many as the machine has cores, when AMBIT_ZTUNNEL_BIN points at a ztunnel; otherwise none, with
 * the reason in `info.skip`.
 */
async function startZtunnelPaths(root, stops, { only, logLevel }) {
  // One worker thread (as ambit's one event loop), then as many as the cores this process may use
  // (its CPU affinity): the count ztunnel's chart sets from a CPU limit (ZTUNNEL_RESOURCE_CPU_LIMIT
  // in istio/ztunnel src/config.rs) on a node proxy given the whole machine.
  const threads = [...new Set([1, Math.max(1, availableParallelism())])];
  if (!threads.some((t) => selects(only, `ztunnel pair, ${t} worker thread`)))
    return { paths: [], info: { skip: 'not selected by --only' } };
  const z = await import('./ztunnel.mjs');
  const info = await z.ztunnelAvailability();
  if (info.skip) {
    progress(`ztunnel pair: skipped (${info.skip})`);
    return { paths: [], info };
  }
  progress(`ztunnel pair: ${z.ztunnelVersionLine(info.version)}`);
  let net;
  try {
    net = await z.startZtunnelNet({
      root,
      bin: info.bin,
      workerThreads: threads.filter((t) => selects(only, `ztunnel pair, ${t} worker thread`)),
      loadgen,
      logLevel: z.rustLogLevel(logLevel),
    });
  } catch (err) {
    // As a peer that fails to start: the other paths still run, and the header says why.
    progress(`ztunnel pair: skipped (${err.message})`);
    return {
      paths: [],
      info: {
        bin: info.bin,
        version: info.version,
        skip: `setting up its namespaces failed: ${err.message}`,
      },
    };
  }
  stops.push(() => net.stop());
  return {
    paths: net.paths,
    info: { bin: info.bin, version: info.version, line: z.ztunnelVersionLine(info.version) },
  };
}

/** The C peers, each skipped with a message when it is not installed (bench/peers/install.sh). */
async function startPeers(root, stops, wanted) {
  let peers;
  try {
    peers = await import(path.join(here, '..', 'peers', 'peers.mjs'));
  } catch (err) {
    progress(`peers unavailable (${err.message}); comparing ambit with direct only`);
    return [];
  }
  const out = [];
  const targets = [PORTS.http, PORTS.source, PORTS.hold];
  // started: port → peer handle; a peer that tunnels CONNECT serves every port with one instance.
  const tryPeer = async (name, startFor) => {
    if (!wanted(name)) return;
    try {
      const started = new Map();
      const handles = new Set();
      for (const [i, port] of targets.entries()) {
        const h = await startFor(i, port, [...handles][0]);
        started.set(port, h);
        handles.add(h);
      }
      for (const h of handles) stops.push(() => h.stop());
      out.push({
        name,
        kind: 'peer',
        target: (port) => started.get(port).loadgen(ADDR.server, port),
        pids: () => [...handles].flatMap((h) => h.pids),
        pidsFor: (port) => started.get(port).pids,
        // The processes that carry `port` (the stunnel pair runs one pair per target port).
        processes: (port) => started.get(port).processes,
      });
      progress(`${name}: started`);
    } catch (err) {
      progress(`${name}: skipped (${err.message})`);
    }
  };
  await tryPeer('stunnel pair', async (i, port) => {
    const p = await peers.startStunnelPair({
      clientAddr: { host: ADDR.peerClient, port: 7000 + i },
      serverAddr: { host: ADDR.peerServer, port: 7400 + i },
      target: { host: ADDR.server, port },
      certDir: path.join(root, 'peer-certs'),
    });
    return { ...p, loadgen: () => ({ host: p.entry.host, port: p.entry.port }) };
  });
  await tryPeer('nghttpx pair', async (_i, port, existing) => {
    if (existing) return existing; // one CONNECT tunnel pair reaches every port
    const p = await peers.startNghttpxPair({
      clientAddr: { host: ADDR.peerClient, port: 7100 },
      serverAddr: { host: ADDR.peerServer, port: 7500 },
      finalAddr: { host: ADDR.peerServer, port: 7600 },
      target: { host: ADDR.server, port },
      certDir: path.join(root, 'peer-certs'),
    });
    return {
      ...p,
      loadgen: (host, tport) => ({
        httpConnect: { host: p.entry.host, port: p.entry.port },
        host,
        port: tport,
      }),
    };
  });
  // One haproxy per end (TCP mode, mutual TLS, one thread; bench/peers/haproxy-pair.mjs) with a
  // `listen` section per target port, so the pair's two processes carry every port.
  await tryPeer('haproxy pair', async (_i, _port, existing) => {
    if (existing) return existing;
    const { startHaproxyPair } = await import(path.join(here, '..', 'peers', 'haproxy-pair.mjs'));
    const p = await startHaproxyPair({
      tunnels: targets.map((tport, j) => ({
        clientAddr: { host: ADDR.peerClient, port: 7200 + j },
        serverAddr: { host: ADDR.peerServer, port: 7700 + j },
        target: { host: ADDR.server, port: tport },
      })),
      certDir: path.join(root, 'peer-certs'),
    });
    return { ...p, loadgen: (_host, tport) => ({ ...p.entries[targets.indexOf(tport)] }) };
  });
  return out;
}
