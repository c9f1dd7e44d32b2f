// gRPC handler for istio.v1.auth.IstioCertificateService/CreateCertificate, mounted on the
// control plane's TLS server (15012) next to xDS:
//   server.addService(caServiceDefinition, createCaHandlers({ ... }))
// Order of checks: who is calling (node token) -> is the CSR well formed -> may this node hold
// this identity (a pod with that service account is scheduled on it) -> sign. Each refusal is
// answered with a gRPC status that names the reason and logged once at warn.
import {
  type Metadata,
  type UntypedServiceImplementation,
  type sendUnaryData,
  type ServerUnaryCall,
  status,
} from '@grpc/grpc-js';
import { AmbitError, errorMessage, isAmbitError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { parseCsr } from '../identity/csr-check.js';
import { type CertRequestMsg, type CertResponseMsg, stringsFromStruct } from '../xds/proto.js';
import type { MeshCa } from './ca.js';

export const DEFAULT_WORKLOAD_TTL_SECONDS = 24 * 3600;
/** The metadata key ztunnel sets to the identity it requests on a pod's behalf. */
const IMPERSONATED_IDENTITY = 'ImpersonatedIdentity';

export interface CaHandlerOptions {
  ca: MeshCa;
  /** The calling node's name, or undefined when the call carries no valid node credential (async: TokenReview). */
  authenticate(md: Metadata): string | undefined | Promise<string | undefined>;
  /** SPIFFE ids of the service accounts of pods currently scheduled on `node`. */
  identitiesOnNode(node: string): ReadonlySet<string>;
  /** Why `node` may not hold `identity`, when there is more to say than "no such pod there". */
  refusalHint?(node: string, identity: string): string | undefined;
  logger: Logger;
  defaultTtlSeconds?: number;
  /** Telemetry hooks (telemetry/controlplane-metrics.ts): CSRs received, signed, refused. */
  metrics?: {
    csrReceived(): void;
    certIssued(): void;
    csrRefused(reason: 'unauthenticated' | 'bad_csr' | 'permission_denied' | 'internal'): void;
  };
}

/** What is known about a call so far, for the log line of a refusal. */
interface CallContext {
  node?: string;
  identity?: string;
}

export function createCaHandlers(opts: CaHandlerOptions): UntypedServiceImplementation {
  const log = opts.logger;
  const defaultTtl = opts.defaultTtlSeconds ?? DEFAULT_WORKLOAD_TTL_SECONDS;

  async function createCertificate(
    call: ServerUnaryCall<CertRequestMsg, CertResponseMsg>,
    ctx: CallContext,
  ): Promise<CertResponseMsg> {
    const node = (ctx.node = await opts.authenticate(call.metadata));
    if (node === undefined) {
      throw new AmbitError(
        'CA_UNAUTHENTICATED',
        'missing or unknown node token (authorization: Bearer <token>)',
      );
    }
    const req = call.request;
    const csr = parseCsr(req.csr ?? '');
    ctx.identity = csr.spiffeId;
    const ttl = requestedTtl(req.validityDuration, defaultTtl);
    // As istiod's CA (security/pkg/pki/ca/ca.go): a TTL over the maximum is refused, not cut, so a
    // client that asked for more learns it (MeshCa also caps, for its other callers).
    if (ttl > opts.ca.maxTtlSeconds) {
      throw new AmbitError(
        'CA_BAD_CSR',
        `requested TTL ${ttl}s is greater than the max allowed TTL ${opts.ca.maxTtlSeconds}s`,
      );
    }
    const impersonated = stringsFromStruct(req.metadata)[IMPERSONATED_IDENTITY];
    if (impersonated !== undefined && impersonated !== csr.spiffeId) {
      throw new AmbitError(
        'CA_BAD_CSR',
        `${IMPERSONATED_IDENTITY} ${impersonated} differs from the CSR's ${csr.spiffeId}`,
      );
    }
    if (!opts.identitiesOnNode(node).has(csr.spiffeId)) {
      const hint = opts.refusalHint?.(node, csr.spiffeId);
      throw new AmbitError(
        'CA_PERMISSION_DENIED',
        `node ${node} may not obtain a certificate for ${csr.spiffeId}: ${hint ?? 'no pod with that service account is scheduled on it'}`,
      );
    }
    const issued = await opts.ca.signParsedCsr(csr, { ttlSeconds: ttl });
    log.info(
      {
        node,
        identity: issued.spiffeId,
        // A shared-mode ztunnel asks on its pods' behalf (ImpersonatedIdentity); say so.
        ...(impersonated !== undefined ? { impersonated: true } : {}),
        'cert.serial': issued.serial,
        'cert.not_after': issued.notAfter.toISOString(),
      },
      'certificate issued',
    );
    return { certChain: issued.chain };
  }

  return {
    CreateCertificate(
      call: ServerUnaryCall<CertRequestMsg, CertResponseMsg>,
      callback: sendUnaryData<CertResponseMsg>,
    ) {
      const ctx: CallContext = {};
      opts.metrics?.csrReceived();
      createCertificate(call, ctx).then(
        (res) => {
          opts.metrics?.certIssued();
          callback(null, res);
        },
        (err: unknown) => {
          const code = statusOf(err);
          opts.metrics?.csrRefused(REFUSAL_BY_STATUS[code] ?? 'internal');
          const details = errorMessage(err);
          const fields = { node: ctx.node, identity: ctx.identity, reason: details };
          if (code === status.INTERNAL) log.error({ ...fields, err }, 'certificate request failed');
          else log.warn({ ...fields, 'grpc.status': status[code] }, 'certificate request refused');
          callback({ code, details });
        },
      );
    },
  };
}

/** validityDuration is in seconds; 0 or absent means "the CA's default", as in istiod. */
function requestedTtl(raw: CertRequestMsg['validityDuration'], defaultTtl: number): number {
  const n = typeof raw === 'object' && raw !== null ? raw.toNumber() : Number(raw ?? 0);
  if (!Number.isFinite(n) || n < 0)
    throw new AmbitError('CA_BAD_CSR', `validityDuration ${String(raw)} is negative`);
  return n === 0 ? defaultTtl : n;
}

const REFUSAL_BY_STATUS: Partial<Record<status, 'unauthenticated' | 'bad_csr' | 'permission_denied'>> = {
  [status.UNAUTHENTICATED]: 'unauthenticated',
  [status.INVALID_ARGUMENT]: 'bad_csr',
  [status.PERMISSION_DENIED]: 'permission_denied',
};

function statusOf(err: unknown): status {
  if (isAmbitError(err, 'CA_BAD_CSR')) return status.INVALID_ARGUMENT;
  if (isAmbitError(err, 'CA_PERMISSION_DENIED')) return status.PERMISSION_DENIED;
  if (isAmbitError(err, 'CA_UNAUTHENTICATED')) return status.UNAUTHENTICATED;
  return status.INTERNAL;
}
