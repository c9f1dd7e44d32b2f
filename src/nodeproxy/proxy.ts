// The node proxy process, wired in one readable place. Order matters:
//  1–2. trust root, this node's token, certificate manager: the shared start-up
//     (proxy/startup.ts, the same steps as the waypoint's);
//  3. data path: the HBONE pool, outbound, and inbound (HBONE and, in netns mode, plaintext)
//     behind one inbound gate (proxy/inbound-gate.ts); then xDS → ProxyState and PolicyStore (the
//     last config is kept while the control plane is away); a change to either re-checks open
//     inbound connections against the policies;
//  4. per local ambient pod: HBONE listener podIP:15008 and SOCKS5 listener podIP:15080, or in
//     netns mode (capture.ts) both made inside the pod's namespace with 15001/15006/15053 and
//     the pod's redirection rules;
//  5. readiness on nodeIP:15021.
import type http from 'node:http';
import type { Logger } from '../common/log.js';
import { componentLogger } from '../common/log.js';
import { errorMessage } from '../common/errors.js';
import type { Ip } from '../common/addr.js';
import { HbonePool } from '../hbone/pool.js';
import { HboneServer } from '../hbone/server.js';
import { HBONE_PORT, READINESS_PORT, SOCKS5_PORT } from '../common/ports.js';
import type { TlsIdentity } from '../hbone/tls.js';
import type { WorkloadCert } from '../identity/cert-manager.js';
import type { KeyAlgorithm } from '../identity/keys.js';
import type { XdsTypeStatus } from '../xds/client.js';
import { spiffeIdOf, DEFAULT_TRUST_DOMAIN, type Workload } from '../xds/resources.js';
import type { ProxyState } from '../proxy/state.js';
import type { PolicyStore } from '../proxy/policy-store.js';
import { ProxyStartup } from '../proxy/startup.js';
import { InboundGate, type AuthzCounters } from '../proxy/inbound-gate.js';
import { Outbound } from './outbound.js';
import { Inbound } from './inbound.js';
import { Socks5Listener } from './socks5.js';
import { NetnsCapture, type NetnsCaptureOptions } from './capture.js';
import { PlaintextInbound } from './inbound-plaintext.js';
import { roundRobin } from '../proxy/route.js';
import { localAmbientPods } from './local-pods.js';
import { NodeTelemetry, nodeAdminDefaults, type NodeTelemetryOptions } from '../telemetry/node-telemetry.js';
import type { WorkerFeed, CertSource } from './worker-feed.js';

export interface NodeProxyOptions {
  nodeName: string;
  nodeIp: string;
  /** Control plane gRPC address (xDS + CA), "host:port". */
  controlPlane: string;
  /** Holds ca/root-cert.pem and nodes/<node>.token (local mode). */
  stateDir: string;
  trustDomain?: string;
  certTtlSeconds?: number;
  keyAlgorithm?: KeyAlgorithm;
  /** TLS name the control plane's serving certificate carries. */
  controlPlaneServerName?: string;
  ports?: { hbone?: number; socks5?: number; readiness?: number };
  logger?: Logger;
  /** Metrics (nodeIP:15020), admin (nodeIP:15000), access-log mode: telemetry/node-telemetry.ts. */
  telemetry?: NodeTelemetryOptions;
  /**
   * Transparent capture in each pod's network namespace (netns/K8s mode, capture.ts) instead of
   * SOCKS5 on podIP:15080 (local mode).
   */
  netnsCapture?: Omit<NetnsCaptureOptions, 'logger'>;
  /**
   * Set in a worker of `ambit node --workers N` (workers.ts): state, policies and certificates
   * come from the primary over IPC instead of the control plane; pod listeners are SO_REUSEPORT
   * sockets shared with the other workers; no readiness, admin or metrics listeners (the
   * primary's). Unset: the single-process proxy, exactly as before.
   */
  feed?: WorkerFeed;
}

