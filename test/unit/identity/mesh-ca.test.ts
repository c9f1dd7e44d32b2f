import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isAmbitError } from '../../../src/common/errors.js';
import { pino } from 'pino';
import { MeshCa } from '../../../src/controlplane/ca.js';
import { createCsr } from '../../../src/identity/csr.js';
import {
  type KeyAlgorithm,
  generateKeyPair,
  importPrivateKeyPem,
  keyIdentifier,
} from '../../../src/identity/keys.js';
import { x509 } from '../../../src/identity/x509.js';
import { type Identity, type SpiffeId, spiffeIdFromCert } from '../../../src/identity/spiffe.js';

const silent = pino({ level: 'silent' });
const alice: Identity = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'alice' };
const ALICE = 'spiffe://cluster.local/ns/default/sa/alice' as SpiffeId;

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'ambit-ca-'));
  dirs.push(dir);
  return dir;
}
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function newCa(opts: { keyAlgorithm?: KeyAlgorithm; maxTtlSeconds?: number } = {}): Promise<MeshCa> {
  return MeshCa.loadOrCreate({
    stateDir: await tempDir(),
    trustDomain: 'cluster.local',
    logger: silent,
    ...opts,
  });
}

async function csrFor(identity: Identity): Promise<string> {
  return createCsr(identity, await generateKeyPair('ECDSA_P256'));
}

describe('signing workload certificates', () => {
  it.each<KeyAlgorithm>(['ECDSA_P256', 'RSA_2048'])('issues a leaf that chains to a %s root', async (alg) => {
    const ca = await newCa({ keyAlgorithm: alg });
    const before = Date.now();
    const chain = await ca.signCsr(await csrFor(alice), { ttlSeconds: 3600 });
    expect(chain).toHaveLength(2);
    expect(chain[1]).toBe(ca.rootCertPem);
    const leaf = new X509Certificate(chain[0]!);
    const root = new X509Certificate(chain[1]!);
    expect(leaf.verify(root.publicKey)).toBe(true);
    expect(leaf.checkIssued(root)).toBe(true);
    expect(spiffeIdFromCert(leaf)).toBe(ALICE);
    expect(leaf.subject ?? '').toBe('');
    expect(leaf.ca).toBe(false);
    // notBefore is backdated a minute for clock skew; notAfter is now + ttl.
    const notBefore = new Date(leaf.validFrom).getTime();
    const notAfter = new Date(leaf.validTo).getTime();
    expect(notBefore).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 - 61_000);
    expect(notBefore).toBeLessThanOrEqual(before - 59_000);
    expect(notAfter - notBefore).toBe(3660_000);
  });

  it('sets the extensions a workload certificate needs', async () => {
    const ca = await newCa();
    const [leafPem] = await ca.signCsr(await csrFor(alice), { ttlSeconds: 600 });
    const leaf = new x509.X509Certificate(leafPem!);
    const root = new x509.X509Certificate(ca.rootCertPem);

    const bc = leaf.getExtension(x509.BasicConstraintsExtension)!;
    expect([bc.ca, bc.critical]).toEqual([false, true]);
    const ku = leaf.getExtension(x509.KeyUsagesExtension)!;
    expect(ku.critical).toBe(true);
    expect(ku.usages).toBe(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment);
    const eku = leaf.getExtension(x509.ExtendedKeyUsageExtension)!;
    expect(eku.usages).toEqual([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]);
    const san = leaf.getExtension(x509.SubjectAlternativeNameExtension)!;
    expect(san.critical).toBe(true); // the subject is empty
    expect(san.names.toJSON()).toEqual([{ type: 'url', value: ALICE }]);
    expect(leaf.getExtension(x509.AuthorityKeyIdentifierExtension)!.keyId).toBe(
      root.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId,
    );
    expect(leaf.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId).toBe(
      keyIdentifier(new Uint8Array(leaf.publicKey.rawData)),
    );
    expect(await leaf.verify({ publicKey: root.publicKey, signatureOnly: true })).toBe(true);
  });

  it('uses a random positive 128-bit serial for every certificate', async () => {
    const ca = await newCa();
    const csr = await csrFor(alice);
    const serials = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const leaf = new X509Certificate((await ca.signCsr(csr, { ttlSeconds: 60 }))[0]!);
      const body = Buffer.from(leaf.serialNumber, 'hex');
      expect(body.length).toBeGreaterThanOrEqual(15);
      expect(body.length).toBeLessThanOrEqual(16);
      serials.add(leaf.serialNumber);
    }
    expect(serials.size).toBe(20);
  });

  it('caps the lifetime at maxTtlSeconds', async () => {
    const ca = await newCa({ maxTtlSeconds: 300 });
    const leaf = new X509Certificate((await ca.signCsr(await csrFor(alice), { ttlSeconds: 86400 }))[0]!);
    expect(new Date(leaf.validTo).getTime() - new Date(leaf.validFrom).getTime()).toBe(360_000);
  });

  it('refuses a CSR from another trust domain', async () => {
    const ca = await newCa();
    const csr = await csrFor({ ...alice, trustDomain: 'evil.example' });
    const err = await ca.signCsr(csr, { ttlSeconds: 60 }).catch((e: unknown) => e);
    expect(isAmbitError(err, 'CA_PERMISSION_DENIED')).toBe(true);
    expect((err as Error).message).toMatch(/outside this CA's trust domain cluster\.local/);
  });

  it('refuses a CSR that names another identity than expected', async () => {
    const ca = await newCa();
    const err = await ca
      .signCsr(await csrFor(alice), {
        ttlSeconds: 60,
        expectedSpiffeId: 'spiffe://cluster.local/ns/default/sa/bob' as SpiffeId,
      })
      .catch((e: unknown) => e);
    expect(isAmbitError(err, 'CA_PERMISSION_DENIED')).toBe(true);
  });

  it.each([0, -5, Number.NaN])('refuses a lifetime of %s seconds', async (ttl) => {
    const ca = await newCa();
    await expect(ca.signCsr(await csrFor(alice), { ttlSeconds: ttl })).rejects.toMatchObject({
      code: 'CA_BAD_CSR',
    });
  });

  it('issues a serving certificate for DNS names and IPs', async () => {
    const ca = await newCa();
    const { keyPem, certChainPem } = await ca.issueServingCert({
      dnsNames: ['istiod.istio-system.svc'],
      ips: ['127.0.20.1'],
    });
    expect(keyPem).toMatch(/BEGIN PRIVATE KEY/);
    const leaf = new X509Certificate(certChainPem);
    expect(leaf.subjectAltName).toBe('DNS:istiod.istio-system.svc, IP Address:127.0.20.1');
    expect(leaf.checkHost('istiod.istio-system.svc')).toBe('istiod.istio-system.svc');
    expect(leaf.verify(new X509Certificate(ca.rootCertPem).publicKey)).toBe(true);
    expect(certChainPem.endsWith(ca.rootCertPem)).toBe(true);
  });
});

