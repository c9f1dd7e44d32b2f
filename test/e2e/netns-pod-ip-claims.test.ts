// Pod-netns discovery by IP (as on Kubernetes) with a pod that claims its neighbour's address
// (root, real namespaces). The node agent must refuse the ambiguous IP — the victim is not
// captured, the reason is logged and shown by readiness — and never open the victim's listeners in
// whichever namespace it found first. Removing the forged address lets the retry capture it.
//   demo/victim     node-1  10.200.172.10  echo on 8080, in the mesh
//   legacy/squatter node-1  10.200.172.11  outside the mesh; adds 10.200.172.10 to its own lo
//   demo/client     node-1  10.200.172.12  in the mesh
// Namespaces ambit-t12c-*, removed at the end, also after a failure.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  nsSh,
  sh,
  until,
  waitForLog,
  netnsNamespace,
  netnsNode,
  netnsPod,
  type MeshLog,
  startNetnsE2e,
  type NetnsE2e,
} from '../support/netns-e2e.js';
import { netnsPrerequisites, type NetnsMesh } from '../../src/cli/up-netns.js';

const PREFIX = 'ambit-t12c-';
const NODE1 = `${PREFIX}node-1`;
const VICTIM_NS = `${PREFIX}pod-demo-victim`;
const SQUATTER = `${PREFIX}pod-legacy-squatter`;
const VICTIM = '10.200.172.10';

const skip = await netnsPrerequisites();
if (skip) console.log(`e2e pod IP claimed by two namespaces skipped: ${skip}`);

const pod = (ns: string, name: string, ip: string, app: boolean) =>
  netnsPod({ namespace: ns, name, node: 'node-1', ip, app });

const MESH = [
  netnsNamespace('demo', true),
  netnsNamespace('legacy', false),
  netnsNode('node-1', '127.0.172.1'),
  pod('demo', 'victim', '127.0.172.10', true),
  pod('legacy', 'squatter', '127.0.172.11', false),
  pod('demo', 'client', '127.0.172.12', false),
].join('---\n');

let e2e: NetnsE2e | undefined;
let mesh: NetnsMesh | undefined;
const logs: MeshLog[] = [];

describe.skipIf(!!skip)('a pod IP claimed by two network namespaces', () => {
  beforeAll(async () => {
    e2e = await startNetnsE2e({
      prefix: PREFIX,
      files: { 'mesh.yaml': MESH },
      logs,
      discoverPodsByIp: true, // as on Kubernetes: the namespace is found by the pod's IP
    });
    mesh = e2e.mesh;
  }, 90_000);

  afterAll(async () => {
    await e2e?.stop();
  }, 30_000);

  it('finds an unambiguous pod by its IP and captures it', async () => {
    await waitForLog(
      logs,
      (l) => l.component === 'node/node-1' && l.rec.msg === 'pod captured' && l.rec.pod === 'demo/victim',
      15_000,
    );
    await until(async () => (await nsSh(VICTIM_NS, 'ss', '-Hltn', 'sport = :15008')).trim() !== '', 5000);
  });

  it('refuses the victim once another namespace also has its IP: not captured, reason logged, nothing opened in the squatter', async () => {
    await nsSh(SQUATTER, 'ip', 'addr', 'add', `${VICTIM}/32`, 'dev', 'lo');
    const from = logs.length;
    await mesh!.restart('node/node-1'); // the new agent looks every pod up again
    const refused = await waitForLog(
      logs,
      (l) =>
        l.component === 'node/node-1' &&
        l.rec.pod === 'demo/victim' &&
        /is a local address in 2 network namespaces/.test(String(l.rec.err)),
      15_000,
      from,
    );
    expect(String(refused.rec.err)).toContain(`/var/run/netns/${VICTIM_NS}`);
    expect(String(refused.rec.err)).toContain(`/var/run/netns/${SQUATTER}`);
    // Readiness says which pod and why.
    const ready = await sh('ip', [
      'netns',
      'exec',
      NODE1,
      'curl',
      '-s',
      '-m',
      '3',
      '-w',
      '\n%{http_code}',
      'http://10.200.172.1:15021/healthz/ready',
    ]);
    expect(ready).toMatch(/demo\/victim.*2 network namespaces/);
    expect(ready.trim().endsWith('503')).toBe(true);
    // Not the first match: no listener of the victim's in the squatter's namespace, nor in its own.
    for (const ns of [SQUATTER, VICTIM_NS])
      expect(await nsSh(ns, 'ss', '-Hltn'), ns).not.toMatch(/:(15008|15006|15001)\b/);
    // The client pod (unambiguous) was captured as usual.
    expect(
      logs
        .slice(from)
        .some(
          (l) => l.component === 'node/node-1' && l.rec.msg === 'pod captured' && l.rec.pod === 'demo/client',
        ),
    ).toBe(true);
  });

  it('captures the victim again once the forged address is gone (retried)', async () => {
    const from = logs.length;
    await nsSh(SQUATTER, 'ip', 'addr', 'del', `${VICTIM}/32`, 'dev', 'lo');
    await waitForLog(
      logs,
      (l) => l.component === 'node/node-1' && l.rec.msg === 'pod captured' && l.rec.pod === 'demo/victim',
      15_000,
      from,
    );
    await until(async () => (await nsSh(VICTIM_NS, 'ss', '-Hltn', 'sport = :15008')).trim() !== '', 5000);
  });
});
