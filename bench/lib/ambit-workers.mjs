// The "ambit, 2 workers" path of the l4 and cost suites: the same two-node mesh as the "ambit"
// path, but each node proxy run with AMBIT_NODE_WORKERS=2 (a primary holding xDS and
// certificates plus two worker processes sharing the pod listeners by SO_REUSEPORT:
// src/nodeproxy/README.md "Workers"). Its own range (127.0.61.0/24) and its own backend, started
// by activate() and stopped by deactivate() so it never runs beside the other paths. Every
// process of a node proxy (primary and workers) is charged to that node proxy's role.
import { fork } from 'node:child_process';
import { mkdir, readFileSync, writeFile } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { progress } from './stats.mjs';
import { twoNodeManifests } from './manifests.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const O = 61;
const ADDR = {
  node1: `127.0.${O}.1`,
  node2: `127.0.${O}.2`,
  controlPlane: `127.0.${O}.5`,
  client: `127.0.${O}.10`,
  server: `127.0.${O}.11`,
};

/** The direct children of `pid` (the worker processes a node proxy primary forked). */
function childrenOf(pid) {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

export function ambitWorkersPath({ Mesh, root, ports, logLevel, workers = 2 }) {
  let running;
  const name = `ambit, ${workers} workers`;
  const dir = path.join(root, `workers-${workers}`);
  const nodeProcesses = () => {
    if (!running) return [];
    return ['node-1', 'node-2'].flatMap((n, i) => {
      const primary = running.mesh.pid(`node/${n}`);
      const side = i === 0 ? 'client side (node-1)' : 'server side (node-2)';
      return [
        { pid: primary, role: `node proxy ${side}, primary`, helper: false },
        ...childrenOf(primary).map((pid, w) => ({
          pid,
          role: `node proxy ${side}, worker ${w}`,
          helper: false,
        })),
      ];
    });
  };
  return {
    name,
    kind: 'ambit',
    idleTunnels: true,
    target: (port) => ({ socks: { host: ADDR.client, port: 15080 }, host: ADDR.server, port }),
    async activate() {
      progress(`${name}: starting its mesh on 127.0.${O}.0/24`);
      await new Promise((r, j) =>
        mkdir(path.join(dir, 'config'), { recursive: true }, (e) => (e ? j(e) : r())),
      );
      await new Promise((r, j) =>
        writeFile(path.join(dir, 'config', 'bench.yaml'), twoNodeManifests('bench', ADDR), (e) =>
          e ? j(e) : r(),
        ),
      );
      const app = fork(
        path.join(here, 'app.mjs'),
        [ADDR.server, String(ports.http), String(ports.source), String(ports.hold)],
        { stdio: 'inherit' },
      );
      await new Promise((r) => app.once('message', r));
      try {
        const mesh = await Mesh.start({
          configDir: path.join(dir, 'config'),
          stateDir: path.join(dir, 'state'),
          controlPlaneAddr: `${ADDR.controlPlane}:15012`,
          env: { AMBIT_LOG_LEVEL: logLevel, AMBIT_NODE_WORKERS: String(workers) },
        });
        running = { app, mesh };
      } catch (err) {
        app.kill();
        throw err;
      }
      const got = nodeProcesses().length;
      if (got !== 2 * (workers + 1))
        progress(
          `${name}: ${got} node proxy processes instead of ${2 * (workers + 1)} (no native addon? the log says why)`,
        );
    },
    async deactivate() {
      if (!running) return;
      const { app, mesh } = running;
      running = undefined;
      await mesh.stop().catch(() => {});
      app.kill();
    },
    pids: () => nodeProcesses().map((p) => p.pid),
    processes: () => nodeProcesses(),
  };
}
