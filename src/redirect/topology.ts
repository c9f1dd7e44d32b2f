// The netns topology of `ambit up --netns`: real network namespaces wired like a small cluster.
//
//   ambit-router            the "network": one veth per node, a /32 route per node and per pod;
//                            holds 10.200.0.1 (the control plane's address) on lo
//     └─ ambit-r<i> ══ eth0 ambit-<node>     a node: nodeIP/32 on eth0, default via the router,
//                            ip_forward on; one veth per local pod (ambit-p<hash>), /32 route each
//                            └─ ambit-p<hash> ══ eth0 ambit-pod-<ns>-<name>   a pod (or waypoint):
//                                   podIP/32 on eth0, default via its node's IP
//
// Every namespace and link has the run's prefix (default `ambit-`), and links are created inside
// namespaces (`ip -n A link add … peer … netns B`), never in the root namespace, so deleting the
// namespaces removes everything. Pods reach each other through their nodes and the router; the
// root namespace has no route to any of it. planTopology is pure (unit-tested); apply and
// teardown run `ip`.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

export const DEFAULT_NETNS_PREFIX = 'ambit-';
/** Where `ip netns` keeps its namespaces; a pod's netns path is NETNS_DIR/<name>. */
export const NETNS_DIR = '/run/netns';
/** Per-namespace files `ip netns exec` bind-mounts over /etc (resolv.conf). */
export const NETNS_ETC_DIR = '/etc/netns';

export interface TopologyInput {
  prefix?: string;
  /** The router's own address: the control plane listens here. */
  routerIp: string;
  nodes: { name: string; ip: string }[];
  /** Pods and waypoints: anything with its own address on a node. */
  endpoints: { kind: 'pod' | 'waypoint'; namespace: string; name: string; ip: string; node: string }[];
  /** Written as the namespace's resolv.conf for pods in it (search domains as Kubernetes sets them). */
  dns?: { nameserver: string; clusterDomain: string };
}

export interface NetnsPlan {
  name: string;
  role: 'router' | 'node' | 'pod' | 'waypoint';
  /** Commands to run, in order, each an argv for `ip` (run as `ip ARGS`). */
  commands: string[][];
  /** sysctls to set inside the namespace. */
  sysctls: Record<string, string>;
  resolvConf?: string;
}

export interface TopologyPlan {
  prefix: string;
  router: NetnsPlan;
  nodes: NetnsPlan[];
  endpoints: NetnsPlan[];
}

export function nodeNetnsName(node: string, prefix = DEFAULT_NETNS_PREFIX): string {
  return `${prefix}${node.startsWith('node-') ? node : `node-${node}`}`;
}
export function podNetnsName(namespace: string, name: string, prefix = DEFAULT_NETNS_PREFIX): string {
  return `${prefix}pod-${namespace}-${name}`;
}
export function waypointNetnsName(namespace: string, name: string, prefix = DEFAULT_NETNS_PREFIX): string {
  return `${prefix}wp-${namespace}-${name}`;
}
export function routerNetnsName(prefix = DEFAULT_NETNS_PREFIX): string {
  return `${prefix}router`;
}

/** Link names are at most 15 bytes: prefix-independent short names, unique per run. */
function podLinkName(ns: string, name: string): string {
  return `ambit-p${createHash('sha1').update(`${ns}/${name}`).digest('hex').slice(0, 8)}`;
}

