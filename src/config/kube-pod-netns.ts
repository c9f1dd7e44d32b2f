// Pod discovery on a Kubernetes node: which network namespace holds a given pod IP. The node agent
// knows its node's pods and their IPs (API server pod list with fieldSelector spec.nodeName=<node>,
// or the workloads xDS sends for its node); this file finds, for each IP, the network namespace
// where that IP is a local address, so the agent can enter it (setns) to install the redirection
// and open the pod's listeners. Approach and failure modes: daemonset/README.md "Pod discovery".
//
// Two places hold pod network namespaces, and both are scanned:
//  - <netnsDir> (/var/run/netns): bind mounts the container runtime / CNI made (containerd and
//    CRI-O name them cni-<uuid>). A stable path, so it is preferred. Addresses are read with
//    `ip -netns <name> -json addr` (iproute2 enters the namespace; CAP_SYS_ADMIN);
//  - <procRoot>/<pid>/ns/net for every process: catches runtimes that keep no bind mount. The
//    addresses of a process's namespace are readable without entering it, from
//    <procRoot>/<pid>/net/fib_trie (IPv4 "/32 host LOCAL" entries) and net/if_inet6 (IPv6).
// Namespaces are identified by inode (stat of the ns file), so each is read once; the host's own
// namespace (that of <procRoot>/1) is never a pod's.
//
// A pod IP that is a local address in two different namespaces is ambiguous, and ambiguity is
// refused, never resolved by taking the first match: any pod with NET_ADMIN can add another pod's
// IP to its own interface, and a node agent that took the first namespace found would open the
// victim's listeners (and so its identity and its inbound traffic) inside the attacker's
// namespace. Both scans therefore run to the end (bounded by maxNamespaces) and such an IP is
// reported in `conflicts` with every claimant, not in `found`.
// Lives here for now because the node agent's folder (src/redirect) belongs to another change;
// it imports only node built-ins.
import { execFile } from 'node:child_process';
import { readFile, readdir, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface PodNetns {
  ip: string;
  /** Inode of the namespace: the same namespace seen through different paths has the same one. */
  inode: number;
  /** What to open for setns: the /var/run/netns bind mount when there is one, else /proc/<pid>/ns/net. */
  path: string;
  source: 'netns-dir' | 'proc';
  /** A process in the namespace, when found through /proc. */
  pid?: number;
}

export interface FindPodNetnsOptions {
  procRoot?: string;
  netnsDir?: string;
  /** Stop reading /proc after this many namespaces (a safety bound on huge nodes). */
  maxNamespaces?: number;
}

export interface PodNetnsDiscovery {
  /** IPs that are a local address in exactly one namespace. */
  found: Map<string, PodNetns>;
  /** IPs that are a local address in two or more namespaces, with every claimant: not usable. */
  conflicts: Map<string, PodNetns[]>;
}

/**
 * Maps each of `podIps` to the network namespace where it is a local address. IPs found in no
 * namespace are absent from the result (pod not started yet, or gone); an IP found in two or more
 * namespaces is absent too (see `discoverPodNetns` for who claims it).
 */
export async function findPodNetns(
  podIps: readonly string[],
  opts: FindPodNetnsOptions = {},
): Promise<Map<string, PodNetns>> {
  return (await discoverPodNetns(podIps, opts)).found;
}

/** Every namespace that has one of `podIps` as a local address: the unambiguous ones and the conflicts. */
export async function discoverPodNetns(
  podIps: readonly string[],
  opts: FindPodNetnsOptions = {},
): Promise<PodNetnsDiscovery> {
  const procRoot = opts.procRoot ?? process.env.AMBIT_HOST_PROC ?? '/proc';
  const netnsDir = opts.netnsDir ?? '/var/run/netns';
  const wanted = new Set(podIps.map(normalizeIp));
  const claims = new Map<string, PodNetns[]>();
  const claim = (c: PodNetns) => claims.set(c.ip, [...(claims.get(c.ip) ?? []), c]);
  const seen = new Set<number>();
  const hostInode = await inodeOf(path.join(procRoot, '1', 'ns', 'net'));
  if (hostInode !== undefined) seen.add(hostInode);

  // 1. Named namespaces (stable paths).
  for (const name of await listDir(netnsDir)) {
    const file = path.join(netnsDir, name);
    const inode = await inodeOf(file);
    if (inode === undefined || seen.has(inode)) continue;
    seen.add(inode);
    for (const ip of await addressesOfNamed(name, netnsDir))
      if (wanted.has(ip)) claim({ ip, inode, path: file, source: 'netns-dir' });
  }

  // 2. Every process's namespace, read through /proc without entering it. No early stop once
  // every IP has a namespace: a second claimant further on must still be seen.
  const max = opts.maxNamespaces ?? 10_000;
  for (const entry of await listDir(procRoot)) {
    if (!/^\d+$/.test(entry) || seen.size > max) continue;
    const nsFile = path.join(procRoot, entry, 'ns', 'net');
    const inode = await inodeOf(nsFile);
    if (inode === undefined || seen.has(inode)) continue;
    seen.add(inode);
    for (const ip of await addressesOfProc(path.join(procRoot, entry, 'net')))
      if (wanted.has(ip)) claim({ ip, inode, path: nsFile, source: 'proc', pid: Number(entry) });
  }
  const found = new Map<string, PodNetns>();
  const conflicts = new Map<string, PodNetns[]>();
  for (const [ip, list] of claims) {
    if (list.length === 1) found.set(ip, list[0]!);
    else conflicts.set(ip, list);
  }
  return { found, conflicts };
}

/** Local IPv4 addresses of a namespace from its fib_trie ("|-- a.b.c.d" then "/32 host LOCAL"). */
export function parseFibTrieLocal(text: string): string[] {
  const out = new Set<string>();
  let last: string | undefined;
  for (const line of text.split('\n')) {
    const addr = /\|--\s+(\d+\.\d+\.\d+\.\d+)\s*$/.exec(line);
    if (addr) {
      last = addr[1];
      continue;
    }
    if (last && /^\s*\/32 host LOCAL/.test(line)) out.add(last);
  }
  return [...out];
}

/** IPv6 addresses from net/if_inet6 (32 hex digits per address, one per line). */
export function parseIfInet6(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const hex = line.trim().split(/\s+/)[0];
    if (!hex || !/^[0-9a-f]{32}$/.test(hex)) continue;
    out.push(normalizeIp(hex.match(/.{4}/g)!.join(':')));
  }
  return out;
}