interface PodListeners {
  workload: Workload;
  spiffeId: string;
  hbone: HboneServer;
  /** How the pod's traffic enters: SOCKS5 (local mode) or transparent capture (netns mode). */
  entry: { start(): Promise<void>; stop(graceMs: number): Promise<void> };
}

export class NodeProxy {
  readonly state: ProxyState;
  readonly policies: PolicyStore;
  private readonly log: Logger;
  private readonly startup: ProxyStartup;
  private gate!: InboundGate;
  private readonly pods = new Map<string, PodListeners>();
  private readonly failed = new Map<string, string>();
  private certs!: CertSource;
  private pool!: HbonePool;
  private outbound!: Outbound;
  private inbound!: Inbound;
  private readiness?: http.Server;
  private xdsReady = false;
  private reconciling: Promise<void> = Promise.resolve();
  private reconcileQueued = false;
  private retryTimer?: NodeJS.Timeout;
  private stopped = false;
  private capture?: NetnsCapture;
  readonly telemetry: NodeTelemetry;

  constructor(private readonly opts: NodeProxyOptions) {
    this.log = opts.logger ?? componentLogger('node', { node: opts.nodeName });
    // Admin (15000) asks for the state directory's admin token; with netns capture (and in
    // Kubernetes) the proxy's loopback is its own, so admin binds there (telemetry/admin-guard.ts).
    this.telemetry = new NodeTelemetry(
      { ...nodeAdminDefaults(opts.stateDir, !!opts.netnsCapture, this.log), ...opts.telemetry },
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
      {
        node: o.nodeName,
        nodeIp: o.nodeIp,
        controlPlane: o.controlPlane,
        trustDomain: this.trustDomain,
        stateDir: o.stateDir,
      },
      'node proxy starting',
    );
    // 1–2. trust root, node token, certificates
    this.certs = o.feed ?? (await this.startup.connect(o.nodeName));
    this.certs.on('rotated', (cert: WorkloadCert) => this.onRotated(cert));

    // 3. data path parts (in netns mode their sockets are opened inside the pods), then xDS
    if (o.netnsCapture) this.capture = await NetnsCapture.create({ ...o.netnsCapture, logger: this.log });
    const connect = this.capture?.connect;
    this.pool = new HbonePool(this.log.child({ part: 'pool' }), { connect });
    this.outbound = new Outbound({
      state: this.state,
      pool: this.pool,
      certificateFor: (w) => this.certificateFor(w),
      pick: roundRobin(),
      logger: this.log,
      telemetry: this.telemetry.connections,
      connect,
    });
    // One gate for HBONE and plaintext inbound: one set of counters, one re-evaluation.
    this.gate = new InboundGate(this.telemetry.connections);
    this.inbound = new Inbound(
      this.state,
      this.policies,
      this.log,
      this.gate,
      this.telemetry.connections,
      connect,
    );
    if (this.capture) {
      const plaintext = new PlaintextInbound({
        state: this.state,
        policies: this.policies,
        logger: this.log,
        gate: this.gate,
        connect: this.capture.connect,
        telemetry: this.telemetry.connections,
      });
      this.capture.setHandlers({
        state: this.state,
        outbound: (source, req) => void this.outbound.handle(source, req),
        plaintext: (client, pod, dst) => void plaintext.handle(client, pod, dst),
      });
    }
    this.state.on('change', () => {
      this.scheduleReconcile();
      this.gate.reevaluate(); // a workload's list of policies may have changed
    });
    this.policies.on('change', () => {
      this.log.info(
        { policies: this.policies.all().size, rejected: [...this.policies.rejections().keys()] },
        'authorization policies updated',
      );
      this.gate.reevaluate();
    });

    if (o.feed) {
      // A worker: the primary's xDS updates arrive over IPC; it serves readiness and telemetry.
      o.feed.attach(this.state, this.policies);
      await o.feed.synced();
    } else {
      this.startup.startXds({
        id: `ambit~${o.nodeIp}~${o.nodeName}~${this.trustDomain}`,
        metadata: { NODE_NAME: o.nodeName },
      });

      // 5. readiness (before xDS is ready, so probes can see "not ready yet")
      this.readiness = await this.startup.serveReadiness(o.nodeIp, o.ports?.readiness ?? READINESS_PORT, () =>
        this.isReady(),
      );
      await this.telemetry.start({ nodeName: o.nodeName, nodeIp: o.nodeIp, proxy: this });
      await this.startup.synced();
    }
    this.xdsReady = true;
    await this.reconcileNow();
    this.log.info(
      { pods: [...this.pods.values()].map((p) => `${p.workload.namespace}/${p.workload.name}`) },
      'node proxy ready',
    );
  }

