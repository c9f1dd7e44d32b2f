// The waypoint process, wired in one readable place (DESIGN.md §1; istio-ambient.md §2). Steps
// 1–3 are the start-up every proxy shares (proxy/startup.ts):
//  1. trust root and the node token of the node it runs on (the CA lets that node sign for the
//     waypoint's service account, as for a pod scheduled there);
//  2. certificate manager: one certificate, for the waypoint's own identity
//     spiffe://<td>/ns/<ns>/sa/<gateway name>;
//  3. xDS: addresses (→ ProxyState), L4 authorization (→ PolicyStore) and the L7 config objects
//     (→ the L7 engine, rebuilt on change);
//  4. HBONE server on waypointIP:15008 that accepts only CONNECTs for services and workloads
//     bound to this waypoint (400 unknown target, 403 not bound to this waypoint), then the
//     inbound gate a node proxy uses (proxy/inbound-gate.ts: L4 policy, 401; registered so a
//     policy change closes tunnels no longer allowed; one ConnectionRecord: istio_tcp_* metrics
//     with reporter="waypoint" and one access line), then protocol detection: TCP is spliced to a
//     chosen endpoint over HBONE as the waypoint (tcp-proxy.ts); HTTP/1.1, h2c and gRPC go
//     through http-proxy.ts, each request recorded by request-record.ts.
// Readiness (`GET /healthz/ready` on waypointIP:15021) is served from the start: 503 with the
// step it waits for, 200 once xDS has answered, the certificate is issued and 15008 listens.
import { readdir } from 'node:fs/promises';
import http2 from 'node:http2';
import path from 'node:path';
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../common/log.js';
import { componentLogger } from '../common/log.js';
import { errorMessage } from '../common/errors.js';
import type { HostPort, Ip, SocketAddr } from '../common/addr.js';
import { HbonePool } from '../hbone/pool.js';
import { HboneServer, type InboundTunnel } from '../hbone/server.js';
import { HBONE_PORT, METRICS_PORT, READINESS_PORT } from '../common/ports.js';
import type { TlsIdentity } from '../hbone/tls.js';
import type { CertificateManager, WorkloadCert } from '../identity/cert-manager.js';
import { TYPE_CONFIG_OBJECT } from '../xds/proto.js';
import { DEFAULT_TRUST_DOMAIN, spiffeIdOf, type Workload } from '../xds/resources.js';
import { decodeConfigObject, type ConfigObject } from '../xds/config-objects.js';
import type { ProxyState } from '../proxy/state.js';
import type { PolicyStore } from '../proxy/policy-store.js';
import { waypointInboundPolicies } from '../proxy/authz.js';
import { ProxyStartup } from '../proxy/startup.js';
import { InboundGate, type GateEntry } from '../proxy/inbound-gate.js';
import { ConnectionRecord, runRecorded } from '../proxy/connection-record.js';
import { resetStream } from '../proxy/splice.js';
import { tunnelSourceAddr, tunnelSourceIp } from '../proxy/tunnel-peer.js';
import { roundRobin } from '../proxy/route.js';
import { connectTcp } from '../proxy/connect-tcp.js';
import { detectProtocol } from './protocol.js';
import { proxyTcp, sniff } from './tcp-proxy.js';
import { HttpProxy } from './http/http-proxy.js';
import type { L7Engine } from './http/http-types.js';
import type { TunnelContext } from './tunnel-context.js';
import type { RequestRecord } from './request-record.js';
import { buildL7Engine } from './l7-engine.js';
import { Registry } from 'prom-client';
import type { WaypointPolicySet } from './policy/authz-l7.js';
import { evaluateTcp } from './policy/authz-tcp.js';
import { createRequestMetrics } from '../telemetry/request-metrics.js';
import { serveMetrics } from '../telemetry/metrics-server.js';
import { L4Metrics } from '../telemetry/metrics.js';
import { AccessLogPolicy, traceIdOf } from '../telemetry/access-log.js';
import {
  connectionTelemetry,
  DenialLog,
  NO_TELEMETRY,
  registerAuthzCounters,
  type ConnectionTelemetry,
} from '../telemetry/connection-telemetry.js';

