// Upstream choice at the waypoint: for one backend (service, port, subset) of a route, the
// resilience state of that destination (resilience/, W3: balancer, retry budget, outlier
// detector, pool limiter, rate limit) built from its DestinationRule policy (routing/, W2), and
// the endpoints in play: healthy, serving the port, in the subset, not ejected. One state per
// destination, replaced when its policy changes (as Envoy replaces a cluster).
import { formatSocketAddr, type SocketAddr } from '../../common/addr.js';
import type { Logger } from '../../common/log.js';
import type { ProxyState } from '../../proxy/state.js';
import { servesPort, targetPortFor } from '../../proxy/route.js';
import type { Service, Workload } from '../../xds/resources.js';
import { createDestinationResilience, type DestinationResilience } from '../resilience/destination.js';
import type { LbEndpoint } from '../resilience/lb.js';
import type { DestinationPolicy } from '../resilience/types.js';
import type { ServiceRef, WeightedBackend } from '../routing/types.js';

export interface UpstreamEndpoint extends LbEndpoint {
  workload: Workload;
  /** CONNECT :authority: endpoint IP and target port. */
  authority: SocketAddr;
}

export interface Destination {
  key: string;
  service: Service;
  resilience: DestinationResilience<UpstreamEndpoint>;
  /** Endpoints in play now (healthy, serving the port, in the subset); ejected ones included. */
  endpoints: UpstreamEndpoint[];
}

export type PolicyLookup = (service: ServiceRef, port: number, subset?: string) => DestinationPolicy;

export class Upstreams {
  private readonly destinations = new Map<
    string,
    { policy: DestinationPolicy; json: string; resilience: DestinationResilience<UpstreamEndpoint> }
  >();
  private readonly active = new Map<string, number>();

  constructor(
    private readonly state: ProxyState,
    private readonly policyOf: () => PolicyLookup,
    private readonly log?: Logger,
  ) {}

  /** The destination of a backend, or why it has no endpoint (503), `unknown` when no such Service exists. */
  destination(backend: WeightedBackend): Destination | { reason: string; unknown?: true } {
    const hostname = backend.service.hostname;
    const service = this.state.serviceByHostname(hostname);
    if (!service)
      return { reason: `no healthy upstream: backend ${hostname} is not a known service`, unknown: true };
    const endpoints: UpstreamEndpoint[] = [];
    for (const w of this.state.endpointsOf(service)) {
      if (w.status !== 'HEALTHY' || w.addresses.length === 0) continue;
      if (!servesPort(w, service, backend.port) || !subsetMatches(w, backend.subset)) continue;
      const authority = formatSocketAddr(w.addresses[0]!, targetPortFor(w, service, backend.port));
      endpoints.push({ id: authority, active: this.active.get(authority) ?? 0, workload: w, authority });
    }
    if (endpoints.length === 0) {
      const subset = backend.subsetName ? ` subset ${backend.subsetName}` : '';
      return { reason: `no healthy upstream: ${hostname}:${backend.port}${subset} has no healthy endpoint` };
    }
    const key = `${backend.service.namespace}/${hostname}|${backend.port}|${backend.subsetName ?? ''}`;
    const policy = this.policyOf()(backend.service, backend.port, backend.subsetName);
    let entry = this.destinations.get(key);
    // The same policy object (the usual case: no DestinationRule, or the same compiled table)
    // needs no comparison; otherwise compare by content, once per request.
    const json = entry?.policy === policy ? entry.json : JSON.stringify(policy);
    if (entry && entry.policy !== policy && entry.json === json) entry.policy = policy;
    if (!entry || entry.json !== json) {
      entry = { policy, json, resilience: createDestinationResilience<UpstreamEndpoint>(policy) };
      this.destinations.set(key, entry);
      entry.resilience.outlier?.on((e) => {
        const fields = { destination: key, endpoint: e.endpoint };
        if (e.type === 'ejected')
          this.log?.warn(
            { ...fields, reason: e.reason, 'ejection.ms': e.ejectionMs, times: e.times },
            `endpoint ${e.endpoint} ejected`,
          );
        else if (e.type === 'returned')
          this.log?.info(fields, `endpoint ${e.endpoint} returned after ejection`);
        else
          this.log?.warn(
            { ...fields, reason: e.reason, ejected: e.ejected, total: e.total },
            'ejection skipped: maxEjectionPercent reached',
          );
      });
    }
    entry.resilience.outlier?.setEndpoints(endpoints.map((e) => e.id));
    return { key, service, resilience: entry.resilience, endpoints };
  }

  /** Endpoints not ejected by outlier detection (all of them if every one is ejected: Envoy's panic mode). */
  inPlay(d: Destination): UpstreamEndpoint[] {
    const outlier = d.resilience.outlier;
    if (!outlier) return d.endpoints;
    const ok = d.endpoints.filter((e) => !outlier.isEjected(e.id));
    return ok.length > 0 ? ok : d.endpoints;
  }

  /** Counts a request in flight to `e` (LEAST_REQUEST); call the returned function when it ends. */
  begin(e: UpstreamEndpoint): () => void {
    this.active.set(e.id, (this.active.get(e.id) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.active.get(e.id) ?? 1) - 1;
      if (n <= 0) this.active.delete(e.id);
      else this.active.set(e.id, n);
    };
  }
}

/** Subset labels: the workload API carries no labels, so `version` is its canonical revision and `app` its canonical name. */
export function subsetMatches(w: Workload, subset: Record<string, string> | undefined): boolean {
  if (!subset) return true;
  for (const [k, v] of Object.entries(subset)) {
    const revision = ['version', 'app.kubernetes.io/version', 'service.istio.io/canonical-revision'];
    const name = ['app', 'app.kubernetes.io/name', 'service.istio.io/canonical-name'];
    if (revision.includes(k) && w.canonicalRevision === v) continue;
    if (name.includes(k) && w.canonicalName === v) continue;
    return false;
  }
  return true;
}
