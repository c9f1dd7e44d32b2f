// TLS settings for HBONE, both ends: TLS 1.3 only, ALPN h2, AES-GCM suites, certificates are
// SPIFFE X.509 SVIDs chained to the mesh root. The client sends no SNI (it dials an IP) and
// checks the server's SPIFFE id against the one it expects instead of a host name.
import { X509Certificate } from 'node:crypto';
import type { ConnectionOptions, PeerCertificate, TlsOptions, TLSSocket } from 'node:tls';
import { AmbitError } from '../common/errors.js';
import { spiffeIdFromCert } from '../identity/spiffe.js';

/** What a TLS endpoint needs to present an identity. Structurally a WorkloadCert. */
export interface TlsIdentity {
  spiffeId: string;
  keyPem: string;
  certChainPem: string[]; // leaf first
  rootPem: string;
}

const CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384';

export function serverTlsOptions(id: TlsIdentity): TlsOptions {
  return {
    key: id.keyPem,
    cert: id.certChainPem.join('\n'),
    ca: id.rootPem,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
    ciphers: CIPHERS,
    ALPNProtocols: ['h2'],
  };
}

export function clientTlsOptions(id: TlsIdentity, expectedSpiffeId: string): ConnectionOptions {
  return {
    key: id.keyPem,
    cert: id.certChainPem.join('\n'),
    ca: id.rootPem,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
    ciphers: CIPHERS,
    ALPNProtocols: ['h2'],
    // Called after chain verification succeeded; we replace host-name checks by an identity check.
    checkServerIdentity: (_host: string, cert: PeerCertificate) => {
      const got = spiffeIdOfPeer(cert);
      if (got !== expectedSpiffeId) {
        return new AmbitError(
          'HBONE_IDENTITY_MISMATCH',
          `server identity mismatch: expected ${expectedSpiffeId}, server presented ${got ?? 'no SPIFFE id'}`,
        );
      }
      return undefined;
    },
  };
}

/**
 * The SPIFFE id of a peer certificate, read structurally from its DER (identity/spiffe.ts, the
 * one parser): never from Node's comma-joined `subjectaltname` text, which a DNS name or the
 * subject can make look like an extra `URI:spiffe://…` entry.
 */
export function spiffeIdOfPeer(cert: PeerCertificate | undefined): string | undefined {
  const raw = cert?.raw;
  return raw && raw.length > 0 ? spiffeIdFromCert(raw) : undefined;
}

/** The verified SPIFFE id of the client on an accepted TLS socket. */
export function peerSpiffeId(socket: TLSSocket): string | undefined {
  if (!socket.authorized) return undefined;
  const cert = socket.getPeerX509Certificate();
  return cert ? spiffeIdFromCert(cert) : undefined;
}

/** Trust domain of a spiffe:// id ("spiffe://td/ns/x/sa/y" → "td"). */
export function trustDomainOf(spiffeId: string): string | undefined {
  const m = /^spiffe:\/\/([^/]+)\//.exec(spiffeId);
  return m?.[1];
}

/** Serial and expiry of the leaf we present, for logs. */
export function describeLeaf(id: TlsIdentity): { serial: string; notAfter: string } {
  const leaf = new X509Certificate(id.certChainPem[0] ?? '');
  return { serial: leaf.serialNumber, notAfter: leaf.validTo };
}
