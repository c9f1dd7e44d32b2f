// Transparent capture (netns/K8s mode): for each local ambient pod, the node proxy's listeners
// inside the pod's network namespace and the rules that send the pod's traffic to them
// (redirect/agent.ts), after ztunnel's in-pod mode:
//   127.0.0.1:15001  outbound: SO_ORIGINAL_DST → the same Outbound path SOCKS5 uses
//   podIP:15006      inbound plaintext → PlaintextInbound (PeerAuthentication, L4 policy)
//   127.0.0.1:15053  DNS (UDP and TCP) → DnsProxy answering from the mesh's names
//   podIP:15008      HBONE (HboneServer, given a listening fd made here)
// Every connection the proxy makes for a pod (HBONE out, passthrough, delivery to the app) is
// opened from inside that pod's namespace with the proxy's mark (`connect`), so the pod's own
// rules let it pass and the far end sees the pod's address.
//
// A pod is captured whole or not at all: listeners first, then rules (one transaction); if any
// step fails, what was done is undone and the pod is reported as not captured. Disabling
// capture (kill switch, `--disable-capture`, SIGUSR2) removes rules and capture listeners from
// every pod and keeps 15008, which peers still tunnel to. Stopping the proxy keeps the rules (a
// restarted proxy finds them and reuses them; meanwhile the pod's traffic fails closed).
import { existsSync } from 'node:fs';
import net from 'node:net';
import type { Socket } from 'node:net';
import type { Logger } from '../common/log.js';
import { errorMessage } from '../common/errors.js';
import type { Ip } from '../common/addr.js';
import { ConnectionTracker, drainServer } from '../common/drain.js';
import type { TcpConnect } from '../common/tcp-connect.js';
import type { Workload } from '../xds/resources.js';
import { NodeAgent } from '../redirect/agent.js';
import { DNS_PROXY_PORT, INBOUND_CAPTURE_PORT, OUTBOUND_CAPTURE_PORT } from '../common/ports.js';
import { nativeStatus, originalDst, udpSocketInNetns, listenInNetns } from '../redirect/native.js';
import { listenFdInNetns, podAwareConnect } from '../redirect/pod-sockets.js';
import { DnsProxy, meshResolver } from './dns.js';
import type { ProxyState } from '../proxy/state.js';
import type { SocksRequest } from './socks5.js';

export interface NetnsCaptureOptions {
  /**
   * The network namespace of a local pod: /run/netns/<prefix>pod-<ns>-<name> in netns mode, found
   * by the pod's IP on Kubernetes; throws (or rejects) saying why when there is none.
   */
  netnsPathOf(pod: Workload): string | Promise<string>;
  /** Start with capture on (default) or off (`ambit node --disable-capture`). */
  enabled?: boolean;
  /** Serve DNS on 15053 and redirect port 53 to it (default on). */
  dns?: boolean;
  clusterDomain?: string;
  logger: Logger;
}

/** What a captured connection is handed to. */
export interface CaptureHandlers {
  state: ProxyState;
  outbound(source: Workload, req: SocksRequest): void;
  plaintext(client: Socket, pod: Workload, dst: { ip: string; port: number }): void;
}

export class NetnsCapture {
  /** Opens connections for local pods from inside their namespaces (see pod-sockets.ts). */
  readonly connect: TcpConnect;
  private readonly log: Logger;
  private readonly netnsByIp = new Map<string, string>();
  private readonly pods = new Set<PodCapture>();
  private enabledNow: boolean;
  private keepRules = false;
  /** Pods whose capture failed (netns gone, port taken, iptables error) → why; retried every 2 s. */
  private readonly failing = new Map<PodCapture, string>();
  private retryTimer?: NodeJS.Timeout;

  private constructor(
    readonly opts: NetnsCaptureOptions,
    readonly agent: NodeAgent,
    private handlers?: CaptureHandlers,
  ) {
    this.log = opts.logger.child({ part: 'capture' });
    this.enabledNow = opts.enabled ?? true;
    this.connect = podAwareConnect(
      (ip) => this.netnsByIp.get(ip),
      (ip) => [...this.pods].some((p) => p.isCaptured && p.workload.addresses.includes(ip as Ip)),
    );
  }

  /** Checks that this machine can capture (native helpers, iptables); throws saying what is missing. */
  static async create(opts: NetnsCaptureOptions): Promise<NetnsCapture> {
    const native = nativeStatus();
    if (!native.ok) throw new Error(`netns capture needs the native socket helpers: ${native.reason}`);
    const agent = await NodeAgent.create(opts.logger);
    return new NetnsCapture(opts, agent);
  }

