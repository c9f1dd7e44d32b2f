// The primary process of `ambit node --workers N` (N > 1): the node's one connection to the
// control plane (xDS and the CA, proxy/startup.ts), its one certificate manager, and its single
// admin (15000), metrics (15020) and readiness (15021) listeners. The data path is in the
// workers (workers.ts, worker-main.ts): each update the primary applies is forwarded to all of
// them (proxy/fan-out.ts), certificates are handed out on request and pushed on rotation.
// Readiness is 200 once xDS synced and every worker reports its pods' listeners bound.
import type http from 'node:http';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { Logger } from '../common/log.js';
import { componentLogger } from '../common/log.js';
import { errorMessage } from '../common/errors.js';
import { READINESS_PORT } from '../common/ports.js';
import type { CertificateManager, WorkloadCert } from '../identity/cert-manager.js';
import type { XdsTypeStatus } from '../xds/client.js';
import { spiffeIdOf, DEFAULT_TRUST_DOMAIN } from '../xds/resources.js';
import type { ProxyState } from '../proxy/state.js';
import type { PolicyStore } from '../proxy/policy-store.js';
import type { ProxyStartup } from '../proxy/startup.js';
import { AddressMirror, policySnapshot, type ToWorker } from '../proxy/fan-out.js';
import type { AuthzCounters } from '../proxy/inbound-gate.js';
import { NodeTelemetry, nodeAdminDefaults } from '../telemetry/node-telemetry.js';
import { nodeProxyStartup, type NodeProxyOptions } from './proxy.js';
import { localAmbientPods } from './local-pods.js';
import { NodeWorkers } from './workers.js';

export class NodeProxyPrimary {
  readonly state: ProxyState;
  readonly policies: PolicyStore;
  readonly telemetry: NodeTelemetry;
  private readonly log: Logger;
  private readonly startup: ProxyStartup;
  private readonly mirror = new AddressMirror();
  private workers!: NodeWorkers;
  private certs!: CertificateManager;
  private readiness?: http.Server;
  private xdsReady = false;
  private readyWaiters: (() => void)[] = [];

  constructor(
    private readonly opts: NodeProxyOptions,
    private readonly count: number,
  ) {
    this.log = opts.logger ?? componentLogger('node', { node: opts.nodeName });
    this.telemetry = new NodeTelemetry(
      { ...nodeAdminDefaults(opts.stateDir, false, this.log), ...opts.telemetry },
      this.log,
    );
    this.startup = nodeProxyStartup(opts, this.log);
    this.state = this.startup.state;
    this.policies = this.startup.policies;
  }

  get trustDomain(): string {
    return this.opts.trustDomain ?? DEFAULT_TRUST_DOMAIN;
  }

  async start(): Promise<void> {
    const o = this.opts;
    this.log.info(
      { node: o.nodeName, nodeIp: o.nodeIp, controlPlane: o.controlPlane, workers: this.count },
      'node proxy starting',
    );
    this.certs = await this.startup.connect(o.nodeName);
    this.certs.on('rotated', (cert: WorkloadCert) => this.workers.broadcast({ t: 'rotated', cert }));
    const access = o.telemetry?.accessLog;
    this.workers = new NodeWorkers({
      count: this.count,
      logger: this.log,
      init: {
        nodeName: o.nodeName,
        nodeIp: o.nodeIp,
        stateDir: o.stateDir,
        trustDomain: o.trustDomain,
        ports: { hbone: o.ports?.hbone, socks5: o.ports?.socks5 },
        accessLog: typeof access === 'string' ? access : undefined,
        metrics: o.telemetry?.metrics,
      },
      initialMessages: () => {
        const m: ToWorker[] = [this.mirror.snapshot(), policySnapshot(this.policies)];
        if (this.xdsReady) m.push({ t: 'synced' });
        return m;
      },
      onMessage: (index, msg, reply) => {
        if (msg.t !== 'cert?') return;
        // Promise.resolve().then: a get() that throws synchronously is answered, not a crash.
        Promise.resolve()
          .then(() => this.certs.get(msg.identity))
          .then(
            (cert) => reply({ t: 'cert', id: msg.id, cert }),
            (err: unknown) => reply({ t: 'cert', id: msg.id, error: errorMessage(err) }),
          );
      },
      onStatus: () => {
        if (this.isReady().ready) for (const r of this.readyWaiters.splice(0)) r();
      },
    });
    this.state.on('change', () => {
      // The primary holds the node's certificates: it drops those no local pod uses any more.
      const inUse = new Set([...localAmbientPods(this.state, o.nodeName).values()].map(spiffeIdOf));
      for (const c of this.certs.list()) if (!inUse.has(c.spiffeId)) this.certs.forget(c.identity);
    });
    this.policies.on('change', () => {
      this.log.info(
        { policies: this.policies.all().size, rejected: [...this.policies.rejections().keys()] },
        'authorization policies updated',
      );
      this.workers.broadcast(policySnapshot(this.policies));
    });
    this.startup.startXds(
      { id: `ambit~${o.nodeIp}~${o.nodeName}~${this.trustDomain}`, metadata: { NODE_NAME: o.nodeName } },
      {
        onAddressDelta: (upserted, removed) => this.workers.broadcast(this.mirror.record(upserted, removed)),
      },
    );
    this.workers.start();
    this.readiness = await this.startup.serveReadiness(o.nodeIp, o.ports?.readiness ?? READINESS_PORT, () =>
      this.isReady(),
    );
    this.sumWorkerMetrics();
    await this.telemetry.start({ nodeName: o.nodeName, nodeIp: o.nodeIp, proxy: this });
    await this.startup.synced();
    this.xdsReady = true;
    this.workers.broadcast({ t: 'synced' });
    if (!this.isReady().ready) await new Promise<void>((r) => this.readyWaiters.push(r));
    this.log.info(
      { pods: this.localPods().map((p) => `${p.namespace}/${p.name}`), workers: this.workers.pids() },
      'node proxy ready',
    );
  }

