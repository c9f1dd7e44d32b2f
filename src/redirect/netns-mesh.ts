// `ambit up --netns DIR`: the mesh of a folder of manifests, run in real network namespaces
// (topology.ts) with transparent capture. The same manifests as local mode; addresses are mapped
// to private ones (address-map.ts) in a mirror of the folder that the control plane watches
// (manifest-mirror.ts). Each component runs as a process inside its namespace (`ip netns exec`):
//   control plane   in the router namespace, on 10.200.0.1:15012 (reachable from every node)
//   node proxy      in its node's namespace, `--capture netns`: its node agent captures the
//                   node's ambient pods in their own namespaces
//   waypoint        in its own namespace on its node, like a pod
//   app             a pod's ambit.dev/command, inside the pod's namespace
// Stop (Ctrl-C) ends the processes and deletes every namespace; after a crash, `ambit down`.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { loadDirectory } from '../config/load.js';
import { ensureNodeToken } from '../controlplane/node-auth.js';
import { planWaypoints } from '../controlplane/waypoints.js';
import { AMBIT_BIN, describeMesh, type MeshDescription, type MeshPod } from '../cli/mesh-runner.js';
import { toNetnsHostPort } from './address-map.js';
import { ManifestMirror } from './manifest-mirror.js';
import { detectBackend } from './iptables.js';
import { nativeStatus } from './native.js';
import {
  addEndpoint,
  applyTopology,
  DEFAULT_NETNS_PREFIX,
  inNetns,
  nodeNetnsName,
  planTopology,
  podNetnsName,
  removeEndpoint,
  routerNetnsName,
  run,
  teardown,
  waypointNetnsName,
  type TopologyPlan,
} from './topology.js';

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
}

export interface NetnsMeshDescription extends MeshDescription {
  netns: { prefix: string; router: string; nodes: Record<string, string> };
  pods: (MeshPod & { netns: string })[];
}

interface Child {
  name: string;
  netns: string;
  args: string[];
  proc?: ChildProcess;
  exited?: Promise<number | null>;
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

export class NetnsMesh {
  private readonly children = new Map<string, Child>();
  private stopping = false;
  private built = false;