  setHandlers(h: CaptureHandlers): void {
    this.handlers = h;
  }

  get enabled(): boolean {
    return this.enabledNow;
  }

  /** The per-pod part; call start() on it. Registers the pod's address → namespace at once. */
  async pod(w: Workload): Promise<PodCapture> {
    const nsPath = await this.opts.netnsPathOf(w);
    if (!existsSync(nsPath))
      throw new Error(`network namespace ${nsPath} of pod ${w.namespace}/${w.name} does not exist`);
    for (const ip of w.addresses) this.netnsByIp.set(ip, nsPath);
    return new PodCapture(this, w, nsPath, this.log.child({ pod: `${w.namespace}/${w.name}` }));
  }

  /** Kill switch: remove (or restore) every pod's rules and capture listeners on this node. */
  async setEnabled(on: boolean): Promise<void> {
    if (on === this.enabledNow) return;
    this.enabledNow = on;
    this.log.warn({ pods: this.pods.size }, on ? 'capture enabled' : 'capture disabled (kill switch)');
    if (!on) this.failing.clear();
    await Promise.all(
      [...this.pods].map((p) => (on ? p.enable().catch((err) => this.retryLater(p, err)) : p.disable(1000))),
    );
  }

  /** Pods on this node that should be captured and are not, with the reason (for readiness). */
  failures(): string[] {
    return [...this.failing.values()];
  }

  private retryLater(p: PodCapture, err: unknown): void {
    this.failing.set(p, errorMessage(err));
    if (this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.enabledNow) return;
      for (const pod of [...this.failing.keys()]) {
        this.failing.delete(pod);
        if (this.pods.has(pod)) void pod.enable().catch((e) => this.retryLater(pod, e));
      }
    }, 2000);
    this.retryTimer.unref();
  }

  /** The proxy is stopping: leave the rules in place for the next one. */
  keepRulesOnStop(): void {
    this.keepRules = true;
  }

  /** @internal */
  registered(p: PodCapture, on: boolean): void {
    if (on) this.pods.add(p);
    else {
      this.pods.delete(p);
      this.failing.delete(p);
      for (const ip of p.workload.addresses)
        if (this.netnsByIp.get(ip) === p.nsPath) this.netnsByIp.delete(ip);
    }
  }

  /** @internal */
  get shouldKeepRules(): boolean {
    return this.keepRules;
  }

  /** @internal */
  get handler(): CaptureHandlers {
    if (!this.handlers) throw new Error('NetnsCapture: handlers not set');
    return this.handlers;
  }
}

/** One pod's capture: its listeners and rules, enabled and disabled as a whole. */
export class PodCapture {
  private servers: net.Server[] = [];
  private dns?: DnsProxy;
  private readonly conns = new ConnectionTracker();
  private captured = false;
  private transition: Promise<void> = Promise.resolve();

  /** Rules (and so the delivery routing) are in place. */
  get isCaptured(): boolean {
    return this.captured;
  }

  constructor(
    private readonly parent: NetnsCapture,
    readonly workload: Workload,
    readonly nsPath: string,
    private readonly log: Logger,
  ) {}

  /** A listening fd at podIP:15008 inside the pod's namespace, for HboneServer. */
  hboneListenFd(port: number): () => number {
    return () => listenFdInNetns(this.nsPath, this.workload.addresses[0]!, port);
  }

  async start(): Promise<void> {
    this.parent.registered(this, true);
    if (this.parent.enabled) {
      try {
        await this.enable();
      } catch (err) {
        this.parent.registered(this, false);
        throw err;
      }
    }
  }

  /** Listeners, then rules; on any failure both are undone (never half-captured). */
  enable(): Promise<void> {
    return this.serialize(async () => {
      if (this.captured) return;
      const pod = `${this.workload.namespace}/${this.workload.name}`;
      const ip = this.workload.addresses[0]!;
      const dnsOn = this.parent.opts.dns ?? true;
      try {
        if (!existsSync(this.nsPath))
          throw new Error(`network namespace ${this.nsPath} of pod ${pod} does not exist`);
        this.servers.push(await this.listen('127.0.0.1', OUTBOUND_CAPTURE_PORT, (s) => this.onOutbound(s)));
        this.servers.push(await this.listen(ip, INBOUND_CAPTURE_PORT, (s) => this.onInbound(s)));
        if (dnsOn) await this.startDns();
        const outcome = await this.parent.agent.capture(pod, this.nsPath, {
          dns: dnsOn,
          podIps: this.workload.addresses, // kubelet probes to these get the probe SNAT (redirect/host-rules.ts)
        });
        this.captured = true;
        this.log.info({ netns: this.nsPath, rules: outcome }, 'pod captured');
      } catch (err) {
        await this.closeListeners(0);
        await this.parent.agent.release(pod, this.nsPath).catch(() => {});
        this.log.error({ netns: this.nsPath, err: errorMessage(err) }, 'pod not captured');
        throw new Error(`capture of ${pod} failed: ${errorMessage(err)}`);
      }
    });
  }

