// `ambit up --netns DIR`: the mesh of a folder of manifests, run in real network namespaces
// (redirect/topology.ts) with transparent capture. The same manifests as local mode; addresses are
// mapped to private ones (redirect/address-map.ts) in a mirror of the folder that the control plane
// watches (redirect/manifest-mirror.ts). This is orchestration, so it lives with the CLI that
// runs the processes (issue 14: it was redirect/netns-mesh.ts, which imported cli/ and
// controlplane/ from a lower layer); src/redirect keeps what redirection owns. Each component runs as a process inside its namespace (`ip netns exec`):
//   control plane   in the router namespace, on 10.200.0.1:15012 (reachable from every node)
//   node proxy      in its node's namespace, `--capture netns`: its node agent captures the
//                   node's ambient pods in their own namespaces
//   waypoint        in its own namespace on its node, like a pod
//   app             a pod's ambit.dev/command, inside the pod's namespace
// Stop (Ctrl-C) ends the processes and deletes every namespace; after a crash, `ambit down`.
import { mkdir, writeFile } from 'node:fs/promises';
import { DEFAULT_CONTROL_PLANE_ADDR } from '../common/ports.js';
import path from 'node:path';
import { loadDirectory } from '../config/load.js';
import { ensureNodeToken } from '../controlplane/node-auth.js';
import { describeMesh, type MeshDescription, type MeshPod } from './mesh-runner.js';
import { MeshRun, nodeArgs, pollUntil, waypointArgs, writeShim } from './mesh-processes.js';
import type { RestartPolicy } from './restart-backoff.js';
import { toNetnsHostPort } from '../redirect/address-map.js';
import { ManifestMirror } from '../redirect/manifest-mirror.js';
import { detectBackend } from '../redirect/iptables.js';
import { nativeStatus } from '../redirect/native.js';
import {
  addEndpoint,
  applyTopology,
  DEFAULT_NETNS_PREFIX,
  nodeNetnsName,
  planTopology,
  podNetnsName,
  removeEndpoint,
  routerNetnsName,
  run,
  teardown,
  waypointNetnsName,
  type TopologyPlan,
} from '../redirect/topology.js';

/** The "cluster DNS" address in pods' resolv.conf: never routed, captured to 15053 in ambient pods. */
export const CLUSTER_DNS_IP = '10.200.0.10';
export const NETNS_WAYPOINT_POOL = '10.200.200.0/24'; // the local default 127.0.200.0/24, mapped

export interface NetnsMeshOptions {
  configDir: string;
  stateDir: string;
  /** Prefix of every namespace created (default `ambit-`; tests use their own). */
  prefix?: string;
  /** Control plane address as local mode writes it (127.x, mapped like every other). */
  controlPlaneAddr?: string;
  onLog?: (component: string, line: string) => void;
  certTtlSeconds?: number;
  /** Start node proxies with capture off (`ambit node --disable-capture`). */
  disableCapture?: boolean;
  startApps?: boolean;
  readyTimeoutMs?: number;
  /** Back-off of the restarts of a component that died (cli/restart-backoff.ts). */
  restart?: Partial<RestartPolicy>;
  /**
   * Node proxies find each pod's namespace by its IP, as on Kubernetes (pod-netns.ts), instead of
   * by the name this run gave it: tests of the discovery use this.
   */
  discoverPodsByIp?: boolean;
}

export interface NetnsMeshDescription extends MeshDescription {
  netns: { prefix: string; router: string; nodes: Record<string, string> };
  pods: (MeshPod & { netns: string })[];
}

/** Why netns mode cannot run here, or undefined when it can. */
export async function netnsPrerequisites(): Promise<string | undefined> {
  if (process.platform !== 'linux') return 'netns mode needs Linux';
  if (process.getuid?.() !== 0)
    return 'netns mode needs root (it creates network namespaces and iptables rules)';
  try {
    await run('ip', ['-V']);
  } catch {
    return 'netns mode needs `ip` (Debian package iproute2)';
  }
  const ipt = await detectBackend();
  if (!ipt.backend) return ipt.reason;
  const native = nativeStatus();
  if (!native.ok) return `netns mode needs the native socket helpers: ${native.reason}`;
  return undefined;
}

export class NetnsMesh extends MeshRun {
  private built = false;

  private constructor(
    private readonly opts: NetnsMeshOptions,
    readonly description: NetnsMeshDescription,
    readonly configErrors: string[],
    private readonly mirror: ManifestMirror,
    private currentPlan: TopologyPlan,
    private readonly mirrorDir: string,
    private readonly routerIp: string,
  ) {
    super(opts);
  }

  get plan(): TopologyPlan {
    return this.currentPlan;
  }

