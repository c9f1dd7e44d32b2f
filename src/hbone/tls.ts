// TLS settings for HBONE, both ends: TLS 1.3 only, ALPN h2, AES-GCM suites, certificates are
// SPIFFE X.509 SVIDs chained to the mesh root. The client sends no SNI (it dials an IP) and
// checks the server's SPIFFE id against the one it expects instead of a host name.
import { X509Certificate } from 'node:crypto';
import type { ConnectionOptions, PeerCertificate, TlsOptions, TLSSocket } from 'node:tls';
import { AmbitError } from '../common/errors.js';

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

/** The single spiffe:// URI SAN of a peer certificate, or undefined. */
export function spiffeIdOfPeer(cert: PeerCertificate | undefined): string | undefined {
  const san = cert?.subjectaltname;
  if (!san) return undefined;
  const uris = san
    .split(', ')
    .filter((s) => s.startsWith('URI:spiffe://'))
    .map((s) => s.slice(4));
  return uris.length === 1 ? uris[0] : undefined;
}

/** The verified SPIFFE id of the client on an accepted TLS socket. */
export function peerSpiffeId(socket: TLSSocket): string | undefined {
  if (!socket.authorized) return undefined;
  return spiffeIdOfPeer(socket.getPeerCertificate());
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
