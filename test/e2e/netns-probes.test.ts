// Kubelet probes under PeerAuthentication STRICT, in real network namespaces (root). Istio SNATs
// what the node itself sends to a captured pod to 169.254.7.127 and lets that source past inbound
// capture (istio/istio cni/pkg/iptables/iptables.go AppendHostRules + AppendInpodRules); ambit does
// the same (src/redirect/host-rules.ts, iptables.ts) and drops any packet that *arrives* at the
// node claiming that address, so nobody else can pass as the prober.
//   demo/app        node-1  10.200.171.10  echo on 8080; namespace demo is ambient and STRICT
//   legacy/attacker node-1  10.200.171.11  outside the mesh, same node as app (forges the source)
//   legacy/remote   node-2  10.200.171.12  outside the mesh, another node (plaintext client)
//   demo/client     node-2  10.200.171.13  in the mesh (HBONE still works under STRICT)
// Namespaces ambit-t12p-*, removed at the end, also after a failure.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  curl,
  hasCurl,
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

const PREFIX = 'ambit-t12p-';
const NODE1 = `${PREFIX}node-1`;
const ROUTER = `${PREFIX}router`;
const APP_NS = `${PREFIX}pod-demo-app`;
const ATTACKER = `${PREFIX}pod-legacy-attacker`;
const REMOTE = `${PREFIX}pod-legacy-remote`;
const CLIENT = `${PREFIX}pod-demo-client`;
const APP = '10.200.171.10';
const PROBE_IP = '169.254.7.127';

const skip = (await netnsPrerequisites()) ?? ((await hasCurl()) ? undefined : 'curl is not installed');
if (skip) console.log(`e2e kubelet probes under STRICT skipped: ${skip}`);

const pod = (ns: string, name: string, node: string, ip: string, app: boolean) =>
  netnsPod({ namespace: ns, name, node, ip, app });

const MESH = [
  netnsNamespace('demo', true),
  netnsNamespace('legacy', false),
  netnsNode('node-1', '127.0.170.1'),
  netnsNode('node-2', '127.0.170.2'),
  pod('demo', 'app', 'node-1', '127.0.171.10', true),
  pod('legacy', 'attacker', 'node-1', '127.0.171.11', false),
  pod('legacy', 'remote', 'node-2', '127.0.171.12', false),
  pod('demo', 'client', 'node-2', '127.0.171.13', false),
  `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: strict, namespace: demo}\nspec:\n  mtls: {mode: STRICT}\n`,
].join('---\n');

let e2e: NetnsE2e | undefined;
let mesh: NetnsMesh | undefined;
const logs: MeshLog[] = [];