describe('the root', () => {
  it('is created on first start, kept with a private key file, and reloaded unchanged', async () => {
    const stateDir = await tempDir();
    const first = await MeshCa.loadOrCreate({ stateDir, trustDomain: 'cluster.local', logger: silent });
    const certFile = path.join(stateDir, 'ca', 'root-cert.pem');
    const keyFile = path.join(stateDir, 'ca', 'root-key.pem');
    expect(await readFile(certFile, 'utf8')).toBe(first.rootCertPem);
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    expect((await readdir(path.join(stateDir, 'ca'))).sort()).toEqual(['root-cert.pem', 'root-key.pem']);

    const root = new x509.X509Certificate(first.rootCertPem);
    expect(root.subject).toBe('O=ambit, CN=ambit root CA cluster.local');
    expect(root.getExtension(x509.BasicConstraintsExtension)).toMatchObject({ ca: true, critical: true });
    expect(root.getExtension(x509.KeyUsagesExtension)!.usages).toBe(
      x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
    );
    expect(root.publicKey.algorithm).toMatchObject({ name: 'ECDSA', namedCurve: 'P-256' });
    const years = (root.notAfter.getTime() - root.notBefore.getTime()) / (365 * 24 * 3600 * 1000);
    expect(years).toBeGreaterThan(9.9);

    const second = await MeshCa.loadOrCreate({ stateDir, trustDomain: 'cluster.local', logger: silent });
    expect(second.rootCertPem).toBe(first.rootCertPem);
    const leaf = new X509Certificate((await second.signCsr(await csrFor(alice), { ttlSeconds: 60 }))[0]!);
    expect(leaf.verify(new X509Certificate(first.rootCertPem).publicKey)).toBe(true);
  });

  it('uses operator-supplied root files and writes nothing', async () => {
    const source = await tempDir();
    const made = await MeshCa.loadOrCreate({
      stateDir: source,
      trustDomain: 'cluster.local',
      keyAlgorithm: 'RSA_2048',
      logger: silent,
    });
    const stateDir = await tempDir();
    const ca = await MeshCa.loadOrCreate({
      stateDir,
      trustDomain: 'cluster.local',
      rootCertFile: path.join(source, 'ca', 'root-cert.pem'),
      rootKeyFile: path.join(source, 'ca', 'root-key.pem'),
      logger: silent,
    });
    expect(ca.rootCertPem).toBe(made.rootCertPem);
    expect(await readdir(stateDir)).toEqual([]);
    const leafPem = (await ca.signCsr(await csrFor(alice), { ttlSeconds: 60 }))[0]!;
    expect(new X509Certificate(leafPem).verify(new X509Certificate(made.rootCertPem).publicKey)).toBe(true);
    expect(new x509.X509Certificate(leafPem).signatureAlgorithm.name).toBe('RSASSA-PKCS1-v1_5');
  });

  it('refuses a supplied key that does not belong to the supplied cert', async () => {
    const a = await tempDir();
    const b = await tempDir();
    await MeshCa.loadOrCreate({ stateDir: a, trustDomain: 'cluster.local', logger: silent });
    await MeshCa.loadOrCreate({ stateDir: b, trustDomain: 'cluster.local', logger: silent });
    const err = await MeshCa.loadOrCreate({
      stateDir: await tempDir(),
      trustDomain: 'cluster.local',
      rootCertFile: path.join(a, 'ca', 'root-cert.pem'),
      rootKeyFile: path.join(b, 'ca', 'root-key.pem'),
      logger: silent,
    }).catch((e: unknown) => e);
    expect(isAmbitError(err, 'CONFIG_INVALID')).toBe(true);
    expect((err as Error).message).toMatch(/does not belong to this certificate/);
  });

  it('refuses a supplied certificate that is not a CA', async () => {
    const ca = await newCa();
    const serving = await ca.issueServingCert({ dnsNames: ['x.example'], ips: [] });
    const dir = await tempDir();
    const certFile = path.join(dir, 'cert.pem');
    const keyFile = path.join(dir, 'key.pem');
    await writeFile(
      certFile,
      serving.certChainPem.slice(0, serving.certChainPem.indexOf('-----END CERTIFICATE-----') + 26),
    );
    await writeFile(keyFile, serving.keyPem);
    await expect(
      MeshCa.loadOrCreate({
        stateDir: dir,
        trustDomain: 'cluster.local',
        rootCertFile: certFile,
        rootKeyFile: keyFile,
        logger: silent,
      }),
    ).rejects.toThrow(/not a CA certificate/);
  });

  it('refuses a supplied CA certificate that is not self-signed', async () => {
    const rootDir = await tempDir();
    const parent = await MeshCa.loadOrCreate({
      stateDir: rootDir,
      trustDomain: 'cluster.local',
      logger: silent,
    });
    const signer = await importPrivateKeyPem(
      await readFile(path.join(rootDir, 'ca', 'root-key.pem'), 'utf8'),
    );
    const keys = await generateKeyPair('ECDSA_P256');
    const intermediate = await x509.X509CertificateGenerator.create({
      subject: 'CN=intermediate',
      issuer: new x509.X509Certificate(parent.rootCertPem).subjectName,
      publicKey: await x509.PublicKey.create(keys.publicKey as never),
      signingKey: signer.privateKey as never,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
    });
    const dir = await tempDir();
    await writeFile(path.join(dir, 'cert.pem'), intermediate.toString('pem'));
    await writeFile(path.join(dir, 'key.pem'), keys.privateKeyPem);
    await expect(
      MeshCa.loadOrCreate({
        stateDir: dir,
        trustDomain: 'cluster.local',
        rootCertFile: path.join(dir, 'cert.pem'),
        rootKeyFile: path.join(dir, 'key.pem'),
        logger: silent,
      }),
    ).rejects.toThrow(/not self-signed/);
  });

  it('requires both root files', async () => {
    await expect(
      MeshCa.loadOrCreate({
        stateDir: await tempDir(),
        trustDomain: 'cluster.local',
        rootCertFile: '/x',
        logger: silent,
      }),
    ).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
  });
});
