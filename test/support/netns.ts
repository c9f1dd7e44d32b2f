// Helpers for e2e tests in a scratch network namespace (root only): whether they can run here,
// the namespace's life, commands and node one-liners inside it, and iptables REDIRECT rules.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { nativeStatus } from '../../src/redirect/native.js';

/** Why netns e2e tests cannot run here (printed when they are skipped), or undefined. */
export function netnsSkipReason(): string | undefined {
  if (process.platform !== 'linux') return 'not Linux';
  if (process.getuid?.() !== 0) return 'not root (network namespaces and iptables need root)';
  const status = nativeStatus();
  if (!status.ok) return status.reason;
  if (spawnSync('ip', ['-V']).status !== 0) return 'no `ip` command (iproute2)';
  if (!iptablesCommand()) return 'no working iptables (install the iptables package)';
  return undefined;
}

/** iptables (nft backend) when it works here, else iptables-legacy; checked in a scratch netns. */
let iptablesCache: string | null | undefined;
export function iptablesCommand(): string | undefined {
  if (iptablesCache !== undefined) return iptablesCache ?? undefined;
  iptablesCache = null;
  // Per process: test files run in parallel workers, each probing once.
  const probe = `ambit-t50-probe-${process.pid}`;
  spawnSync('ip', ['netns', 'del', probe]);
  if (spawnSync('ip', ['netns', 'add', probe]).status !== 0) return undefined;
  try {
    for (const cmd of ['iptables', 'iptables-legacy']) {
      if (spawnSync('ip', ['netns', 'exec', probe, cmd, '-t', 'nat', '-L', '-n']).status === 0) {
        iptablesCache = cmd;
        break;
      }
    }
  } finally {
    spawnSync('ip', ['netns', 'del', probe]);
  }
  return iptablesCache ?? undefined;
}

/** A scratch network namespace for one test file; `create()` in beforeAll, `delete()` in afterAll. */
export class TestNetns {
  /** What the native helpers take (`/var/run/netns/<name>`). */
  readonly path: string;

  constructor(readonly name: string) {
    this.path = `/var/run/netns/${name}`;
  }

  /** (Re)creates the namespace with its loopback up. */
  create(): void {
    this.delete();
    execFileSync('ip', ['netns', 'add', this.name]);
    execFileSync('ip', ['-n', this.name, 'link', 'set', 'lo', 'up']);
  }

  delete(): void {
    spawnSync('ip', ['netns', 'del', this.name]);
  }

  /** Runs a command inside; returns its stdout, throws on failure. */
  exec(cmd: string, ...args: string[]): string {
    return execFileSync('ip', ['netns', 'exec', this.name, cmd, ...args], { encoding: 'utf8' });
  }

  /** iptables inside (the working backend; `ip6tables` of it with `v6`). */
  iptables(args: string[], v6 = false): string {
    const cmd = iptablesCommand()!;
    return this.exec(v6 ? cmd.replace('iptables', 'ip6tables') : cmd, ...args);
  }

  /** Runs a node one-liner inside; resolves with its stdout. */
  async node(script: string): Promise<string> {
    const child = spawn('ip', ['netns', 'exec', this.name, process.execPath, '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const [code] = (await once(child, 'exit')) as [number];
    if (code !== 0) throw new Error(`node in ${this.name} exited ${code}: ${err}`);
    return out;
  }
}

/** iptables arguments of a nat OUTPUT rule redirecting `proto` to `dport` (of `dst`, if given) to `toPort`. */
export function natRedirect(r: {
  proto?: 'tcp' | 'udp';
  dst?: string;
  dport: number;
  toPort: number;
}): string[] {
  return [
    '-t',
    'nat',
    '-A',
    'OUTPUT',
    '-p',
    r.proto ?? 'tcp',
    ...(r.dst ? ['-d', r.dst] : []),
    '--dport',
    String(r.dport),
    '-j',
    'REDIRECT',
    '--to-ports',
    String(r.toPort),
  ];
}