export interface WaypointOptions {
  namespace: string;
  name: string;
  ip: Ip;
  controlPlane: string;
  stateDir: string;
  /** Node it runs on (its token authenticates to the CA and xDS); default: the only node token. */
  nodeName?: string;
  trustDomain?: string;
  port?: number;
  certTtlSeconds?: number;
  controlPlaneServerName?: string;
  /** Readiness port on the waypoint's IP (default 15021). */
  readinessPort?: number;
  /** Called once for every finished HTTP request (telemetry). */
  onRequest?: (record: RequestRecord) => void;
  /** Istio request metrics on waypointIP:<port>/metrics (default 15020); false: none. */
  metricsPort?: number | false;
  logger?: Logger;
}

export class Waypoint {
  readonly state: ProxyState;
  readonly policies: PolicyStore;
  private readonly startup: ProxyStartup;
  /** The inbound L4 gate a node proxy uses: authorize → register for re-evaluation → record. */
  private readonly gate: InboundGate;
  /** istio_tcp_* (reporter="waypoint") for TCP tunnels and L4 denials; none with metricsPort false. */
  private telemetry: ConnectionTelemetry = NO_TELEMETRY;
  /** TCP-path denials per deciding policy (ambit_authz_denied_total{protocol="tcp"}). */
  private readonly tcpDenied = new Map<string, number>();
  private readonly config = new Map<string, ConfigObject>();
  private readonly log: Logger;
  private certs!: CertificateManager;
  private pool!: HbonePool;
  private hbone!: HboneServer;
  private http!: HttpProxy;
  private engine!: L7Engine;
  /** The compiled AuthorizationPolicies the L7 engine uses, read by the TCP path too (authz-tcp.ts). */
  private policySet: WaypointPolicySet = { policies: [], warnings: [] };
  private engineTimer?: NodeJS.Timeout;
  private warnings = new Set<string>();
  private readonly pick = roundRobin();
  private readiness?: http.Server;
  private metricsServer?: http.Server;
  readonly registry = new Registry();
  /** Why the waypoint is not ready; undefined once it is. */
  private notReady: string | undefined = 'starting';

  constructor(private readonly opts: WaypointOptions) {
    this.log = opts.logger ?? componentLogger('waypoint', { waypoint: `${opts.namespace}/${opts.name}` });
    this.startup = new ProxyStartup({
      controlPlane: opts.controlPlane,
      stateDir: opts.stateDir,
      controlPlaneServerName: opts.controlPlaneServerName,
      certTtlSeconds: opts.certTtlSeconds,
      logger: this.log,
    });
    this.state = this.startup.state;
    this.policies = this.startup.policies;
    // Metrics are wired in start(); the gate reads the current sink through this indirection.
    this.gate = new InboundGate({
      opened: (o) => this.telemetry.opened(o),
      logComplete: () => this.telemetry.logComplete(),
      denied: (d) => this.telemetry.denied(d),
    });
    // A policy change, or a change to the waypoint's own workload (the policies it names),
    // re-checks open tunnels, as a node proxy's inbound does.
    this.policies.on('change', () => this.gate.reevaluate());
    this.state.on('change', () => this.gate.reevaluate());
  }

  get trustDomain(): string {
    return this.opts.trustDomain ?? DEFAULT_TRUST_DOMAIN;
  }

  /** spiffe://td/ns/<ns>/sa/<name>: Istio runs a waypoint with a service account named after the Gateway. */
  get identity(): string {
    return spiffeIdOf({
      trustDomain: this.trustDomain,
      namespace: this.opts.namespace,
      serviceAccount: this.opts.name,
    });
  }

