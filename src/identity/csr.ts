// Building a PKCS#10 CSR in the node proxy, one per local identity. A CSR names exactly one SPIFFE
// id in a URI SAN and nothing else; the subject is empty like ztunnel's, which per RFC 5280
// §4.2.1.6 makes the SAN extension critical. Encoded by hand (a few DER structures) so node
// proxies don't load an X.509 library; the CA checks it with a full parser (csr-check.ts).
import { KeyObject, sign, webcrypto } from 'node:crypto';
import { derTlv, toPem } from './keys.js';
import { type Identity, formatSpiffeId } from './spiffe.js';

export interface CsrKeys {
  publicKey: webcrypto.CryptoKey;
  privateKey: webcrypto.CryptoKey;
}

const OID = {
  extensionRequest: '1.2.840.113549.1.9.14',
  subjectAltName: '2.5.29.17',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  sha256WithRsa: '1.2.840.113549.1.1.11',
};

/** Builds a PEM CSR for `identity`, signed with SHA-256 by `keys.privateKey` (ECDSA or RSA). */
export async function createCsr(identity: Identity, keys: CsrKeys): Promise<string> {
  const uri = Buffer.from(formatSpiffeId(identity), 'ascii');
  const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey));
  const generalNames = derTlv(0x30, derTlv(0x86, uri)); // [6] IMPLICIT IA5String
  const sanExtension = derTlv(
    0x30,
    derOid(OID.subjectAltName),
    derTlv(0x01, Buffer.from([0xff])),
    derTlv(0x04, generalNames),
  );
  const attributes = derTlv(
    0xa0,
    derTlv(0x30, derOid(OID.extensionRequest), derTlv(0x31, derTlv(0x30, sanExtension))),
  );
  const info = derTlv(0x30, derTlv(0x02, Buffer.from([0])), derTlv(0x30), spki, attributes);
  const ec = keys.privateKey.algorithm.name === 'ECDSA';
  const algorithm = ec
    ? derTlv(0x30, derOid(OID.ecdsaWithSha256))
    : derTlv(0x30, derOid(OID.sha256WithRsa), derTlv(0x05));
  // The async form of sign() runs on the thread pool: an RSA signature must not stall the proxy.
  const signature = await new Promise<Buffer>((resolve, reject) =>
    sign('sha256', info, { key: KeyObject.from(keys.privateKey), dsaEncoding: 'der' }, (err, sig) =>
      err ? reject(err) : resolve(sig),
    ),
  );
  const csr = derTlv(0x30, info, algorithm, derTlv(0x03, Buffer.from([0]), signature));
  return toPem(csr, 'CERTIFICATE REQUEST');
}

/** DER OBJECT IDENTIFIER from dotted text. */
function derOid(oid: string): Buffer {
  const [a = 0, b = 0, ...rest] = oid.split('.').map(Number);
  const bytes = [40 * a + b];
  for (const n of rest) {
    const groups = [n & 0x7f];
    for (let v = Math.floor(n / 128); v > 0; v = Math.floor(v / 128)) groups.unshift((v & 0x7f) | 0x80);
    bytes.push(...groups);
  }
  return derTlv(0x06, Buffer.from(bytes));
}
