// SPIFFE identities in the Kubernetes shape Istio uses: spiffe://<trust-domain>/ns/<ns>/sa/<sa>.
// Parsing is strict on purpose: an identity string decides who may talk to whom, so anything that
// is not exactly this shape (extra path segments, empty parts, odd characters, query, port) is
// rejected instead of being normalised into something that might compare equal to a real identity.
import { X509Certificate } from 'node:crypto';

export interface Identity {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

/** A string known to be a well-formed `spiffe://<td>/ns/<ns>/sa/<sa>`; only made by this module. */
export type SpiffeId = string & { readonly __brand: 'SpiffeId' };

export const SPIFFE_SCHEME = 'spiffe://';
export const DEFAULT_TRUST_DOMAIN = 'cluster.local';

// SPIFFE spec (SPIFFE-ID §2.1, §2.2): trust domain is lowercase letters, digits, '.', '-', '_';
// path segments are letters, digits, '.', '-', '_' and may not be '.' or '..'.
const TRUST_DOMAIN_RE = /^[a-z0-9._-]+$/;
const SEGMENT_RE = /^[A-Za-z0-9._-]+$/;
const MAX_TRUST_DOMAIN = 255;
const MAX_SPIFFE_ID = 2048;

function validTrustDomain(td: string): boolean {
  return td.length > 0 && td.length <= MAX_TRUST_DOMAIN && TRUST_DOMAIN_RE.test(td);
}

function validSegment(s: string): boolean {
  return SEGMENT_RE.test(s) && s !== '.' && s !== '..';
}

/** True when all three parts can appear in a SPIFFE id. */
export function isValidIdentity(id: Identity): boolean {
  return validTrustDomain(id.trustDomain) && validSegment(id.namespace) && validSegment(id.serviceAccount);
}

/**
 * Formats an identity. Throws RangeError for parts that cannot appear in a SPIFFE id: such an
 * identity comes from a caller bug or unvalidated input, and a cert for it could never be parsed back.
 */
export function formatSpiffeId(id: Identity): SpiffeId {
  if (!isValidIdentity(id)) {
    throw new RangeError(
      `cannot form a SPIFFE id from trustDomain=${JSON.stringify(id.trustDomain)} ` +
        `namespace=${JSON.stringify(id.namespace)} serviceAccount=${JSON.stringify(id.serviceAccount)}`,
    );
  }
  return `${SPIFFE_SCHEME}${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}` as SpiffeId;
}

/** Parses `spiffe://<td>/ns/<ns>/sa/<sa>`; anything else (including other SPIFFE paths) is undefined. */
export function parseSpiffeId(uri: string): Identity | undefined {
  if (typeof uri !== 'string' || uri.length > MAX_SPIFFE_ID || !uri.startsWith(SPIFFE_SCHEME))
    return undefined;
  const parts = uri.slice(SPIFFE_SCHEME.length).split('/');
  if (parts.length !== 5) return undefined;
  const [trustDomain, nsKey, namespace, saKey, serviceAccount] = parts as [
    string,
    string,
    string,
    string,
    string,
  ];
  if (nsKey !== 'ns' || saKey !== 'sa') return undefined;
  const id = { trustDomain, namespace, serviceAccount };
  return isValidIdentity(id) ? id : undefined;
}

/** Type guard for values that arrive as plain strings (xDS fields, log lines, tests). */
export function asSpiffeId(uri: string): SpiffeId | undefined {
  const id = parseSpiffeId(uri);
  return id ? formatSpiffeId(id) : undefined;
}

/**
 * The SPIFFE id of a certificate, or undefined. The one parser every certificate goes through
 * (HBONE client and server, waypoint, certificate manager; the CA reads CSRs the same way in
 * csr-check.ts). It reads the subjectAltName extension structurally from the DER, never from
 * Node's `subjectaltname` text, whose comma-joined form an attacker can influence through a DNS
 * name or the subject. X.509-SVID §2 (github.com/spiffe/spiffe, standards/X509-SVID.md): "An
 * X.509 SVID MUST contain exactly one URI SAN". So a certificate with no SAN extension, two SAN
 * extensions (RFC 5280 §4.2 forbids repeating one), zero or several URI names (of any scheme),
 * a URI that is not IA5 text, or a URI that is not spiffe://<td>/ns/<ns>/sa/<sa> identifies
 * nobody. Other name types (DNS, IP, email) are ignored, as they carry no identity here.
 */
export function spiffeIdFromCert(cert: X509Certificate | string | Uint8Array): SpiffeId | undefined {
  let der: Uint8Array;
  try {
    der =
      cert instanceof X509Certificate
        ? cert.raw
        : typeof cert === 'string'
          ? new X509Certificate(cert).raw
          : cert;
  } catch {
    return undefined;
  }
  const uris = certUriSans(der);
  if (!uris || uris.length !== 1) return undefined;
  return asSpiffeId(uris[0]!);
}

/**
 * The URI names of a DER certificate's subjectAltName, or undefined when the certificate cannot
 * be read or has no (or more than one) subjectAltName extension. Structural: Certificate →
 * tbsCertificate → [3] extensions → Extension{2.5.29.17} → GeneralNames → [6] uniformResourceIdentifier.
 */
export function certUriSans(der: Uint8Array): string[] | undefined {
  try {
    const [tbs] = derSequence(der);
    if (!tbs) return undefined;
    const explicitExtensions = derSequence(tbs).find((f) => f[0] === 0xa3);
    if (!explicitExtensions) return undefined;
    const extensions = derElements(explicitExtensions);
    if (extensions.length !== 1) return undefined;
    const sans: Uint8Array[] = [];
    for (const ext of derSequence(extensions[0]!)) {
      const fields = derSequence(ext);
      const oid = fields[0];
      if (!oid || !sameBytes(oid, SAN_OID_TLV)) continue;
      const value = fields[fields.length - 1]!;
      if (value[0] !== 0x04) return undefined; // extnValue must be an OCTET STRING
      sans.push(derBody(value));
    }
    if (sans.length !== 1) return undefined;
    const uris: string[] = [];
    for (const name of derSequence(sans[0]!)) {
      if (name[0] !== 0x86) continue; // [6] IMPLICIT IA5String: uniformResourceIdentifier
      const body = derBody(name);
      if (body.some((b) => b > 0x7e || b < 0x20)) return undefined; // not printable IA5: no identity
      uris.push(Buffer.from(body).toString('latin1'));
    }
    return uris;
  } catch {
    return undefined;
  }
}

// OBJECT IDENTIFIER 2.5.29.17 (id-ce-subjectAltName) as a whole TLV.
const SAN_OID_TLV = Uint8Array.from([0x06, 0x03, 0x55, 0x1d, 0x11]);

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// A bounds-checked DER walker of its own (definite lengths, single-byte tags, as X.509 uses):
// spiffe.ts stays free of imports so every layer may use it.

/** The children of a SEQUENCE TLV (tag 0x30); throws RangeError on anything else or malformed. */
function derSequence(tlv: Uint8Array): Uint8Array[] {
  if (tlv[0] !== 0x30) throw new RangeError('expected a DER SEQUENCE');
  return derElements(tlv);
}

/** The complete child TLVs inside a constructed TLV. */
function derElements(tlv: Uint8Array): Uint8Array[] {
  const { start, end } = derSpan(tlv, 0);
  if (end !== tlv.length) throw new RangeError('trailing bytes after a DER value');
  const out: Uint8Array[] = [];
  for (let pos = start; pos < end;) {
    const child = derSpan(tlv, pos);
    if (child.end > end) throw new RangeError('DER child overruns its parent');
    out.push(tlv.subarray(pos, child.end));
    pos = child.end;
  }
  return out;
}

function derBody(tlv: Uint8Array): Uint8Array {
  const { start, end } = derSpan(tlv, 0);
  return tlv.subarray(start, end);
}

function derSpan(der: Uint8Array, pos: number): { start: number; end: number } {
  if (pos + 2 > der.length) throw new RangeError('DER truncated');
  if ((der[pos]! & 0x1f) === 0x1f) throw new RangeError('multi-byte DER tags are not used in X.509');
  let p = pos + 1;
  let len = der[p++]!;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 3) throw new RangeError('DER length form not supported');
    len = 0;
    for (let i = 0; i < n; i++) {
      if (p >= der.length) throw new RangeError('DER truncated');
      len = len * 256 + der[p++]!;
    }
  }
  if (p + len > der.length) throw new RangeError('DER truncated');
  return { start: p, end: p + len };
}
