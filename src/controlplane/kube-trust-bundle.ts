// Publishes the mesh root as the ConfigMap `istio-ca-root-cert` (key `root-cert.pem`, as istiod's
// namespace controller does) in every namespace that needs it: each ambient namespace, each
// namespace holding a waypoint (its pods mount it), and the control plane's own (node proxies
// mount it). A namespace that stops needing it loses the copy ambit made (and only that: a
// ConfigMap someone else owns is left alone). Runs on the leader only; reconciles on every
// namespace or gateway change and once a minute, which also repairs hand edits.
import { ReconcileLoop } from './kube-reconcile-loop.js';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { isNotFound, type KubeClient, type RawObject } from '../config/kube-client.js';
import { CONFIG_MAP } from '../config/kube-resources.js';
import { DATAPLANE_MODE_AMBIENT, LABEL_DATAPLANE_MODE, type ConfigSnapshot } from '../config/types.js';
import { isWaypointGateway } from './waypoints.js';

export const TRUST_BUNDLE_CONFIGMAP = 'istio-ca-root-cert';
export const TRUST_BUNDLE_KEY = 'root-cert.pem';
const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'ambit', 'istio.io/config': 'true' };

export interface TrustBundlePublisherOptions {
  client: KubeClient;
  rootCertPem: string;
  /** The control plane's namespace: always published (node proxies mount it there). */
  namespace: string;
  snapshot(): ConfigSnapshot;
  resyncMs?: number;
  logger: Logger;
}

/** Namespaces that need the trust bundle, from the config snapshot. */
export function trustBundleNamespaces(snap: ConfigSnapshot, own: string): Set<string> {
  const out = new Set([own]);
  for (const o of snap.objects.values()) {
    if (o.kind === 'Namespace' && o.metadata.labels?.[LABEL_DATAPLANE_MODE] === DATAPLANE_MODE_AMBIENT)
      out.add(o.metadata.name);
    else if (isWaypointGateway(o)) out.add(o.metadata.namespace ?? 'default');
  }
  return out;
}

export class TrustBundlePublisher extends ReconcileLoop {
  /** Namespaces we published to, so one that stops needing it can be cleaned up. */
  private published = new Set<string>();

  constructor(private readonly o: TrustBundlePublisherOptions) {
    super(o.resyncMs);
  }

  protected async reconcileOnce(): Promise<void> {
    const wanted = trustBundleNamespaces(this.o.snapshot(), this.o.namespace);
    for (const ns of wanted) {
      try {
        await this.ensure(ns);
        this.published.add(ns);
      } catch (err) {
        this.o.logger.warn(
          { namespace: ns, err: errorMessage(err) },
          'cannot publish the trust bundle; retrying at the next resync',
        );
      }
    }
    for (const ns of [...this.published]) {
      if (wanted.has(ns)) continue;
      try {
        const cm = await this.o.client.get(CONFIG_MAP, ns, TRUST_BUNDLE_CONFIGMAP);
        if (cm && cm.metadata.labels?.['app.kubernetes.io/managed-by'] === 'ambit') {
          await this.o.client.delete(CONFIG_MAP, ns, TRUST_BUNDLE_CONFIGMAP, { uid: cm.metadata.uid });
          this.o.logger.info({ namespace: ns }, 'trust bundle removed: namespace no longer in the mesh');
        }
        this.published.delete(ns);
      } catch (err) {
        if (isNotFound(err)) this.published.delete(ns);
        else this.o.logger.warn({ namespace: ns, err: errorMessage(err) }, 'cannot remove the trust bundle');
      }
    }
  }

  private async ensure(ns: string): Promise<void> {
    const { client, rootCertPem } = this.o;
    const cm = await client.get<RawObject & { data?: Record<string, string> }>(
      CONFIG_MAP,
      ns,
      TRUST_BUNDLE_CONFIGMAP,
    );
    if (!cm) {
      await client.create(CONFIG_MAP, ns, {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: TRUST_BUNDLE_CONFIGMAP, namespace: ns, labels: MANAGED_BY },
        data: { [TRUST_BUNDLE_KEY]: rootCertPem },
      });
      this.o.logger.info({ namespace: ns }, 'trust bundle published');
      return;
    }
    if (cm.data?.[TRUST_BUNDLE_KEY] === rootCertPem) return;
    await client.mergePatch(CONFIG_MAP, ns, TRUST_BUNDLE_CONFIGMAP, {
      metadata: { labels: MANAGED_BY, resourceVersion: cm.metadata.resourceVersion },
      data: { [TRUST_BUNDLE_KEY]: rootCertPem },
    });
    this.o.logger.info({ namespace: ns }, 'trust bundle updated');
  }
}
