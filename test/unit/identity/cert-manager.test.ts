import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { isAmbitError } from '../../../src/common/errors.js';
import { MeshCa } from '../../../src/controlplane/ca.js';
import { CertificateManager, type WorkloadCert } from '../../../src/identity/cert-manager.js';
import { createCsr } from '../../../src/identity/csr.js';
import { generateKeyPair } from '../../../src/identity/keys.js';
import type { Identity } from '../../../src/identity/spiffe.js';

const silent = pino({ level: 'silent' });
const alice: Identity = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'alice' };
const bob: Identity = { ...alice, serviceAccount: 'bob' };

let stateDir: string;
let ca: MeshCa;
beforeAll(async () => {
  stateDir = await mkdtemp(path.join(tmpdir(), 'ambit-cm-'));
  // No backdating, so a 2-3 s certificate rotates at a predictable point of its short life.
  ca = await MeshCa.loadOrCreate({
    stateDir,
    trustDomain: 'cluster.local',
    backdateSeconds: 0,
    logger: silent,
  });
});
afterAll(() => rm(stateDir, { recursive: true, force: true }));

const managers: CertificateManager[] = [];
afterEach(() => managers.splice(0).forEach((m) => m.stop()));

/** A CA stub that counts calls and can be told to fail. */
function stubCa() {
  const stub = {
    calls: 0,
    failNext: 0,
    failAlways: false,
    onCall: (): void => undefined,
    async request(csr: string, ttl: number): Promise<string[]> {
      stub.calls++;
      stub.onCall();
      if (stub.failAlways || stub.failNext > 0) {
        stub.failNext--;
        throw new Error('CA unavailable');
      }
      return ca.signCsr(csr, { ttlSeconds: ttl });
    },
  };
  return stub;
}

function manager(
  opts: Partial<ConstructorParameters<typeof CertificateManager>[0]> & {
    requestCertificate: (csr: string, ttl: number) => Promise<string[]>;
  },
) {
  const m = new CertificateManager({ logger: silent, ...opts });
  managers.push(m);
  return m;
}

