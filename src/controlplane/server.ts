// The control plane process, wired in one readable place:
//  1. the mesh CA (root created on first start, kept in the state directory; with `kube`, kept
//     in a Secret and created by the elected leader: kube-controlplane.ts);
//  2. the config source (a watched folder of manifests, or the Kubernetes API) feeding the
//     ambient index; in Kubernetes mode the leader then runs the trust bundle publisher and the
//     waypoint controller;
//  3. one gRPC server over TLS (serving certificate from the mesh CA) carrying Delta ADS and
//     the CA service, on 15012;
//  4. metrics, debug (syncz, workloads, …) and the service graph dashboard over HTTP on 15014.
import grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import type { Logger } from '../common/log.js';
import { componentLogger } from '../common/log.js';
import { parseSocketAddr } from '../common/addr.js';
import { FileSource } from '../config/file-source.js';
import type { ConfigSource } from '../config/types.js';
import { adsServiceDefinition, caServiceDefinition } from '../xds/proto.js';
import { DEFAULT_TRUST_DOMAIN } from '../xds/resources.js';
import type { KeyAlgorithm } from '../identity/keys.js';
import { MeshCa } from './ca.js';
import { createCaHandlers } from './ca-server.js';
import { LocalNodeAuthenticator, clusterIdRefusal } from './node-auth.js';
import { DEFAULT_CLUSTER_ID } from './workload-builder.js';
import { AmbientIndex, type WaypointStatus } from './ambient-index.js';
import { DeltaXdsServer, XDS_SERVER_OPTIONS } from './xds-server.js';
import { KubeControlPlane, type KubeModeOptions } from './kube-controlplane.js';
import { ControlPlaneMetrics } from '../telemetry/controlplane-metrics.js';
import { ControlPlaneDebugServer, nodeInternalIp } from '../telemetry/controlplane-debug.js';
import { CONTROL_PLANE_DEBUG_PORT } from '../common/ports.js';
import { ensureAdminToken } from '../common/token.js';
import { errorMessage } from '../common/errors.js';

export const CONTROL_PLANE_SERVER_NAME = 'istiod.istio-system.svc';

export interface ControlPlaneOptions {
  /** Folder of manifests (files mode); unused with `kube`. */
  configDir?: string;
  /** Kubernetes mode: config from the API server, CA root in a Secret, TokenReview node auth. */
  kube?: KubeModeOptions;
  stateDir: string;
  /** "host:port" to serve xDS and the CA on. */
  listen: string;
  trustDomain?: string;
  /** Istio's root namespace: its selector-less policies apply mesh-wide. Default istio-system. */
  rootNamespace?: string;
  rootCertFile?: string;
  rootKeyFile?: string;
  keyAlgorithm?: KeyAlgorithm;
  /** IPv4 CIDR for waypoints without spec.addresses (local mode); default 127.0.200.0/24. */
  waypointPool?: string;
  /** "host:port" for metrics, debug and the dashboard; default the --listen host, port 15014. */
  debugListen?: string;
  logger?: Logger;
}

export class ControlPlane {
  private readonly log: Logger;
  private server?: grpc.Server;
  private source?: ConfigSource;
  private kube?: KubeControlPlane;
  private debug?: ControlPlaneDebugServer;
  readonly registry = new Registry();
  index?: AmbientIndex;
  xds?: DeltaXdsServer;
  ca?: MeshCa;

  constructor(private readonly opts: ControlPlaneOptions) {
    this.log = opts.logger ?? componentLogger('controlplane');
  }