  private constructor(
    private readonly opts: NetnsMeshOptions,
    readonly description: NetnsMeshDescription,
    readonly configErrors: string[],
    private readonly mirror: ManifestMirror,
    private currentPlan: TopologyPlan,
    private readonly mirrorDir: string,
    private readonly routerIp: string,
  ) {}

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
      const controlPlane = toNetnsHostPort(opts.controlPlaneAddr ?? '127.0.0.1:15012');
      const routerIp = controlPlane.slice(0, controlPlane.lastIndexOf(':'));
      const base = describeMesh(objects, { controlPlaneAddr: controlPlane, stateDir: opts.stateDir });
      base.waypoints = planWaypoints(objects, NETNS_WAYPOINT_POOL).waypoints.map((w) => ({
        namespace: w.namespace,
        name: w.name,
        ip: w.ip,
        node: w.node,
        identity: `spiffe://cluster.local/ns/${w.namespace}/sa/${w.serviceAccount}`,
        waypointFor: w.waypointFor,
      }));
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
      await mesh.spawnChild('controlplane', routerNetnsName(prefix), [
        'controlplane',
        '--config',
        mirrorDir,
        '--state',
        opts.stateDir,
        '--listen',
        controlPlane,
        '--waypoint-pool',
        NETNS_WAYPOINT_POOL,
      ]);
      const ttl = opts.certTtlSeconds ? ['--cert-ttl', String(opts.certTtlSeconds)] : [];
      await Promise.all(
        base.nodes.map((n) =>
          mesh!.spawnChild(`node/${n.name}`, nodeNetnsName(n.name, prefix), [
            'node',
            '--name',
            n.name,
            '--ip',
            n.ip,
            '--state',
            opts.stateDir,
            '--controlplane',
            controlPlane,
            '--capture',
            'netns',
            '--netns-prefix',
            prefix,
            ...(opts.disableCapture ? ['--disable-capture'] : []),
            ...ttl,
          ]),
        ),
      );
      await Promise.all(
        base.waypoints.map((w) =>
          mesh!.spawnChild(
            `waypoint/${w.namespace}/${w.name}`,
            waypointNetnsName(w.namespace, w.name, prefix),
            [
              'waypoint',
              '--name',
              `${w.namespace}/${w.name}`,
              '--ip',
              w.ip,
              '--node',
              w.node,
              '--state',
              opts.stateDir,
              '--controlplane',
              controlPlane,
              ...ttl,
            ],
          ),
        ),
      );
      if (opts.startApps !== false) {
        const apps = description.pods.filter((p) => p.command);
        for (const p of apps) mesh.spawnApp(p);
        await Promise.all(apps.flatMap((p) => p.ports.map((port) => waitForListener(p.netns, port, 10_000))));
      }
      await writeFile(path.join(opts.stateDir, 'mesh.json'), JSON.stringify(description, null, 2));
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
      for (const [name, c] of this.children) {
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
    const end = Date.now() + 10_000;
    while (p.ambient && Date.now() < end && !this.stopping) {
      const rules = await run('ip', ['netns', 'exec', p.netns, 'iptables-save', '-t', 'nat']).catch(() => '');
      if (rules.includes(':AMBIT_OUTPUT')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    if (!this.stopping) this.spawnApp(p);
  }

  private log(level: 'info' | 'warn' | 'error', msg: string, fields: Record<string, unknown> = {}): void {
    const n = { info: 30, warn: 40, error: 50 }[level];
    this.opts.onLog?.('ambit', JSON.stringify({ level: n, time: new Date().toISOString(), msg, ...fields }));
  }

  /** Kills one component ("controlplane", "node/<name>", "waypoint/<ns>/<name>", "app/<ns>/<pod>"). */
  async kill(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const c = this.children.get(name);
    if (!c?.proc) throw new Error(`no running component ${name}`);
    c.proc.kill(signal);
    await c.exited;
    c.proc = undefined;
  }

  /** Starts a killed component again with the same arguments and waits until it is ready. */
  async restart(name: string): Promise<void> {
    const c = this.children.get(name);
    if (!c) throw new Error(`unknown component ${name}`);
    if (c.proc) await this.kill(name, 'SIGTERM');
    await this.spawnChild(name, c.netns, c.args);
  }

  pid(name: string): number | undefined {
    return this.children.get(name)?.proc?.pid;
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
    const running = [...this.children.values()].filter((c) => c.proc);
    for (const c of running) c.proc!.kill('SIGTERM');
    const deadline = setTimeout(() => running.forEach((c) => c.proc?.kill('SIGKILL')), 5000);
    await Promise.all(running.map((c) => c.exited));
    clearTimeout(deadline);
    // Only what this run built: a refused start must not remove another run's namespaces.
    if (this.built) await teardown(this.plan.prefix, planNames(this.plan));
  }

  private spawnChild(
    name: string,
    netns: string,
    args: string[],
    readyTimeoutMs = this.opts.readyTimeoutMs ?? 30_000,
  ): Promise<void> {
    const nodeArgs = (process.env.AMBIT_NODE_ARGS ?? '').split(' ').filter(Boolean);
    // `ip netns exec` execs the command in place: the pid and the IPC channel are the child's own.
    const [cmd, ...prefix] = inNetns(netns);
    const proc = spawn(cmd!, [...prefix, process.execPath, ...nodeArgs, AMBIT_BIN, ...args], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    const child: Child = this.children.get(name) ?? { name, netns, args };
    child.proc = proc;
    child.exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
    this.children.set(name, child);
    this.pipeLogs(name, proc);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${name} did not become ready within ${readyTimeoutMs} ms`)),
        readyTimeoutMs,
      );
      proc.on('message', (m: { type?: string }) => {
        if (m?.type === 'ready') {
          clearTimeout(timer);
          resolve();
        }
      });
      proc.once('exit', (code, signal) => {
        clearTimeout(timer);
        if (!this.stopping)
          this.opts.onLog?.('ambit', JSON.stringify({ level: 40, msg: `${name} exited`, code, signal }));
        reject(new Error(`${name} exited (code ${code}, signal ${signal}) before it was ready`));
      });
    });
  }

  private spawnApp(p: MeshPod & { netns: string }): void {
    const name = `app/${p.namespace}/${p.name}`;
    const [cmd, ...prefix] = inNetns(p.netns);
    const proc = spawn(cmd!, [...prefix, '/bin/sh', '-c', `exec ${p.command!}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        PATH: `${path.join(this.opts.stateDir, 'bin')}:${process.env.PATH ?? ''}`,
        POD_IP: p.ip,
        POD_NAME: p.name,
        POD_NAMESPACE: p.namespace,
      },
    });
    this.children.set(name, {
      name,
      netns: p.netns,
      args: [],
      proc,
      exited: new Promise((r) => proc.once('exit', (c) => r(c))),
    });
    this.pipeLogs(name, proc);
  }

  private pipeLogs(name: string, proc: ChildProcess): void {
    const sink = this.opts.onLog ?? (() => {});
    for (const stream of [proc.stdout, proc.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream }).on('line', (line) => sink(name, line));
    }
  }
}

function planNames(plan: TopologyPlan): Set<string> {
  return new Set([plan.router, ...plan.nodes, ...plan.endpoints].map((n) => n.name));
}

/** Waits until something listens on TCP `port` inside `netns` (asked with `ss`, no traffic sent). */
async function waitForListener(netns: string, port: number, deadlineMs: number): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (Date.now() < end) {
    const out = await run('ip', ['netns', 'exec', netns, 'ss', '-Hltn', `sport = :${port}`]).catch(() => '');
    if (out.trim()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `ambit` on the PATH of app commands, whatever way ambit itself was installed. */
async function writeShim(stateDir: string): Promise<void> {
  const shim = path.join(stateDir, 'bin', 'ambit');
  await writeFile(shim, `#!/bin/sh\nexec "${process.execPath}" "${AMBIT_BIN}" "$@"\n`);
  await chmod(shim, 0o755);
}
