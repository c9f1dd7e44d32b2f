// `ambit controlplane --kube --kubeconfig FILE` and a real `ambit node` process, as the DaemonSet
// runs them: the node proxy authenticates with a projected-style token (TokenReview), gets
// certificates only for its own node's pods, and follows pods created through the API server.
import { afterEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FakeApiServer } from '../support/fake-apiserver.js';
import { clientFor, node, ns, pod } from '../support/kube.js';
import { AMBIT_BIN } from '../../src/cli/mesh-runner.js';
import { POD } from '../../src/config/kube-resources.js';

const API = '127.0.55.30';
const CP = '127.0.55.31';
const NODE_IP = '127.0.55.32';
const SYSTEM = 'ambit-system';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Proc {
  lines: Record<string, unknown>[];
  waitFor(pred: (l: Record<string, unknown>) => boolean, ms?: number): Promise<Record<string, unknown>>;
}

function start(args: string[], env: Record<string, string> = {}): Proc {
  const child: ChildProcess = spawn(process.execPath, [AMBIT_BIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env: { ...process.env, AMBIT_LOG_LEVEL: 'debug', ...env },
  });
  const lines: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  let buf = '';
  const onData = (c: Buffer) => {
    buf += c.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    for (const p of parts) {
      try {
        lines.push(JSON.parse(p) as Record<string, unknown>);
      } catch {
        lines.push({ msg: p });
      }
    }
    for (const w of waiters) w();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 5000).unref();
      }),
  );
  const waitFor = (pred: (l: Record<string, unknown>) => boolean, ms = 20_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const check = () => {
        const hit = lines.find(pred);
        if (!hit) return;
        waiters.delete(check);
        clearTimeout(timer);
        resolve(hit);
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(
          new Error(
            `no matching line within ${ms} ms; last: ${lines
              .slice(-5)
              .map((l) => String(l.msg))
              .join(' | ')}`,
          ),
        );
      }, ms);
      waiters.add(check);
      check();
    });
  return { lines, waitFor };
}

describe('ambit controlplane --kube with a real node proxy', () => {
  it('serves a node proxy authenticated by TokenReview, for its own node only, following API changes', async () => {
    const api = await new FakeApiServer({ host: API, bookmarkIntervalMs: 500 }).start();
    cleanups.push(() => api.stop());
    const root = await mkdtemp(path.join(tmpdir(), 'ambit-kube-cli-'));
    cleanups.push(() => rm(root, { recursive: true, force: true }));
    api.put(ns(SYSTEM, {}));
    api.put(node('node-1', NODE_IP));
    api.put(node('node-2', '127.0.55.33'));
    api.put(ns('demo'));
    api.put(pod('sleep', 'demo', 'node-1', '127.0.55.40', { sa: 'sleep' }));
    api.put(pod('remote', 'demo', 'node-2', '127.0.55.42', { sa: 'remote' }));
    const np = api.put(pod('ambit-node-abcde', SYSTEM, 'node-1', NODE_IP, { sa: 'ambit-node' }));
    const token = api.issueToken({
      namespace: SYSTEM,
      serviceAccount: 'ambit-node',
      audiences: ['istio-ca'],
      pod: { name: np.metadata.name!, uid: np.metadata.uid! },
      nodeName: 'node-1',
    });
    const kubeconfig = path.join(root, 'kubeconfig');
    await writeFile(kubeconfig, api.kubeconfig());

    const cp = start(
      [
        'controlplane',
        '--kube',
        '--kubeconfig',
        kubeconfig,
        '--namespace',
        SYSTEM,
        '--listen',
        `${CP}:15012`,
        '--state',
        path.join(root, 'cp'),
      ],
      { POD_NAME: 'cp-0' },
    );
    await cp.waitFor((l) => l.msg === 'control plane ready');

    // What the DaemonSet mounts: the projected token and the trust bundle ConfigMap.
    const state = path.join(root, 'node');
    await mkdir(path.join(state, 'nodes'), { recursive: true });
    await mkdir(path.join(state, 'ca'), { recursive: true });
    await writeFile(path.join(state, 'nodes', 'node-1.token'), token + '\n');
    const bundle = api.get('ConfigMap', SYSTEM, 'istio-ca-root-cert');
    expect(bundle).toBeDefined();
    await writeFile(
      path.join(state, 'ca', 'root-cert.pem'),
      (bundle!.data as Record<string, string>)['root-cert.pem']!,
    );

    const proxy = start([
      'node',
      '--name',
      'node-1',
      '--ip',
      NODE_IP,
      '--state',
      state,
      '--controlplane',
      `${CP}:15012`,
    ]);
    const added = await proxy.waitFor(
      (l) => l.msg === 'pod added to the mesh on this node' && l.pod === 'demo/sleep',
    );
    expect(added.identity).toBe('spiffe://cluster.local/ns/demo/sa/sleep');

    await clientFor(api).create(POD, 'demo', {
      metadata: { name: 'fresh', namespace: 'demo', labels: { app: 'fresh' } },
      spec: { nodeName: 'node-1', serviceAccountName: 'fresh', containers: [{ name: 'app' }] },
    });
    api.put({ ...api.get('Pod', 'demo', 'fresh')!, status: { phase: 'Running', podIP: '127.0.55.41' } });
    const fresh = await proxy.waitFor(
      (l) => l.msg === 'pod added to the mesh on this node' && l.pod === 'demo/fresh',
    );
    expect(fresh.identity).toBe('spiffe://cluster.local/ns/demo/sa/fresh');
    expect(proxy.lines.some((l) => l.pod === 'demo/remote')).toBe(false);
    expect(cp.lines.some((l) => l.msg === 'certificate request refused')).toBe(false);
  }, 60_000);
});
