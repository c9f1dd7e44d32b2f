// The mesh CA: one self-signed root (made on first start and kept in the state directory, or
// supplied by the operator) that signs short-lived SPIFFE workload certificates and the control
// plane's own serving certificate.
//
// A node proxy restart storm sends hundreds of CSRs at once, so signing is built for throughput:
// everything that does not change per call (issuer name, algorithm id, the fixed extensions) is
// DER-encoded once, by @peculiar/x509, when the CA starts; per call we only encode the serial,
// validity, SAN and key id, assemble the TBSCertificate and sign it with node:crypto on the
// thread pool. The CSR itself, which is untrusted input, is still parsed by the library.
import { type KeyObject, sign, webcrypto } from 'node:crypto';
import { access, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import type * as X509 from '@peculiar/x509';
import { AmbitError, errorMessage } from '../common/errors.js';
import { type Logger, componentLogger } from '../common/log.js';
import { type ParsedCsr, parseCsr } from '../identity/csr-check.js';
import {
  type KeyAlgorithm,
  DEFAULT_KEY_ALGORITHM,
  derChildren,
  derTime,
  derTlv,
  generateKeyPair,
  importPrivateKeyPem,
  keyIdentifier,
  randomSerialNumber,
  signingAlgorithm,
  toPem,
} from '../identity/keys.js';
import { x509 } from '../identity/x509.js';
import type { SpiffeId } from '../identity/spiffe.js';

export const DEFAULT_MAX_TTL_SECONDS = 7 * 24 * 3600;
const ROOT_VALIDITY_MS = 10 * 365 * 24 * 3600 * 1000;
/** Serving certs are not rotated in place, so they live long; the root still caps them. */
const SERVING_TTL_SECONDS = 365 * 24 * 3600;
/** Accept a peer whose clock runs a little behind ours (Istio backdates the same way). */
const DEFAULT_BACKDATE_SECONDS = 60;

/** DER AlgorithmIdentifiers: ecdsa-with-SHA256 (RFC 5758) and sha256WithRSAEncryption (RFC 4055). */
const SIGNATURE_ALGORITHM_DER: Record<KeyAlgorithm, Buffer> = {
  ECDSA_P256: Buffer.from('300a06082a8648ce3d040302', 'hex'),
  RSA_2048: Buffer.from('300d06092a864886f70d01010b0500', 'hex'),
};
const VERSION_3 = Buffer.from('a003020102', 'hex');
const EMPTY_NAME = Buffer.from('3000', 'hex');
const OID_SAN = Buffer.from('0603551d11', 'hex');
const OID_SKI = Buffer.from('0603551d0e', 'hex');
const CRITICAL = Buffer.from('0101ff', 'hex');

export interface MeshCaOptions {
  stateDir: string;
  trustDomain: string;
  /** Operator-supplied root: both files or neither. Nothing is written when they are given. */
  rootCertFile?: string;
  rootKeyFile?: string;
  /** Key type of a newly created root; a loaded root keeps its own. */
  keyAlgorithm?: KeyAlgorithm;
  maxTtlSeconds?: number;
  backdateSeconds?: number;
  logger?: Logger;
}

export interface SignOptions {
  ttlSeconds: number;
  /** When set, the CSR must name exactly this identity. */
  expectedSpiffeId?: SpiffeId;
}

export interface IssuedCert {
  /** [leaf PEM, root PEM]. */
  chain: string[];
  spiffeId: SpiffeId;
  /** Upper-case hex, as node:crypto's X509Certificate.serialNumber prints it. */
  serial: string;
  notAfter: Date;
}

interface Root {
  cert: X509.X509Certificate;
  pem: string;
  key: KeyObject;
  algorithm: KeyAlgorithm;
}

export class MeshCa {
  readonly rootCertPem: string;
  readonly trustDomain: string;
  readonly maxTtlSeconds: number;
  readonly rootNotAfter: Date;
  private readonly root: Root;
  private readonly backdateMs: number;
  private readonly hash: string;
  private readonly signatureAlgorithm: Buffer;
  /** The root's subject exactly as encoded, so chain building matches byte for byte. */
  private readonly issuer: Uint8Array;
  private readonly fixedExtensions: Buffer[];

  private constructor(root: Root, opts: MeshCaOptions) {
    this.root = root;
    this.rootCertPem = root.pem;
    this.rootNotAfter = root.cert.notAfter;
    this.trustDomain = opts.trustDomain;
    this.maxTtlSeconds = opts.maxTtlSeconds ?? DEFAULT_MAX_TTL_SECONDS;
    this.backdateMs = (opts.backdateSeconds ?? DEFAULT_BACKDATE_SECONDS) * 1000;
    this.hash = signingAlgorithm(root.algorithm).hash.replace('-', '').toLowerCase();
    this.signatureAlgorithm = SIGNATURE_ALGORITHM_DER[root.algorithm];
    const rootTbs = derChildren(derChildren(new Uint8Array(root.cert.rawData))[0]!);
    this.issuer = rootTbs[5]!; // version, serial, signature, issuer, validity, subject
    const rootKeyId = root.cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
    this.fixedExtensions = [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
        true,
      ),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.AuthorityKeyIdentifierExtension(
        rootKeyId ?? keyIdentifier(new Uint8Array(root.cert.publicKey.rawData)),
      ),
    ].map((e) => Buffer.from(e.rawData));
  }

  /** Loads the root from the operator's files, else from `<stateDir>/ca/`, else creates it there. */
  static async loadOrCreate(opts: MeshCaOptions): Promise<MeshCa> {
    const log = opts.logger ?? componentLogger('ca');
    let root: Root;
    let source: string;
    if (opts.rootCertFile || opts.rootKeyFile) {
      if (!opts.rootCertFile || !opts.rootKeyFile) {
        throw new AmbitError('CONFIG_INVALID', 'CA root: give both rootCertFile and rootKeyFile, or neither');
      }
      root = await loadRoot(opts.rootCertFile, opts.rootKeyFile);
      source = opts.rootCertFile;
    } else {
      const dir = path.join(opts.stateDir, 'ca');
      const certFile = path.join(dir, 'root-cert.pem');
      const keyFile = path.join(dir, 'root-key.pem');
      if (await exists(certFile)) {
        root = await loadRoot(certFile, keyFile);
        source = certFile;
      } else {
        // A key without a cert is a creation that crashed halfway; that key was never trusted.
        const keyPem = (await generateKeyPair(opts.keyAlgorithm ?? DEFAULT_KEY_ALGORITHM)).privateKeyPem;
        const certPem = await createRootCertPem(opts.trustDomain, keyPem);
        await persistRoot(dir, certFile, certPem, keyFile, keyPem);
        root = await loadRoot(certFile, keyFile);
        source = `${certFile} (created)`;
      }
    }
    const ca = new MeshCa(root, opts);
    log.info(
      {
        'ca.root': source,
        'ca.subject': root.cert.subject,
        'ca.not_after': ca.rootNotAfter.toISOString(),
        'ca.key': root.algorithm,
        'ca.trust_domain': opts.trustDomain,
      },
      'mesh CA ready',
    );
    return ca;
  }

  /** Verifies a CSR and signs it: returns [leaf PEM, root PEM]. Throws CA_BAD_CSR / CA_PERMISSION_DENIED. */
  async signCsr(csrPem: string, opts: SignOptions): Promise<string[]> {
    return (await this.signParsedCsr(parseCsr(csrPem), opts)).chain;
  }

  /** The second half of signCsr, for callers that authorise the parsed identity in between. */
  async signParsedCsr(csr: ParsedCsr, opts: SignOptions): Promise<IssuedCert> {
    if (csr.identity.trustDomain !== this.trustDomain) {
      throw new AmbitError(
        'CA_PERMISSION_DENIED',
        `identity ${csr.spiffeId} is outside this CA's trust domain ${this.trustDomain}`,
      );
    }
    if (opts.expectedSpiffeId !== undefined && opts.expectedSpiffeId !== csr.spiffeId) {
      throw new AmbitError(
        'CA_PERMISSION_DENIED',
        `CSR names ${csr.spiffeId}, expected ${opts.expectedSpiffeId}`,
      );
    }
    const ttl = Math.min(checkTtl(opts.ttlSeconds), this.maxTtlSeconds);
    // Empty subject as in Istio's workload certs, which makes the SAN critical (RFC 5280 §4.2.1.6).
    const san = derTlv(
      0x30,
      OID_SAN,
      CRITICAL,
      derTlv(0x04, derTlv(0x30, derTlv(0x86, Buffer.from(csr.spiffeId)))),
    );
    const leaf = await this.issue(csr.spkiDer, san, ttl);
    return {
      chain: [leaf.pem, this.rootCertPem],
      spiffeId: csr.spiffeId,
      serial: leaf.serial,
      notAfter: leaf.notAfter,
    };
  }

  /** A key and certificate for the control plane's own TLS listener (15012). */
  async issueServingCert(opts: {
    dnsNames: string[];
    ips: string[];
    spiffeId?: SpiffeId;
    ttlSeconds?: number;
  }): Promise<{ keyPem: string; certChainPem: string }> {
    const bad = opts.ips.filter((ip) => isIP(ip) === 0);
    if (bad.length > 0) throw new RangeError(`not IP addresses: ${bad.join(', ')}`);
    if (opts.dnsNames.length + opts.ips.length === 0)
      throw new RangeError('a serving cert needs a DNS name or IP');
    const names: X509.JsonGeneralNames = [
      ...opts.dnsNames.map((value) => ({ type: 'dns' as const, value })),
      ...opts.ips.map((value) => ({ type: 'ip' as const, value })),
      ...(opts.spiffeId ? [{ type: 'url' as const, value: opts.spiffeId }] : []),
    ];
    const san = Buffer.from(new x509.SubjectAlternativeNameExtension(names, true).rawData);
    const keys = await generateKeyPair('ECDSA_P256');
    const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey));
    const leaf = await this.issue(spki, san, checkTtl(opts.ttlSeconds ?? SERVING_TTL_SECONDS));
    return { keyPem: keys.privateKeyPem, certChainPem: leaf.pem + this.rootCertPem };
  }

  private async issue(
    spkiDer: Uint8Array,
    sanExtension: Buffer,
    ttlSeconds: number,
  ): Promise<{ pem: string; serial: string; notAfter: Date }> {
    // DER times carry whole seconds; round here so the returned notAfter is what the cert says.
    const now = Math.floor(Date.now() / 1000) * 1000;
    const notAfter = new Date(Math.min(now + Math.floor(ttlSeconds) * 1000, this.rootNotAfter.getTime()));
    if (notAfter.getTime() <= now) {
      throw new AmbitError(
        'CERT_INVALID',
        `CA root expired at ${this.rootNotAfter.toISOString()}: cannot sign`,
      );
    }
    const serial = randomSerialNumber();
    const skid = derTlv(
      0x30,
      OID_SKI,
      derTlv(0x04, derTlv(0x04, Buffer.from(keyIdentifier(spkiDer), 'hex'))),
    );
    const tbs = derTlv(
      0x30,
      VERSION_3,
      derTlv(0x02, serial),
      this.signatureAlgorithm,
      this.issuer,
      derTlv(0x30, derTime(new Date(now - this.backdateMs)), derTime(notAfter)),
      EMPTY_NAME,
      spkiDer,
      derTlv(0xa3, derTlv(0x30, ...this.fixedExtensions, sanExtension, skid)),
    );
    // The callback form of sign() runs on the thread pool: an RSA root must not stall the loop.
    const signature = await new Promise<Buffer>((resolve, reject) =>
      sign(this.hash, tbs, this.root.key, (err, sig) => (err ? reject(err) : resolve(sig))),
    );
    const cert = derTlv(0x30, tbs, this.signatureAlgorithm, derTlv(0x03, Buffer.from([0]), signature));
    const serialHex = serial.toString('hex').replace(/^00/, '').toUpperCase();
    return { pem: toPem(cert, 'CERTIFICATE'), serial: serialHex, notAfter };
  }
}

