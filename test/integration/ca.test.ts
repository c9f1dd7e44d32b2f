// The CA end to end: a real grpc-js server with TLS on 127.0.20.1, node tokens from a state
// directory, a CaClient per node, and the issued certificates used for a real mutual-TLS handshake.
import * as grpc from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { isAmbitError } from '../../src/common/errors.js';
import { MeshCa } from '../../src/controlplane/ca.js';
import { createCaHandlers } from '../../src/controlplane/ca-server.js';
import { LocalNodeAuthenticator, ensureNodeToken } from '../../src/controlplane/node-auth.js';
import { CaClient } from '../../src/identity/ca-client.js';
import { CertificateManager, type WorkloadCert } from '../../src/identity/cert-manager.js';
import { createCsr } from '../../src/identity/csr.js';
import { generateKeyPair } from '../../src/identity/keys.js';
import { type Identity, formatSpiffeId, spiffeIdFromCert } from '../../src/identity/spiffe.js';
import { caServiceDefinition } from '../../src/xds/proto.js';

const HOST = '127.0.20.1';
const td = 'cluster.local';
const alpha: Identity = { trustDomain: td, namespace: 'default', serviceAccount: 'alpha' };
const gamma: Identity = { trustDomain: td, namespace: 'default', serviceAccount: 'gamma' };
const beta: Identity = { trustDomain: td, namespace: 'other', serviceAccount: 'beta' };

const logs: Record<string, unknown>[] = [];
const logger = pino(
  { level: 'info' },
  new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      cb();
    },
  }),
);

let stateDir: string;
let ca: MeshCa;
let server: grpc.Server;
let address: string;
let tokenA: string;
const clients: CaClient[] = [];

function client(token: string): CaClient {
  const c = new CaClient({ address, rootCertPem: ca.rootCertPem, token });
  clients.push(c);
  return c;
}

async function csrFor(identity: Identity): Promise<string> {
  return createCsr(identity, await generateKeyPair('ECDSA_P256'));
}

