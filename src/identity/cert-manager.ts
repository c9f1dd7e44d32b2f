// Holds one certificate per workload identity on this node: fetches it on first use, renews it at
// a fraction of its lifetime (half by default, like ztunnel), retries failures with backoff while
// keeping the old certificate until it actually expires.
//
// States per identity, and the only moves between them:
//   Pending     no usable cert, a fetch is in flight          -> Valid | Unavailable
//   Valid       usable cert, rotation timer armed             -> Rotating | Pending (expired early)
//   Rotating    usable cert, renewing (in flight or backoff)  -> Valid | Pending | Unavailable (expired)
//   Unavailable no usable cert, waiting to retry              -> Pending
import { EventEmitter } from 'node:events';
import { X509Certificate, webcrypto } from 'node:crypto';
import { AmbitError, errorMessage } from '../common/errors.js';
import { type Logger, componentLogger } from '../common/log.js';
import { createCsr } from './csr.js';
import { type KeyAlgorithm, DEFAULT_KEY_ALGORITHM, generateKeyPair } from './keys.js';
import { type Identity, type SpiffeId, formatSpiffeId, spiffeIdFromCert } from './spiffe.js';

export interface WorkloadCert {
  identity: Identity;
  spiffeId: SpiffeId;
  /** PKCS#8 PEM of the key this certificate certifies. */
  keyPem: string;
  /** What to present in TLS: leaf first, then any intermediates (the root is not included). */
  certChainPem: string[];
  /** The trust anchor the chain ends at. */
  rootPem: string;
  /** Upper-case hex. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

export type CertState = 'Pending' | 'Valid' | 'Rotating' | 'Unavailable';

export interface CertificateManagerEvents {
  /** Any new certificate, the first one included. */
  issued: [cert: WorkloadCert];
  /** A certificate replaced an earlier one (expired or not): swap TLS contexts. */
  rotated: [cert: WorkloadCert, previous: WorkloadCert];
  /** A certificate ran out before a replacement arrived. */
  expired: [cert: WorkloadCert];
}

export interface CertificateManagerOptions {
  /** Sends a CSR to the CA; resolves to the chain, leaf first, root last (CaClient.createCertificate). */
  requestCertificate(csrPem: string, ttlSeconds: number): Promise<string[]>;
  keyAlgorithm?: KeyAlgorithm;
  ttlSeconds?: number;
  /** Fraction of the lifetime after notBefore at which to renew. */
  rotateAt?: number;
  logger?: Logger;
  now?: () => number;
}

export const DEFAULT_CERT_TTL_SECONDS = 24 * 3600;
const BACKOFF_INITIAL_MS = 500;
/** Retry cap while a valid certificate is still held (ztunnel's 150 s): renewal can wait. */
const BACKOFF_MAX_MS = 150_000;
/**
 * Retry cap while no usable certificate exists (new pod, or expired): its traffic is failing,
 * so after a CA outage it must come back within seconds, not at the 150 s step.
 */
const BACKOFF_MAX_NO_CERT_MS = 5_000;
/** setTimeout's limit; longer waits are re-armed when they fire. */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Entry {
  identity: Identity;
  spiffeId: SpiffeId;
  state: CertState;
  cert?: WorkloadCert;
  /** The latest certificate ever installed, kept after expiry so its successor counts as a rotation. */
  last?: WorkloadCert;
  inflight?: Promise<WorkloadCert>;
  /** Rotation or retry, whichever is next. */
  timer?: NodeJS.Timeout;
  expiryTimer?: NodeJS.Timeout;
  failures: number;
  lastError?: unknown;
}

export class CertificateManager extends EventEmitter<CertificateManagerEvents> {
  private readonly opts: CertificateManagerOptions;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly entries = new Map<SpiffeId, Entry>();
  private stopped = false;

  constructor(opts: CertificateManagerOptions) {
    super();
    const rotateAt = opts.rotateAt ?? 0.5;
    if (!(rotateAt > 0 && rotateAt < 1)) throw new RangeError(`rotateAt ${rotateAt} must be between 0 and 1`);
    this.opts = opts;
    this.log = opts.logger ?? componentLogger('cert-manager');
    this.now = opts.now ?? Date.now;
  }