function checkTtl(ttlSeconds: number): number {
  if (!Number.isFinite(ttlSeconds) || ttlSeconds < 1) {
    throw new AmbitError(
      'CA_BAD_CSR',
      `requested certificate lifetime ${ttlSeconds}s is not a positive number`,
    );
  }
  return ttlSeconds;
}

async function createRootCertPem(trustDomain: string, keyPem: string): Promise<string> {
  const key = await importPrivateKeyPem(keyPem);
  const now = Date.now();
  const publicKey = await x509.PublicKey.create(key.publicKey);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialNumber().toString('hex'),
    subject: [{ O: ['ambit'] }, { CN: [`ambit root CA ${trustDomain}`] }],
    issuer: [{ O: ['ambit'] }, { CN: [`ambit root CA ${trustDomain}`] }],
    notBefore: new Date(now - DEFAULT_BACKDATE_SECONDS * 1000),
    notAfter: new Date(now + ROOT_VALIDITY_MS),
    publicKey,
    signingKey: key.privateKey as unknown as Extract<
      Parameters<typeof X509.X509CertificateGenerator.create>[0],
      { signingKey: unknown }
    >['signingKey'],
    signingAlgorithm: signingAlgorithm(key.algorithm),
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.SubjectKeyIdentifierExtension(keyIdentifier(new Uint8Array(publicKey.rawData))),
    ],
  });
  return cert.toString('pem') + '\n';
}