  static async start(opts: NetnsMeshOptions): Promise<NetnsMesh> {
    const missing = await netnsPrerequisites();
    if (missing) throw new Error(missing);
    const prefix = opts.prefix ?? DEFAULT_NETNS_PREFIX;
    const warnings: string[] = [];
    const mirrorDir = path.join(opts.stateDir, 'netns-config');
    let mesh: NetnsMesh | undefined;
    const mirror = new ManifestMirror({
      sourceDir: opts.configDir,
      mirrorDir,
      onWarning: (w) => (mesh ? mesh.log('warn', `manifest: ${w}`) : warnings.push(w)),
      beforePublish: (staged) => mesh?.followPods(staged, 'staged') ?? Promise.resolve(),
      onChange: () => void mesh?.followPods(mirrorDir, 'published'),
    });
    await mkdir(path.join(opts.stateDir, 'bin'), { recursive: true });
    await mirror.start();
    try {
      const { objects, errors } = await loadDirectory(mirrorDir);
      const controlPlane = toNetnsHostPort(opts.controlPlaneAddr ?? DEFAULT_CONTROL_PLANE_ADDR);
      const routerIp = controlPlane.slice(0, controlPlane.lastIndexOf(':'));
      const base = describeMesh(objects, {
        controlPlaneAddr: controlPlane,
        stateDir: opts.stateDir,
        waypointPool: NETNS_WAYPOINT_POOL,
      });
      const plan = planTopology({
        prefix,
        routerIp,
        nodes: base.nodes,
        endpoints: [
          ...base.pods.map((p) => ({ kind: 'pod' as const, ...p })),
          ...base.waypoints.map((w) => ({ kind: 'waypoint' as const, ...w })),
        ],
        dns: { nameserver: CLUSTER_DNS_IP, clusterDomain: 'cluster.local' },
      });
      const description: NetnsMeshDescription = {
        ...base,
        // No SOCKS in netns mode: the pod's traffic is captured.
        pods: base.pods.map((p) => ({
          ...p,
          socks: undefined,
          netns: podNetnsName(p.namespace, p.name, prefix),
        })),
        netns: {
          prefix,
          router: routerNetnsName(prefix),
          nodes: Object.fromEntries(base.nodes.map((n) => [n.name, nodeNetnsName(n.name, prefix)])),
        },
      };
      mesh = new NetnsMesh(
        opts,
        description,
        [...errors.map(String), ...warnings],
        mirror,
        plan,
        mirrorDir,
        routerIp,
      );
      await applyTopology(plan);
      mesh.built = true;
      await writeShim(opts.stateDir);
      for (const n of base.nodes) await ensureNodeToken(opts.stateDir, n.name);
      const children = mesh.children;
      await children.spawnAmbit(
        'controlplane',
        [
          'controlplane',
          '--config',
          mirrorDir,
          '--state',
          opts.stateDir,
          '--listen',
          controlPlane,
          '--waypoint-pool',
          NETNS_WAYPOINT_POOL,
        ],
        routerNetnsName(prefix),
      );
      const args = { ...opts, controlPlane };
      const capture = ['--capture', 'netns', ...(opts.discoverPodsByIp ? [] : ['--netns-prefix', prefix])];
      if (opts.disableCapture) capture.push('--disable-capture');
      await Promise.all(
        base.nodes.map((n) =>
          // Admin on the node IP, not the node namespace's 127.0.0.1 (netns capture's default), so
          // `ambit ctl certs|config-dump` can reach it from the router namespace at the Node's
          // InternalIP as /debug/syncz lists it; off loopback every read needs the admin token
          // (telemetry/admin-guard.ts), which only the run's state directory holds.
          children.spawnAmbit(
            `node/${n.name}`,
            nodeArgs(n, args, [...capture, '--admin-bind', n.ip]),
            nodeNetnsName(n.name, prefix),
          ),
        ),
      );
      await Promise.all(
        base.waypoints.map((w) =>
          children.spawnAmbit(
            `waypoint/${w.namespace}/${w.name}`,
            waypointArgs(w, args),
            waypointNetnsName(w.namespace, w.name, prefix),
          ),
        ),
      );
      if (opts.startApps !== false) {
        const apps = description.pods.filter((p) => p.command);
        for (const p of apps) children.spawnApp(p, p.netns);
        await Promise.all(apps.flatMap((p) => p.ports.map((port) => waitForListener(p.netns, port, 10_000))));
      }
      await writeFile(path.join(opts.stateDir, 'mesh.json'), JSON.stringify(description, null, 2));
      // Up: a component that dies from now on is restarted, in its namespace (mesh-processes.ts).
      children.supervise();
      return mesh;
    } catch (err) {
      if (mesh) await mesh.stop();
      else {
        mirror.stop();
      }
      throw err;
    }
  }

  private reconciling: Promise<void> = Promise.resolve();

  /**
   * The folder changed. Before the control plane sees it (`staged`), new, moved or readdressed
   * pods get their namespace and app, so a pod is on the network before it is in the mesh (as a
   * CNI plugin does it); after (`published`), pods that are gone lose theirs.
   */
  private followPods(dir: string, phase: 'staged' | 'published'): Promise<void> {
    this.reconciling = this.reconciling
      .then(() => this.reconcilePods(dir, phase))
      .catch((err) => this.log('error', `could not follow the manifests: ${(err as Error).message}`));
    return this.reconciling;
  }

