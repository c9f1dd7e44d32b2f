// Runs a whole mesh on this machine from a folder of manifests (local mode): the control plane,
// one node proxy per Node object and one waypoint per waypoint Gateway (placed as the control
// plane places it: controlplane/waypoints.ts), each in its own child process (so tests can kill
// and restart one), plus the app command of every pod that names one. Used by `ambit up`,
// `ambit demo` and the integration tests.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import net from 'node:net';
import { loadDirectory } from '../config/load.js';
import { FileSource } from '../config/file-source.js';
import { pino } from 'pino';
import {
  ANNOTATION_LOCAL_COMMAND,
  type KubeResource,
  type Namespace,
  type Node,
  type Pod,
} from '../config/types.js';
import { ensureNodeToken } from '../controlplane/node-auth.js';
import { isAmbientEnrolled } from '../controlplane/workload-builder.js';
import { planWaypoints } from '../controlplane/waypoints.js';
import { DEFAULT_CONTROL_PLANE_ADDR, SOCKS5_PORT } from '../common/ports.js';
import { MeshRun, nodeArgs, pollUntil, waypointArgs, writeShim } from './mesh-processes.js';
import type { RestartPolicy } from './restart-backoff.js';

export { AMBIT_BIN } from './mesh-processes.js';

export interface MeshOptions {
  configDir: string;
  stateDir: string;
  /** Control plane xDS+CA address; default 127.0.0.1:15012. */
  controlPlaneAddr?: string;
  /** Every log line of every child, with the component that wrote it. */
  onLog?: (component: string, line: string) => void;
  env?: Record<string, string>;
  certTtlSeconds?: number;
  startApps?: boolean;
  readyTimeoutMs?: number;
  /**
   * Keep watching the folder after start: Nodes and waypoint Gateways added later get their
   * process, removed ones are stopped, a waypoint whose address or node changed is restarted.
   */
  follow?: boolean;
  /** Back-off of the restarts of a component that died (restart-backoff.ts has the defaults). */
  restart?: Partial<RestartPolicy>;
}

export interface MeshNode {
  name: string;
  ip: string;
}
export interface MeshPod {
  namespace: string;
  name: string;
  ip: string;
  node: string;
  ambient: boolean;
  /** SOCKS5 entry into the mesh as this pod (ambient pods only). */
  socks?: string;
  command?: string;
  /** containerPorts the app is expected to listen on; `up` waits for them. */
  ports: number[];
}
export interface MeshWaypoint {
  namespace: string;
  name: string;
  ip: string;
  node: string;
  identity: string;
  waypointFor: string;
}
export interface MeshDescription {
  controlPlane: string;
  stateDir: string;
  nodes: MeshNode[];
  pods: MeshPod[];
  waypoints: MeshWaypoint[];
}

export class Mesh extends MeshRun {
  private source?: FileSource;
  /** Reconciliations run one at a time, in order: a later folder state wins. */
  private reconciling: Promise<void> = Promise.resolve();

  private constructor(
    private readonly opts: MeshOptions,
    readonly description: MeshDescription,
    readonly configErrors: string[],
  ) {
    super(opts);
  }

  static async start(opts: MeshOptions): Promise<Mesh> {
    const { objects, errors } = await loadDirectory(opts.configDir);
    const desc = describeMesh(objects, opts);
    const mesh = new Mesh(opts, desc, errors.map(String));
    await mkdir(path.join(opts.stateDir, 'bin'), { recursive: true });
    await writeShim(opts.stateDir);
    for (const n of desc.nodes) await ensureNodeToken(opts.stateDir, n.name);
    try {
      await mesh.children.spawnAmbit('controlplane', [
        'controlplane',
        '--config',
        opts.configDir,
        '--state',
        opts.stateDir,
        '--listen',
        desc.controlPlane,
      ]);
      await Promise.all(desc.nodes.map((n) => mesh.children.spawnAmbit(`node/${n.name}`, mesh.nodeArgs(n))));
      await Promise.all(
        desc.waypoints.map((w) =>
          mesh.children.spawnAmbit(`waypoint/${w.namespace}/${w.name}`, mesh.waypointArgs(w)),
        ),
      );
      if (opts.startApps !== false) {
        const apps = desc.pods.filter((p) => p.command);
        for (const p of apps) mesh.children.spawnApp(p);
        await Promise.all(apps.flatMap((p) => p.ports.map((port) => waitForPort(p.ip, port, 10_000))));
      }
    } catch (err) {
      await mesh.stop();
      throw err;
    }
    await writeFile(path.join(opts.stateDir, 'mesh.json'), JSON.stringify(desc, null, 2));
    // Up: from now on a component that dies is restarted (mesh-processes.ts).
    mesh.children.supervise();
    if (opts.follow) await mesh.follow();
    return mesh;
  }

  /** Watches the folder and reconciles node proxy and waypoint processes with it. */
  private async follow(): Promise<void> {
    // The control plane reports bad manifests; this watcher only needs to see the good ones.
    const sink = this.opts.onLog ?? (() => {});
    const logger = pino({ level: 'error' }, { write: (line: string) => sink('ambit', line.trimEnd()) });
    const source = new FileSource({ dir: this.opts.configDir, logger });
    this.source = source;
    let first = true;
    source.onChange((_change, snapshot) => {
      if (first) return void (first = false); // the state Mesh.start() already laid out
      const objects = [...snapshot.objects.values()];
      this.reconciling = this.reconciling.then(() => this.reconcile(objects));
    });
    await source.start();
  }

