// The Kubernetes half of the control plane (`ambit controlplane --kube`), built in one place so
// that server.ts only branches on it. Order:
//  1. API client (kubeconfig file, else in-cluster) and leader election on a Lease;
//  2. the CA root from the `istio-ca-secret` Secret (the leader creates it when absent; the other
//     replicas wait for it and read it);
//  3. the config source: informers on the API server (KubeSource);
//  4. node authentication by TokenReview (projected tokens, audience istio-ca);
//  5. once the source is loaded, and only while leading: the trust bundle ConfigMaps and the
//     waypoint controller.
import os from 'node:os';
import type { Metadata } from '@grpc/grpc-js';
import { errorMessage } from '../common/errors.js';
import { CONTROL_PLANE_PORT } from '../common/ports.js';
import type { Logger } from '../common/log.js';
import { KubeClient, type RawObject } from '../config/kube-client.js';
import { POD } from '../config/kube-resources.js';
import { KubeSource } from '../config/kube-source.js';
import type { ConfigChange, Pod } from '../config/types.js';
import type { KeyAlgorithm } from '../identity/keys.js';
import type { MeshCa } from './ca.js';
import { loadOrCreateCaFromSecret } from './kube-ca-secret.js';
import { LeaderElector } from './kube-leader.js';
import { identitiesForCaller, TokenReviewAuthenticator } from './kube-token-review.js';
import { TrustBundlePublisher } from './kube-trust-bundle.js';
import { WaypointController } from './kube-waypoint-controller.js';

export const DEFAULT_NAMESPACE = 'ambit-system';
export const LEADER_LEASE = 'ambit-controlplane';
export const NODE_SERVICE_ACCOUNT = 'ambit-node';
export const CONTROL_PLANE_SERVICE = 'ambit-controlplane';

export interface KubeModeOptions {
  /** A kubeconfig file; in-cluster credentials when absent. */
  kubeconfig?: string;
  /** The control plane's namespace (Secret, Lease, node account). Default $POD_NAMESPACE, else ambit-system. */
  namespace?: string;
  /** This replica's name in the Lease. Default $POD_NAME, else the host name. */
  podName?: string;
  /** "ns/sa" of node proxies. Default <namespace>/ambit-node. */
  trustedNodeAccounts?: string[];
  /** What waypoints dial. Default ambit-controlplane.<namespace>.svc:15012. */
  controlPlaneAddress?: string;
  /** Waypoint image. Default: the image this control plane runs (read from its own Pod). */
  waypointImage?: string;
  waypointTemplate?: string;
  /** Tests: shorter election timings, an injected client. */
  election?: { leaseDurationMs: number; renewDeadlineMs: number; retryPeriodMs: number };
  resyncMs?: number;
  client?: KubeClient;
}

export class KubeControlPlane {
  readonly client: KubeClient;
  readonly namespace: string;
  readonly elector: LeaderElector;
  readonly source: KubeSource;
  private readonly auth: TokenReviewAuthenticator;
  private publisher?: TrustBundlePublisher;
  private waypoints?: WaypointController;

  constructor(
    private readonly o: KubeModeOptions & {
      stateDir: string;
      trustDomain: string;
      keyAlgorithm?: KeyAlgorithm;
      logger: Logger;
    },
  ) {
    this.client = o.client ?? KubeClient.create({ kubeconfig: o.kubeconfig });
    this.namespace = o.namespace ?? process.env.POD_NAMESPACE ?? DEFAULT_NAMESPACE;
    const identity = o.podName ?? process.env.POD_NAME ?? os.hostname();
    this.elector = new LeaderElector({
      client: this.client,
      namespace: this.namespace,
      name: LEADER_LEASE,
      identity,
      ...o.election,
      logger: o.logger.child({ part: 'leader' }),
    });
    this.source = new KubeSource({ client: this.client, logger: o.logger.child({ part: 'config' }) });
    this.auth = new TokenReviewAuthenticator({
      client: this.client,
      trustedNodeAccounts: o.trustedNodeAccounts ?? [`${this.namespace}/${NODE_SERVICE_ACCOUNT}`],
      lookupPod: (ns, name) => {
        const pod = this.source.snapshot().objects.get(`Pod/${ns}/${name}`) as Pod | undefined;
        return (
          pod && {
            uid: pod.metadata.uid,
            nodeName: pod.spec.nodeName,
            serviceAccountName: pod.spec.serviceAccountName,
          }
        );
      },
      logger: o.logger.child({ part: 'node-auth' }),
    });
    o.logger.info({ server: this.client.server, namespace: this.namespace, identity }, 'Kubernetes mode');
  }