describe.skipIf(!!skip)('kubelet probes under STRICT in network namespaces', () => {
  beforeAll(async () => {
    e2e = await startNetnsE2e({ prefix: PREFIX, files: { 'mesh.yaml': MESH }, logs });
    mesh = e2e.mesh;
    // The app's pod is captured (its rules are in place) before anything is sent to it.
    await until(
      async () => (await nsSh(APP_NS, 'iptables-save', '-t', 'nat')).includes(':AMBIT_PRERT'),
      15_000,
    );
    // Counts every packet that reaches the app's pod claiming the probe address (no target: count only).
    await nsSh(APP_NS, 'iptables', '-t', 'raw', '-A', 'PREROUTING', '-s', `${PROBE_IP}/32`, '-p', 'tcp');
  }, 90_000);

  afterAll(async () => {
    await e2e?.stop();
  }, 30_000);

  it('an HTTP probe from the node namespace reaches the app on a STRICT pod, seen as 169.254.7.127', async () => {
    // What the kubelet does: plain HTTP from the node to podIP:port.
    const body = JSON.parse(await curl(NODE1, `http://${APP}:8080/healthz/ready`)) as {
      pod: string;
      path: string;
      remote: string;
    };
    expect(body.pod).toBe('demo/app');
    expect(body.path).toBe('/healthz/ready');
    expect(body.remote).toMatch(/^169\.254\.7\.127:/);
    // The node's rule that did it is per pod and only for the node's own sockets.
    expect(await nsSh(NODE1, 'iptables-save', '-t', 'nat')).toContain(
      `-A AMBIT_POSTRT -d ${APP}/32 -p tcp -m owner --socket-exists -j SNAT --to-source ${PROBE_IP}`,
    );
  });

  it('plaintext from a pod on another node and from the router namespace is refused by STRICT', async () => {
    const from = logs.length;
    await expect(curl(REMOTE, `http://${APP}:8080/`, 3)).rejects.toThrow();
    await expect(curl(ROUTER, `http://${APP}:8080/`, 3)).rejects.toThrow();
    const denied = await waitForLog(
      logs,
      (l) =>
        l.rec.msg === 'connection denied by policy' &&
        l.rec['dst.workload'] === 'app' &&
        l.rec['src.ip'] === '10.200.171.12',
      5000,
      from,
    );
    expect(String(denied.rec.reason)).toMatch(/PeerAuthentication STRICT/);
    await waitForLog(
      logs,
      (l) =>
        l.rec.msg === 'connection denied by policy' &&
        l.rec['dst.workload'] === 'app' &&
        l.rec['src.ip'] === '10.200.0.1',
      5000,
      from,
    );
  });

  it('a pod in the mesh still reaches the STRICT pod over HBONE', async () => {
    const body = JSON.parse(await curl(CLIENT, `http://${APP}:8080/`)) as { pod: string; remote: string };
    expect(body.pod).toBe('demo/app');
    expect(body.remote).toMatch(/^10\.200\.171\.13:/);
  });

  it('probes keep working while the node proxy is dead, and it is restarted in its namespace (supervision)', async () => {
    const pid = mesh!.pid('node/node-1')!;
    const from = logs.length;
    process.kill(pid, 'SIGKILL');
    // The rules outlive the proxy: the probe goes straight to the app meanwhile...
    expect(JSON.parse(await curl(NODE1, `http://${APP}:8080/`)).remote).toMatch(/^169\.254\.7\.127:/);
    // ...and the supervisor brings the proxy back, which finds the node's probe rules in place.
    await waitForLog(
      logs,
      (l) => l.component === 'ambit' && String(l.rec.msg).startsWith('restarting node/node-1 in '),
      5000,
      from,
    );
    const reused = await waitForLog(
      logs,
      (l) => l.component === 'node/node-1' && l.rec.msg === 'node agent: kubelet probe rules on the node',
      15_000,
      from,
    );
    expect(reused.rec.rules).toBe('reused');
    await waitForLog(
      logs,
      (l) => l.component === 'node/node-1' && l.rec.msg === 'node proxy ready',
      15_000,
      from,
    );
    expect(mesh!.pid('node/node-1')).not.toBe(pid);
    expect(JSON.parse(await curl(CLIENT, `http://${APP}:8080/`)).pod).toBe('demo/app');
  });

  it('a pod on the same node forging 169.254.7.127 gets no packet to the app pod', async () => {
    await nsSh(ATTACKER, 'ip', 'addr', 'add', `${PROBE_IP}/32`, 'dev', 'lo');
    // Without node-1's anti-spoof drop the forged packets do reach the pod (what this test guards).
    await nsSh(NODE1, 'iptables', ...DROP_RULE('-D'));
    try {
      await nsSh(APP_NS, 'iptables', '-t', 'raw', '-Z', 'PREROUTING');
      await forgedGet(ATTACKER);
      expect(await forgedPacketsAtApp()).toBeGreaterThan(0);
    } finally {
      await nsSh(NODE1, 'iptables', ...DROP_RULE('-A'));
    }
    await nsSh(APP_NS, 'iptables', '-t', 'raw', '-Z', 'PREROUTING');
    const r = await forgedGet(ATTACKER);
    expect(r.ok).toBe(false);
    expect(await forgedPacketsAtApp()).toBe(0); // dropped on the node, before routing to the pod
  });

  it('a forged 169.254.7.127 from the network, with a return path, is dropped; without the node rule it would get in', async () => {
    // The router namespace plays the network (or another node): it owns the probe address, so the
    // app's replies come back to it and a handshake can complete — the strongest forger.
    await nsSh(ROUTER, 'ip', 'addr', 'add', `${PROBE_IP}/32`, 'dev', 'lo');
    // The hole, proven real: with node-1's anti-spoof drop removed, the forged connection reaches
    // the app past STRICT. The rule is put back at once.
    await nsSh(NODE1, 'iptables', ...DROP_RULE('-D'));
    let open: { ok: boolean; data?: string };
    try {
      open = await forgedGet(ROUTER);
    } finally {
      await nsSh(NODE1, 'iptables', ...DROP_RULE('-A'));
    }
    expect(open.ok, JSON.stringify(open)).toBe(true);
    expect(open.data).toMatch(/"remote":\s*"169\.254\.7\.127:/); // the app saw the forged source
    // With the rule (as the agent installs it), the same attack gets nothing to the pod.
    await nsSh(APP_NS, 'iptables', '-t', 'raw', '-Z', 'PREROUTING');
    const r = await forgedGet(ROUTER);
    expect(r.ok).toBe(false);
    expect(await forgedPacketsAtApp()).toBe(0);
    // And the genuine probe still works.
    expect(JSON.parse(await curl(NODE1, `http://${APP}:8080/`)).remote).toMatch(/^169\.254\.7\.127:/);
  });
});

/** node-1's anti-spoof rule (host-rules.ts), to take out and put back (-D / -A). */
const DROP_RULE = (op: '-A' | '-D') => [
  '-t',
  'raw',
  op,
  'AMBIT_HOST_PRERT',
  '-s',
  `${PROBE_IP}/32`,
  '-j',
  'DROP',
];

/** An HTTP GET to the app from `netns`, bound to 169.254.7.127; resolves with what happened. */
async function forgedGet(netns: string): Promise<{ ok: boolean; data?: string; err?: string }> {
  const script = `
    const s = require('net').connect({ host: '${APP}', port: 8080, localAddress: '${PROBE_IP}' });
    let data = '';
    const done = (o) => { console.log(JSON.stringify(o)); process.exit(0); };
    s.setTimeout(2500, () => done({ ok: false, err: 'timeout' }));
    s.on('connect', () => s.write('GET /forged HTTP/1.0\\r\\n\\r\\n'));
    s.on('data', (c) => (data += c));
    s.on('end', () => done({ ok: data.length > 0, data }));
    s.on('error', (e) => done({ ok: false, err: e.code }));
  `;
  return JSON.parse(await sh('ip', ['netns', 'exec', netns, process.execPath, '-e', script])) as {
    ok: boolean;
    data?: string;
    err?: string;
  };
}

/** Packets that reached the app's pod with source 169.254.7.127 since the last -Z. */
async function forgedPacketsAtApp(): Promise<number> {
  const out = await nsSh(APP_NS, 'iptables', '-t', 'raw', '-L', 'PREROUTING', '-v', '-x', '-n');
  const line = out.split('\n').find((l) => l.includes(PROBE_IP));
  return Number(/^\s*(\d+)/.exec(line ?? '')?.[1] ?? NaN);
}