  /** A valid certificate for `identity`: the cached one, or one fetched now (one CSR however many callers). */
  get(identity: Identity): Promise<WorkloadCert> {
    if (this.stopped)
      return Promise.reject(new AmbitError('NO_CERTIFICATE', 'certificate manager is stopped'));
    let spiffeId: SpiffeId;
    try {
      spiffeId = formatSpiffeId(identity);
    } catch (err) {
      return Promise.reject(err as Error); // callers await; a synchronous throw would escape them
    }
    let entry = this.entries.get(spiffeId);
    if (!entry) {
      entry = { identity, spiffeId, state: 'Pending', failures: 0 };
      this.entries.set(spiffeId, entry);
      this.log.info({ identity: spiffeId }, `identity ${spiffeId}: new -> Pending`);
      return this.fetch(entry);
    }
    if (entry.cert && this.now() < entry.cert.notAfter.getTime()) return Promise.resolve(entry.cert);
    if (entry.inflight) return entry.inflight;
    if (entry.state === 'Unavailable') {
      // Honour the backoff rather than let every new connection hammer a failing CA.
      return Promise.reject(
        new AmbitError('NO_CERTIFICATE', `no certificate for ${spiffeId}: ${errorMessage(entry.lastError)}`, {
          cause: entry.lastError,
        }),
      );
    }
    return this.fetch(entry);
  }

  /** Stops renewing `identity` and drops its certificate (its last pod left the node). */
  forget(identity: Identity): void {
    const spiffeId = formatSpiffeId(identity);
    const entry = this.entries.get(spiffeId);
    if (!entry) return;
    clearTimers(entry);
    this.entries.delete(spiffeId);
    this.log.info({ identity: spiffeId }, `identity ${spiffeId}: ${entry.state} -> Forgotten`);
  }

  list(): WorkloadCert[] {
    return [...this.entries.values()].flatMap((e) => (e.cert ? [e.cert] : []));
  }

  state(identity: Identity): CertState | undefined {
    return this.entries.get(formatSpiffeId(identity))?.state;
  }

  stop(): void {
    this.stopped = true;
    for (const entry of this.entries.values()) clearTimers(entry);
    this.entries.clear();
  }

  private fetch(entry: Entry): Promise<WorkloadCert> {
    clearTimeout(entry.timer);
    entry.timer = undefined;
    this.transition(entry, entry.cert && this.now() < entry.cert.notAfter.getTime() ? 'Rotating' : 'Pending');
    const p = this.requestNew(entry.identity, entry.spiffeId);
    entry.inflight = p;
    // Results for an identity forgotten (or a manager stopped) meanwhile are dropped.
    const current = (): boolean => this.entries.get(entry.spiffeId) === entry;
    p.then(
      (cert) => current() && this.install(entry, cert),
      (err: unknown) => current() && this.onFailure(entry, err),
    ).catch((err: unknown) => {
      // Only a throwing event listener gets here; it must not become an unhandled rejection.
      this.log.error(
        { identity: entry.spiffeId, err: errorMessage(err) },
        'certificate event listener failed',
      );
    });
    return p;
  }