  private async reconcilePods(dir: string, phase: 'staged' | 'published'): Promise<void> {
    if (this.stopping) return;
    const { objects } = await loadDirectory(dir);
    const next = describeMesh(objects, {
      controlPlaneAddr: this.description.controlPlane,
      stateDir: this.opts.stateDir,
    });
    const nodes = new Set(this.description.nodes.map((n) => n.name));
    const pods = next.pods.filter((p) => nodes.has(p.node));
    if (phase === 'staged')
      for (const p of next.pods.filter((x) => !nodes.has(x.node)))
        this.log(
          'warn',
          `pod ${p.namespace}/${p.name} is on node ${p.node}, which ambit up --netns did not start with; restart it to add nodes`,
        );
    const plan = planTopology({
      prefix: this.currentPlan.prefix,
      routerIp: this.routerIp,
      nodes: this.description.nodes,
      endpoints: [
        ...pods.map((p) => ({ kind: 'pod' as const, ...p })),
        ...this.description.waypoints.map((w) => ({ kind: 'waypoint' as const, ...w })),
      ],
      dns: { nameserver: CLUSTER_DNS_IP, clusterDomain: 'cluster.local' },
    });
    const same = (a: { commands: string[][] }, b: { commands: string[][] }) =>
      JSON.stringify(a.commands) === JSON.stringify(b.commands);
    const before = new Map(this.currentPlan.endpoints.map((e) => [e.name, e]));
    const after = new Map(plan.endpoints.map((e) => [e.name, e]));
    // Staged: replace changed ones and add new ones; published: remove the ones that are gone.
    const changed = [...after.values()].filter((e) => before.has(e.name) && !same(e, before.get(e.name)!));
    const added = [...after.values()].filter((e) => !before.has(e.name));
    const gone = [...before.values()].filter((e) => !after.has(e.name));
    const removed = phase === 'staged' ? changed.map((e) => before.get(e.name)!) : gone;
    const created = phase === 'staged' ? [...changed, ...added] : [];
    for (const e of removed) {
      for (const [name, c] of this.children.entries()) {
        if (!name.startsWith('app/') || c.netns !== e.name) continue;
        if (c.proc) await this.kill(name, 'SIGTERM');
        this.children.delete(name);
      }
      await removeEndpoint(e);
      before.delete(e.name);
    }
    const prefix = this.currentPlan.prefix;
    const described = pods.map((p) => ({
      ...p,
      socks: undefined,
      netns: podNetnsName(p.namespace, p.name, prefix),
    }));
    for (const e of created) {
      await addEndpoint(e);
      before.set(e.name, e);
      const p = described.find((x) => x.netns === e.name);
      if (p?.command && this.opts.startApps !== false) void this.startAppWhenCaptured(p);
    }
    this.currentPlan = { ...this.currentPlan, endpoints: [...before.values()] };
    if (removed.length || created.length)
      this.log('info', 'pods follow the manifests', {
        added: created.map((e) => e.name),
        removed: removed.map((e) => e.name),
      });
    if (phase === 'published') {
      this.description.pods = described;
      await writeFile(path.join(this.opts.stateDir, 'mesh.json'), JSON.stringify(this.description, null, 2));
    }
  }

  /** A pod's app starts once its node proxy captured it (as Istio's CNI holds a pod until then). */
  private async startAppWhenCaptured(p: MeshPod & { netns: string }): Promise<void> {
    const captured = async () =>
      this.stopping ||
      (await run('ip', ['netns', 'exec', p.netns, 'iptables-save', '-t', 'nat']).catch(() => '')).includes(
        ':AMBIT_OUTPUT',
      );
    if (p.ambient) await pollUntil(captured, 10_000, 100);
    if (!this.stopping) this.children.spawnApp(p, p.netns);
  }

  private log(level: 'info' | 'warn' | 'error', msg: string, fields: Record<string, unknown> = {}): void {
    const n = { info: 30, warn: 40, error: 50 }[level];
    this.opts.onLog?.('ambit', JSON.stringify({ level: n, time: new Date().toISOString(), msg, ...fields }));
  }

  /** Resolves once the manifest mirror has caught up with the user's folder. */
  flushConfig(): Promise<void> {
    return this.mirror.flush();
  }

  /** Ends every process, then deletes every namespace of the run. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.mirror.stop();
    await this.children.stopAll();
    // Only what this run built: a refused start must not remove another run's namespaces.
    if (this.built) await teardown(this.plan.prefix, planNames(this.plan));
  }
}

function planNames(plan: TopologyPlan): Set<string> {
  return new Set([plan.router, ...plan.nodes, ...plan.endpoints].map((n) => n.name));
}

/** Waits until something listens on TCP `port` inside `netns` (asked with `ss`, no traffic sent). */
function waitForListener(netns: string, port: number, deadlineMs: number): Promise<void> {
  const listening = async () =>
    (await run('ip', ['netns', 'exec', netns, 'ss', '-Hltn', `sport = :${port}`]).catch(() => '')).trim() !==
    '';
  return pollUntil(listening, deadlineMs, 100);
}
