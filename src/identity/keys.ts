// Key pairs for workload certificates and the mesh root, and minimal DER reading/writing.
// This file does not load @peculiar/x509 (see x509.ts): node proxies import it.
//
// Generation goes through WebCrypto because Node runs `subtle.generateKey` (and exportKey) as a
// job on the libuv thread pool: an RSA-2048 key takes 50–200 ms and must not stall the proxy's
// event loop while connections are waiting.
import {
  type KeyObject,
  createHash,
  createPrivateKey,
  createPublicKey,
  randomBytes,
  webcrypto,
} from 'node:crypto';

export type CryptoKey = webcrypto.CryptoKey;

/** ECDSA P-256 is what ztunnel and istiod use; RSA-2048 is kept for CAs that insist on RSA. */
export type KeyAlgorithm = 'ECDSA_P256' | 'RSA_2048';

export const DEFAULT_KEY_ALGORITHM: KeyAlgorithm = 'ECDSA_P256';

export interface GeneratedKeyPair {
  /** PKCS#8 PEM, accepted by `tls.createSecureContext({ key })`. */
  privateKeyPem: string;
  publicKey: CryptoKey;
  privateKey: CryptoKey;
}

interface AlgorithmParams {
  generate: webcrypto.EcKeyGenParams | webcrypto.RsaHashedKeyGenParams;
  import: webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams;
  /** What @peculiar/x509 needs to sign a CSR or certificate with this key. */
  signing: { name: string; hash: string };
}

const ALGORITHMS: Record<KeyAlgorithm, AlgorithmParams> = {
  ECDSA_P256: {
    generate: { name: 'ECDSA', namedCurve: 'P-256' },
    import: { name: 'ECDSA', namedCurve: 'P-256' },
    signing: { name: 'ECDSA', hash: 'SHA-256' },
  },
  RSA_2048: {
    generate: {
      name: 'RSASSA-PKCS1-v1_5',
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: 'SHA-256',
    },
    import: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
    signing: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
  },
};

export function signingAlgorithm(alg: KeyAlgorithm): { name: string; hash: string } {
  return ALGORITHMS[alg].signing;
}