  /** Rules first (new connections flow plainly at once), then the listeners. */
  disable(graceMs: number): Promise<void> {
    return this.serialize(async () => {
      const pod = `${this.workload.namespace}/${this.workload.name}`;
      try {
        await this.parent.agent.release(pod, this.nsPath);
      } catch (err) {
        this.log.error({ netns: this.nsPath, err: errorMessage(err) }, 'could not remove redirection rules');
      }
      await this.closeListeners(graceMs);
      if (this.captured) this.log.info({ netns: this.nsPath }, 'pod released: plain networking');
      this.captured = false;
    });
  }

  /** The pod left the mesh (or the proxy stops: then its rules stay for the next proxy). */
  async stop(graceMs: number): Promise<void> {
    this.parent.registered(this, false);
    if (this.parent.shouldKeepRules) await this.serialize(() => this.closeListeners(graceMs));
    else await this.disable(graceMs);
  }

  private serialize(fn: () => Promise<void>): Promise<void> {
    const next = this.transition.then(fn);
    this.transition = next.catch(() => {});
    return next;
  }

  private async listen(host: string, port: number, onConn: (s: Socket) => void): Promise<net.Server> {
    const fd = listenFdInNetns(this.nsPath, host, port);
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
      this.conns.track(s);
      s.on('error', () => {}); // reported by whoever owns the socket next
      onConn(s);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ fd }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log.error({ port, err: err.message }, 'capture listener error'));
    return server;
  }

  private async startDns(): Promise<void> {
    const udp = await udpSocketInNetns(this.nsPath, '127.0.0.1', DNS_PROXY_PORT, { reuseaddr: true });
    let tcp: net.Server;
    try {
      tcp = await listenInNetns(this.nsPath, '127.0.0.1', DNS_PROXY_PORT, { reuseaddr: true });
    } catch (err) {
      udp.close();
      throw err;
    }
    this.dns = new DnsProxy({
      resolve: meshResolver(this.parent.handler.state, this.parent.opts.clusterDomain),
      clientNamespace: this.workload.namespace,
      // The mesh's namespaces have no resolver behind them: names outside the mesh fail fast.
      upstreams: [],
      authoritativeZones: [this.parent.opts.clusterDomain ?? 'cluster.local'],
      logger: this.log.child({ listener: 'dns' }),
    });
    await this.dns.start({ udp, tcp });
  }

  private async closeListeners(graceMs: number): Promise<void> {
    const servers = this.servers;
    this.servers = [];
    const dns = this.dns;
    this.dns = undefined;
    await Promise.all([
      ...servers.map((s) => drainServer(s, this.conns, graceMs)),
      dns?.close().catch(() => {}),
    ]);
  }

  private onOutbound(socket: Socket): void {
    let dst: { ip: string; port: number };
    try {
      dst = originalDst(socket);
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'outbound capture: no original destination; closing');
      socket.destroy();
      return;
    }
    if (dst.port === OUTBOUND_CAPTURE_PORT && (dst.ip === '127.0.0.1' || dst.ip === socket.localAddress)) {
      socket.destroy(); // a direct connection to the listener itself: nothing to forward
      return;
    }
    socket.pause();
    const source = this.parent.handler.state.workload(this.workload.uid) ?? this.workload;
    this.parent.handler.outbound(source, {
      socket,
      target: { kind: 'ip', host: dst.ip as Ip, port: dst.port },
      // Transparent capture has no reply to send: success is silent, failure resets the app's
      // connection (as ztunnel does), so the app sees "connection reset" rather than a hang.
      reply: (code) => {
        if (code !== 0 && !socket.destroyed) socket.resetAndDestroy();
      },
    });
  }

  private onInbound(socket: Socket): void {
    let dst: { ip: string; port: number };
    try {
      dst = originalDst(socket);
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'inbound capture: no original destination; closing');
      socket.destroy();
      return;
    }
    const pod = this.parent.handler.state.workload(this.workload.uid) ?? this.workload;
    this.parent.handler.plaintext(socket, pod, dst);
  }
}
