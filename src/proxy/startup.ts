// The start-up every proxy shares (node proxy: nodeproxy/proxy.ts; waypoint: waypoint/waypoint.ts),
// in its one order:
//   1. trust root and node token from the state directory (the token is re-read at each use:
//      in Kubernetes it is a projected token the kubelet rotates);
//   2. the CA client and the certificate manager (CSRs to the control plane's CA);
//   3. xDS: addresses → ProxyState, L4 authorization → PolicyStore (validated at the edge, the
//      last good kept), plus the caller's own types (the waypoint's L7 config objects);
//   4. synced: the first response of every type applied;
//   and readiness (`GET /healthz/ready`, 15021), served from whenever the caller binds it, with
//   the caller's check. What differs between the proxies — listeners per pod, the waypoint's
//   HBONE server and HTTP engine — is theirs; the steps above are written once, here.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type http from 'node:http';
import type { Logger } from '../common/log.js';
import { tokenFromFile } from '../common/token.js';
import { CaClient } from '../identity/ca-client.js';
import { CertificateManager } from '../identity/cert-manager.js';
import type { KeyAlgorithm } from '../identity/keys.js';
import { XdsClient, controlPlaneConnection, type XdsTypeHandler } from '../xds/client.js';
import { TYPE_ADDRESS, TYPE_AUTHORIZATION } from '../xds/proto.js';
import { decodeAddress, type Address } from '../xds/resources.js';
import type { Authorization } from '../xds/authorization.js';
import { ProxyState } from './state.js';
import { PolicyStore } from './policy-store.js';
import { serveReadiness, type ReadinessCheck } from './readiness.js';

/** The control plane's serving name when none is given (istiod's, as Istio's proxies expect). */
export const DEFAULT_CONTROL_PLANE_SERVER_NAME = 'istiod.istio-system.svc';

export interface StartupOptions {
  /** Control plane gRPC address (xDS + CA), "host:port". */
  controlPlane: string;
  /** Holds ca/root-cert.pem and nodes/<node>.token. */
  stateDir: string;
  controlPlaneServerName?: string;
  certTtlSeconds?: number;
  keyAlgorithm?: KeyAlgorithm;
  logger: Logger;
}

export class ProxyStartup {
  readonly state = new ProxyState();
  readonly policies = new PolicyStore();
  private caClient?: CaClient;
  private certManager?: CertificateManager;
  private xdsClient?: XdsClient;
  private connection?: ReturnType<typeof controlPlaneConnection>;

  constructor(private readonly opts: StartupOptions) {}

  /** Steps 1–2: the trust root, `nodeName`'s token, then the CA client and certificate manager. */
  async connect(nodeName: string): Promise<CertificateManager> {
    const o = this.opts;
    const rootPem = await readFile(path.join(o.stateDir, 'ca', 'root-cert.pem'), 'utf8');
    const token = tokenFromFile(path.join(o.stateDir, 'nodes', `${nodeName}.token`));
    const serverName = o.controlPlaneServerName ?? DEFAULT_CONTROL_PLANE_SERVER_NAME;
    this.connection = controlPlaneConnection(o.controlPlane, rootPem, token, serverName);
    const ca = new CaClient({ address: o.controlPlane, rootCertPem: rootPem, token, serverName });
    this.caClient = ca;
    this.certManager = new CertificateManager({
      requestCertificate: (csr, ttl) => ca.createCertificate(csr, ttl),
      keyAlgorithm: o.keyAlgorithm,
      ttlSeconds: o.certTtlSeconds,
      logger: o.logger.child({ part: 'certs' }),
    });
    return this.certManager;
  }

  /**
   * Step 3: subscribes and returns at once (the last config stays in force while the control
   * plane is away). `onAddresses` runs after each address update is applied.
   */
  startXds(
    node: { id: string; metadata?: Record<string, string> },
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- each handler has its own T
    more: {
      types?: XdsTypeHandler<any>[];
      onAddresses?: () => void;
      /** Each address update as applied (a multi-worker primary forwards it: proxy/fan-out.ts). */
      onAddressDelta?: (upserted: Map<string, Address>, removed: string[]) => void;
    } = {},
  ): XdsClient {
    if (!this.connection) throw new Error('ProxyStartup.startXds before connect()');
    this.xdsClient = new XdsClient({
      ...this.connection,
      node,
      types: [
        {
          typeUrl: TYPE_ADDRESS,
          decode: (name: string, bytes: Uint8Array) => decodeAddress(name, bytes),
          apply: (upserted: Map<string, Address>, removed: string[]) => {
            this.state.applyAddresses(upserted, removed);
            more.onAddressDelta?.(upserted, removed);
            more.onAddresses?.();
          },
        },
        {
          typeUrl: TYPE_AUTHORIZATION,
          decode: (name: string, bytes: Uint8Array) => this.policies.decode(name, bytes),
          apply: (upserted: Map<string, Authorization>, removed: string[]) =>
            this.policies.apply(upserted, removed),
        },
        ...(more.types ?? []),
      ],
      logger: this.opts.logger.child({ part: 'xds' }),
    });
    this.xdsClient.start();
    return this.xdsClient;
  }

  /** Step 4: resolves once the first response of every subscribed type is applied. */
  synced(): Promise<void> {
    if (!this.xdsClient) throw new Error('ProxyStartup.synced before startXds()');
    return this.xdsClient.ready();
  }

  /** Readiness on host:port, answering with `check` (bind errors stop start-up). */
  serveReadiness(host: string, port: number, check: ReadinessCheck): Promise<http.Server> {
    return serveReadiness(host, port, check);
  }

  get xds(): XdsClient | undefined {
    return this.xdsClient;
  }

  get certs(): CertificateManager | undefined {
    return this.certManager;
  }

  /** Stops xDS, certificate renewal and the CA channel (each only if it was started). */
  stop(): void {
    this.xdsClient?.stop();
    this.certManager?.stop();
    this.caClient?.close();
  }
}
