// Attacks on the control plane's xDS and CA port (15012), as a real client over real TLS against
// a real control plane on 127.0.142.x (Kubernetes mode, fake API server) and 127.0.143.x (local
// mode): a node token asking for a waypoint's or another node's pod identity (issue 12, hole 4),
// oversized CSRs and TTLs, xDS requests over the name and size caps, and a flood of bad tokens.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { captureLogger } from '../support/capture-logger.js';
import { askCert } from '../support/ask-cert.js';
import { FakeApiServer } from '../support/fake-apiserver.js';
import { clientFor, eventually, node, nodeProxyTokens, ns, pod } from '../support/kube.js';
import { ControlPlane, CONTROL_PLANE_SERVER_NAME } from '../../src/controlplane/server.js';
import { ensureNodeToken } from '../../src/controlplane/node-auth.js';
import { DEFAULT_MAX_EXTRA_NAMES, MAX_REQUEST_BYTES } from '../../src/controlplane/xds-server.js';
import { DEFAULT_MAX_TTL_SECONDS } from '../../src/controlplane/ca.js';
import { CaClient } from '../../src/identity/ca-client.js';
import { isAmbitError } from '../../src/common/errors.js';
import {
  adsServiceDefinition,
  TYPE_ADDRESS,
  type DeltaRequestMsg,
  type DeltaResponseMsg,
} from '../../src/xds/proto.js';

const SYSTEM = 'ambit-system';
const WAYPOINT_ID = 'spiffe://cluster.local/ns/demo/sa/waypoint';

const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const refusal = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e as Error,
  );

const WAYPOINT_GATEWAY = (annotations: Record<string, string> = {}) => ({
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'Gateway',
  metadata: { name: 'waypoint', namespace: 'demo', annotations },
  spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
});

describe("Kubernetes mode: a node token gets only its own pods' identities (issue 12, hole 4)", () => {
  const API = '127.0.142.10';
  const CP = '127.0.142.20';
  let api: FakeApiServer;
  let cp: ControlPlane;
  let lines: Record<string, unknown>[];
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    api = await new FakeApiServer({ host: API, bookmarkIntervalMs: 200 }).start();
    cleanups.push(() => api.stop());
    api.put(ns(SYSTEM, {}));
    api.put(node('node-1', '127.0.142.101'));
    api.put(node('node-2', '127.0.142.102'));
    api.put(ns('demo'));
    api.put(pod('sleep', 'demo', 'node-1', '10.1.1.10', { sa: 'sleep' }));
    api.put(pod('echo', 'demo', 'node-2', '10.1.2.10', { sa: 'echo' }));
    api.put(WAYPOINT_GATEWAY());
    Object.assign(
      tokens,
      nodeProxyTokens(api, SYSTEM, { 'node-1': '127.0.142.101', 'node-2': '127.0.142.102' }),
    );
    const stateDir = await mkdtemp(path.join(tmpdir(), 'ambit-adv-cp-'));
    const captured = captureLogger();
    lines = captured.lines as Record<string, unknown>[];
    cp = new ControlPlane({
      stateDir,
      listen: `${CP}:15012`,
      logger: captured.logger,
      kube: {
        client: clientFor(api),
        namespace: SYSTEM,
        podName: 'cp-0',
        waypointImage: 'ambit:test',
        resyncMs: 500,
      },
    });
    cleanups.push(async () => {
      await cp.stop();
      await rm(stateDir, { recursive: true, force: true });
    });
    await cp.start();
    // The planner still "places" the waypoint on the first Node by name: the position of the hole.
    await eventually(
      () => cp.waypointStatuses().find((w) => w.programmed && w.node === 'node-1'),
      5000,
      'waypoint planned',
    );
  }, 30_000);

  it("node-1's token asking for the waypoint's identity is refused, with a clear error and a log line", async () => {
    const e = await refusal(askCert(CP, cp.ca!.rootCertPem, tokens['node-1']!, 'demo', 'waypoint'));
    expect(isAmbitError(e, 'CA_PERMISSION_DENIED')).toBe(true);
    expect(e!.message).toContain(`node node-1 may not obtain a certificate for ${WAYPOINT_ID}`);
    expect(e!.message).toContain("only the waypoint's own service-account token may obtain it");
    await eventually(() =>
      lines.find(
        (l) => l.msg === 'certificate request refused' && l.node === 'node-1' && l.identity === WAYPOINT_ID,
      ),
    );
  });

  it("node-1's token asking for a pod on node-2 is refused; its own pod is signed", async () => {
    const e = await refusal(askCert(CP, cp.ca!.rootCertPem, tokens['node-1']!, 'demo', 'echo'));
    expect(isAmbitError(e, 'CA_PERMISSION_DENIED')).toBe(true);
    expect(e!.message).toContain('no pod with that service account is scheduled on it');
    expect(await askCert(CP, cp.ca!.rootCertPem, tokens['node-1']!, 'demo', 'sleep')).toHaveLength(2);
  });

  it("the waypoint pod's own token gets the waypoint identity, and nothing else", async () => {
    const wp = api.put(
      pod('waypoint-0', 'demo', 'node-2', '10.1.2.20', {
        sa: 'waypoint',
        labels: { 'istio.io/dataplane-mode': 'none' },
      }),
    );
    const wpToken = api.issueToken({
      namespace: 'demo',
      serviceAccount: 'waypoint',
      audiences: ['istio-ca'],
      pod: { name: 'waypoint-0', uid: wp.metadata.uid! },
    });
    expect(await askCert(CP, cp.ca!.rootCertPem, wpToken, 'demo', 'waypoint')).toHaveLength(2);
    expect(
      isAmbitError(
        await refusal(askCert(CP, cp.ca!.rootCertPem, wpToken, 'demo', 'sleep')),
        'CA_PERMISSION_DENIED',
      ),
    ).toBe(true);
    // And node-2, where that pod runs, still may not: the waypoint authenticates itself.
    expect(
      isAmbitError(
        await refusal(askCert(CP, cp.ca!.rootCertPem, tokens['node-2']!, 'demo', 'waypoint')),
        'CA_PERMISSION_DENIED',
      ),
    ).toBe(true);
  });

  it('a flood of one bad token is one TokenReview (negative cache), and each refusal is UNAUTHENTICATED', async () => {
    const reviews = () => api.requests.filter((r) => r.path.endsWith('/tokenreviews')).length;
    const before = reviews();
    const bad = 'forged-' + 'x'.repeat(40);
    const results = await Promise.all(
      Array.from({ length: 100 }, () => refusal(askCert(CP, cp.ca!.rootCertPem, bad, 'demo', 'sleep'))),
    );
    expect(results.every((e) => isAmbitError(e, 'CA_UNAUTHENTICATED'))).toBe(true);
    for (let i = 0; i < 20; i++)
      expect(
        isAmbitError(
          await refusal(askCert(CP, cp.ca!.rootCertPem, bad, 'demo', 'sleep')),
          'CA_UNAUTHENTICATED',
        ),
      ).toBe(true);
    expect(reviews() - before).toBe(1);
  });
});

