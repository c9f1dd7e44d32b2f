// The node proxy's telemetry, wired in one place: its own Prometheus registry (so several proxies
// in one process never share counters), the L4 metrics, the access-log policy, recent denials,
// and two listeners: metrics on nodeIP:15020 (/metrics, /stats/prometheus), open as Istio's are,
// and admin on 15000 (node-admin.ts) behind the admin gate (admin-guard.ts). The data path only
// sees `connections` (ConnectionTelemetry).
import http from 'node:http';
import { Registry } from 'prom-client';
import type { Logger } from '../common/log.js';
import { ensureAdminToken, type TokenSource } from '../common/token.js';
import { errorMessage } from '../common/errors.js';
import { AdminGuard } from './admin-guard.js';
import {
  DEFAULT_ACCESS_LOG,
  AccessLogPolicy,
  formatAccessLogMode,
  parseAccessLogMode,
  type AccessLogMode,
} from './access-log.js';
import {
  connectionTelemetry,
  DenialLog,
  registerAuthzCounters,
  type ConnectionTelemetry,
} from './connection-telemetry.js';
import { L4Metrics } from './metrics.js';
import { adminHandler, type NodeAdminSource, type XdsUpdateCounts } from './node-admin.js';
import { closeHttp, listenHttp } from './http-util.js';
import { serveMetrics } from './metrics-server.js';
import { ADMIN_PORT, METRICS_PORT } from '../common/ports.js';

export interface NodeTelemetryOptions {
  /** Collect and serve metrics (default true; AMBIT_METRICS=off turns them off). */
  metrics?: boolean;
  /** off | full | sample:RATIO, or a parsed mode (default full; AMBIT_ACCESS_LOG). */
  accessLog?: string | AccessLogMode;
  metricsPort?: number;
  /** 0 or a port; admin is on by default. */
  adminPort?: number;
  /**
   * Address admin binds to (`ambit node --admin-bind`, or AMBIT_ADMIN_HOST). Default: 127.0.0.1
   * where the proxy's loopback is its own (adminTrustLoopback: netns capture, Kubernetes), as
   * ztunnel binds admin to localhost; the node IP in local mode, where every pod is a loopback
   * address anyway and the admin token is what guards it.
   */
  adminHost?: string;
  /**
   * The admin token (common/token.ts ensureAdminToken): every state-changing request, and every
   * read that shows the mesh, must carry it. Unset: those are refused to everyone (fail closed).
   */
  adminToken?: TokenSource;
  /**
   * Reads arriving on a loopback address need no token. Only where no pod shares the proxy's
   * loopback: netns capture and Kubernetes (the node's own namespace). Never in local mode,
   * where every pod is a loopback address.
   */
  adminTrustLoopback?: boolean;
  /** Called after a /quitquitquit drain (the CLI exits the process). */
  onQuit?: () => void;
}

/** Options from the environment, so `ambit up` children and DaemonSet pods can be tuned without flags. */
export function telemetryOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): NodeTelemetryOptions {
  const m = env.AMBIT_METRICS?.toLowerCase();
  return {
    metrics: m === undefined ? undefined : !(m === 'off' || m === 'false' || m === '0'),
    accessLog: env.AMBIT_ACCESS_LOG,
    adminHost: env.AMBIT_ADMIN_HOST || undefined,
  };
}

/**
 * The admin defaults of a node proxy: the state directory's admin token (created if missing) and
 * whether its loopback is its own (netns capture / Kubernetes). A token that cannot be written
 * leaves admin without one: reads over a private loopback still work, everything else is refused.
 */
export function nodeAdminDefaults(
  stateDir: string,
  privateLoopback: boolean,
  log: Logger,
): Pick<NodeTelemetryOptions, 'adminToken' | 'adminTrustLoopback'> {
  let adminToken: string | undefined;
  try {
    adminToken = ensureAdminToken(stateDir);
  } catch (err) {
    log.warn(
      { err: errorMessage(err), 'state.dir': stateDir },
      'admin: no admin token (cannot write it); admin writes are refused',
    );
  }
  return { adminToken, adminTrustLoopback: privateLoopback };
}