  async start(): Promise<{ port: number }> {
    const o = this.opts;
    const trustDomain = o.trustDomain ?? DEFAULT_TRUST_DOMAIN;
    const listen = parseSocketAddr(o.listen);
    if (!listen) throw new Error(`--listen ${JSON.stringify(o.listen)} is not host:port`);
    this.log.info(
      {
        config: o.configDir,
        state: o.stateDir,
        listen: o.listen,
        trustDomain,
        rootNamespace: o.rootNamespace ?? 'istio-system',
      },
      'control plane starting',
    );

    if (!o.kube && !o.configDir)
      throw new Error('the control plane needs a config folder or Kubernetes mode');
    // 1. CA (Kubernetes: the root Secret, created by the elected leader; kube-controlplane.ts)
    const kube = (this.kube = o.kube
      ? new KubeControlPlane({
          ...o.kube,
          stateDir: o.stateDir,
          trustDomain,
          keyAlgorithm: o.keyAlgorithm,
          logger: this.log.child({ part: 'kube' }),
        })
      : undefined);
    this.ca = kube
      ? await kube.loadCa()
      : await MeshCa.loadOrCreate({
          stateDir: o.stateDir,
          trustDomain,
          rootCertFile: o.rootCertFile,
          rootKeyFile: o.rootKeyFile,
          keyAlgorithm: o.keyAlgorithm,
          logger: this.log.child({ part: 'ca' }),
        });

    // 2. config → index
    this.index = new AmbientIndex({
      trustDomain,
      rootNamespace: o.rootNamespace,
      waypointPool: o.waypointPool,
    });
    // Waypoint status stays here (the file source is read-only): logged, and waypointStatuses() for ctl.
    this.index.on('waypoint', (s) => {
      const log = this.log.child({ part: 'waypoints', waypoint: s.key });
      if (s.programmed)
        log.info(
          { address: s.address, node: s.node, identity: s.identity, 'waypoint.for': s.waypointFor },
          `waypoint ${s.key} programmed, address ${s.address}`,
        );
      else log.warn({ reason: s.reason }, `waypoint ${s.key} not programmed: ${s.reason}`);
    });
    this.index.on('policy', (s) => {
      const log = this.log.child({ part: 'authz', policy: s.key });
      for (const w of s.warnings) log.warn(w);
      if (s.skipped && s.warnings.length === 0) log.info(`not sent to node proxies: ${s.skipped}`);
    });
    const source =
      kube?.source ?? new FileSource({ dir: o.configDir!, logger: this.log.child({ part: 'config' }) });
    this.source = source;
    await source.start();
    this.index.rebuild(source.snapshot());
    source.onChange((change, snapshot) => this.index!.apply(change, snapshot));
    for (const e of source.errors()) this.log.warn({ error: String(e) }, 'invalid manifest skipped');
    await kube?.startControllers(this.ca.rootCertPem);

    // 3. gRPC: ADS + CA over TLS
    const nodeAuth = kube ?? new LocalNodeAuthenticator(o.stateDir);
    // A caller naming another cluster is refused before its token is read (istiod's kube_jwt.go).
    const auth = {
      authenticate: (md: grpc.Metadata) => {
        const refusal = clusterIdRefusal(md, DEFAULT_CLUSTER_ID);
        if (refusal === undefined) return nodeAuth.authenticate(md);
        this.log.warn({ part: 'auth', reason: refusal }, `proxy refused: ${refusal}`);
        return undefined;
      },
    };
    const metrics = new ControlPlaneMetrics(this.registry, {
      connectedProxies: () => this.xds?.connections().length ?? 0,
      rootCertNotAfter: () => this.ca?.rootNotAfter,
    });
    this.xds = new DeltaXdsServer({
      index: this.index,
      logger: this.log.child({ part: 'xds' }),
      authenticate: (md) => auth.authenticate(md),
      onPush: (typeUrl, startedAt, changedAt) => metrics.pushed(typeUrl, startedAt, changedAt),
    });
    const serving = await this.ca.issueServingCert({
      dnsNames: [CONTROL_PLANE_SERVER_NAME, 'localhost'],
      ips: [listen.host],
    });
    // One receive limit for xDS and CA (xds-server.ts MAX_REQUEST_BYTES); a CSR is further capped
    // at 16 KiB (identity/csr-check.ts) and its TTL at the CA's maximum (ca.ts).
    this.server = new grpc.Server(XDS_SERVER_OPTIONS);
    this.server.addService(adsServiceDefinition, this.xds.handlers());
    this.server.addService(
      caServiceDefinition,
      createCaHandlers({
        ca: this.ca,
        authenticate: (md) => auth.authenticate(md),
        // Kubernetes: a node's pods only, never a waypoint's identity (issue 12, hole 4).
        identitiesOnNode: (node) =>
          kube
            ? kube.identitiesFor(node, (n) => this.index!.podIdentitiesOnNode(n))
            : this.index!.identitiesOnNode(node),
        refusalHint: (_node, id) =>
          this.index!.isWaypointIdentity(id)
            ? kube
              ? "it is a waypoint's identity: only the waypoint's own service-account token may obtain it"
              : "it is a waypoint's identity: only the node that runs the waypoint (annotation ambit.dev/node, else the first Node by name) may obtain it"
            : undefined,
        logger: this.log.child({ part: 'ca' }),
        metrics,
      }),
    );
    const creds = grpc.ServerCredentials.createSsl(
      null,
      [{ private_key: Buffer.from(serving.keyPem), cert_chain: Buffer.from(serving.certChainPem) }],
      false,
    );
    const port = await new Promise<number>((resolve, reject) =>
      this.server!.bindAsync(o.listen, creds, (err, p) => (err ? reject(err) : resolve(p))),
    );
    // 4. metrics and debug on 15014
    const debugAddr = parseSocketAddr(o.debugListen ?? `${listen.host}:${CONTROL_PLANE_DEBUG_PORT}`);
    if (!debugAddr) throw new Error(`--debug-listen ${JSON.stringify(o.debugListen)} is not host:port`);
    // /debug/* asks for the state directory's admin token (telemetry/admin-guard.ts); in
    // Kubernetes mode the pod's loopback (kubectl port-forward) is trusted for reads too.
    let adminToken: string | undefined;
    try {
      adminToken = ensureAdminToken(o.stateDir);
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'no admin token (cannot write it): /debug/* answers nobody');
    }
    this.debug = new ControlPlaneDebugServer({
      token: adminToken,
      trustLoopback: !!kube,
      // Local mode: node proxies share the state directory, so the graph may ask them for denials.
      nodeAdminToken: kube ? undefined : adminToken,
      host: debugAddr.host,
      port: debugAddr.port,
      registry: this.registry,
      logger: this.log.child({ part: 'debug' }),
      source: {
        index: () => this.index,
        connections: () => this.xds?.connections() ?? [],
        rootCertPem: () => this.ca?.rootCertPem,
        // Never the address a proxy names in its node id (the graph scraper's SSRF, issue 12).
        nodeAddress: (node) => nodeInternalIp(this.source?.snapshot().objects, node),
        waypointAddresses: () =>
          this.waypointStatuses().flatMap((w) => (w.programmed && w.address ? [w.address] : [])),
      },
    });
    await this.debug.start();
    this.log.info(
      { listen: o.listen, workloads: this.index.workloads().length, services: this.index.services().length },
      'control plane ready',
    );
    return { port };
  }

  /** Every waypoint Gateway: programmed with its address, node and identity, or why not. */
  waypointStatuses(): WaypointStatus[] {
    return this.index?.waypointStatuses() ?? [];
  }

  async stop(): Promise<void> {
    await this.source?.stop();
    await this.kube?.stop();
    await this.debug?.stop();
    await new Promise<void>((resolve) => {
      if (!this.server) return resolve();
      const timer = setTimeout(() => {
        this.server?.forceShutdown();
        resolve();
      }, 2000);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
