// The contracts of the waypoint's HTTP front: what the request pipeline is given (HttpProxyDeps)
// and the L7 modules it calls (L7Engine: authentication, authorization, routing, destination
// policy, ext_authz). http-proxy.ts builds the front from them; pipeline.ts and l7-engine.ts use
// them. They lived in http-proxy.ts, which imports the pipeline and the protocol handlers that
// imported them back (an import cycle, issue 14); here they sit below all of those.
import type { Duplex } from 'node:stream';
import type { Logger } from '../../common/log.js';
import type { SocketAddr } from '../../common/addr.js';
import type { Workload } from '../../xds/resources.js';
import type { ProxyState } from '../../proxy/state.js';
import type { L7Request, RouteAction } from '../routing/types.js';
import type { PolicyLookup } from '../upstream/upstream.js';
import type { AuthnResult } from '../policy/jwt.js';
import type { PathNormalization } from './http-request.js';
import type { CustomDecision, ProviderDial } from '../policy/ext-authz.js';
import type { RequestRecord } from '../request-record.js';
import type { TunnelContext } from '../tunnel-context.js';

export interface L7Decision {
  allow: boolean;
  policy?: string;
  reason: string;
}

/** The L7 modules, behind functions so the proxy does not care who compiled them. */
export interface L7Engine {
  /** RequestAuthentication: validates a JWT when the request carries one (401 when invalid). */
  authenticate(req: L7Request): Promise<AuthnResult>;
  authorize(
    req: L7Request,
    ctx: TunnelContext,
    authn?: { principal?: string; claims?: Record<string, unknown> },
  ): L7Decision;
  route(req: L7Request): RouteAction;
  /** DestinationRule traffic policy of a backend (Istio's defaults when none). */
  policy: PolicyLookup;
  /** meshConfig.pathNormalization (pipeline.ts applies it first); absent: DEFAULT_PATH_NORMALIZATION. */
  pathNormalization?: PathNormalization;
  /** CUSTOM AuthorizationPolicy (ext_authz, ext-authz.ts), run before DENY and ALLOW; absent: none apply. */
  custom?(
    req: L7Request,
    ctx: TunnelContext,
    authn: { principal?: string; claims?: Record<string, unknown> } | undefined,
    dial: ProviderDial,
    signal?: AbortSignal,
    protocol?: 'HTTP/1.1' | 'HTTP/2',
  ): Promise<CustomDecision>;
}

export interface HttpProxyDeps {
  state: ProxyState;
  engine(): L7Engine;
  /**
   * Opens an HBONE tunnel to `authority` on `endpoint`, as the waypoint's identity. `ctx` is the
   * downstream tunnel when the upstream one is its own (upgrades); pooled connections are shared
   * and have none.
   */
  connect(endpoint: Workload, authority: SocketAddr, ctx?: TunnelContext): Promise<Duplex>;
  /** Called once for every finished request (telemetry). */
  onRequest?: (record: RequestRecord) => void;
  /** How long an idle pooled upstream connection is kept (default 60 s, `UPSTREAM_IDLE_MS`). */
  upstreamIdleMs?: number;
  logger: Logger;
}