export class NodeTelemetry {
  readonly registry = new Registry();
  readonly metrics?: L4Metrics;
  readonly access: AccessLogPolicy;
  readonly denials = new DenialLog();
  readonly connections: ConnectionTelemetry;
  private readonly xdsCounts = new Map<string, XdsUpdateCounts>();
  private metricsServer?: http.Server;
  private adminServer?: http.Server;

  constructor(
    private readonly opts: NodeTelemetryOptions,
    private readonly log: Logger,
  ) {
    const env = telemetryOptionsFromEnv();
    const enabled = opts.metrics ?? env.metrics ?? true;
    const access = opts.accessLog ?? env.accessLog;
    const mode = typeof access === 'string' ? parseAccessLogMode(access) : (access ?? DEFAULT_ACCESS_LOG);
    if (enabled) this.metrics = new L4Metrics(this.registry);
    this.access = new AccessLogPolicy(mode);
    this.connections = connectionTelemetry(this.metrics, this.access, this.denials);
  }

  /** Counts one xDS update of a type (for /config_dump). */
  xdsUpdated(type: string, resources: number): void {
    const c = this.xdsCounts.get(type) ?? { type, updates: 0, resources: 0 };
    c.updates++;
    c.resources = resources;
    c.lastUpdate = new Date().toISOString();
    this.xdsCounts.set(type, c);
  }

  async start(ctx: { nodeName: string; nodeIp: string; proxy: NodeAdminSource }): Promise<void> {
    const metricsPort = this.opts.metricsPort ?? METRICS_PORT;
    const adminPort = this.opts.adminPort ?? ADMIN_PORT;
    const adminHost =
      this.opts.adminHost ??
      telemetryOptionsFromEnv().adminHost ??
      (this.opts.adminTrustLoopback ? '127.0.0.1' : ctx.nodeIp);
    const { state, policies } = ctx.proxy;
    state.on('change', () => this.xdsUpdated('Address', state.counts().workloads + state.counts().services));
    policies.on('change', () => this.xdsUpdated('Authorization', policies.all().size));
    if (this.metrics) {
      if (ctx.proxy.authzCounters) registerAuthzCounters(this.registry, () => ctx.proxy.authzCounters!());
      this.metricsServer = await serveMetrics(this.registry, ctx.nodeIp, metricsPort);
    }
    if (adminPort) {
      this.adminServer = http.createServer(
        adminHandler({
          nodeName: ctx.nodeName,
          nodeIp: ctx.nodeIp,
          metricsUrl: `http://${ctx.nodeIp}:${metricsPort}/metrics`,
          proxy: ctx.proxy,
          logger: this.log,
          access: this.access,
          denials: this.denials,
          xdsUpdates: () => [...this.xdsCounts.values()],
          onQuit: this.opts.onQuit,
          guard: new AdminGuard({
            token: this.opts.adminToken,
            trustLoopback: this.opts.adminTrustLoopback ?? false,
            logger: this.log,
          }),
        }),
      );
      await listenHttp(this.adminServer, adminHost, adminPort);
    }
    this.log.info(
      {
        metrics: this.metrics ? `${ctx.nodeIp}:${metricsPort}` : 'off',
        admin: adminPort ? `${adminHost}:${adminPort}` : 'off',
        'admin.token': this.opts.adminToken === undefined ? 'none (reads and writes refused)' : 'required',
        'admin.trust_loopback': this.opts.adminTrustLoopback ?? false,
        access_log: formatAccessLogMode(this.access.mode),
      },
      'telemetry listening',
    );
  }

  async stop(): Promise<void> {
    await Promise.all([closeHttp(this.metricsServer), closeHttp(this.adminServer)]);
  }
}
