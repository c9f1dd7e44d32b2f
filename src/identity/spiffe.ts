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
 * The single SPIFFE id in a certificate's URI SANs, or undefined when there is none, more than
 * one, or it is malformed. Two SPIFFE URIs would make the peer's identity ambiguous, so that
 * certificate identifies nobody (X.509-SVID §2 allows exactly one).
 */
export function spiffeIdFromCert(cert: X509Certificate | string): SpiffeId | undefined {
  let x509: X509Certificate;
  try {
    x509 = typeof cert === 'string' ? new X509Certificate(cert) : cert;
  } catch {
    return undefined;
  }
  const san = x509.subjectAltName;
  if (!san) return undefined;
  const uris = parseAltNames(san)
    .filter((n) => n.type === 'URI' && n.value.toLowerCase().startsWith(SPIFFE_SCHEME))
    .map((n) => n.value);
  if (uris.length !== 1) return undefined;
  return asSpiffeId(uris[0] as string);
}

interface AltName {
  type: string;
  value: string;
}

/**
 * Splits Node's `subjectAltName` text ("DNS:a, URI:spiffe://…, IP Address:1.2.3.4").
 * Since the fix for CVE-2021-44532 Node writes a value that contains a separator or other unsafe
 * characters as a JSON string literal (`URI:"a, URI:b"`), so a value cannot smuggle in a second
 * entry; we decode those literals instead of splitting on ", " blindly.
 */
export function parseAltNames(text: string): AltName[] {
  const out: AltName[] = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const type = text.slice(i, colon);
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      end = endOfJsonString(text, colon + 1);
      try {
        value = JSON.parse(text.slice(colon + 1, end)) as string;
      } catch {
        return out; // malformed text: keep only what parsed cleanly before it
      }
    } else {
      const sep = text.indexOf(', ', colon + 1);
      end = sep < 0 ? text.length : sep;
      value = text.slice(colon + 1, end);
    }
    out.push({ type, value });
    i = text.startsWith(', ', end) ? end + 2 : text.length;
  }
  return out;
}

/** Index just past the closing quote of the JSON string literal starting at `start`. */
function endOfJsonString(text: string, start: number): number {
  for (let j = start + 1; j < text.length; j++) {
    if (text[j] === '\\') j++;
    else if (text[j] === '"') return j + 1;
  }
  return text.length;
}