async function addressesOfProc(netDir: string): Promise<string[]> {
  const [v4, v6] = await Promise.all([
    readFile(path.join(netDir, 'fib_trie'), 'utf8').catch(() => ''),
    readFile(path.join(netDir, 'if_inet6'), 'utf8').catch(() => ''),
  ]);
  return [...parseFibTrieLocal(v4), ...parseIfInet6(v6)];
}

async function addressesOfNamed(name: string, netnsDir: string): Promise<string[]> {
  // iproute2's `-netns NAME` resolves names in /var/run/netns only; a namespace bound elsewhere
  // is still found through /proc (step 2) as long as a process lives in it.
  if (path.resolve(netnsDir) !== '/var/run/netns' && path.resolve(netnsDir) !== '/run/netns') return [];
  try {
    const { stdout } = await run('ip', ['-netns', name, '-json', 'addr', 'show'], { timeout: 5000 });
    const links = JSON.parse(stdout) as { addr_info?: { local?: string }[] }[];
    return links
      .flatMap((l) => (l.addr_info ?? []).map((a) => a.local ?? ''))
      .filter((a) => isIP(a))
      .map(normalizeIp);
  } catch {
    return []; // namespace vanished, or no iproute2/permission: /proc may still find it
  }
}

async function inodeOf(file: string): Promise<number | undefined> {
  try {
    return (await stat(file)).ino;
  } catch {
    return undefined;
  }
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return [];
  }
}

function normalizeIp(ip: string): string {
  if (isIP(ip) !== 6) return ip;
  // Canonical IPv6 text via URL parsing (compresses zeros, lower-case).
  return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
}
