// Finds the services that routing objects name: by namespace and name (Gateway API parentRefs and
// backendRefs) and by host (Istio `hosts`, `destination.host`, DestinationRule `host`), where a
// short name is read in the object's own namespace, as Istio does ("reviews" written in namespace
// "shop" is reviews.shop.svc.cluster.local).
import type { ServiceInfo, ServiceRef } from './types.js';

export class ServiceIndex {
  private readonly byNsName = new Map<string, ServiceInfo>();
  /** FQDN, "name.ns" and "name.ns.svc" → service. */
  private readonly byAlias = new Map<string, ServiceInfo>();
  readonly all: readonly ServiceInfo[];
  /** The cluster DNS domain, read from the services' hostnames (default cluster.local). */
  readonly domain: string;

  constructor(services: readonly ServiceInfo[]) {
    this.all = services;
    let domain: string | undefined;
    for (const s of services) {
      this.byNsName.set(`${s.namespace}/${s.name}`, s);
      const hostname = s.hostname.toLowerCase();
      this.byAlias.set(hostname, s);
      this.byAlias.set(`${s.name}.${s.namespace}`, s);
      this.byAlias.set(`${s.name}.${s.namespace}.svc`, s);
      const stem = `${s.name}.${s.namespace}.svc.`;
      if (domain === undefined && hostname.startsWith(stem)) domain = hostname.slice(stem.length);
    }
    this.domain = domain ?? 'cluster.local';
  }

  byName(namespace: string, name: string): ServiceInfo | undefined {
    return this.byNsName.get(`${namespace}/${name}`);
  }

  /** The services an Istio host names; wildcards ("*", "*.ns.svc.cluster.local") may name many. */
  resolveHost(host: string, fromNamespace: string): ServiceInfo[] {
    const h = host.toLowerCase();
    if (h === '*') return [...this.all];
    if (h.startsWith('*.')) {
      const suffix = h.slice(1);
      return this.all.filter((s) => s.hostname.toLowerCase().endsWith(suffix));
    }
    const s = this.byAlias.get(h.includes('.') ? h : `${h}.${fromNamespace}`);
    return s ? [s] : [];
  }

  /** A reference for a host no known service has, so the data path can answer 503 naming it. */
  guessRef(host: string, fromNamespace: string): ServiceRef {
    const h = host.toLowerCase();
    const labels = h.split('.');
    if (labels.length === 1)
      return { namespace: fromNamespace, hostname: `${h}.${fromNamespace}.svc.${this.domain}` };
    if (labels.length === 2) return { namespace: labels[1]!, hostname: `${h}.svc.${this.domain}` };
    if (labels.length === 3 && labels[2] === 'svc')
      return { namespace: labels[1]!, hostname: `${h}.${this.domain}` };
    return { namespace: labels[2] === 'svc' ? labels[1]! : fromNamespace, hostname: h };
  }

  /** The reference for a Gateway API backendRef to a Service that may not exist. */
  refByName(namespace: string, name: string): { ref: ServiceRef; known: boolean } {
    const s = this.byName(namespace, name);
    if (s) return { ref: { namespace: s.namespace, hostname: s.hostname }, known: true };
    return { ref: { namespace, hostname: `${name}.${namespace}.svc.${this.domain}` }, known: false };
  }
}