  async start(): Promise<void> {
    const o = this.opts;
    const nodeName = o.nodeName ?? (await onlyNodeToken(o.stateDir));
    this.log.info(
      {
        ip: o.ip,
        node: nodeName,
        controlPlane: o.controlPlane,
        identity: this.identity,
        stateDir: o.stateDir,
      },
      'waypoint starting',
    );
    this.readiness = await this.startup.serveReadiness(o.ip, o.readinessPort ?? READINESS_PORT, () =>
      this.isReady(),
    );
    // 1–2. trust root, node token, certificate manager for the waypoint's own identity
    this.notReady = 'waiting for the trust root and node token';
    this.certs = await this.startup.connect(nodeName);
    this.certs.on('rotated', (cert: WorkloadCert) => this.hbone?.setIdentity(cert));

    // 3. xDS: addresses, L4 policies, L7 config objects
    this.engine = buildL7Engine({ objects: [], services: [], waypoint: o }).engine;
    this.startup.startXds(
      {
        id: `waypoint~${o.ip}~${o.name}.${o.namespace}~${this.trustDomain}`,
        metadata: { NODE_NAME: nodeName, WAYPOINT: `${o.namespace}/${o.name}` },
      },
      {
        onAddresses: () => this.scheduleEngine(),
        types: [
          {
            typeUrl: TYPE_CONFIG_OBJECT,
            decode: (name: string, bytes: Uint8Array) => decodeConfigObject(name, bytes),
            apply: (upserted: Map<string, ConfigObject>, removed: string[]) => {
              for (const n of removed) this.config.delete(n);
              for (const [n, obj] of upserted) this.config.set(n, obj);
              this.scheduleEngine();
            },
          },
        ],
      },
    );
    this.notReady = 'waiting for the first xDS response';
    await this.startup.synced();
    this.rebuildEngine();

    // 4. data path: the HBONE server as the waypoint, HTTP proxy and the upstream pool
    this.notReady = 'waiting for the certificate';
    const cert = await this.certs.get({
      trustDomain: this.trustDomain,
      namespace: o.namespace,
      serviceAccount: o.name,
    });
    this.pool = new HbonePool(this.log.child({ part: 'pool' }));
    this.http = new HttpProxy({
      state: this.state,
      engine: () => this.engine,
      connect: (endpoint, authority, ctx) => this.connectUpstream(endpoint, authority, ctx),
      onRequest: this.requestSink(),
      logger: this.log,
    });
    if (o.metricsPort !== false) {
      // The node proxy's L4 series and counters, reporter="waypoint"; every connection is logged
      // (the waypoint has no access-log switch) and denials are not kept (it has no admin port).
      const l4 = new L4Metrics(this.registry, 'proxy');
      this.telemetry = connectionTelemetry(l4, new AccessLogPolicy(), new DenialLog(0));
      registerAuthzCounters(
        this.registry,
        () => this.gate.counters,
        () => this.tcpDenied,
      );
      this.metricsServer = await serveMetrics(this.registry, o.ip, o.metricsPort ?? METRICS_PORT);
    }
    this.hbone = new HboneServer({
      podIp: o.ip,
      port: o.port ?? HBONE_PORT,
      identity: cert,
      trustDomain: this.trustDomain,
      logger: this.log,
      checkTarget: (t) => this.checkTarget(t),
      onTunnel: (t) => void this.handle(t),
    });
    this.notReady = `waiting for the HBONE listener on ${o.ip}:${o.port ?? HBONE_PORT}`;
    await this.hbone.start();
    this.notReady = undefined;
    this.log.info(
      { addr: `${o.ip}:${o.port ?? HBONE_PORT}`, identity: cert.spiffeId, routes: this.config.size },
      'waypoint ready',
    );
  }

  /** Ready once xDS has answered, the certificate is issued and the HBONE listener is up. */
  isReady(): { ready: boolean; reason?: string } {
    return this.notReady === undefined ? { ready: true } : { ready: false, reason: this.notReady };
  }

  /** Upstream HTTP/1.1 connection counts (opened, reused, open now). */
  upstreamStats(): ReturnType<HttpProxy['upstreamStats']> | undefined {
    return this.http?.upstreamStats();
  }

  async stop(graceMs = 2000): Promise<void> {
    clearTimeout(this.engineTimer);
    this.notReady = 'stopping';
    for (const server of [this.readiness, this.metricsServer])
      if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    this.startup.xds?.stop();
    this.http?.close();
    this.pool?.close();
    await this.hbone?.stop(graceMs);
    this.startup.stop();
    this.log.info('waypoint stopped');
  }

  /** Every finished request: Istio's request metrics (reporter waypoint), then the caller's hook. */
  private requestSink(): (record: RequestRecord) => void {
    const hook = this.opts.onRequest;
    if (this.opts.metricsPort === false) return (r) => hook?.(r);
    // Labels are looked up once per workload (the recorder memoizes), so a scan is fine here.
    const count = createRequestMetrics(this.registry, (namespace, name) => {
      const w = this.state.allWorkloads().find((x) => x.namespace === namespace && x.name === name);
      return (
        w && {
          canonicalName: w.canonicalName,
          canonicalRevision: w.canonicalRevision,
          clusterId: w.clusterId,
        }
      );
    });
    return (r) => {
      count(r);
      hook?.(r);
    };
  }