  /** The last xDS response of each type and whether it was ACKed (for /config_dump). */
  xdsStatus(): XdsTypeStatus[] {
    return this.startup.xds?.status() ?? [];
  }

  /**
   * Ready means listening: xDS has synced and every local ambient pod the state names has its
   * listeners bound (HBONE and SOCKS5 or capture), checked against the state at the time of the
   * probe. Before, readiness turned 200 when xDS synced, 40–50 ms before the first pods' 15008
   * and 15080 were bound after a restart.
   */
  isReady(): { ready: boolean; reason?: string } {
    if (!this.xdsReady) return { ready: false, reason: 'waiting for the first xDS response' };
    const failed = [...this.failed.values(), ...(this.capture?.failures() ?? [])];
    if (failed.length > 0) return { ready: false, reason: failed.join('; ') };
    const pending = [...this.desiredPods().values()]
      .filter((w) => !this.pods.has(w.uid))
      .map((w) => `${w.namespace}/${w.name}`);
    if (pending.length > 0)
      return { ready: false, reason: `listeners not bound yet for ${pending.slice(0, 5).join(', ')}` };
    return { ready: true };
  }

  /** The local ambient pods this node proxy must serve, by uid. */
  private desiredPods(): Map<string, Workload> {
    return localAmbientPods(this.state, this.opts.nodeName);
  }

  localPods(): { uid: string; name: string; namespace: string; ip: string; identity: string }[] {
    return [...this.pods.entries()].map(([uid, p]) => ({
      uid,
      name: p.workload.name,
      namespace: p.workload.namespace,
      ip: p.workload.addresses[0]!,
      identity: p.spiffeId,
    }));
  }

  /** L4 authorization counters (allowed, denied, closed on policy change), for telemetry. */
  authzCounters(): AuthzCounters {
    return this.gate.counters;
  }

  poolStats() {
    return this.pool.stats();
  }

  certificates(): WorkloadCert[] {
    return this.certs.list();
  }

  /**
   * Kill switch (netns mode): off removes every pod's redirection rules and capture listeners on
   * this node within seconds (pods keep working with plain networking); on puts them back.
   */
  async setCaptureEnabled(on: boolean): Promise<void> {
    if (!this.capture) throw new Error('this node proxy does not capture transparently (no netns mode)');
    await this.capture.setEnabled(on);
  }

  captureEnabled(): boolean | undefined {
    return this.capture?.enabled;
  }

