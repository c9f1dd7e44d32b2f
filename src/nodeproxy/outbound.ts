// Outbound: a local pod's connection, from the SOCKS5 request (or a connection captured
// transparently on 15001, capture.ts: the same request with an IP target) to the final record.
// resolve the target → buildRoute (pure) → open an HBONE tunnel as the source pod's identity,
// or plain TCP for destinations outside the mesh → answer the client → splice → record once.
import { lookup } from 'node:dns/promises';
import type { Socket } from 'node:net';
import type { ClientHttp2Stream } from 'node:http2';
import type { Logger } from '../common/log.js';
import { AmbitError, isAmbitError, type ErrorCode } from '../common/errors.js';
import { formatSocketAddr, type HostPort, type Ip } from '../common/addr.js';
import type { HbonePool } from '../hbone/pool.js';
import type { TlsIdentity } from '../hbone/tls.js';
import { spiffeIdOf, type Workload } from '../xds/resources.js';
import type { ProxyState } from '../proxy/state.js';
import type { TcpConnect } from '../common/tcp-connect.js';
import { connectTcp } from '../proxy/connect-tcp.js';
import type { ConnectionOpen } from '../telemetry/metrics.js';
import { buildRoute, resolveServiceName, type EndpointPicker, type Route } from '../proxy/route.js';
import { SOCKS_REPLY, type SocksReplyCode, type SocksRequest, type SocksTarget } from './socks5.js';
import { splice } from '../proxy/splice.js';
import {
  NO_TELEMETRY,
  responseFlagFor,
  type ConnectionTelemetry,
} from '../telemetry/connection-telemetry.js';
import { ConnectionRecord, runRecorded } from '../proxy/connection-record.js';
import { traceIdOf } from '../telemetry/access-log.js';

export interface OutboundDeps {
  state: ProxyState;
  pool: HbonePool;
  /** The current certificate for a local workload's identity. */
  certificateFor(w: Workload): Promise<TlsIdentity>;
  pick: EndpointPicker;
  logger: Logger;
  /** Metrics, access-log policy (telemetry/); none when omitted. */
  telemetry?: ConnectionTelemetry;
  /** How passthrough TCP is opened; netns mode opens it from inside the source pod. */
  connect?: TcpConnect;
}

export class Outbound {
  private readonly log: Logger;
  constructor(private readonly deps: OutboundDeps) {
    this.log = deps.logger.child({ direction: 'outbound' });
  }

  /** One connection, recorded exactly once whatever happens (runRecorded is the guard). */
  handle(source: Workload, req: SocksRequest): Promise<void> {
    const client = req.socket;
    const record = new ConnectionRecord(this.log, this.deps.telemetry ?? NO_TELEMETRY, {
      src: {
        addr: `${client.remoteAddress}:${client.remotePort}`,
        identity: spiffeIdOf(source),
        workload: source,
      },
      dst: {},
      fields: { 'dst.target': `${req.target.host}:${req.target.port}` },
      open: { reporter: 'source', source, securityPolicy: 'unknown' },
    });
    return runRecorded(
      record,
      () => this.serve(source, req, record),
      () => client.destroy(),
    );
  }

  private async serve(source: Workload, req: SocksRequest, record: ConnectionRecord): Promise<void> {
    const client = req.socket;
    const srcIp = source.addresses[0]!;
    let upstream: Socket | ClientHttp2Stream;
    try {
      const target = await this.resolve(source, req.target);
      const route = buildRoute(target, this.deps.state, this.deps.pick, source);
      record.set(routeFields(route));
      // Counted from here (ztunnel's ConnectionResult): the route names the destination.
      record.count(openOf(route, source, this.deps.state));
      upstream = await this.open(route, source, srcIp, client);
    } catch (err) {
      const code = replyFor(err);
      record.fail(responseFlagFor(err), 'connection failed', { 'socks.reply': code }, err);
      req.reply(code);
      return;
    }
    req.reply(SOCKS_REPLY.succeeded);
    // Bytes count from here: not the SOCKS handshake, but any data the client sent early (still
    // buffered). Istio's direction: received = client → server, sent = server → client.
    const base = { read: client.bytesRead - client.readableLength, written: client.bytesWritten };
    record.trackBytes(() => ({
      received: client.bytesRead - base.read,
      sent: client.bytesWritten - base.written,
    }));
    client.resume();
    // A cut on either side reaches the app as a TCP RST and is recorded with UC / DC (splice.ts).
    const result = await splice(client, upstream);
    record.set({ trace_id: traceIdOf((upstream as ClientHttp2Stream).sentHeaders?.traceparent) });
    record.complete(result.error);
  }

