import { generateKeyPairSync, webcrypto } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { isAmbitError } from '../../../src/common/errors.js';
import { createCsr } from '../../../src/identity/csr.js';
import { parseCsr } from '../../../src/identity/csr-check.js';
import { type KeyAlgorithm, generateKeyPair } from '../../../src/identity/keys.js';
import { x509 } from '../../../src/identity/x509.js';
import type { Identity } from '../../../src/identity/spiffe.js';

const alice: Identity = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'alice' };
const ECDSA = { name: 'ECDSA', hash: 'SHA-256' };

type Names = { type: 'url' | 'dns'; value: string }[];

/** A CSR built directly with the library, to make the malformed ones createCsr never would. */
async function rawCsr(opts: {
  sans?: Names[];
  keys?: { publicKey: unknown; privateKey: unknown };
}): Promise<string> {
  const keys = opts.keys ?? (await generateKeyPair('ECDSA_P256'));
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys: keys as never,
    signingAlgorithm: ECDSA,
    extensions: (opts.sans ?? []).map((names) => new x509.SubjectAlternativeNameExtension(names)),
  });
  return csr.toString('pem');
}

function expectBadCsr(fn: () => unknown, reason: RegExp): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(isAmbitError(thrown, 'CA_BAD_CSR'), String(thrown)).toBe(true);
  expect((thrown as Error).message).toMatch(reason);
}

describe('CSR round trip', () => {
  it.each<KeyAlgorithm>(['ECDSA_P256', 'RSA_2048'])('creates and parses a %s CSR', async (alg) => {
    const keys = await generateKeyPair(alg);
    const pem = await createCsr(alice, keys);
    expect(pem).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----\n/);
    const parsed = parseCsr(pem);
    expect(parsed.spiffeId).toBe('spiffe://cluster.local/ns/default/sa/alice');
    expect(parsed.identity).toEqual(alice);
    const ours = Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey));
    expect(parsed.spkiDer.equals(ours)).toBe(true);
    expect(parsed.subjectDer.toString('hex')).toBe('3000'); // empty subject, as ztunnel's
    expect(parsed.hash).toBe('SHA-256');
  });
});

describe('CSRs the CA refuses', () => {
  const spiffe = 'spiffe://cluster.local/ns/default/sa/alice';

  it.each([
    ['an empty string', '', /empty CSR/],
    ['text that is not PEM', 'hello', /cannot decode CSR/],
    [
      'a PEM block of random bytes',
      `-----BEGIN CERTIFICATE REQUEST-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE REQUEST-----\n`,
      /cannot decode CSR/,
    ],
    [
      'a certificate instead of a CSR',
      '-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n',
      /cannot decode CSR/,
    ],
    ['a huge input', 'A'.repeat(100_000), /larger than/],
  ])('refuses %s', (_name, pem, reason) => {
    expectBadCsr(() => parseCsr(pem), reason);
  });

  it('refuses a CSR whose signature was made by another key', async () => {
    const a = await generateKeyPair('ECDSA_P256');
    const b = await generateKeyPair('ECDSA_P256');
    const pem = await rawCsr({
      sans: [[{ type: 'url', value: spiffe }]],
      keys: { publicKey: b.publicKey, privateKey: a.privateKey },
    });
    expectBadCsr(() => parseCsr(pem), /signature does not match/);
  });

  it('refuses a CSR whose signed content was altered', async () => {
    const pem = await createCsr(alice, await generateKeyPair('ECDSA_P256'));
    const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const at = der.indexOf(Buffer.from('alice'));
    der.write('alicf', at); // a different identity under the original signature
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    expectBadCsr(() => parseCsr(tampered), /signature does not match/);
  });

  it.each<[string, Names[], RegExp]>([
    ['no SAN', [], /no subjectAltName/],
    [
      'two SPIFFE URIs in one SAN',
      [
        [
          { type: 'url', value: spiffe },
          { type: 'url', value: spiffe.replace('alice', 'bob') },
        ],
      ],
      /exactly one SPIFFE URI, found 2/,
    ],
    [
      'two SAN extensions',
      [[{ type: 'url', value: spiffe }], [{ type: 'url', value: spiffe }]],
      /2 subjectAltName extensions/,
    ],
    ['a DNS SAN', [[{ type: 'dns', value: 'alice.default.svc' }]], /not a SPIFFE URI/],
    ['a non-SPIFFE URI', [[{ type: 'url', value: 'https://example.org/alice' }]], /is not spiffe:/],
    [
      'a SPIFFE URI of another shape',
      [[{ type: 'url', value: 'spiffe://cluster.local/alice' }]],
      /is not spiffe:/,
    ],
    [
      'a SPIFFE URI plus a DNS name',
      [
        [
          { type: 'url', value: spiffe },
          { type: 'dns', value: 'a.svc' },
        ],
      ],
      /found 2 SAN entries/,
    ],
  ])('refuses a CSR with %s', async (_name, sans, reason) => {
    const pem = await rawCsr({ sans });
    expectBadCsr(() => parseCsr(pem), reason);
  });

  it('refuses a weak RSA key', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const imp = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    const keys = {
      publicKey: await webcrypto.subtle.importKey(
        'spki',
        publicKey.export({ format: 'der', type: 'spki' }),
        imp,
        true,
        ['verify'],
      ),
      privateKey: await webcrypto.subtle.importKey(
        'pkcs8',
        privateKey.export({ format: 'der', type: 'pkcs8' }),
        imp,
        true,
        ['sign'],
      ),
    };
    const pem = await createCsr(alice, keys);
    expectBadCsr(() => parseCsr(pem), /CSR key rsa 1024 is not accepted/);
  });
});

describe('CSR parsing of hostile input', () => {
  it('answers every mutated CSR with CA_BAD_CSR or the original identity, never another error', async () => {
    const pem = await createCsr(alice, await generateKeyPair('ECDSA_P256'));
    const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    let refused = 0;
    for (let i = 0; i < 2000; i++) {
      const m = Buffer.from(der);
      const at = (i * 7919) % m.length;
      m[at] = (m[at]! + 1 + (i % 255)) & 0xff;
      const mutated = `-----BEGIN CERTIFICATE REQUEST-----\n${m.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
      try {
        expect(parseCsr(mutated).spiffeId).toBe('spiffe://cluster.local/ns/default/sa/alice');
      } catch (err) {
        expect((err as { code?: string }).code).toBe('CA_BAD_CSR');
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(1900);
  });
});