export function planTopology(input: TopologyInput): TopologyPlan {
  const prefix = input.prefix ?? DEFAULT_NETNS_PREFIX;
  const router = routerNetnsName(prefix);
  const forwarding = {
    'net.ipv4.ip_forward': '1',
    'net.ipv4.conf.all.rp_filter': '0',
    'net.ipv4.conf.default.rp_filter': '0',
  };
  const routerPlan: NetnsPlan = {
    name: router,
    role: 'router',
    sysctls: forwarding,
    commands: [
      ['-n', router, 'link', 'set', 'lo', 'up'],
      ['-n', router, 'addr', 'add', `${input.routerIp}/32`, 'dev', 'lo'],
    ],
  };
  const nodes: NetnsPlan[] = [];
  const endpoints: NetnsPlan[] = [];
  const nodeIndex = new Map<string, { ip: string; netns: string; link: string }>();
  input.nodes.forEach((n, i) => {
    const netns = nodeNetnsName(n.name, prefix);
    const link = `ambit-r${i + 1}`;
    nodeIndex.set(n.name, { ip: n.ip, netns, link });
    nodes.push({
      name: netns,
      role: 'node',
      sysctls: forwarding,
      commands: [
        ['-n', netns, 'link', 'set', 'lo', 'up'],
        ['-n', router, 'link', 'add', link, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns],
        ['-n', router, 'link', 'set', link, 'up'],
        ['-n', netns, 'addr', 'add', `${n.ip}/32`, 'dev', 'eth0'],
        ['-n', netns, 'link', 'set', 'eth0', 'up'],
        ['-n', netns, 'route', 'add', input.routerIp, 'dev', 'eth0', 'scope', 'link'],
        ['-n', netns, 'route', 'add', 'default', 'via', input.routerIp, 'dev', 'eth0'],
        ['-n', router, 'route', 'add', `${n.ip}/32`, 'dev', link, 'scope', 'link'],
      ],
    });
  });
  for (const e of input.endpoints) {
    const node = nodeIndex.get(e.node);
    if (!node)
      throw new Error(`${e.kind} ${e.namespace}/${e.name} is on node ${e.node}, which has no Node object`);
    const netns =
      e.kind === 'pod'
        ? podNetnsName(e.namespace, e.name, prefix)
        : waypointNetnsName(e.namespace, e.name, prefix);
    const link = podLinkName(`${e.kind}:${e.namespace}`, e.name);
    endpoints.push({
      name: netns,
      role: e.kind,
      sysctls: {},
      resolvConf: input.dns
        ? `nameserver ${input.dns.nameserver}\n` +
          `search ${e.namespace}.svc.${input.dns.clusterDomain} svc.${input.dns.clusterDomain} ${input.dns.clusterDomain}\n` +
          'options ndots:5\n'
        : undefined,
      commands: [
        ['-n', netns, 'link', 'set', 'lo', 'up'],
        ['-n', node.netns, 'link', 'add', link, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns],
        ['-n', node.netns, 'link', 'set', link, 'up'],
        ['-n', netns, 'addr', 'add', `${e.ip}/32`, 'dev', 'eth0'],
        ['-n', netns, 'link', 'set', 'eth0', 'up'],
        ['-n', netns, 'route', 'add', node.ip, 'dev', 'eth0', 'scope', 'link'],
        ['-n', netns, 'route', 'add', 'default', 'via', node.ip, 'dev', 'eth0'],
        ['-n', node.netns, 'route', 'add', `${e.ip}/32`, 'dev', link, 'scope', 'link'],
        ['-n', router, 'route', 'add', `${e.ip}/32`, 'via', node.ip, 'dev', node.link],
      ],
    });
  }
  return { prefix, router: routerPlan, nodes, endpoints };
}

/** Creates every namespace of the plan, then wires them; on failure removes what it made. */
export async function applyTopology(plan: TopologyPlan): Promise<void> {
  const all = [plan.router, ...plan.nodes, ...plan.endpoints];
  const names = new Set(all.map((n) => n.name));
  const existing = (await listNetns(plan.prefix)).filter((n) => names.has(n));
  if (existing.length > 0)
    throw new Error(
      `network namespaces ${existing.join(', ')} already exist: another mesh with prefix ${plan.prefix} ` +
        'is running, or a crashed one left them; remove them with `ambit down`',
    );
  try {
    for (const ns of all) await ip(['netns', 'add', ns.name]);
    for (const ns of all) {
      for (const [k, v] of Object.entries(ns.sysctls)) await sysctl(ns.name, k, v);
      for (const c of ns.commands) await ip(c);
      if (ns.resolvConf) {
        await mkdir(path.join(NETNS_ETC_DIR, ns.name), { recursive: true });
        await writeFile(path.join(NETNS_ETC_DIR, ns.name, 'resolv.conf'), ns.resolvConf);
      }
    }
  } catch (err) {
    await teardown(plan.prefix, names);
    throw err;
  }
}