  /**
   * 15020 shows the node proxy as one: at each scrape the workers' metrics are fetched and summed
   * with the primary's own (authorization counters, build info) by prom-client's aggregator
   * (counters and histograms summed per label set). Summed, not labelled per worker: ztunnel's
   * metrics are per process, a node has one node proxy, and dashboards and Istio's queries then
   * read the same series whatever the worker count. Per-worker shares are in the access records
   * (`worker` field). A worker that restarted starts its counts again at 0, which Prometheus sees
   * as a counter reset (rate() handles it). The registry is read per scrape (telemetry/
   * metrics-server.ts), so wrapping its metrics() here keeps telemetry/ unchanged.
   */
  private sumWorkerMetrics(): void {
    const reg = this.telemetry.registry;
    reg.metrics = async () => {
      const own = await reg.getMetricsAsJSON();
      const workers = (await this.workers.collectMetrics()) as MetricObjectWithValues<
        MetricValue<string>
      >[][];
      // istio_build is a fact about the binary (value 1), not a count: one series, not N + 1.
      for (const m of [own, ...workers].flat()) if (m.name === 'istio_build') m.aggregator = 'max';
      return AggregatorRegistry.aggregate([own, ...workers]).metrics();
    };
  }

  /** Ready: xDS synced, and every worker is up and has its pods' listeners bound. */
  isReady(): { ready: boolean; reason?: string } {
    if (!this.xdsReady) return { ready: false, reason: 'waiting for the first xDS response' };
    const why: string[] = [];
    this.workers.statuses().forEach((s, i) => {
      if (!s) why.push(`worker ${i} starting`);
      else if (!s.ready) why.push(`worker ${i}: ${s.reason ?? 'not ready'}`);
    });
    return why.length > 0 ? { ready: false, reason: why.join('; ') } : { ready: true };
  }

  localPods(): { uid: string; name: string; namespace: string; ip: string; identity: string }[] {
    const byUid = new Map<string, ReturnType<NodeProxyPrimary['localPods']>[number]>();
    for (const s of this.workers.statuses()) for (const p of s?.pods ?? []) byUid.set(p.uid, p);
    return [...byUid.values()];
  }

  /** Summed over the live workers (a restarted worker's counts start again at 0). */
  authzCounters(): AuthzCounters {
    const sum = { allowed: 0, denied: 0, closedByPolicyChange: 0, deniedByPolicy: new Map<string, number>() };
    for (const s of this.workers.statuses()) {
      if (!s) continue;
      sum.allowed += s.authz.allowed;
      sum.denied += s.authz.denied;
      sum.closedByPolicyChange += s.authz.closedByPolicyChange;
      for (const [k, v] of s.authz.deniedByPolicy)
        sum.deniedByPolicy.set(k, (sum.deniedByPolicy.get(k) ?? 0) + v);
    }
    return sum;
  }

  /** Worker pids by index (undefined while one restarts): for tests and the admin. */
  workerPids(): (number | undefined)[] {
    return this.workers.pids();
  }

  certificates(): WorkloadCert[] {
    return this.certs.list();
  }

  xdsStatus(): XdsTypeStatus[] {
    return this.startup.xds?.status() ?? [];
  }

  async stop(graceMs = 2000): Promise<void> {
    await this.workers?.stop(graceMs);
    this.startup.stop();
    await new Promise<void>((r) => (this.readiness ? this.readiness.close(() => r()) : r()));
    await this.telemetry.stop();
    this.log.info('node proxy stopped');
  }
}
