// The control plane answers the requests ztunnel sends, byte for byte as ztunnel builds them
// (istio/ztunnel src/identity/auth.rs, caclient.rs, xds/client.rs), without needing a ztunnel:
// `authorization: Bearer <token>` beside `clusterid: <CLUSTER_ID>`, and in shared mode the
// `ImpersonatedIdentity` metadata naming the pod it asks for. A caller naming another cluster is
// refused as istiod refuses it (kube_jwt.go). In-process control plane on 127.0.242.1.
import grpc from '@grpc/grpc-js';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlPlane, CONTROL_PLANE_SERVER_NAME } from '../../src/controlplane/server.js';
import { ensureNodeToken } from '../../src/controlplane/node-auth.js';
import { createCsr } from '../../src/identity/csr.js';
import { generateKeyPair } from '../../src/identity/keys.js';
import {
  TYPE_ADDRESS,
  adsServiceDefinition,
  caServiceDefinition,
  structFromStrings,
  type CertResponseMsg,
  type DeltaResponseMsg,
} from '../../src/xds/proto.js';
import { captureLogger } from '../support/capture-logger.js';

const HOST = '127.0.242.1';
const MANIFESTS = `apiVersion: v1
kind: Namespace
metadata: {name: demo, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: demo}
spec: {nodeName: node-a, serviceAccountName: sa-a}
status: {podIP: 127.0.242.10}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: demo}
spec: {nodeName: node-b, serviceAccountName: sa-b}
status: {podIP: 127.0.242.11}
`;
const ID_A = 'spiffe://cluster.local/ns/demo/sa/sa-a';
const ID_B = 'spiffe://cluster.local/ns/demo/sa/sa-b';

let root: string;
let cp: ControlPlane;
let token: string;
let lines: Record<string, unknown>[];
const Ca = grpc.makeGenericClientConstructor(caServiceDefinition, 'Ca');
const Ads = grpc.makeGenericClientConstructor(adsServiceDefinition, 'Ads');
let ca: InstanceType<typeof Ca>;
let ads: InstanceType<typeof Ads>;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'ambit-zt-req-'));
  await mkdir(path.join(root, 'config'));
  await writeFile(path.join(root, 'config', 'mesh.yaml'), MANIFESTS);
  token = await ensureNodeToken(path.join(root, 'state'), 'node-a');
  const captured = captureLogger();
  lines = captured.lines;
  cp = new ControlPlane({
    configDir: path.join(root, 'config'),
    stateDir: path.join(root, 'state'),
    listen: `${HOST}:15012`,
    logger: captured.logger,
  });
  await cp.start();
  const creds = grpc.credentials.createSsl(Buffer.from(cp.ca!.rootCertPem));
  const opts = { 'grpc.ssl_target_name_override': CONTROL_PLANE_SERVER_NAME };
  ca = new Ca(`${HOST}:15012`, creds, opts);
  ads = new Ads(`${HOST}:15012`, creds, opts);
}, 30_000);

afterAll(async () => {
  ca?.close();
  ads?.close();
  await cp?.stop();
  await rm(root, { recursive: true, force: true });
});

/** ztunnel's headers: the bearer token and the cluster it claims. */
function ztunnelHeaders(clusterIds: string[] = ['Kubernetes']): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  for (const c of clusterIds) md.add('clusterid', c);
  return md;
}

async function createCertificate(
  md: grpc.Metadata,
  csrIdentity: string,
  impersonated?: string,
): Promise<{ chain?: string[]; code?: grpc.status; details?: string }> {
  // spiffe://cluster.local/ns/<ns>/sa/<sa>
  const [, , , , ns, , sa] = csrIdentity.split('/');
  const csr = await createCsr(
    { trustDomain: 'cluster.local', namespace: ns!, serviceAccount: sa! },
    await generateKeyPair('ECDSA_P256'),
  );
  const req = {
    csr,
    validityDuration: 86_400,
    ...(impersonated ? { metadata: structFromStrings({ ImpersonatedIdentity: impersonated }) } : {}),
  };
  return new Promise((resolve) => {
    (
      ca as unknown as {
        CreateCertificate(
          r: object,
          md: grpc.Metadata,
          cb: (e: grpc.ServiceError | null, res?: CertResponseMsg) => void,
        ): void;
      }
    ).CreateCertificate(req, md, (err, res) =>
      resolve(err ? { code: err.code, details: err.details } : { chain: res!.certChain }),
    );
  });
}

describe('CreateCertificate as ztunnel sends it', () => {
  it('clusterid "Kubernetes" (ztunnel’s default CLUSTER_ID) is this cluster: the certificate is issued', async () => {
    const r = await createCertificate(ztunnelHeaders(), ID_A);
    expect(r).toMatchObject({ chain: expect.any(Array) as unknown });
    expect(r.chain!.length).toBeGreaterThanOrEqual(2);
  });

  it('clusterid naming another cluster is refused UNAUTHENTICATED, as istiod refuses it, and logged', async () => {
    const r = await createCertificate(ztunnelHeaders(['east']), ID_A);
    expect(r.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(lines.some((l) => String(l.msg).includes('client claims to be in cluster "east"'))).toBe(true);
  });

  it('two clusterid values are refused (not read as none)', async () => {
    const r = await createCertificate(ztunnelHeaders(['Kubernetes', 'east']), ID_A);
    expect(r.code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('shared mode: ImpersonatedIdentity equal to the CSR’s SAN, for a pod on the node, is issued', async () => {
    const from = lines.length;
    const r = await createCertificate(ztunnelHeaders(), ID_A, ID_A);
    expect(r).toMatchObject({ chain: expect.any(Array) as unknown });
    expect(lines.slice(from).find((l) => l.msg === 'certificate issued')?.impersonated).toBe(true);
  });

  it('shared mode: impersonating a pod on another node is refused', async () => {
    const r = await createCertificate(ztunnelHeaders(), ID_B, ID_B);
    expect(r.code).toBe(grpc.status.PERMISSION_DENIED);
  });

  it('shared mode: an ImpersonatedIdentity other than the CSR’s SAN is refused', async () => {
    const r = await createCertificate(ztunnelHeaders(), ID_A, ID_B);
    expect(r.code).toBe(grpc.status.INVALID_ARGUMENT);
  });
});

describe('Delta xDS as ztunnel opens it', () => {
  function firstResponse(md: grpc.Metadata): Promise<{ res?: DeltaResponseMsg; code?: grpc.status }> {
    return new Promise((resolve) => {
      const call = (
        ads as unknown as {
          DeltaAggregatedResources(md: grpc.Metadata): grpc.ClientDuplexStream<object, DeltaResponseMsg>;
        }
      ).DeltaAggregatedResources(md);
      call.on('data', (res: DeltaResponseMsg) => {
        resolve({ res });
        call.cancel();
      });
      call.on('error', (e: grpc.ServiceError) => resolve({ code: e.code }));
      // ztunnel's first request: node id/metadata, the type, no names (wildcard).
      call.write({
        typeUrl: TYPE_ADDRESS,
        node: {
          id: 'ztunnel~127.0.242.20~.~.svc.cluster.local',
          metadata: structFromStrings({ NODE_NAME: 'node-a' }),
        },
      });
    });
  }

  it('answers the token with clusterid Kubernetes', async () => {
    const r = await firstResponse(ztunnelHeaders());
    expect(r.res?.typeUrl).toBe(TYPE_ADDRESS);
  });

  it('refuses clusterid naming another cluster with UNAUTHENTICATED', async () => {
    expect((await firstResponse(ztunnelHeaders(['east']))).code).toBe(grpc.status.UNAUTHENTICATED);
  });
});