/** Generates a key pair off the event loop and exports the private half as PKCS#8 PEM. */
export async function generateKeyPair(alg: KeyAlgorithm = DEFAULT_KEY_ALGORITHM): Promise<GeneratedKeyPair> {
  const params = ALGORITHMS[alg];
  if (!params) throw new RangeError(`unknown key algorithm ${String(alg)}`);
  // Extractable so the private key can be exported once for TLS; it never leaves the process.
  const pair = (await webcrypto.subtle.generateKey(params.generate, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', pair.privateKey);
  return {
    privateKeyPem: toPem(Buffer.from(pkcs8), 'PRIVATE KEY'),
    publicKey: pair.publicKey,
    privateKey: pair.privateKey,
  };
}

export interface ImportedKeyPair {
  algorithm: KeyAlgorithm;
  /** For node:crypto's sign(), which the CA uses on its hot path. */
  keyObject: KeyObject;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  /** DER SubjectPublicKeyInfo, to compare against a certificate's key. */
  spkiDer: Buffer;
}

/**
 * Imports a PEM private key (PKCS#8, SEC1 "EC PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY": operators
 * bring roots made by openssl or cert-manager in any of these) and derives its public key.
 * Throws RangeError for key types ambit cannot sign with.
 */
export async function importPrivateKeyPem(pem: string): Promise<ImportedKeyPair> {
  const keyObject = createPrivateKey(pem);
  const algorithm = keyAlgorithmOf(keyObject.asymmetricKeyType, keyObject.asymmetricKeyDetails);
  const params = ALGORITHMS[algorithm];
  const pkcs8 = keyObject.export({ format: 'der', type: 'pkcs8' });
  const spkiDer = createPublicKey(keyObject).export({ format: 'der', type: 'spki' });
  const [privateKey, publicKey] = await Promise.all([
    webcrypto.subtle.importKey('pkcs8', pkcs8, params.import, false, ['sign']),
    webcrypto.subtle.importKey('spki', spkiDer, params.import, true, ['verify']),
  ]);
  return { algorithm, keyObject, privateKey, publicKey, spkiDer };
}

function keyAlgorithmOf(
  type: string | undefined,
  details: { namedCurve?: string; modulusLength?: number } | undefined,
): KeyAlgorithm {
  if (type === 'ec' && details?.namedCurve === 'prime256v1') return 'ECDSA_P256';
  // Any RSA size of 2048 bits or more signs the same way; smaller keys are too weak for a root.
  if (type === 'rsa' && (details?.modulusLength ?? 0) >= 2048) return 'RSA_2048';
  const detail = details?.namedCurve ?? (details?.modulusLength ? `${details.modulusLength} bit` : '');
  throw new RangeError(`unsupported key type ${type ?? 'unknown'} ${detail}: use ECDSA P-256 or RSA >= 2048`);
}

export function toPem(der: Uint8Array, label: string): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** The DER bytes of the first PEM block labelled `label`; throws RangeError when there is none. */
export function pemToDer(pem: string, label: string): Buffer {
  const begin = `-----BEGIN ${label}-----`;
  const start = pem.indexOf(begin);
  const end = pem.indexOf(`-----END ${label}-----`, start);
  if (start < 0 || end < 0) throw new RangeError(`no PEM block "${label}"`);
  const body = pem.slice(start + begin.length, end);
  if (!/^[A-Za-z0-9+/=\s]*$/.test(body)) throw new RangeError(`PEM block "${label}" is not base64`);
  return Buffer.from(body, 'base64');
}

// ---- minimal DER reading and writing for the CA's hot path. @peculiar/x509's generic ASN.1
// layer costs ~1.6 ms to build one certificate and ~1 ms to parse one CSR on a fast core, which
// alone caps a CA near 400 CSRs/s; these helpers only walk and assemble TLVs whose contents the
// library or node:crypto has produced or already validated.

/** The complete TLVs of the children of the SEQUENCE `der` starts with. Throws RangeError if malformed. */
export function derChildren(der: Uint8Array): Uint8Array[] {
  const outer = readTlv(der, 0);
  const out: Uint8Array[] = [];
  for (let pos = outer.contentStart; pos < outer.end;) {
    const child = readTlv(der, pos);
    if (child.end > outer.end) throw new RangeError('DER child overruns its parent');
    out.push(der.subarray(pos, child.end));
    pos = child.end;
  }
  return out;
}

/** The contents of a TLV (after tag and length). */
export function derContents(tlv: Uint8Array): Uint8Array {
  const t = readTlv(tlv, 0);
  return tlv.subarray(t.contentStart, t.end);
}

function readTlv(der: Uint8Array, pos: number): { contentStart: number; end: number } {
  if (pos + 2 > der.length) throw new RangeError('DER truncated');
  let p = pos + 1; // single-byte tags only: X.509 uses no high tag numbers
  let len = der[p++]!;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new RangeError('DER length form not supported');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[p++]!;
  }
  if (p + len > der.length) throw new RangeError('DER truncated');
  return { contentStart: p, end: p + len };
}

/**
 * Subject/authority key identifier per RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey
 * bits of a DER SubjectPublicKeyInfo. Hex.
 */
export function keyIdentifier(spkiDer: Uint8Array): string {
  const [, bitString] = derChildren(spkiDer);
  if (!bitString) throw new RangeError('SubjectPublicKeyInfo without a key');
  return createHash('sha1').update(derContents(bitString).subarray(1)).digest('hex');
}

/** Encodes one TLV. */
export function derTlv(tag: number, ...contents: Uint8Array[]): Buffer {
  let len = 0;
  for (const c of contents) len += c.length;
  let header: number[];
  if (len < 0x80) header = [tag, len];
  else if (len < 0x100) header = [tag, 0x81, len];
  else if (len < 0x10000) header = [tag, 0x82, len >> 8, len & 0xff];
  else header = [tag, 0x83, len >> 16, (len >> 8) & 0xff, len & 0xff];
  return Buffer.concat([Buffer.from(header), ...contents]);
}

/** UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 §4.1.2.5), whole seconds. */
export function derTime(d: Date): Buffer {
  const digits = d.toISOString().slice(0, 19).replace(/[-:T]/g, '') + 'Z'; // YYYYMMDDHHMMSSZ
  return d.getUTCFullYear() < 2050
    ? derTlv(0x17, Buffer.from(digits.slice(2)))
    : derTlv(0x18, Buffer.from(digits));
}

/** 128 random bits as a minimal, positive DER INTEGER body (RFC 5280 §4.1.2.2). */
export function randomSerialNumber(): Buffer {
  const bytes = randomBytes(16);
  if (bytes[0] === 0) bytes[0] = 1; // a leading zero octet would make the encoding non-minimal
  return bytes[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes;
}