  /** Joins the election and loads (or, as leader, creates) the CA root Secret. */
  async loadCa(): Promise<MeshCa> {
    this.elector.start();
    return loadOrCreateCaFromSecret({
      client: this.client,
      namespace: this.namespace,
      elector: this.elector,
      stateDir: this.o.stateDir,
      trustDomain: this.o.trustDomain,
      keyAlgorithm: this.o.keyAlgorithm,
      logger: this.o.logger.child({ part: 'ca' }),
    });
  }

  authenticate(md: Metadata): Promise<string | undefined> {
    return this.auth.authenticate(md);
  }

  /** What a caller may sign for: its node's pods, or (a waypoint) only its own identity. */
  identitiesFor(
    caller: string,
    identitiesOnNode: (node: string) => ReadonlySet<string>,
  ): ReadonlySet<string> {
    return identitiesForCaller(caller, this.o.trustDomain, identitiesOnNode);
  }

  /** Starts the leader-only writers; call after the source has loaded. */
  async startControllers(rootCertPem: string): Promise<void> {
    const log = this.o.logger;
    const snapshot = () => this.source.snapshot();
    this.publisher = new TrustBundlePublisher({
      client: this.client,
      rootCertPem,
      namespace: this.namespace,
      snapshot,
      resyncMs: this.o.resyncMs,
      logger: log.child({ part: 'trust-bundle' }),
    });
    this.waypoints = new WaypointController({
      client: this.client,
      snapshot,
      values: {
        image: this.o.waypointImage ?? (await this.ownImage()),
        controlPlane:
          this.o.controlPlaneAddress ??
          `${CONTROL_PLANE_SERVICE}.${this.namespace}.svc:${CONTROL_PLANE_PORT}`,
        trustDomain: this.o.trustDomain,
      },
      templateFile: this.o.waypointTemplate,
      resyncMs: this.o.resyncMs,
      logger: log.child({ part: 'waypoints' }),
    });
    await this.waypoints.load();
    const run = () => {
      this.publisher!.start();
      this.waypoints!.start();
    };
    const halt = () => {
      void this.publisher!.stop();
      void this.waypoints!.stop();
    };
    this.elector.on('started', run);
    this.elector.on('stopped', halt);
    if (this.elector.isLeader()) run();
    this.source.onChange((change) => this.changed(change));
  }

  async stop(): Promise<void> {
    await Promise.all([this.publisher?.stop(), this.waypoints?.stop()]);
    await this.source.stop();
    await this.elector.stop();
  }

  private changed(change: ConfigChange): void {
    const kinds = new Set([...change.upserted, ...change.deleted].map((o) => o.kind));
    if (kinds.has('Namespace') || kinds.has('Gateway')) void this.publisher?.reconcile();
    if (kinds.has('Gateway')) void this.waypoints?.reconcile();
  }

  /** The image of this control plane's own container, so waypoints run the same build. */
  private async ownImage(): Promise<string> {
    const podName = this.o.podName ?? process.env.POD_NAME;
    try {
      if (podName) {
        const pod = await this.client.get<RawObject>(POD, this.namespace, podName);
        const image = (pod?.spec as { containers?: { image?: string }[] } | undefined)?.containers?.[0]
          ?.image;
        if (image) return image;
      }
    } catch (err) {
      this.o.logger.warn({ err: errorMessage(err) }, 'cannot read this control plane pod');
    }
    this.o.logger.warn('waypoint image unknown (no POD_NAME, no --waypoint-image); using ambit:latest');
    return 'ambit:latest';
  }
}