  private async requestNew(identity: Identity, spiffeId: SpiffeId): Promise<WorkloadCert> {
    const keys = await generateKeyPair(this.opts.keyAlgorithm ?? DEFAULT_KEY_ALGORITHM);
    const csr = await createCsr(identity, keys);
    const chain = await this.opts.requestCertificate(csr, this.opts.ttlSeconds ?? DEFAULT_CERT_TTL_SECONDS);
    const ourKey = Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey));
    return checkChain(identity, spiffeId, chain, ourKey, keys.privateKeyPem, this.now());
  }

  private install(entry: Entry, cert: WorkloadCert): void {
    const previous = entry.last;
    clearTimers(entry);
    entry.inflight = undefined;
    entry.cert = entry.last = cert;
    entry.failures = 0;
    entry.lastError = undefined;
    this.transition(entry, 'Valid', {
      'cert.serial': cert.serial,
      'cert.not_after': cert.notAfter.toISOString(),
    });
    const fraction = this.opts.rotateAt ?? 0.5;
    const notAfter = cert.notAfter.getTime();
    let rotateAt = cert.notBefore.getTime() + fraction * (notAfter - cert.notBefore.getTime());
    // A CA that backdates a short-lived cert past its rotation point would otherwise make us
    // renew in a tight loop; fall back to the same fraction of what is left.
    if (rotateAt <= this.now()) rotateAt = this.now() + fraction * (notAfter - this.now());
    this.armAt(entry, 'timer', rotateAt, () => this.fetch(entry));
    this.armAt(entry, 'expiryTimer', notAfter, () => this.onExpired(entry));
    this.emit('issued', cert);
    if (previous) this.emit('rotated', cert, previous);
  }

  private onFailure(entry: Entry, err: unknown): void {
    entry.inflight = undefined;
    entry.failures++;
    entry.lastError = err;
    const stillValid = entry.cert !== undefined && this.now() < entry.cert.notAfter.getTime();
    const cap = stillValid ? BACKOFF_MAX_MS : BACKOFF_MAX_NO_CERT_MS;
    const base = Math.min(cap, BACKOFF_INITIAL_MS * 2 ** Math.min(entry.failures - 1, 30));
    const delay = base * (0.75 + Math.random() * 0.25); // jitter spreads a fleet's retries
    this.log.warn(
      {
        identity: entry.spiffeId,
        err: errorMessage(err),
        attempt: entry.failures,
        'retry.ms': Math.round(delay),
      },
      stillValid
        ? 'certificate renewal failed; keeping the current certificate'
        : 'certificate request failed',
    );
    if (!stillValid) this.transition(entry, 'Unavailable');
    this.armAt(entry, 'timer', this.now() + delay, () => this.fetch(entry));
  }

  private onExpired(entry: Entry): void {
    const cert = entry.cert;
    if (!cert) return;
    entry.cert = undefined;
    this.log.warn(
      { identity: entry.spiffeId, 'cert.serial': cert.serial },
      'certificate expired before renewal',
    );
    if (entry.inflight) this.transition(entry, 'Pending');
    else if (entry.state === 'Rotating')
      this.transition(entry, 'Unavailable'); // retry timer already armed
    else void this.fetch(entry).catch(() => undefined); // handled in onFailure
    this.emit('expired', cert);
  }

  private transition(entry: Entry, to: CertState, fields: Record<string, unknown> = {}): void {
    if (entry.state === to) return;
    this.log.info(
      { identity: entry.spiffeId, ...fields },
      `identity ${entry.spiffeId}: ${entry.state} -> ${to}`,
    );
    entry.state = to;
  }

  /** Runs `fn` at time `at` (by this.now()); waits beyond setTimeout's range are re-armed. */
  private armAt(entry: Entry, slot: 'timer' | 'expiryTimer', at: number, fn: () => void): void {
    clearTimeout(entry[slot]);
    const wait = Math.max(0, at - this.now());
    const t = setTimeout(
      () => {
        entry[slot] = undefined;
        if (wait > MAX_TIMER_MS) this.armAt(entry, slot, at, fn);
        else fn();
      },
      Math.min(wait, MAX_TIMER_MS),
    );
    t.unref(); // certificates must never keep a stopping process alive
    entry[slot] = t;
  }
}

function clearTimers(entry: Entry): void {
  clearTimeout(entry.timer);
  clearTimeout(entry.expiryTimer);
  entry.timer = entry.expiryTimer = undefined;
}

/** Checks what the CA sent back before we present it to anyone. Throws CERT_INVALID. */
function checkChain(
  identity: Identity,
  spiffeId: SpiffeId,
  chain: string[],
  ourKeySpki: Buffer,
  keyPem: string,
  now: number,
): WorkloadCert {
  const invalid = (msg: string): AmbitError =>
    new AmbitError('CERT_INVALID', `certificate for ${spiffeId}: ${msg}`);
  if (chain.length < 2) throw invalid(`chain has ${chain.length} certificate(s), expected leaf ... root`);
  let certs: X509Certificate[];
  try {
    certs = chain.map((pem) => new X509Certificate(pem));
  } catch (err) {
    throw invalid(`unreadable certificate in chain: ${errorMessage(err)}`);
  }
  const leaf = certs[0]!;
  const got = spiffeIdFromCert(leaf);
  if (got !== spiffeId)
    throw invalid(`leaf names ${got ?? 'no single SPIFFE id'} (SAN ${leaf.subjectAltName})`);
  if (!leaf.publicKey.export({ type: 'spki', format: 'der' }).equals(ourKeySpki)) {
    throw invalid('leaf public key is not the key we generated');
  }
  for (let i = 0; i + 1 < certs.length; i++) {
    if (!certs[i]!.verify(certs[i + 1]!.publicKey))
      throw invalid(`chain link ${i} is not signed by link ${i + 1}`);
  }
  const notBefore = new Date(leaf.validFrom);
  const notAfter = new Date(leaf.validTo);
  if (!(notAfter.getTime() > now)) throw invalid(`already expired (notAfter ${leaf.validTo})`);
  return {
    identity,
    spiffeId,
    keyPem,
    certChainPem: chain.slice(0, -1),
    rootPem: chain[chain.length - 1]!,
    serial: leaf.serialNumber,
    notBefore,
    notAfter,
  };
}
