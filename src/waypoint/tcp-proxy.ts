// The waypoint's non-HTTP paths: protocol sniffing of a fresh tunnel (the first bytes are put
// back), and TCP: first the TCP-path policy (authz-tcp.ts: every policy bound to the waypoint for
// the target, HTTP-only rules read as Envoy's network RBAC reads them; a denial resets the stream
// before any upstream is dialled, so no byte reaches the backend), then spliced to an endpoint
// chosen as a node proxy would choose it (`buildRoute`, the waypoint as the source so it never
// routes to itself), over HBONE as the waypoint; recorded once in the tunnel's ConnectionRecord.
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Logger } from '../common/log.js';
import { errorMessage } from '../common/errors.js';
import type { Ip, SocketAddr } from '../common/addr.js';
import type { Workload } from '../xds/resources.js';
import type { ProxyState } from '../proxy/state.js';
import { buildRoute, type EndpointPicker } from '../proxy/route.js';
import { connectTcp } from '../proxy/connect-tcp.js';
import { splice } from '../proxy/splice.js';
import type { ConnectionRecord } from '../proxy/connection-record.js';
import type { TunnelContext } from './tunnel-context.js';
import { SNIFF_TIMEOUT_MS, type WireProtocol } from './protocol.js';
import type { TcpDecision } from './policy/authz-tcp.js';

export interface TcpProxyDeps {
  state: ProxyState;
  /** The waypoint's own IP (source of plain TCP, and "self" for routing). */
  self: Ip;
  pick: EndpointPicker;
  /** HBONE to an endpoint as the waypoint. */
  connect(endpoint: Workload, authority: SocketAddr): Promise<Duplex>;
  /** The TCP-path policy decision for this tunnel (authz-tcp.ts `evaluateTcp` on the current set). */
  authorize(ctx: TunnelContext): TcpDecision;
  /** Called once per denied connection (metrics). */
  onDenied?(decision: TcpDecision): void;
  log: Logger;
}

/**
 * TCP (not HTTP): to an endpoint chosen as a node proxy would, over HBONE as the waypoint. The
 * tunnel's record (opened by the waypoint's inbound gate) is counted once the route names the
 * endpoint, and finished once: denied (RBAC), failed (CONNECT) or completed after the splice.
 */
export async function proxyTcp(
  stream: http2.ServerHttp2Stream,
  ctx: TunnelContext,
  record: ConnectionRecord,
  deps: TcpProxyDeps,
): Promise<void> {
  record.set({ protocol: 'tcp' });
  let decision: TcpDecision;
  try {
    decision = deps.authorize(ctx);
  } catch (err) {
    // A policy that cannot be evaluated denies (fail closed).
    decision = { allow: false, reason: `policy could not be evaluated: ${errorMessage(err)}` };
  }
  if (!decision.allow) {
    // Envoy's network RBAC flag: this is the waypoint's L7-config policy read at TCP.
    record.deny(decision, { 'src.ip': ctx.srcIp, 'dst.port': ctx.target.port }, 'RBAC');
    try {
      deps.onDenied?.(decision);
    } catch (err) {
      deps.log.warn({ err: errorMessage(err) }, 'denial hook failed');
    }
    // RST_STREAM: the source node proxy resets the app's connection; nothing was dialled.
    if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_CONNECT_ERROR);
    return;
  }
  let upstream: Duplex;
  try {
    const self = deps.state.workloadByAddress(deps.self) ?? { addresses: [deps.self] };
    const route = buildRoute(ctx.target, deps.state, deps.pick, self);
    if (route.kind !== 'reject') {
      record.count({
        destination: route.endpoint,
        destinationPrincipal: route.kind === 'hbone' ? route.expectedIdentity : undefined,
        destinationService: route.service ?? ctx.service,
      });
    }
    if (route.kind === 'reject') throw new Error(route.reason);
    if (route.kind === 'hbone') {
      // The access line names the endpoint as a node proxy's names the pod it reached.
      record.set({
        'dst.workload': route.endpoint.name,
        'dst.namespace': route.endpoint.namespace,
        'dst.identity': route.expectedIdentity,
        'dst.hbone_addr': `${route.hboneAddr.host}:${route.hboneAddr.port}`,
        'upstream.workload': `${route.endpoint.namespace}/${route.endpoint.name}`,
      });
      upstream = await deps.connect(route.endpoint, route.authority);
    } else {
      upstream = await connectTcp(route.addr, deps.self);
    }
  } catch (err) {
    record.fail('CONNECT', 'connection failed', {}, err);
    if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_CONNECT_ERROR);
    return;
  }
  // Neither side is a plain socket with byte counts (both may be HTTP/2 streams): count chunks.
  // Istio's direction: received = client → server, sent = server → client.
  const bytes = { received: 0, sent: 0 };
  stream.on('data', (c: Buffer) => (bytes.received += c.length));
  upstream.on('data', (c: Buffer) => (bytes.sent += c.length));
  record.trackBytes(() => ({ ...bytes }));
  const result = await splice(stream, upstream);
  record.complete(result.error);
}

/** Waits for the client's first bytes (up to SNIFF_TIMEOUT_MS) and decides; the bytes are put back. */
export function sniff(
  stream: http2.ServerHttp2Stream,
  decide: (first: Buffer, complete: boolean) => WireProtocol | undefined,
): Promise<WireProtocol> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    const finish = (p: WireProtocol) => {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.pause();
      if (buf.length && !stream.readableEnded) stream.unshift(buf);
      resolve(p);
    };
    const onData = (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      const p = decide(buf, false);
      if (p) finish(p);
    };
    const onEnd = () => finish(decide(buf, true) ?? 'tcp');
    // A port declared opaque (tcp-*, tls-*) is decided before any byte: no waiting for a client
    // that may never speak first.
    const upfront = decide(buf, false);
    if (upfront) return resolve(upfront);
    const timer = setTimeout(() => finish(decide(buf, true) ?? 'tcp'), SNIFF_TIMEOUT_MS);
    stream.on('data', onData);
    stream.once('end', onEnd);
  });
}
