// Pod discovery on a node: pod IP → network namespace. The parsers are tested on /proc text; the
// scan itself on real namespaces (root only: creating a network namespace needs CAP_SYS_ADMIN).
import { afterAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { readlink } from 'node:fs/promises';
import { eventually } from '../../support/kube.js';
import { findPodNetns, parseFibTrieLocal, parseIfInet6 } from '../../../src/config/kube-pod-netns.js';

const run = promisify(execFile);
const FIB = `Main:
  +-- 0.0.0.0/0 3 0 5
     +-- 10.244.1.0/24 2 0 2
        |-- 10.244.1.7
           /32 host LOCAL
        |-- 10.244.1.255
           /32 link BROADCAST
Local:
     +-- 127.0.0.0/8 2 0 2
           |-- 127.0.0.1
              /32 host LOCAL
`;

describe('pod netns discovery: parsing /proc', () => {
  it('reads the local IPv4 addresses of a namespace from fib_trie', () => {
    expect(parseFibTrieLocal(FIB).sort()).toEqual(['10.244.1.7', '127.0.0.1']);
  });
  it('reads IPv6 addresses from if_inet6 in canonical form', () => {
    const text =
      'fd000000000000000000000000000007 02 80 00 80     eth0\n00000000000000000000000000000001 01 80 10 80       lo\n';
    expect(parseIfInet6(text)).toEqual(['fd00::7', '::1']);
  });
});

const root = process.getuid?.() === 0;
if (!root) console.log('pod netns discovery on real namespaces skipped: needs root (CI runs as root)');
const NS = ['ambit-k56a', 'ambit-k56b'];
const procs: ChildProcess[] = [];

describe.skipIf(!root)('pod netns discovery: real namespaces (root)', () => {
  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    for (const n of NS) await run('ip', ['netns', 'del', n]).catch(() => undefined);
  });

  it('finds a pod IP in a named namespace and in a namespace only a process holds', async () => {
    for (const n of NS) await run('ip', ['netns', 'del', n]).catch(() => undefined);
    // a: a CNI-style named namespace; b: the same, but we unbind the name after a process enters,
    // so only /proc/<pid>/ns/net leads to it (a runtime that keeps no bind mount).
    for (const [i, n] of NS.entries()) {
      await run('ip', ['netns', 'add', n]);
      await run('ip', ['-n', n, 'link', 'set', 'lo', 'up']);
      await run('ip', ['-n', n, 'addr', 'add', `127.0.56.${10 + i}/32`, 'dev', 'lo']);
    }
    const holder = spawn('ip', ['netns', 'exec', NS[1]!, 'sleep', '30'], { stdio: 'ignore' });
    procs.push(holder);
    // Wait until `ip netns exec` has entered the namespace (its ns link differs from ours).
    const own = await readlink('/proc/self/ns/net');
    await eventually(
      async () => (await readlink(`/proc/${holder.pid}/ns/net`).catch(() => own)) !== own,
      5000,
      'holder in netns',
    );
    await run('ip', ['netns', 'del', NS[1]!]);
    const found = await findPodNetns(['127.0.56.10', '127.0.56.11', '127.0.56.99']);
    expect(found.get('127.0.56.10')).toMatchObject({ source: 'netns-dir', path: `/var/run/netns/${NS[0]}` });
    const viaProc = found.get('127.0.56.11');
    expect(viaProc).toMatchObject({ source: 'proc' });
    expect(viaProc!.path).toMatch(/^\/proc\/\d+\/ns\/net$/);
    expect(found.has('127.0.56.99')).toBe(false);
  });
});

if (!root)
  console.log(
    'skipped real-namespace pod discovery: needs root (CAP_SYS_ADMIN to create network namespaces)',
  );