describe('CertificateManager', () => {
  it('fetches a certificate whose key and SAN belong to the identity', async () => {
    const stub = stubCa();
    const m = manager({ requestCertificate: stub.request });
    const cert = await m.get(alice);
    expect(cert.spiffeId).toBe('spiffe://cluster.local/ns/default/sa/alice');
    expect(cert.certChainPem).toHaveLength(1);
    expect(cert.rootPem).toBe(ca.rootCertPem);
    const leaf = new X509Certificate(cert.certChainPem[0]!);
    expect(leaf.serialNumber).toBe(cert.serial);
    expect(leaf.checkPrivateKey(createPrivateKey(cert.keyPem))).toBe(true);
    expect(cert.notAfter.getTime() - cert.notBefore.getTime()).toBe(86400_000);
    expect(m.state(alice)).toBe('Valid');
    expect(await m.get(alice)).toBe(cert);
    expect(stub.calls).toBe(1);
    expect(m.list()).toEqual([cert]);
  });

  it('sends one CSR for 100 concurrent requests of one identity', async () => {
    const stub = stubCa();
    const m = manager({ requestCertificate: stub.request });
    const certs = await Promise.all(Array.from({ length: 100 }, () => m.get(alice)));
    expect(stub.calls).toBe(1);
    expect(new Set(certs).size).toBe(1);
    await Promise.all([m.get(bob), m.get(bob)]);
    expect(stub.calls).toBe(2);
  });

  it('rejects a certificate for another identity', async () => {
    const m = manager({
      requestCertificate: async (_csr, ttl) =>
        ca.signCsr(await createCsr(bob, await generateKeyPair('ECDSA_P256')), { ttlSeconds: ttl }),
    });
    const err = await m.get(alice).catch((e: unknown) => e);
    expect(isAmbitError(err, 'CERT_INVALID')).toBe(true);
    expect((err as Error).message).toMatch(/leaf names spiffe:\/\/cluster.local\/ns\/default\/sa\/bob/);
  });

  it('rejects a certificate for a key it did not generate', async () => {
    const m = manager({
      requestCertificate: async (_csr, ttl) =>
        ca.signCsr(await createCsr(alice, await generateKeyPair('ECDSA_P256')), { ttlSeconds: ttl }),
    });
    const err = await m.get(alice).catch((e: unknown) => e);
    expect(isAmbitError(err, 'CERT_INVALID')).toBe(true);
    expect((err as Error).message).toMatch(/not the key we generated/);
  });

  it('rejects a chain whose leaf is not signed by the root sent with it', async () => {
    const other = await MeshCa.loadOrCreate({
      stateDir: path.join(stateDir, 'other'),
      trustDomain: 'cluster.local',
      logger: silent,
    });
    const m = manager({
      requestCertificate: async (csr, ttl) => [
        (await ca.signCsr(csr, { ttlSeconds: ttl }))[0]!,
        other.rootCertPem,
      ],
    });
    await expect(m.get(alice)).rejects.toThrow(/chain link 0 is not signed by link 1/);
  });

  it('works with RSA keys', async () => {
    const m = manager({ requestCertificate: stubCa().request, keyAlgorithm: 'RSA_2048' });
    const cert = await m.get(alice);
    expect(createPublicKey(cert.keyPem).asymmetricKeyType).toBe('rsa');
  });

  it('rotates at half-life to a new key and serial, and announces it', async () => {
    const stub = stubCa();
    const m = manager({ requestCertificate: stub.request, ttlSeconds: 3, rotateAt: 0.5 });
    const first = await m.get(alice);
    const [rotated, previous] = (await once(m, 'rotated')) as [WorkloadCert, WorkloadCert];
    expect(previous).toBe(first);
    expect(rotated.serial).not.toBe(first.serial);
    expect(rotated.keyPem).not.toBe(first.keyPem);
    expect(rotated.notAfter.getTime()).toBeGreaterThan(first.notAfter.getTime());
    // It rotated before the old certificate expired.
    expect(Date.now()).toBeLessThan(first.notAfter.getTime());
    expect(await m.get(alice)).toBe(rotated);
    expect(m.state(alice)).toBe('Valid');
  });

  it('keeps the current certificate while a failed renewal backs off', async () => {
    const stub = stubCa();
    const m = manager({ requestCertificate: stub.request, ttlSeconds: 3, rotateAt: 0.5 });
    const first = await m.get(alice);
    stub.failNext = 1;
    const servedDuringFailure: Promise<WorkloadCert>[] = [];
    stub.onCall = () => {
      if (stub.calls === 2) setImmediate(() => servedDuringFailure.push(m.get(alice)));
    };
    const [rotated] = (await once(m, 'rotated')) as [WorkloadCert];
    expect(stub.calls).toBe(3); // initial, failed renewal, successful retry
    expect(await servedDuringFailure[0]).toBe(first);
    expect(rotated.serial).not.toBe(first.serial);
  });

  it('announces expiry when renewal keeps failing, then refuses to hand out the old cert', async () => {
    const stub = stubCa();
    const m = manager({ requestCertificate: stub.request, ttlSeconds: 2, rotateAt: 0.5 });
    const first = await m.get(alice);
    stub.failAlways = true;
    const [expired] = (await once(m, 'expired')) as [WorkloadCert];
    expect(expired).toBe(first);
    expect(Date.now()).toBeGreaterThanOrEqual(first.notAfter.getTime() - 5);
    expect(m.list()).toEqual([]);
    await expect(m.get(alice)).rejects.toMatchObject({ code: 'NO_CERTIFICATE' });
  });

  it('stops renewing an identity it was told to forget', async () => {
    const stub = stubCa();
    const m = manager({ requestCertificate: stub.request, ttlSeconds: 1, rotateAt: 0.1 });
    await m.get(alice);
    m.forget(alice);
    expect(m.list()).toEqual([]);
    await new Promise((r) => setTimeout(r, 300));
    expect(stub.calls).toBe(1);
  });

  it('rejects, rather than throws, for an identity that is not a valid SPIFFE id', async () => {
    const m = manager({ requestCertificate: stubCa().request });
    const p = m.get({ ...alice, trustDomain: '' });
    await expect(p).rejects.toThrow(RangeError);
  });

  it('fails the first request and retries in the background', async () => {
    const stub = stubCa();
    stub.failNext = 1;
    const m = manager({ requestCertificate: stub.request });
    await expect(m.get(alice)).rejects.toThrow(/CA unavailable/);
    expect(m.state(alice)).toBe('Unavailable');
    await expect(m.get(alice)).rejects.toMatchObject({ code: 'NO_CERTIFICATE' });
    const [cert] = (await once(m, 'issued')) as [WorkloadCert];
    expect(await m.get(alice)).toBe(cert);
  });
});
