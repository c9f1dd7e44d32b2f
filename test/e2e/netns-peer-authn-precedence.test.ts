// PeerAuthentication precedence in a real mesh (issue 13 divergence 7): two workload-selector
// PeerAuthentications in conflict on one workload, STRICT and PERMISSIVE. Istio applies the one
// with the oldest creationTimestamp (istiod's convertedSelectorPeerAuthentications,
// pilot/pkg/serviceregistry/kube/controller/ambient/authorization.go; config/precedence.ts), not
// the first by name. The observable difference is a plaintext client outside the mesh: refused
// under STRICT, admitted under PERMISSIVE. Only netns mode has plaintext inbound capture (in local
// mode a non-mesh client reaches the app directly and no proxy sees it), so this runs in real
// network namespaces and needs root; it says why when it skips.
//   demo/target   node-1  10.200.231.10  echo on 8080, ambient
//   legacy/client node-1  10.200.231.11  outside the mesh (plaintext curl)
// Namespaces ambit-h2pa-*, removed at the end, also after a failure.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  curl,
  hasCurl,
  until,
  waitForLog,
  netnsNamespace,
  netnsNode,
  netnsPod,
  type MeshLog,
  startNetnsE2e,
  type NetnsE2e,
} from '../support/netns-e2e.js';
import { netnsPrerequisites } from '../../src/cli/up-netns.js';

const PREFIX = 'ambit-h2pa-';
const CLIENT = `${PREFIX}pod-legacy-client`;
const TARGET_URL = 'http://10.200.231.10:8080/';
const OLDER = '2024-01-01T00:00:00Z';
const NEWER = '2025-06-01T00:00:00Z';

const skip = (await netnsPrerequisites()) ?? ((await hasCurl()) ? undefined : 'curl is not installed');
if (skip) console.log(`e2e PeerAuthentication precedence skipped: ${skip}`);

const MESH = [
  netnsNamespace('demo', true),
  netnsNamespace('legacy', false),
  netnsNode('node-1', '127.0.230.1'),
  netnsPod({ namespace: 'demo', name: 'target', node: 'node-1', ip: '127.0.231.10', app: true }),
  netnsPod({ namespace: 'legacy', name: 'client', node: 'node-1', ip: '127.0.231.11', app: false }),
].join('---\n');

/**
 * The two conflicting policies. Names are chosen so that name order ("a-strict" first) and age
 * order disagree in one of the two states: a decision by name would get that state wrong.
 */
const policies = (strictCreated: string, permissiveCreated: string) =>
  [
    ['a-strict', 'STRICT', strictCreated],
    ['z-permissive', 'PERMISSIVE', permissiveCreated],
  ]
    .map(
      ([name, mode, created]) => `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: ${name}, namespace: demo, creationTimestamp: "${created}"}
spec:
  selector: {matchLabels: {app: target}}
  mtls: {mode: ${mode}}
`,
    )
    .join('---\n');

let e2e: NetnsE2e | undefined;
const logs: MeshLog[] = [];

/** Whether a plaintext curl from outside the mesh gets the target's answer now. */
const admitted = async () => (await curl(CLIENT, TARGET_URL, 2).catch(() => '')).includes('demo/target');

describe.skipIf(!!skip)('PeerAuthentication precedence in network namespaces', () => {
  beforeAll(async () => {
    e2e = await startNetnsE2e({
      prefix: PREFIX,
      files: { 'mesh.yaml': MESH, 'peer-authn.yaml': policies(OLDER, NEWER) },
      logs,
    });
  }, 60_000);

  afterAll(async () => {
    await e2e?.stop();
  }, 30_000);

  it('the older STRICT wins over a newer PERMISSIVE: plaintext from outside the mesh is refused', async () => {
    await expect(curl(CLIENT, TARGET_URL, 3)).rejects.toThrow();
    const denied = await waitForLog(
      logs,
      (l) => l.rec.msg === 'connection denied by policy' && l.rec['dst.workload'] === 'target',
    );
    expect(String(denied.rec.reason)).toMatch(/PeerAuthentication STRICT/);
    expect(denied.rec['src.ip']).toBe('10.200.231.11');
  });

  it('swapping the timestamps (hot reload) flips it: the older PERMISSIVE admits plaintext', async () => {
    const from = logs.length;
    await writeFile(path.join(e2e!.configDir, 'peer-authn.yaml'), policies(NEWER, OLDER));
    // The new config reaches the node proxy within a second or two; poll the real connection.
    await until(admitted, 10_000);
    const complete = await waitForLog(
      logs,
      (l) =>
        l.rec.msg === 'connection complete' &&
        l.rec.listener === 'plaintext' &&
        l.rec['dst.workload'] === 'target',
      5_000,
      from,
    );
    expect(complete.rec['src.addr']).toMatch(/^10\.200\.231\.11:/);
  });

  it('and swapping back refuses again', async () => {
    await writeFile(path.join(e2e!.configDir, 'peer-authn.yaml'), policies(OLDER, NEWER));
    await until(async () => !(await admitted()), 10_000);
    await expect(curl(CLIENT, TARGET_URL, 3)).rejects.toThrow();
  });
});