  private async reconcile(objects: KubeResource[]): Promise<void> {
    if (this.stopping) return;
    const next = describeMesh(objects, { ...this.opts, controlPlaneAddr: this.description.controlPlane });
    const started: string[] = [];
    const stopped: string[] = [];
    const want = new Map<string, string[]>();
    for (const n of next.nodes) {
      await ensureNodeToken(this.opts.stateDir, n.name);
      want.set(`node/${n.name}`, this.nodeArgs(n));
    }
    for (const w of next.waypoints) want.set(`waypoint/${w.namespace}/${w.name}`, this.waypointArgs(w));
    for (const [name, c] of this.children.entries()) {
      if (!/^(node|waypoint)\//.test(name)) continue;
      const args = want.get(name);
      if (args && args.join('\0') === c.args.join('\0')) continue;
      if (c.proc) await this.kill(name, 'SIGTERM');
      this.children.delete(name);
      if (!args) stopped.push(name);
    }
    await Promise.all(
      [...want]
        .filter(([name]) => !this.children.has(name))
        .map(async ([name, args]) => {
          try {
            await this.children.spawnAmbit(name, args);
            started.push(name);
          } catch (err) {
            this.opts.onLog?.(
              'ambit',
              JSON.stringify({ level: 50, msg: `could not start ${name}: ${String(err)}` }),
            );
          }
        }),
    );
    this.description.nodes.splice(0, Infinity, ...next.nodes);
    this.description.waypoints.splice(0, Infinity, ...next.waypoints);
    if (started.length || stopped.length) {
      this.opts.onLog?.(
        'ambit',
        JSON.stringify({ level: 30, msg: 'mesh follows the folder', started, stopped }),
      );
      await writeFile(path.join(this.opts.stateDir, 'mesh.json'), JSON.stringify(this.description, null, 2));
    }
  }

  private nodeArgs(n: MeshNode): string[] {
    return nodeArgs(n, { ...this.opts, controlPlane: this.description.controlPlane });
  }

  private waypointArgs(w: MeshWaypoint): string[] {
    return waypointArgs(w, { ...this.opts, controlPlane: this.description.controlPlane });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.source?.stop();
    await this.reconciling;
    await this.children.stopAll();
  }
}

/** Nodes, pods and addresses of a manifest set, as `ambit up` lays them out. */
export function describeMesh(
  objects: KubeResource[],
  opts: Pick<MeshOptions, 'controlPlaneAddr' | 'stateDir'> & {
    /** Where waypoints without an address get one (controlplane/waypoints.ts has the default). */
    waypointPool?: string;
  },
): MeshDescription {
  const namespaces = new Map<string, Namespace>();
  const nodes: MeshNode[] = [];
  const pods: MeshPod[] = [];
  for (const o of objects) if (o.kind === 'Namespace') namespaces.set(o.metadata.name, o);
  for (const o of objects) {
    if (o.kind === 'Node') {
      const ip = nodeIp(o);
      if (ip) nodes.push({ name: o.metadata.name, ip });
    }
  }
  for (const o of objects) {
    if (o.kind !== 'Pod') continue;
    const pod = o as Pod;
    const ip = pod.status?.podIP;
    if (!ip || !pod.spec.nodeName) continue;
    const ns = pod.metadata.namespace ?? 'default';
    const ambient = isAmbientEnrolled(pod, namespaces.get(ns)) && !pod.spec.hostNetwork;
    pods.push({
      namespace: ns,
      name: pod.metadata.name,
      ip,
      node: pod.spec.nodeName,
      ambient,
      socks: ambient ? `${ip}:${SOCKS5_PORT}` : undefined,
      command: pod.metadata.annotations?.[ANNOTATION_LOCAL_COMMAND],
      ports: (pod.spec.containers ?? []).flatMap((c) => (c.ports ?? []).map((p) => p.containerPort)),
    });
  }
  const waypoints = planWaypoints(objects, opts.waypointPool).waypoints.map((w) => ({
    namespace: w.namespace,
    name: w.name,
    ip: w.ip,
    node: w.node,
    identity: `spiffe://cluster.local/ns/${w.namespace}/sa/${w.serviceAccount}`,
    waypointFor: w.waypointFor,
  }));
  return {
    controlPlane: opts.controlPlaneAddr ?? DEFAULT_CONTROL_PLANE_ADDR,
    stateDir: opts.stateDir,
    nodes,
    pods,
    waypoints,
  };
}

function nodeIp(n: Node): string | undefined {
  const addrs = n.status?.addresses ?? [];
  return (addrs.find((a) => a.type === 'InternalIP') ?? addrs[0])?.address;
}

/** Resolves once something accepts TCP on host:port, or after the deadline (the app may be slow; not fatal). */
function waitForPort(host: string, port: number, deadlineMs: number): Promise<void> {
  const accepts = () =>
    new Promise<boolean>((resolve) => {
      const s = net.connect({ host, port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
  return pollUntil(accepts, deadlineMs, 50);
}