  /** Which CONNECT targets this waypoint serves: services and workloads bound to it, nothing else. */
  private checkTarget(t: HostPort & { host: Ip }): { status: number; reason: string } | undefined {
    const me = this.opts.ip;
    const svc = this.state.serviceByAddress(t.host);
    if (svc) {
      if (svc.waypoint?.ip === me) return undefined;
      return {
        status: 403,
        reason: `service ${svc.hostname} is not bound to waypoint ${this.opts.namespace}/${this.opts.name}`,
      };
    }
    const w = this.state.workloadByAddress(t.host);
    if (w) {
      if (w.waypoint?.ip === me) return undefined;
      return {
        status: 403,
        reason: `workload ${w.namespace}/${w.name} is not bound to waypoint ${this.opts.namespace}/${this.opts.name}`,
      };
    }
    return { status: 400, reason: `${t.host} is neither a known service nor a known workload` };
  }

  /** One tunnel, recorded exactly once whatever happens (runRecorded is the guard). */
  private handle(t: InboundTunnel): Promise<void> {
    const { stream, target, peerIdentity } = t;
    const srcIp = tunnelSourceIp(t);
    const service = this.state.serviceByAddress(target.host);
    const workload = service ? undefined : this.state.workloadByAddress(target.host);
    const source = this.state.workloadByAddress(srcIp);
    const ctx: TunnelContext = { target, service, workload, peerIdentity, srcIp };
    const record = new ConnectionRecord(this.log, this.telemetry, {
      src: { addr: tunnelSourceAddr(t), identity: peerIdentity, workload: source },
      dst: {
        addr: `${target.host}:${target.port}`,
        identity: workload && spiffeIdOf(workload),
        workload,
      },
      fields: {
        direction: 'inbound',
        'src.ip': srcIp,
        'dst.service': service?.hostname,
        trace_id: traceIdOf(t.headers.traceparent),
      },
      // Istio's waypoint reporter; the destination is the target until a route picks an endpoint.
      open: {
        reporter: 'waypoint',
        source,
        sourcePrincipal: peerIdentity,
        destination: workload,
        destinationPrincipal: workload && spiffeIdOf(workload),
        destinationService: service,
        securityPolicy: 'mutual_tls',
      },
    });
    return runRecorded(
      record,
      () => this.serve(t, ctx, record),
      () => resetStream(stream, http2.constants.NGHTTP2_INTERNAL_ERROR),
    );
  }

  /** The inbound gate (L4 policy, 401) → 200 → protocol → TCP splice or the HTTP proxy. */
  private async serve(t: InboundTunnel, ctx: TunnelContext, record: ConnectionRecord): Promise<void> {
    const { stream, target } = t;
    const { service, workload } = ctx;
    const self = () => this.state.workloadByAddress(this.opts.ip);
    // Only the policies the waypoint's own workload names: a waypoint is not a captured workload,
    // so namespace-wide and root policies are the destination node proxy's (issue 13 #2).
    const entry: GateEntry = {
      record,
      conn: { srcIdentity: ctx.peerIdentity, srcIp: ctx.srcIp, dstIp: target.host, dstPort: target.port },
      policies: () =>
        waypointInboundPolicies(
          self(),
          this.policies.forWorkload(self() ?? { namespace: this.opts.namespace, authorizationPolicies: [] }),
        ),
      dst: { name: this.opts.name, namespace: this.opts.namespace },
    };
    if (!this.gate.authorize(entry, { status: 401 }).allow) {
      if (!stream.destroyed) stream.respond({ ':status': 401 }, { endStream: true });
      return;
    }
    // Registered for the tunnel's whole life, whatever it carries: a policy change resets it.
    const untrack = this.gate.track(entry, () => resetStream(stream, http2.constants.NGHTTP2_CANCEL));
    stream.once('close', untrack);
    stream.respond({ ':status': 200 });
    const appProtocol = (service ?? this.serviceOfWorkloadPort(workload, target.port))?.ports.find(
      (p) => p.servicePort === target.port || (!service && p.targetPort === target.port),
    )?.appProtocol;
    const protocol = await sniff(stream, (first, complete) => detectProtocol(appProtocol, first, complete));
    this.log.debug({ ...record.fields, protocol }, 'tunnel accepted');
    if (protocol === 'http1' || protocol === 'http2') {
      // Each request is recorded (request-record.ts); the tunnel itself writes no line.
      record.handOff();
      return protocol === 'http1' ? this.http.serveHttp1(stream, ctx) : this.http.serveHttp2(stream, ctx);
    }
    // The TCP-path policy is re-checked with the L4 ones when either changes (rebuildEngine).
    entry.recheck = () => this.authorizeTcp(ctx);
    await proxyTcp(stream, ctx, record, {
      state: this.state,
      self: this.opts.ip,
      pick: this.pick,
      connect: (endpoint, authority) => this.connectUpstream(endpoint, authority, ctx),
      authorize: (c) => this.authorizeTcp(c),
      onDenied: (d) => {
        const key = d.policy ?? '(no ALLOW matched)';
        this.tcpDenied.set(key, (this.tcpDenied.get(key) ?? 0) + 1);
      },
      log: this.log,
    });
  }