  async stop(graceMs = 2000): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.startup.xds?.stop();
    this.pool?.close();
    this.capture?.keepRulesOnStop(); // the next proxy on this node reuses them
    await Promise.all(
      [...this.pods.values()].map((p) => Promise.all([p.hbone.stop(graceMs), p.entry.stop(graceMs)])),
    );
    this.pods.clear();
    this.startup.stop();
    await new Promise<void>((r) => (this.readiness ? this.readiness.close(() => r()) : r()));
    await this.telemetry.stop();
    this.log.info('node proxy stopped');
  }

  private certificateFor(w: Workload): Promise<TlsIdentity> {
    return this.certs.get({
      trustDomain: w.trustDomain,
      namespace: w.namespace,
      serviceAccount: w.serviceAccount,
    });
  }

  private onRotated(cert: WorkloadCert): void {
    for (const p of this.pods.values()) if (p.spiffeId === cert.spiffeId) p.hbone.setIdentity(cert);
  }

  private scheduleReconcile(): void {
    if (!this.xdsReady || this.reconcileQueued || this.stopped) return;
    this.reconcileQueued = true;
    this.reconciling = this.reconciling.then(() => {
      this.reconcileQueued = false;
      return this.reconcileOnce();
    });
  }

  private reconcileNow(): Promise<void> {
    this.reconciling = this.reconciling.then(() => this.reconcileOnce());
    return this.reconciling;
  }

  /** Brings the per-pod listeners in line with the local ambient workloads in the state. */
  private async reconcileOnce(): Promise<void> {
    if (this.stopped) return;
    const desired = this.desiredPods();
    for (const [uid, p] of this.pods) {
      const w = desired.get(uid);
      if (!w || w.addresses[0] !== p.workload.addresses[0] || spiffeIdOf(w) !== p.spiffeId) {
        this.pods.delete(uid);
        await Promise.all([p.hbone.stop(1000), p.entry.stop(1000)]);
        this.log.info(
          { pod: `${p.workload.namespace}/${p.workload.name}` },
          'pod removed from the mesh on this node',
        );
      } else {
        p.workload = w;
      }
    }
    const identitiesInUse = new Set([...desired.values()].map(spiffeIdOf));
    for (const c of this.certs.list()) if (!identitiesInUse.has(c.spiffeId)) this.certs.forget(c.identity);
    this.failed.clear();
    await Promise.all([...desired.values()].filter((w) => !this.pods.has(w.uid)).map((w) => this.addPod(w)));
    if (this.failed.size > 0 && !this.retryTimer) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.scheduleReconcile();
      }, 2000);
      this.retryTimer.unref();
    }
  }

  private async addPod(w: Workload): Promise<void> {
    const pod = `${w.namespace}/${w.name}`;
    const ip = w.addresses[0] as Ip;
    const ports = this.opts.ports ?? {};
    try {
      const cert = await this.certificateFor(w);
      const captured = await this.capture?.pod(w); // netns mode: finds the pod's namespace
      const hbone = new HboneServer({
        podIp: ip,
        port: ports.hbone ?? HBONE_PORT,
        identity: cert,
        trustDomain: this.trustDomain,
        logger: this.log.child({ pod }),
        onTunnel: (t) => void this.inbound.handle(t, this.state.workload(w.uid) ?? w),
        listenFd:
          captured?.hboneListenFd(ports.hbone ?? HBONE_PORT) ??
          this.opts.feed?.listenFd(ip, ports.hbone ?? HBONE_PORT),
      });
      const entry =
        captured ??
        new Socks5Listener(
          { host: ip, port: ports.socks5 ?? SOCKS5_PORT },
          this.log.child({ pod }),
          (req) => {
            void this.outbound.handle(this.state.workload(w.uid) ?? w, req);
          },
          this.opts.feed?.listenFd(ip, ports.socks5 ?? SOCKS5_PORT),
        );
      try {
        await hbone.start();
      } catch (err) {
        await entry.stop(0);
        throw err;
      }
      try {
        await entry.start();
      } catch (err) {
        await hbone.stop(0);
        throw err;
      }
      this.pods.set(w.uid, { workload: w, spiffeId: cert.spiffeId, hbone, entry });
      this.log.info({ pod, ip, identity: cert.spiffeId }, 'pod added to the mesh on this node');
    } catch (err) {
      this.failed.set(w.uid, `${pod}: ${errorMessage(err)}`);
      this.log.error({ pod, ip, err: errorMessage(err) }, 'could not set up pod listeners; will retry');
    }
  }
}

/** The shared start-up (proxy/startup.ts) as a node proxy configures it; the workers' primary uses it too. */
export function nodeProxyStartup(opts: NodeProxyOptions, logger: Logger): ProxyStartup {
  return new ProxyStartup({
    controlPlane: opts.controlPlane,
    stateDir: opts.stateDir,
    controlPlaneServerName: opts.controlPlaneServerName,
    certTtlSeconds: opts.certTtlSeconds,
    keyAlgorithm: opts.keyAlgorithm,
    logger,
  });
}