  private async resolve(source: Workload, target: SocksTarget): Promise<HostPort & { host: Ip }> {
    if (target.kind === 'ip') return target;
    const svc = resolveServiceName(target.host, source.namespace, this.deps.state);
    const vip = svc?.addresses[0]?.address;
    if (vip) return { host: vip, port: target.port };
    try {
      const { address } = await lookup(target.host, { family: 4 });
      return { host: address as Ip, port: target.port };
    } catch {
      throw new AmbitError(
        'ROUTE_UNKNOWN_HOST',
        `unknown host ${target.host}: not a mesh service and not in DNS`,
      );
    }
  }

  private async open(route: Route, source: Workload, srcIp: Ip, client: Socket) {
    switch (route.kind) {
      case 'reject':
        throw new AmbitError(
          route.code === 'ROUTE_NO_ENDPOINT' ? 'ROUTE_NO_ENDPOINT' : 'HBONE_POLICY_DENIED',
          route.reason,
        );
      case 'hbone': {
        const cert = await this.deps.certificateFor(source);
        return this.deps.pool.connect({
          source: cert,
          sourceIp: srcIp,
          clientAddr: { host: client.remoteAddress ?? srcIp, port: client.remotePort ?? 0 },
          hboneAddr: route.hboneAddr,
          expectedIdentity: route.expectedIdentity,
          authority: route.authority,
        });
      }
      case 'passthrough':
        return connectTcp(route.addr, srcIp, this.deps.connect);
    }
  }
}

/** The labels' facts for the source reporter: HBONE is mTLS with the destination's identity verified. */
function openOf(route: Route, source: Workload, state: ProxyState): ConnectionOpen {
  switch (route.kind) {
    case 'hbone':
      return {
        reporter: 'source',
        source,
        sourcePrincipal: spiffeIdOf(source),
        destination: route.endpoint,
        destinationPrincipal: route.expectedIdentity,
        destinationService: route.service,
        securityPolicy: 'mutual_tls',
      };
    case 'passthrough':
      return {
        reporter: 'source',
        source,
        destination: route.endpoint ?? state.workloadByAddress(route.addr.host),
        destinationService: route.service,
        securityPolicy: 'unknown',
      };
    case 'reject':
      return { reporter: 'source', source, securityPolicy: 'unknown' };
  }
}

/** The access-line facts a route adds (where it goes, through what, as whom). */
function routeFields(route: Route): Record<string, unknown> {
  const fields: Record<string, unknown> = {
    route: route.kind,
    connection_security_policy: route.kind === 'hbone' ? 'mutual_tls' : 'unknown',
  };
  if (route.kind === 'hbone') {
    fields['dst.hbone_addr'] = `${route.hboneAddr.host}:${route.hboneAddr.port}`;
    fields['dst.addr'] = route.authority;
    fields['dst.workload'] = route.endpoint.name;
    fields['dst.identity'] = route.expectedIdentity;
    if (route.waypoint) fields['dst.waypoint'] = `${route.endpoint.namespace}/${route.endpoint.name}`;
    if (route.service) fields['dst.service'] = route.service.hostname;
  } else if (route.kind === 'passthrough') {
    fields['dst.addr'] = formatSocketAddr(route.addr.host, route.addr.port);
    if (route.service) fields['dst.service'] = route.service.hostname;
  }
  return fields;
}

const REPLY_BY_CODE: Partial<Record<ErrorCode, SocksReplyCode>> = {
  ROUTE_UNKNOWN_HOST: SOCKS_REPLY.hostUnreachable,
  ROUTE_NO_ENDPOINT: SOCKS_REPLY.hostUnreachable,
  HBONE_POLICY_DENIED: SOCKS_REPLY.notAllowed,
  HBONE_UPSTREAM_FAILED: SOCKS_REPLY.connectionRefused,
  HBONE_CONNECT_REFUSED: SOCKS_REPLY.connectionRefused,
  HBONE_TIMEOUT: SOCKS_REPLY.hostUnreachable,
};

/** One place maps failures to what the client sees. */
export function replyFor(err: unknown): SocksReplyCode {
  if (isAmbitError(err)) return REPLY_BY_CODE[err.code] ?? SOCKS_REPLY.generalFailure;
  switch ((err as NodeJS.ErrnoException).code) {
    case 'ECONNREFUSED':
      return SOCKS_REPLY.connectionRefused;
    case 'ENETUNREACH':
      return SOCKS_REPLY.networkUnreachable;
    case 'EHOSTUNREACH':
    case 'ETIMEDOUT':
      return SOCKS_REPLY.hostUnreachable;
    default:
      return SOCKS_REPLY.generalFailure;
  }
}
