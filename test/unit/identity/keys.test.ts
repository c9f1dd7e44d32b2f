import { createPrivateKey, generateKeyPairSync, webcrypto } from 'node:crypto';
import tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import {
  type KeyAlgorithm,
  derChildren,
  derContents,
  derTlv,
  generateKeyPair,
  importPrivateKeyPem,
  keyIdentifier,
  pemToDer,
} from '../../../src/identity/keys.js';
import { x509 } from '../../../src/identity/x509.js';

describe('generateKeyPair', () => {
  it.each<[KeyAlgorithm, string, Record<string, unknown>]>([
    ['ECDSA_P256', 'ec', { namedCurve: 'prime256v1' }],
    ['RSA_2048', 'rsa', { modulusLength: 2048 }],
  ])('makes a %s key whose PKCS#8 PEM works for TLS', async (alg, type, details) => {
    const keys = await generateKeyPair(alg);
    expect(keys.privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    const ko = createPrivateKey(keys.privateKeyPem);
    expect(ko.asymmetricKeyType).toBe(type);
    expect(ko.asymmetricKeyDetails).toMatchObject(details);
    expect(() => tls.createSecureContext({ key: keys.privateKeyPem })).not.toThrow();
  });

  it('keeps the event loop turning while an RSA key is generated', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    try {
      await Promise.all([generateKeyPair('RSA_2048'), generateKeyPair('RSA_2048')]);
    } finally {
      clearInterval(timer);
    }
    expect(ticks).toBeGreaterThan(2);
  });
});

describe('importPrivateKeyPem', () => {
  it.each<[KeyAlgorithm, 'pkcs8' | 'sec1' | 'pkcs1']>([
    ['ECDSA_P256', 'pkcs8'],
    ['ECDSA_P256', 'sec1'],
    ['RSA_2048', 'pkcs8'],
    ['RSA_2048', 'pkcs1'],
  ])('reads a %s key in %s form and derives its public key', async (alg, form) => {
    const keys = await generateKeyPair(alg);
    const pem = createPrivateKey(keys.privateKeyPem).export({ format: 'pem', type: form }) as string;
    const imported = await importPrivateKeyPem(pem);
    expect(imported.algorithm).toBe(alg);
    const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey));
    expect(imported.spkiDer.equals(spki)).toBe(true);
  });

  it('refuses keys it cannot sign with', async () => {
    const ed = generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
    await expect(importPrivateKeyPem(ed)).rejects.toThrow(/unsupported key type ed25519/);
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey.export({
      format: 'pem',
      type: 'pkcs8',
    }) as string;
    await expect(importPrivateKeyPem(p384)).rejects.toThrow(/unsupported key type ec secp384r1/);
  });
});

describe('DER helpers', () => {
  it('computes the same key identifier as @peculiar/x509 (RFC 5280 method 1)', async () => {
    for (const alg of ['ECDSA_P256', 'RSA_2048'] as const) {
      const keys = await generateKeyPair(alg);
      const pub = await x509.PublicKey.create(keys.publicKey as never);
      const expected = Buffer.from(await pub.getKeyIdentifier()).toString('hex');
      expect(keyIdentifier(new Uint8Array(pub.rawData))).toBe(expected);
    }
  });

  it.each([0, 5, 127, 128, 255, 256, 70_000])('round-trips a TLV with %i content bytes', (n) => {
    const content = Buffer.alloc(n, 7);
    const der = derTlv(0x30, derTlv(0x04, content), derTlv(0x05));
    const [octets, nul] = derChildren(der);
    expect(Buffer.from(derContents(octets!)).equals(content)).toBe(true);
    expect(Buffer.from(nul!)).toEqual(Buffer.from([0x05, 0]));
  });

  it.each([
    ['truncated', Buffer.from('3005020101', 'hex')],
    ['child overruns parent', Buffer.from('30030205010101', 'hex')],
    ['empty', Buffer.alloc(0)],
  ])('rejects %s DER', (_name, der) => {
    expect(() => derChildren(der)).toThrow(RangeError);
  });

  it('decodes a PEM block and rejects text without one', () => {
    const pem = `junk\n-----BEGIN THING-----\n${Buffer.from('hello').toString('base64')}\n-----END THING-----\n`;
    expect(pemToDer(pem, 'THING').toString()).toBe('hello');
    expect(() => pemToDer(pem, 'OTHER')).toThrow(RangeError);
    expect(() => pemToDer('-----BEGIN THING-----\n!!\n-----END THING-----', 'THING')).toThrow(RangeError);
  });
});
