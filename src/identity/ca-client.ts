// The node proxy's side of istio.v1.auth.IstioCertificateService: sends a CSR to the control
// plane over TLS (verified against the mesh root) with the node's bearer token, and turns gRPC
// failures into coded errors the certificate manager can log and retry on.
import { tokenOf, type TokenSource } from '../common/token.js';
import * as grpc from '@grpc/grpc-js';
import { AmbitError, type ErrorCode } from '../common/errors.js';
import { type CertRequestMsg, type CertResponseMsg, caServiceDefinition } from '../xds/proto.js';

/** The name istiod's serving cert carries; ztunnel verifies this name by default. */
export const DEFAULT_CA_SERVER_NAME = 'istiod.istio-system.svc';
const CALL_DEADLINE_MS = 10_000;

export interface CaClientOptions {
  /** host:port of the control plane's gRPC TLS listener (15012). */
  address: string;
  rootCertPem: string;
  /** Read at every call, so a rotated token is picked up. */
  token: TokenSource;
  /** TLS name to verify in the server's certificate. */
  serverName?: string;
}

type UnaryMethod = (
  req: CertRequestMsg,
  md: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res?: CertResponseMsg) => void,
) => grpc.ClientUnaryCall;

const CertificateServiceClient = grpc.makeGenericClientConstructor(
  caServiceDefinition,
  'IstioCertificateService',
);

export class CaClient {
  private readonly client: grpc.Client & { CreateCertificate: UnaryMethod };
  private readonly token: TokenSource;
  private readonly address: string;

  constructor(opts: CaClientOptions) {
    this.address = opts.address;
    this.token = opts.token;
    const serverName = opts.serverName ?? DEFAULT_CA_SERVER_NAME;
    const creds = grpc.credentials.createSsl(Buffer.from(opts.rootCertPem));
    // We dial an IP but verify the name in the CA's serving cert, as ztunnel does with istiod.
    this.client = new CertificateServiceClient(opts.address, creds, {
      'grpc.ssl_target_name_override': serverName,
      'grpc.default_authority': serverName,
      // The channel's own reconnect backoff grows to 120 s by default: after a control plane
      // outage every CSR would wait on it (and time out at the 10 s deadline). Capped like the
      // xDS client's, so certificates flow again within seconds of the CA's return.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 2_000,
    }) as unknown as grpc.Client & { CreateCertificate: UnaryMethod };
  }

  /** Requests a certificate; resolves to the chain, leaf first and root last. */
  createCertificate(csrPem: string, ttlSeconds: number): Promise<string[]> {
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${tokenOf(this.token)}`);
    const req: CertRequestMsg = { csr: csrPem, validityDuration: Math.max(0, Math.floor(ttlSeconds)) };
    return new Promise((resolve, reject) => {
      this.client.CreateCertificate(req, md, { deadline: Date.now() + CALL_DEADLINE_MS }, (err, res) => {
        if (err) return reject(this.toError(err));
        const chain = res?.certChain ?? [];
        if (chain.length === 0) {
          return reject(
            new AmbitError('CERT_INVALID', `CA ${this.address} returned an empty certificate chain`),
          );
        }
        resolve(chain);
      });
    });
  }

  close(): void {
    this.client.close();
  }

  private toError(err: grpc.ServiceError): AmbitError {
    const name = grpc.status[err.code] ?? String(err.code);
    return new AmbitError(codeFor(err.code), `CA ${this.address}: ${name}: ${err.details || err.message}`, {
      cause: err,
    });
  }
}

/** A failure that is not the CA's verdict on us (unreachable, timeout, internal) means no certificate yet. */
function codeFor(code: grpc.status): ErrorCode {
  switch (code) {
    case grpc.status.UNAUTHENTICATED:
      return 'CA_UNAUTHENTICATED';
    case grpc.status.PERMISSION_DENIED:
      return 'CA_PERMISSION_DENIED';
    case grpc.status.INVALID_ARGUMENT:
      return 'CA_BAD_CSR';
    default:
      return 'NO_CERTIFICATE';
  }
}
