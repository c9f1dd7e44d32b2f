// The benchmark topology on loopback 127.0.60.0/24: a backend app on the "server" pod IP and
// the paths under test that lead to it — direct, ambit (two node proxies, entered by SOCKS5 as
// the "client" pod), and the C peers when installed (stunnel pair, nghttpx pair).
import { fork, spawn } from 'node:child_process';
import { mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { progress } from './stats.mjs';
import { twoNodeManifests } from './manifests.mjs';

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
    const p = spawn(process.execPath, [path.join(here, 'loadgen.mjs'), JSON.stringify(opts)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
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
 * Starts the app, the mesh and every available peer. Returns the list of paths:
 * { name, kind: 'baseline' | 'peer' | 'ambit', target(port) → loadgen options, pids() }.
 */
export async function startTopology({ withPeers = true } = {}) {
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
  progress('starting the mesh (control plane + 2 node proxies)');
  const mesh = await Mesh.start({
    configDir: path.join(root, 'config'),
    stateDir: path.join(root, 'state'),
    controlPlaneAddr: `${ADDR.controlPlane}:15012`,
    env: { AMBIT_LOG_LEVEL: process.env.AMBIT_LOG_LEVEL ?? 'warn' },
  });
  stops.push(() => mesh.stop());
  const paths = [
    { name: 'direct', kind: 'baseline', target: (port) => ({ host: ADDR.server, port }), pids: () => [] },
  ];
  if (withPeers) paths.push(...(await startPeers(root, stops)));
  paths.push({
    name: 'ambit',
    kind: 'ambit',
    target: (port) => ({ socks: { host: ADDR.client, port: 15080 }, host: ADDR.server, port }),
    pids: () => [mesh.pid('node/node-1'), mesh.pid('node/node-2')],
  });
  return {
    paths,
    mesh,
    async stop() {
      for (const s of stops.reverse()) await s().catch(() => {});
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** The C peers, each skipped with a message when it is not installed (bench/peers/install.sh). */
async function startPeers(root, stops) {
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
  return out;
}
