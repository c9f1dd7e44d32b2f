import { Metadata } from '@grpc/grpc-js';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  CLUSTER_ID_HEADER,
  LocalNodeAuthenticator,
  clusterIdRefusal,
  ensureNodeToken,
  readNodeToken,
} from '../../../src/controlplane/node-auth.js';

let stateDir: string;
beforeEach(async () => {
  stateDir = await mkdtemp(path.join(tmpdir(), 'ambit-nodeauth-'));
});
afterEach(async () => {
  vi.restoreAllMocks();
  await rm(stateDir, { recursive: true, force: true });
});

function bearer(value: string | string[]): Metadata {
  const md = new Metadata();
  for (const v of Array.isArray(value) ? value : [value]) md.add('authorization', v);
  return md;
}

describe('node tokens', () => {
  it('creates a 32-byte hex token with mode 0600 and reuses it', async () => {
    const token = await ensureNodeToken(stateDir, 'node-a');
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    const file = path.join(stateDir, 'nodes', 'node-a.token');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    // Byte for byte, no newline: usable as ztunnel's AUTH_TOKEN file (sent verbatim as a header).
    expect(await readFile(file, 'utf8')).toBe(token);
    expect(await ensureNodeToken(stateDir, 'node-a')).toBe(token);
    expect(await readNodeToken(stateDir, 'node-a')).toBe(token);
    expect(await readNodeToken(stateDir, 'node-b')).toBeUndefined();
  });

  it('gives two concurrent starters the same token', async () => {
    const [a, b] = await Promise.all([
      ensureNodeToken(stateDir, 'node-a'),
      ensureNodeToken(stateDir, 'node-a'),
    ]);
    expect(a).toBe(b);
  });

  it.each(['../etc', 'a/b', '', 'Node', '-a'])('refuses the node name %j', async (name) => {
    await expect(ensureNodeToken(stateDir, name)).rejects.toThrow(RangeError);
  });
});

describe('LocalNodeAuthenticator', () => {
  it('maps a bearer token to its node', async () => {
    const a = await ensureNodeToken(stateDir, 'node-a');
    const b = await ensureNodeToken(stateDir, 'node-b');
    const auth = new LocalNodeAuthenticator(stateDir);
    expect(auth.authenticate(bearer(`Bearer ${a}`))).toBe('node-a');
    expect(auth.authenticate(bearer(`bearer ${b}`))).toBe('node-b');
  });

  it.each([
    ['no header', [] as string[]],
    ['an unknown token', ['Bearer ' + 'f'.repeat(64)]],
    ['another scheme', ['Basic abc']],
    ['a bare token', ['abc']],
    ['an empty bearer', ['Bearer ']],
    ['two headers', ['Bearer x', 'Bearer y']],
  ])('refuses %s', async (_name, values) => {
    await ensureNodeToken(stateDir, 'node-a');
    const auth = new LocalNodeAuthenticator(stateDir);
    expect(auth.authenticate(bearer(values))).toBeUndefined();
  });

  it('finds a node added later, re-reading the directory at most once a second', async () => {
    let now = 1_000_000;
    vi.spyOn(Date, 'now').mockImplementation(() => now);
    const auth = new LocalNodeAuthenticator(stateDir); // no nodes yet
    const token = await ensureNodeToken(stateDir, 'late-node');
    now += 500;
    expect(auth.authenticate(bearer(`Bearer ${token}`))).toBeUndefined(); // too soon to re-read
    now += 600;
    expect(auth.authenticate(bearer(`Bearer ${token}`))).toBe('late-node');
  });
});

describe('clusterid (istiod kube_jwt.go: a caller names its cluster; an unknown one is refused)', () => {
  const md = (...values: string[]) => {
    const m = new Metadata();
    for (const v of values) m.add(CLUSTER_ID_HEADER, v);
    return m;
  };
  it.each([
    ['no header: the local cluster', md(), undefined],
    ['this cluster', md('Kubernetes'), undefined],
    ['another cluster', md('east'), 'client claims to be in cluster "east"'],
    ['the empty name: no claim, as in istiod', md(''), undefined],
    ['two values', md('Kubernetes', 'Kubernetes'), '2 clusterid headers'],
  ])('%s', (_name, metadata, refusal) => {
    const got = clusterIdRefusal(metadata, 'Kubernetes');
    if (refusal === undefined) expect(got).toBeUndefined();
    else expect(got).toContain(refusal);
  });
});