  /** The TCP-path decision on the current compiled policy set (authz-tcp.ts). */
  private authorizeTcp(c: TunnelContext): ReturnType<typeof evaluateTcp> {
    return evaluateTcp(this.policySet, {
      srcIdentity: c.peerIdentity,
      srcIp: c.srcIp,
      dstIp: c.target.host,
      dstPort: c.target.port,
      ...(c.service
        ? { service: { namespace: c.service.namespace, hostname: c.service.hostname, name: c.service.name } }
        : {}),
    });
  }

  /**
   * An HBONE tunnel to `authority` as the waypoint. `forwarded: for=` names the downstream client
   * when the tunnel is its own (TCP, upgrades); a pooled HTTP connection is shared, so it names
   * the waypoint.
   */
  private async connectUpstream(
    endpoint: Workload,
    authority: SocketAddr,
    ctx?: TunnelContext,
  ): Promise<Duplex> {
    if (endpoint.tunnelProtocol !== 'HBONE') {
      const [host, port] = [endpoint.addresses[0]!, Number(authority.slice(authority.lastIndexOf(':') + 1))];
      return connectTcp({ host, port }, this.opts.ip);
    }
    const cert: TlsIdentity = await this.certs.get({
      trustDomain: this.trustDomain,
      namespace: this.opts.namespace,
      serviceAccount: this.opts.name,
    });
    return this.pool.connect({
      source: cert,
      sourceIp: this.opts.ip,
      clientAddr: { host: ctx?.srcIp ?? this.opts.ip, port: 0 },
      hboneAddr: { host: endpoint.addresses[0]!, port: HBONE_PORT },
      expectedIdentity: spiffeIdOf(endpoint),
      authority,
    });
  }

  private serviceOfWorkloadPort(w: Workload | undefined, port: number) {
    if (!w) return undefined;
    for (const [key, ports] of Object.entries(w.services)) {
      if (!ports.some((p) => p.targetPort === port)) continue;
      const svc = this.state.serviceByHostname(key.slice(key.indexOf('/') + 1));
      if (svc) return svc;
    }
    return undefined;
  }

  private scheduleEngine(): void {
    if (this.engineTimer || !this.engine) return;
    this.engineTimer = setTimeout(() => {
      this.engineTimer = undefined;
      this.rebuildEngine();
    }, 20);
  }

  private rebuildEngine(): void {
    try {
      const compiled = buildL7Engine({
        objects: [...this.config.values()],
        services: this.state.allServices(),
        waypoint: { namespace: this.opts.namespace, name: this.opts.name },
      });
      this.engine = compiled.engine;
      this.policySet = compiled.policies;
      // Open TCP tunnels were admitted on the previous set: close those it no longer allows.
      this.gate.reevaluate();
      // Each warning is logged once, when it first appears.
      const now = new Set(compiled.warnings);
      for (const w of now) if (!this.warnings.has(w)) this.log.warn({ part: 'l7' }, w);
      this.warnings = now;
      this.log.debug(
        {
          objects: this.config.size,
          routes: compiled.table.routes.size,
          policies: compiled.policies.policies.length,
        },
        'L7 config compiled',
      );
    } catch (err) {
      this.log.error(
        { err: errorMessage(err) },
        'L7 config could not be compiled; keeping the last good one',
      );
    }
  }
}

async function onlyNodeToken(stateDir: string): Promise<string> {
  const tokens = (await readdir(path.join(stateDir, 'nodes')).catch(() => [])).filter((f) =>
    f.endsWith('.token'),
  );
  if (tokens.length !== 1)
    throw new Error(`--node is needed: ${tokens.length} node tokens in ${path.join(stateDir, 'nodes')}`);
  return tokens[0]!.slice(0, -'.token'.length);
}
