import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  type Identity,
  asSpiffeId,
  formatSpiffeId,
  parseSpiffeId,
  spiffeIdFromCert,
} from '../../../src/identity/spiffe.js';
import { generateKeyPair } from '../../../src/identity/keys.js';
import { x509 } from '../../../src/identity/x509.js';

const id = (trustDomain: string, namespace: string, serviceAccount: string): Identity => ({
  trustDomain,
  namespace,
  serviceAccount,
});

describe('SPIFFE ids', () => {
  it.each([
    ['spiffe://cluster.local/ns/default/sa/default', id('cluster.local', 'default', 'default')],
    [
      'spiffe://example.org/ns/bookinfo/sa/bookinfo-productpage',
      id('example.org', 'bookinfo', 'bookinfo-productpage'),
    ],
    ['spiffe://td_1-a.b/ns/A.b_c-1/sa/x', id('td_1-a.b', 'A.b_c-1', 'x')],
  ])('parses and formats %s', (uri, identity) => {
    expect(parseSpiffeId(uri)).toEqual(identity);
    expect(formatSpiffeId(identity)).toBe(uri);
    expect(asSpiffeId(uri)).toBe(uri);
  });

  it.each([
    ['empty', ''],
    ['no scheme', 'cluster.local/ns/a/sa/b'],
    ['other scheme', 'https://cluster.local/ns/a/sa/b'],
    ['upper-case scheme', 'SPIFFE://cluster.local/ns/a/sa/b'],
    ['upper-case trust domain', 'spiffe://Cluster.local/ns/a/sa/b'],
    ['empty trust domain', 'spiffe:///ns/a/sa/b'],
    ['port in trust domain', 'spiffe://cluster.local:8080/ns/a/sa/b'],
    ['userinfo', 'spiffe://u@cluster.local/ns/a/sa/b'],
    ['empty namespace', 'spiffe://cluster.local/ns//sa/b'],
    ['empty service account', 'spiffe://cluster.local/ns/a/sa/'],
    ['trailing slash', 'spiffe://cluster.local/ns/a/sa/b/'],
    ['extra segment', 'spiffe://cluster.local/ns/a/sa/b/c'],
    ['missing sa', 'spiffe://cluster.local/ns/a'],
    ['swapped keys', 'spiffe://cluster.local/sa/a/ns/b'],
    ['dot segment', 'spiffe://cluster.local/ns/../sa/b'],
    ['percent-encoding', 'spiffe://cluster.local/ns/a%2Fb/sa/c'],
    ['query', 'spiffe://cluster.local/ns/a/sa/b?x=1'],
    ['fragment', 'spiffe://cluster.local/ns/a/sa/b#x'],
    ['space', 'spiffe://cluster.local/ns/a b/sa/c'],
    ['comma (SAN smuggling)', 'spiffe://cluster.local/ns/a/sa/b, URI:spiffe://x/ns/y/sa/z'],
    ['non-ASCII', 'spiffe://cluster.local/ns/äpfel/sa/b'],
    ['other SPIFFE path', 'spiffe://cluster.local/workload/abc'],
    ['too long', `spiffe://cluster.local/ns/${'a'.repeat(2100)}/sa/b`],
  ])('rejects %s', (_name, uri) => {
    expect(parseSpiffeId(uri)).toBeUndefined();
    expect(asSpiffeId(uri)).toBeUndefined();
  });

  it('refuses to format an identity that could not be parsed back', () => {
    expect(() => formatSpiffeId(id('cluster.local', 'a/b', 'c'))).toThrow(RangeError);
    expect(() => formatSpiffeId(id('', 'a', 'c'))).toThrow(RangeError);
  });
});

async function certWithSans(names: { type: 'url' | 'dns'; value: string }[]): Promise<string> {
  const keys = await generateKeyPair('ECDSA_P256');
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=test',
    keys: keys as never,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: names.length ? [new x509.SubjectAlternativeNameExtension(names)] : [],
  });
  return cert.toString('pem');
}

describe('spiffeIdFromCert', () => {
  const a = 'spiffe://cluster.local/ns/a/sa/b';
  const b = 'spiffe://cluster.local/ns/x/sa/y';
  it.each([
    ['one SPIFFE URI', [{ type: 'url' as const, value: a }], a],
    [
      'a SPIFFE URI next to DNS names',
      [
        { type: 'dns' as const, value: 'svc.local' },
        { type: 'url' as const, value: a },
      ],
      a,
    ],
    // X.509-SVID §2: exactly one URI SAN, whatever the other's scheme.
    [
      'a SPIFFE URI next to another URI',
      [
        { type: 'url' as const, value: 'https://example.org/' },
        { type: 'url' as const, value: a },
      ],
      undefined,
    ],
    // Node's subjectaltname text would read "DNS:x, URI:spiffe://…" for these: no identity.
    ['a DNS name that spells a URI SAN', [{ type: 'dns' as const, value: `x, URI:${a}` }], undefined],
    [
      'a DNS name that spells a URI SAN, quoted',
      [{ type: 'dns' as const, value: `"x", URI:${a}` }],
      undefined,
    ],
    ['no SAN', [], undefined],
    ['only DNS', [{ type: 'dns' as const, value: 'svc.local' }], undefined],
    [
      'two SPIFFE URIs',
      [
        { type: 'url' as const, value: a },
        { type: 'url' as const, value: b },
      ],
      undefined,
    ],
    ['a malformed SPIFFE URI', [{ type: 'url' as const, value: 'spiffe://cluster.local/ns/a' }], undefined],
    ['a URI that smuggles a separator', [{ type: 'url' as const, value: `${a}, URI:${b}` }], undefined],
  ])('reads a cert with %s', async (_name, sans, expected) => {
    expect(spiffeIdFromCert(await certWithSans(sans))).toBe(expected);
  });

  it('returns undefined for text that is not a certificate', () => {
    expect(spiffeIdFromCert('not a cert')).toBeUndefined();
  });

  it('never throws on damaged DER: every truncation and every single-byte flip of a real cert', async () => {
    const pem = await certWithSans([{ type: 'url', value: a }]);
    const der = new X509Certificate(pem).raw;
    expect(spiffeIdFromCert(der)).toBe(a);
    for (let n = 0; n < der.length; n++) expect(spiffeIdFromCert(der.subarray(0, n))).toBeUndefined();
    for (let i = 0; i < der.length; i++) {
      const bad = Buffer.from(der);
      bad[i] = bad[i]! ^ 0xff;
      const got = spiffeIdFromCert(bad);
      // A flip may land in a signature or key byte and leave the SAN intact; it can never yield
      // another identity.
      expect(got === undefined || got === a).toBe(true);
    }
  });
});
