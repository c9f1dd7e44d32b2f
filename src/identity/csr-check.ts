// Checking a PKCS#10 CSR at the CA: proof of possession, an acceptable key, exactly one SPIFFE
// URI SAN. Uses @peculiar/x509 to decode (untrusted input goes through a real ASN.1 parser).
import { type KeyObject, createPublicKey, verify } from 'node:crypto';
import type * as X509 from '@peculiar/x509';
import { AmbitError, errorMessage } from '../common/errors.js';
import { derChildren, pemToDer } from './keys.js';
import { type Identity, type SpiffeId, formatSpiffeId, parseSpiffeId } from './spiffe.js';
import { x509 } from './x509.js';

/** CSRs are a few hundred bytes; anything far larger is garbage or an attempt to make us parse it. */
const MAX_CSR_BYTES = 16 * 1024;
const SAN_OID = '2.5.29.17';
const ACCEPTED_HASHES = new Set(['SHA-256', 'SHA-384', 'SHA-512']);

export interface ParsedCsr {
  spiffeId: SpiffeId;
  identity: Identity;
  /** The requester's public key, as it goes into the certificate. */
  publicKey: X509.PublicKey;
  /** The same key as DER SubjectPublicKeyInfo. */
  spkiDer: Buffer;
  request: X509.Pkcs10CertificateRequest;
}

/**
 * Parses and checks a PEM CSR: proof of possession (signature), an acceptable key, and exactly one
 * SAN entry that is a SPIFFE URI. Throws AmbitError CA_BAD_CSR naming what is wrong.
 *
 * The signature is checked with node:crypto on the calling thread: an ECDSA verify takes ~0.1 ms,
 * less than the two thread-pool round trips WebCrypto would need, and this runs for every CSR.
 */
export function parseCsr(pem: string): ParsedCsr {
  if (typeof pem !== 'string' || pem.length === 0) throw bad('empty CSR');
  if (pem.length > MAX_CSR_BYTES) throw bad(`CSR of ${pem.length} bytes is larger than ${MAX_CSR_BYTES}`);
  try {
    const der = pemToDer(pem, 'CERTIFICATE REQUEST');
    const request = new x509.Pkcs10CertificateRequest(new Uint8Array(der));
    // The library decodes lazily, so a malformed part surfaces from these getters.
    const spki = Buffer.from(request.publicKey.rawData);
    const key = checkKey(spki);
    checkSignature(request, derChildren(der)[0]!, key);
    const spiffeId = spiffeIdFromRequest(request);
    return {
      spiffeId,
      identity: parseSpiffeId(spiffeId)!,
      publicKey: request.publicKey,
      spkiDer: spki,
      request,
    };
  } catch (err) {
    if (err instanceof AmbitError) throw err;
    throw bad(`cannot decode CSR: ${errorMessage(err)}`);
  }
}

function checkSignature(
  request: X509.Pkcs10CertificateRequest,
  signedPart: Uint8Array,
  key: KeyObject,
): void {
  const alg = request.signatureAlgorithm as { name?: string; hash?: { name?: string } };
  const hash = alg.hash?.name;
  if (!hash || !ACCEPTED_HASHES.has(hash)) throw bad(`CSR signature hash ${hash ?? 'unknown'} is not SHA-2`);
  const family = key.asymmetricKeyType === 'ec' ? 'ECDSA' : 'RSASSA-PKCS1-v1_5';
  if (alg.name !== family) throw bad(`CSR signature algorithm ${alg.name ?? 'unknown'} does not fit its key`);
  let ok: boolean;
  try {
    // ECDSA signatures in X.509 are DER, node's default; RSA is PKCS#1 v1.5, also the default.
    ok = verify(hash.replace('-', '').toLowerCase(), signedPart, key, new Uint8Array(request.signature));
  } catch (err) {
    throw bad(`cannot verify CSR signature: ${errorMessage(err)}`);
  }
  if (!ok) throw bad('CSR signature does not match its public key');
}

function spiffeIdFromRequest(request: X509.Pkcs10CertificateRequest): SpiffeId {
  const sans = request.extensions.filter((e) => e.type === SAN_OID);
  if (sans.length === 0) throw bad('CSR has no subjectAltName');
  if (sans.length > 1) throw bad(`CSR has ${sans.length} subjectAltName extensions`);
  // The library's extension factory has already decoded a well-formed SAN; decode it only if not.
  const ext = sans[0]!;
  const names = (
    ext instanceof x509.SubjectAlternativeNameExtension
      ? ext
      : new x509.SubjectAlternativeNameExtension(ext.rawData)
  ).names.items;
  if (names.length !== 1) {
    throw bad(`CSR must name exactly one SPIFFE URI, found ${names.length} SAN entries`);
  }
  const name = names[0]!;
  if (name.type !== 'url') throw bad(`CSR SAN is ${name.type}:${name.value}, not a SPIFFE URI`);
  const identity = parseSpiffeId(name.value);
  if (!identity) throw bad(`CSR SAN ${JSON.stringify(name.value)} is not spiffe://<td>/ns/<ns>/sa/<sa>`);
  return formatSpiffeId(identity);
}

/** Accepts the keys ambit and ztunnel generate (EC P-256/P-384, RSA 2048–4096); refuses weak ones. */
function checkKey(spki: Buffer): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (err) {
    throw bad(`cannot read CSR public key: ${errorMessage(err)}`);
  }
  const d = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec' && (d.namedCurve === 'prime256v1' || d.namedCurve === 'secp384r1'))
    return key;
  const bits = d.modulusLength ?? 0;
  if (key.asymmetricKeyType === 'rsa' && bits >= 2048 && bits <= 4096) return key;
  throw bad(`CSR key ${key.asymmetricKeyType ?? 'unknown'} ${d.namedCurve ?? bits} is not accepted`);
}

function bad(reason: string): AmbitError {
  return new AmbitError('CA_BAD_CSR', `bad CSR: ${reason}`);
}
