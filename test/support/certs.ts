// Certificates for tests that must present something the mesh would never issue: expired,
// another trust domain, another root, a wrong identity. Real X.509, made with the same library.
import { readFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { webcrypto, randomBytes } from 'node:crypto';
import { generateKeyPair } from '../../src/identity/keys.js';
import { x509 } from '../../src/identity/x509.js';
import { createCsr } from '../../src/identity/csr.js';
import { MeshCa } from '../../src/controlplane/ca.js';
import type { Identity } from '../../src/identity/spiffe.js';

export interface TestCert {
  spiffeId: string;
  keyPem: string;
  certChainPem: string[];
  rootPem: string;
}

const ALG = { name: 'ECDSA', hash: 'SHA-256' } as const;

/** The mesh's root certificate and signing key, as the CA wrote them under `stateDir`. */
export async function meshRoot(stateDir: string): Promise<{
  root: InstanceType<typeof x509.X509Certificate>;
  rootKey: webcrypto.CryptoKey;
  rootPem: string;
}> {
  const rootPem = await readFile(path.join(stateDir, 'ca', 'root-cert.pem'), 'utf8');
  const rootKeyPem = await readFile(path.join(stateDir, 'ca', 'root-key.pem'), 'utf8');
  const rootKey = await webcrypto.subtle.importKey(
    'pkcs8',
    Buffer.from(rootKeyPem.replace(/-----[^-]+-----|\s/g, ''), 'base64'),
    { name: 'ECDSA', namedCurve: 'P-256' },
    false,
    ['sign'],
  );
  return { root: new x509.X509Certificate(rootPem), rootKey, rootPem };
}

/** A leaf signed by the mesh root found in `stateDir`, with any validity window. */
export async function meshSignedCert(
  stateDir: string,
  id: Identity,
  validity?: { notBefore: Date; notAfter: Date },
): Promise<TestCert> {
  const { root, rootKey, rootPem } = await meshRoot(stateDir);
  const keys = await generateKeyPair('ECDSA_P256');
  const spiffeId = `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomBytes(8).toString('hex'),
    issuer: root.subject,
    subject: '',
    notBefore: validity?.notBefore ?? new Date(now - 60_000),
    notAfter: validity?.notAfter ?? new Date(now + 3_600_000),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: rootKey,
    extensions: [
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }], true),
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.ExtendedKeyUsageExtension(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']),
    ],
  });
  return { spiffeId, keyPem: keys.privateKeyPem, certChainPem: [cert.toString('pem')], rootPem };
}

/** A leaf from a brand-new CA of its own (optionally another trust domain). */
export async function foreignCert(id: Identity): Promise<TestCert> {
  const ca = await MeshCa.loadOrCreate({
    stateDir: await mkdtemp(path.join(tmpdir(), 'ambit-foreign-ca-')),
    trustDomain: id.trustDomain,
  });
  return issuedBy(ca, id);
}

/** A leaf (without its intermediates) for `id` signed by `ca`, valid `ttlSeconds` from now. */
export async function issuedBy(ca: MeshCa, id: Identity, ttlSeconds = 3600): Promise<TestCert> {
  const keys = await generateKeyPair('ECDSA_P256');
  const chain = await ca.signCsr(await createCsr(id, keys), { ttlSeconds });
  return {
    spiffeId: `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`,
    keyPem: keys.privateKeyPem,
    certChainPem: chain.slice(0, 1),
    rootPem: ca.rootCertPem,
  };
}