beforeAll(async () => {
  stateDir = await mkdtemp(path.join(tmpdir(), 'ambit-ca-it-'));
  ca = await MeshCa.loadOrCreate({ stateDir, trustDomain: td, logger });
  tokenA = await ensureNodeToken(stateDir, 'node-a');
  await ensureNodeToken(stateDir, 'node-b');
  const podsByNode = new Map([
    ['node-a', new Set([formatSpiffeId(alpha), formatSpiffeId(gamma)])],
    ['node-b', new Set([formatSpiffeId(beta)])],
  ]);
  const auth = new LocalNodeAuthenticator(stateDir);
  const serving = await ca.issueServingCert({ dnsNames: ['istiod.istio-system.svc'], ips: [HOST] });
  server = new grpc.Server();
  server.addService(
    caServiceDefinition,
    createCaHandlers({
      ca,
      authenticate: (md) => auth.authenticate(md),
      identitiesOnNode: (node) => podsByNode.get(node) ?? new Set(),
      logger,
    }),
  );
  const creds = grpc.ServerCredentials.createSsl(null, [
    { private_key: Buffer.from(serving.keyPem), cert_chain: Buffer.from(serving.certChainPem) },
  ]);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${HOST}:0`, creds, (err, p) => (err ? reject(err) : resolve(p))),
  );
  address = `${HOST}:${port}`;
});

afterAll(async () => {
  clients.forEach((c) => c.close());
  await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  await rm(stateDir, { recursive: true, force: true });
});

describe('CreateCertificate over gRPC', () => {
  it('issues a chain for an identity of a pod on the calling node', async () => {
    const chain = await client(tokenA).createCertificate(await csrFor(alpha), 3600);
    expect(chain).toHaveLength(2);
    expect(chain[1]).toBe(ca.rootCertPem);
    const leaf = new X509Certificate(chain[0]!);
    expect(spiffeIdFromCert(leaf)).toBe('spiffe://cluster.local/ns/default/sa/alpha');
    expect(leaf.verify(new X509Certificate(ca.rootCertPem).publicKey)).toBe(true);
    const line = logs.find((l) => l.msg === 'certificate issued' && l.identity === formatSpiffeId(alpha));
    expect(line).toMatchObject({ level: 30, node: 'node-a', 'cert.serial': leaf.serialNumber });
  });

  it('uses the default lifetime of 24 h when the request asks for none', async () => {
    const chain = await client(tokenA).createCertificate(await csrFor(alpha), 0);
    const leaf = new X509Certificate(chain[0]!);
    expect(new Date(leaf.validTo).getTime() - new Date(leaf.validFrom).getTime()).toBe((86400 + 60) * 1000);
  });

  it('refuses a caller with an unknown token: UNAUTHENTICATED', async () => {
    const err = await client('f'.repeat(64))
      .createCertificate(await csrFor(alpha), 3600)
      .catch((e: unknown) => e);
    expect(isAmbitError(err, 'CA_UNAUTHENTICATED')).toBe(true);
    expect((err as Error).message).toMatch(/UNAUTHENTICATED: missing or unknown node token/);
    expect(
      logs.some((l) => l.msg === 'certificate request refused' && l['grpc.status'] === 'UNAUTHENTICATED'),
    ).toBe(true);
  });

  it('refuses the identity of a pod on another node: PERMISSION_DENIED', async () => {
    const err = await client(tokenA)
      .createCertificate(await csrFor(beta), 3600)
      .catch((e: unknown) => e);
    expect(isAmbitError(err, 'CA_PERMISSION_DENIED')).toBe(true);
    expect((err as Error).message).toMatch(
      /PERMISSION_DENIED: node node-a may not obtain a certificate for spiffe:\/\/cluster.local\/ns\/other\/sa\/beta/,
    );
    expect(logs).toContainEqual(
      expect.objectContaining({
        level: 40,
        node: 'node-a',
        identity: 'spiffe://cluster.local/ns/other/sa/beta',
        'grpc.status': 'PERMISSION_DENIED',
      }),
    );
  });

  it('refuses a garbage CSR: INVALID_ARGUMENT with the reason', async () => {
    const err = await client(tokenA)
      .createCertificate('not a csr', 3600)
      .catch((e: unknown) => e);
    expect(isAmbitError(err, 'CA_BAD_CSR')).toBe(true);
    expect((err as Error).message).toMatch(/INVALID_ARGUMENT: bad CSR: cannot decode CSR/);
  });
});

describe('issued certificates in mutual TLS', () => {
  let alphaCert: WorkloadCert;
  let gammaCert: WorkloadCert;
  beforeAll(async () => {
    const manager = new CertificateManager({
      requestCertificate: (csr, ttl) => client(tokenA).createCertificate(csr, ttl),
      logger,
    });
    [alphaCert, gammaCert] = await Promise.all([manager.get(alpha), manager.get(gamma)]);
    manager.stop();
  });

  /** A TLS server as `alpha` that requires a client certificate from the mesh root. */
  async function alphaServer() {
    const srv = tls.createServer({
      key: alphaCert.keyPem,
      cert: alphaCert.certChainPem.join(''),
      ca: alphaCert.rootPem,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
    });
    const peers: (string | undefined)[] = [];
    srv.on('secureConnection', (s: tls.TLSSocket) => {
      peers.push(spiffeIdFromCert(s.getPeerX509Certificate()!));
      s.end('hello');
    });
    srv.listen(0, HOST);
    await once(srv, 'listening');
    return { srv, peers, port: (srv.address() as { port: number }).port };
  }

  /** Connects as a client and reports what it saw once the connection is over. */
  function connect(
    port: number,
    key: string,
    cert: string,
  ): Promise<{ data: string; server?: string; error?: string }> {
    return new Promise((resolve) => {
      const s = tls.connect({
        host: HOST,
        port,
        key,
        cert,
        ca: alphaCert.rootPem,
        // HBONE checks the SPIFFE id, not a host name.
        checkServerIdentity: (_h, c) =>
          spiffeIdFromCert(new X509Certificate(c.raw)) === alphaCert.spiffeId
            ? undefined
            : new Error('wrong peer'),
      });
      let data = '';
      let server: string | undefined;
      let error: string | undefined;
      s.on('secureConnect', () => (server = spiffeIdFromCert(s.getPeerX509Certificate()!)));
      s.on('data', (d: Buffer) => (data += d.toString()));
      s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
      s.on('close', () => resolve({ data, server, ...(error ? { error } : {}) }));
    });
  }

  it('completes a handshake in both directions with ECDSA workload certificates', async () => {
    const { srv, peers, port } = await alphaServer();
    try {
      const res = await connect(port, gammaCert.keyPem, gammaCert.certChainPem.join(''));
      expect(res).toEqual({ data: 'hello', server: 'spiffe://cluster.local/ns/default/sa/alpha' });
      expect(peers).toEqual(['spiffe://cluster.local/ns/default/sa/gamma']);
      expect(new X509Certificate(gammaCert.certChainPem[0]!).publicKey.asymmetricKeyType).toBe('ec');
    } finally {
      srv.close();
    }
  });

  it('refuses a client whose certificate comes from another CA', async () => {
    const otherDir = await mkdtemp(path.join(tmpdir(), 'ambit-ca-other-'));
    const { srv, peers, port } = await alphaServer();
    try {
      const other = await MeshCa.loadOrCreate({
        stateDir: otherDir,
        trustDomain: td,
        logger: pino({ level: 'silent' }),
      });
      const keys = await generateKeyPair('ECDSA_P256');
      const [leaf] = await other.signCsr(await createCsr(gamma, keys), { ttlSeconds: 600 });
      // Same identity, wrong issuer: with TLS 1.3 the client finishes first, then the server
      // checks the client's chain and drops the connection before any byte of 'hello'.
      const result = await connect(port, keys.privateKeyPem, leaf!);
      expect(result.data).toBe('');
      expect(peers).toEqual([]);
    } finally {
      srv.close();
      await rm(otherDir, { recursive: true, force: true });
    }
  });
});