/** Adds one pod or waypoint to a running topology (its node and the router exist already). */
export async function addEndpoint(ns: NetnsPlan): Promise<void> {
  try {
    await ip(['netns', 'add', ns.name]);
    for (const c of ns.commands) await ip(c);
    if (ns.resolvConf) {
      await mkdir(path.join(NETNS_ETC_DIR, ns.name), { recursive: true });
      await writeFile(path.join(NETNS_ETC_DIR, ns.name, 'resolv.conf'), ns.resolvConf);
    }
  } catch (err) {
    await removeEndpoint(ns);
    throw err;
  }
}

/**
 * Removes one pod or waypoint: its namespace (the veth pair and the node's route through it go
 * with it), the route other namespaces had to it, and its /etc/netns files.
 */
export async function removeEndpoint(ns: NetnsPlan): Promise<void> {
  for (const c of ns.commands) {
    // `-n OTHER route add …` lines set up routes elsewhere (the node's, the router's); undo those.
    if (c[1] !== ns.name && c[2] === 'route' && c[3] === 'add')
      await ip([...c.slice(0, 3), 'del', ...c.slice(4)]).catch(() => undefined);
  }
  const failed = await ip(['netns', 'del', ns.name]).then(
    () => undefined,
    (err: Error) => err,
  );
  await rm(path.join(NETNS_ETC_DIR, ns.name), { recursive: true, force: true });
  if (failed && (await listNetns(ns.name)).includes(ns.name)) throw failed;
}

/** Names of the namespaces with this prefix. */
export async function listNetns(prefix: string): Promise<string[]> {
  const out = await ip(['netns', 'list']).catch(() => '');
  return out
    .split('\n')
    .map((l) => l.split(' ')[0]!.trim())
    .filter((n) => n.startsWith(prefix));
}

export interface TeardownReport {
  namespaces: string[];
  killed: number[];
}

/**
 * Removes every namespace with `prefix` (or only those in `only`) — links and iptables rules inside go with them — after
 * ending the processes still running in them (a crashed `up` leaves its children behind), and
 * the /etc/netns files written for them.
 */
export async function teardown(prefix: string, only?: ReadonlySet<string>): Promise<TeardownReport> {
  if (!prefix || prefix.length < 3)
    throw new Error(`refusing to tear down with prefix ${JSON.stringify(prefix)}`);
  const names = (await listNetns(prefix)).filter((n) => !only || only.has(n));
  const killed: number[] = [];
  for (const n of names) {
    const pids = (await ip(['netns', 'pids', n]).catch(() => ''))
      .split('\n')
      .map(Number)
      .filter((p) => p > 0 && p !== process.pid);
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
        killed.push(pid);
      } catch {
        /* already gone */
      }
    }
  }
  for (const n of names) await ip(['netns', 'del', n]).catch(() => undefined);
  const etc = await readdir(NETNS_ETC_DIR).catch(() => [] as string[]);
  for (const d of etc)
    if (d.startsWith(prefix) && (!only || only.has(d)))
      await rm(path.join(NETNS_ETC_DIR, d), { recursive: true, force: true });
  return { namespaces: names, killed };
}

/** `ip netns exec NAME` as a command prefix. */
export function inNetns(name: string): string[] {
  return ['ip', 'netns', 'exec', name];
}

export function ip(args: string[]): Promise<string> {
  return run('ip', args);
}

function sysctl(netns: string, key: string, value: string): Promise<string> {
  return run('ip', ['netns', 'exec', netns, 'sysctl', '-qw', `${key}=${value}`]);
}

export function run(cmd: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}
