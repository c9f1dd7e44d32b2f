// One record per finished request at the waypoint: the access-log line and the typed
// `RequestRecord` handed to `HttpProxyDeps.onRequest` (the seam for Istio's request metrics).
// Built from the `Exchange` the data path fills in as the request goes, so what is logged and
// what is counted can never disagree.
import type { Logger } from '../common/log.js';
import type { ProxyState } from '../proxy/state.js';
import { spiffeIdOf } from '../xds/resources.js';
import type { TunnelContext } from './tunnel-context.js';
import type { RetryStop } from './resilience/retry.js';
import type { L7Request } from './routing/types.js';
import type { UpstreamEndpoint } from './upstream/upstream.js';

export type RequestProtocol = 'http1' | 'http2' | 'grpc';

/** A finished request, as telemetry sees it (Istio's standard request labels and values). */
export interface RequestRecord {
  protocol: RequestProtocol;
  method: string;
  path: string;
  authority: string;
  source: { identity: string; ip: string; workload?: string; namespace?: string };
  destination: {
    /** The CONNECT target: service VIP:port or pod IP:port. */
    addr: string;
    /** Service hostname: the backend's when routed, else the target's. */
    service?: string;
    workload?: string;
    namespace?: string;
    identity?: string;
  };
  route?: string;
  /** HTTP status sent downstream; 0 when the client went away before one was sent. */
  status: number;
  /** gRPC status, when the response carried one. */
  grpcStatus?: number;
  durationMs: number;
  attempts: number;
  /** Envoy-style: why the waypoint answered itself or gave up (denial, overflow, timeout…). */
  reason?: string;
  requestBytes?: number;
  responseBytes?: number;
}

/** What the data path learns about one request as it goes; recorded once at the end. */
export interface Exchange {
  readonly l7: L7Request;
  readonly ctx: TunnelContext;
  readonly protocol: RequestProtocol;
  readonly start: number;
  route?: string;
  service?: string;
  endpoint?: UpstreamEndpoint;
  attempts: number;
  retryStop?: RetryStop;
  reason?: string;
  overflow?: string;
  upgrade?: string;
  grpcStatus?: number;
  requestBytes?: number;
  responseBytes?: number;
  recorded: boolean;
}

export function newExchange(l7: L7Request, ctx: TunnelContext, protocol: RequestProtocol): Exchange {
  return { l7, ctx, protocol, start: Date.now(), attempts: 1, recorded: false };
}

/** Writes the `request complete` line and calls `onRequest`, once per exchange. */
export function recordExchange(
  x: Exchange,
  status: number,
  log: Logger,
  state: ProxyState,
  onRequest: ((r: RequestRecord) => void) | undefined,
): void {
  if (x.recorded) return;
  x.recorded = true;
  const durationMs = Date.now() - x.start;
  const ep = x.endpoint?.workload;
  log.info(
    {
      'src.identity': x.ctx.peerIdentity,
      'src.ip': x.ctx.srcIp,
      'dst.addr': `${x.ctx.target.host}:${x.ctx.target.port}`,
      'dst.service': x.ctx.service?.hostname,
      method: x.l7.method,
      path: x.l7.path,
      authority: x.l7.authority,
      protocol: x.protocol,
      route: x.route,
      'upstream.service': x.service,
      'upstream.workload': ep && `${ep.namespace}/${ep.name}`,
      'upstream.addr': x.endpoint?.authority,
      ...(x.attempts > 1 ? { attempts: x.attempts } : {}),
      ...(x.retryStop && x.retryStop !== 'success' ? { 'retry.stop': x.retryStop } : {}),
      reason: x.reason,
      overflow: x.overflow,
      upgrade: x.upgrade,
      status,
      grpc_status: x.grpcStatus,
      duration_ms: durationMs,
    },
    'request complete',
  );
  if (!onRequest) return;
  const src = state.workloadByAddress(x.ctx.srcIp);
  const record: RequestRecord = {
    protocol: x.protocol,
    method: x.l7.method,
    path: x.l7.path,
    authority: x.l7.authority,
    source: {
      identity: x.ctx.peerIdentity,
      ip: x.ctx.srcIp,
      ...(src ? { workload: src.name, namespace: src.namespace } : {}),
    },
    destination: {
      addr: `${x.ctx.target.host}:${x.ctx.target.port}`,
      ...((x.service ?? x.ctx.service?.hostname) ? { service: x.service ?? x.ctx.service?.hostname } : {}),
      ...(ep ? { workload: ep.name, namespace: ep.namespace, identity: spiffeIdOf(ep) } : {}),
    },
    status,
    durationMs,
    attempts: x.attempts,
    ...(x.route !== undefined ? { route: x.route } : {}),
    ...(x.grpcStatus !== undefined ? { grpcStatus: x.grpcStatus } : {}),
    ...(x.reason !== undefined ? { reason: x.reason } : {}),
    ...(x.requestBytes !== undefined ? { requestBytes: x.requestBytes } : {}),
    ...(x.responseBytes !== undefined ? { responseBytes: x.responseBytes } : {}),
  };
  try {
    onRequest(record);
  } catch (err) {
    log.warn({ err: err instanceof Error ? err.message : String(err) }, 'onRequest callback threw');
  }
}