describe('local mode: only the node that runs the waypoint process gets its identity', () => {
  const CP = '127.0.143.20';
  let cp: ControlPlane;
  let stateDir: string;
  let lines: Record<string, unknown>[];
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'ambit-adv-local-'));
    cleanups.push(() => rm(root, { recursive: true, force: true }));
    stateDir = path.join(root, 'state');
    const configDir = path.join(root, 'config');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(configDir, { recursive: true });
    const docs = [
      `apiVersion: v1\nkind: Namespace\nmetadata: {name: demo, labels: {istio.io/dataplane-mode: ambient}}`,
      `apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\nstatus: {addresses: [{type: InternalIP, address: 127.0.143.1}]}`,
      `apiVersion: v1\nkind: Node\nmetadata: {name: node-2}\nstatus: {addresses: [{type: InternalIP, address: 127.0.143.2}]}`,
      `apiVersion: v1\nkind: Pod\nmetadata: {name: sleep, namespace: demo}\nspec: {nodeName: node-1, serviceAccountName: sleep}\nstatus: {podIP: 127.0.143.10}`,
      `apiVersion: v1\nkind: Pod\nmetadata: {name: echo, namespace: demo}\nspec: {nodeName: node-2, serviceAccountName: echo}\nstatus: {podIP: 127.0.143.11}`,
      `apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: waypoint, namespace: demo, annotations: {ambit.dev/node: node-2}}\nspec:\n  gatewayClassName: istio-waypoint\n  addresses: [{value: 127.0.143.50}]\n  listeners: [{name: mesh, port: 15008, protocol: HBONE}]`,
    ];
    await writeFile(path.join(configDir, 'mesh.yaml'), docs.join('\n---\n'));
    for (const n of ['node-1', 'node-2']) tokens[n] = await ensureNodeToken(stateDir, n);
    const captured = captureLogger();
    lines = captured.lines as Record<string, unknown>[];
    cp = new ControlPlane({ stateDir, configDir, listen: `${CP}:15012`, logger: captured.logger });
    cleanups.push(() => cp.stop());
    await cp.start();
  }, 30_000);

  it('node-1 (not running the waypoint) is refused its identity; node-2 (annotation ambit.dev/node) gets it', async () => {
    const e = await refusal(askCert(CP, cp.ca!.rootCertPem, tokens['node-1']!, 'demo', 'waypoint'));
    expect(isAmbitError(e, 'CA_PERMISSION_DENIED')).toBe(true);
    expect(e!.message).toContain('only the node that runs the waypoint');
    expect(lines.some((l) => l.msg === 'certificate request refused' && l.identity === WAYPOINT_ID)).toBe(
      true,
    );
    expect(await askCert(CP, cp.ca!.rootCertPem, tokens['node-2']!, 'demo', 'waypoint')).toHaveLength(2);
    // Another node's pod: refused.
    expect(
      isAmbitError(
        await refusal(askCert(CP, cp.ca!.rootCertPem, tokens['node-1']!, 'demo', 'echo')),
        'CA_PERMISSION_DENIED',
      ),
    ).toBe(true);
  });

  it('a CSR over 16 KiB and a TTL over the CA maximum are refused (INVALID_ARGUMENT, as istiod)', async () => {
    const ca = new CaClient({
      address: `${CP}:15012`,
      rootCertPem: cp.ca!.rootCertPem,
      token: tokens['node-1']!,
      serverName: CONTROL_PLANE_SERVER_NAME,
    });
    try {
      const huge =
        '-----BEGIN CERTIFICATE REQUEST-----\n' +
        'A'.repeat(32 * 1024) +
        '\n-----END CERTIFICATE REQUEST-----\n';
      const e = await refusal(ca.createCertificate(huge, 600));
      expect(isAmbitError(e, 'CA_BAD_CSR')).toBe(true);
      expect(e!.message).toMatch(/larger than 16384/);
    } finally {
      ca.close();
    }
    const tooLong = await refusal(
      askCert(CP, cp.ca!.rootCertPem, tokens['node-1']!, 'demo', 'sleep', 10 * 365 * 86400),
    );
    expect(isAmbitError(tooLong, 'CA_BAD_CSR')).toBe(true);
    expect(tooLong!.message).toContain(`greater than the max allowed TTL ${DEFAULT_MAX_TTL_SECONDS}s`);
    // At the maximum: signed, for no longer.
    const chain = await askCert(
      CP,
      cp.ca!.rootCertPem,
      tokens['node-1']!,
      'demo',
      'sleep',
      DEFAULT_MAX_TTL_SECONDS,
    );
    const leaf = new X509Certificate(chain[0]!);
    expect((Date.parse(leaf.validTo) - Date.now()) / 1000).toBeLessThanOrEqual(DEFAULT_MAX_TTL_SECONDS + 5);
  });

  /** A raw ADS stream over TLS with node-1's token: collects responses and the final status. */
  function rawAds() {
    const def = adsServiceDefinition.DeltaAggregatedResources!;
    const c = new grpc.Client(`${CP}:15012`, grpc.credentials.createSsl(Buffer.from(cp.ca!.rootCertPem)), {
      'grpc.ssl_target_name_override': CONTROL_PLANE_SERVER_NAME,
      'grpc.default_authority': CONTROL_PLANE_SERVER_NAME,
      'grpc.max_send_message_length': -1,
    });
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${tokens['node-1']!}`);
    const call = c.makeBidiStreamRequest<DeltaRequestMsg, DeltaResponseMsg>(
      def.path,
      def.requestSerialize,
      def.responseDeserialize,
      md,
    );
    const responses: DeltaResponseMsg[] = [];
    call.on('data', (r: DeltaResponseMsg) => responses.push(r));
    const status = new Promise<grpc.StatusObject>((resolve) => {
      call.on('status', resolve);
      call.on('error', () => {});
    });
    cleanups.push(() => c.close());
    return { call, responses, status, close: () => c.close() };
  }
  const names = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `made-up/${tag}/${i}`);

  it('xDS: a request naming more than the cap is closed with RESOURCE_EXHAUSTED and logged', async () => {
    const s = rawAds();
    s.call.write({
      node: { id: 'attacker' },
      typeUrl: TYPE_ADDRESS,
      resourceNamesSubscribe: names(DEFAULT_MAX_EXTRA_NAMES + 100, 'a'),
    });
    const st = await s.status;
    expect(st.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(st.details).toMatch(/the limit is \d+/);
    expect(lines.some((l) => l.msg === 'xDS request over a limit, closing stream')).toBe(true);
    expect(cp.xds!.connections().some((c) => c.nodeId === 'attacker')).toBe(false);
  });

  it('xDS: names added a request at a time are capped per stream', async () => {
    const s = rawAds();
    s.call.write({
      node: { id: 'creeper' },
      typeUrl: TYPE_ADDRESS,
      resourceNamesSubscribe: names(6_000, 'b'),
    });
    await eventually(() => s.responses.length > 0, 5000, 'first response');
    s.call.write({ typeUrl: TYPE_ADDRESS, resourceNamesSubscribe: names(6_000, 'c') });
    const st = await s.status;
    expect(st.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(st.details).toMatch(/stream would hold/);
  });

  it('xDS: a request larger than the receive limit is refused before it is decoded', async () => {
    const s = rawAds();
    // One name of MAX_REQUEST_BYTES + 1: grpc-js refuses the message by its length prefix.
    s.call.write({
      node: { id: 'big' },
      typeUrl: TYPE_ADDRESS,
      resourceNamesSubscribe: ['x'.repeat(MAX_REQUEST_BYTES + 1)],
    });
    const st = await s.status;
    expect(st.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    // The server is still there for an honest client.
    const ok = rawAds();
    ok.call.write({ node: { id: 'honest' }, typeUrl: TYPE_ADDRESS, resourceNamesSubscribe: ['*'] });
    await eventually(() => ok.responses.length > 0, 5000, 'honest client answered');
    expect(ok.responses[0]!.resources!.length).toBeGreaterThan(0);
    ok.call.end();
  });
});