async function persistRoot(dir: string, certFile: string, certPem: string, keyFile: string, keyPem: string) {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // Write-then-rename so a crash never leaves a truncated file; key before cert so that a cert
  // on disk always has its key next to it.
  await writeFile(`${keyFile}.tmp`, keyPem, { mode: 0o600 });
  await rename(`${keyFile}.tmp`, keyFile);
  await writeFile(`${certFile}.tmp`, certPem, { mode: 0o644 });
  await rename(`${certFile}.tmp`, certFile);
}

async function loadRoot(certFile: string, keyFile: string): Promise<Root> {
  const fail = (msg: string, cause?: unknown): AmbitError =>
    new AmbitError('CONFIG_INVALID', `CA root ${certFile}: ${msg}`, { cause });
  let certPem: string;
  let keyPem: string;
  try {
    [certPem, keyPem] = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]);
  } catch (err) {
    throw fail(`cannot read cert or key ${keyFile}: ${errorMessage(err)}`, err);
  }
  const blocks = certPem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length !== 1) throw fail(`expected exactly one PEM certificate, found ${blocks.length}`);
  let cert: X509.X509Certificate;
  try {
    cert = new x509.X509Certificate(blocks[0]!);
  } catch (err) {
    throw fail(`not a certificate: ${errorMessage(err)}`, err);
  }
  if (!cert.getExtension(x509.BasicConstraintsExtension)?.ca) {
    throw fail('not a CA certificate (basicConstraints CA:true missing)');
  }
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  if (ku && !(ku.usages & x509.KeyUsageFlags.keyCertSign)) throw fail('keyUsage lacks keyCertSign');
  if (cert.notAfter.getTime() <= Date.now()) throw fail(`expired at ${cert.notAfter.toISOString()}`);
  // Peers trust exactly this certificate, so it must be a root: an intermediate would need its
  // parents in every chain, which this CA does not carry.
  if (!(await cert.isSelfSigned())) throw fail('not self-signed (intermediate CAs are not supported)');
  let key: Awaited<ReturnType<typeof importPrivateKeyPem>>;
  try {
    key = await importPrivateKeyPem(keyPem);
  } catch (err) {
    throw fail(`cannot use key ${keyFile}: ${errorMessage(err)}`, err);
  }
  if (!key.spkiDer.equals(Buffer.from(cert.publicKey.rawData))) {
    throw fail(`key ${keyFile} does not belong to this certificate`);
  }
  const pem = cert.toString('pem') + '\n';
  return { cert, pem, key: key.keyObject, algorithm: key.algorithm };
}

function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}
