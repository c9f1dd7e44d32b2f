// EndpointSlices, for Services without a selector: which service each slice belongs to (label
// kubernetes.io/service-name) and which pod IPs its ready endpoints name, indexed both ways so a
// pod or a slice change looks up only what it touches.
import { LABEL_SERVICE_NAME, type EndpointSlice } from '../config/types.js';
import { addTo, removeFrom } from './index-maps.js';

interface Slice {
  svc: string;
  ns: string;
  ips: string[];
}

export class EndpointSliceIndex {
  private readonly slices = new Map<string, Slice>();
  private readonly slicesBySvc = new Map<string, Set<string>>();
  private readonly svcsByIp = new Map<string, Set<string>>(); // "ns\0ip" → service keys

  /**
   * Records the slice `key` ("ns/name"; undefined removes it). Returns the keys ("ns/name") of
   * the services whose endpoints may have changed; empty when nothing did.
   */
  set(key: string, obj: EndpointSlice | undefined): string[] {
    const ns = obj?.metadata.namespace ?? key.split('/')[0] ?? 'default';
    const svcName = obj?.metadata.labels?.[LABEL_SERVICE_NAME];
    const next: Slice | undefined =
      obj && svcName && obj.addressType !== 'FQDN'
        ? {
            svc: `${ns}/${svcName}`,
            ns,
            ips: (obj.endpoints ?? [])
              .filter((e) => e.conditions?.ready !== false)
              .flatMap((e) => e.addresses),
          }
        : undefined;
    const prev = this.slices.get(key);
    if (JSON.stringify(prev) === JSON.stringify(next)) return [];
    if (prev) {
      for (const ip of prev.ips) removeFrom(this.svcsByIp, `${ns}\0${ip}`, prev.svc);
      removeFrom(this.slicesBySvc, prev.svc, key);
      this.slices.delete(key);
    }
    if (next) {
      this.slices.set(key, next);
      addTo(this.slicesBySvc, next.svc, key);
    }
    const touched = [...new Set([prev?.svc, next?.svc])].filter((s): s is string => !!s);
    // Another slice of the same service may still name an IP the old version listed.
    for (const svc of touched)
      for (const k of this.slicesBySvc.get(svc) ?? [])
        for (const ip of this.slices.get(k)!.ips) addTo(this.svcsByIp, `${ns}\0${ip}`, svc);
    return touched;
  }

  /** Services whose slices name `ip` in namespace `ns`. */
  servicesAt(ns: string, ip: string): ReadonlySet<string> {
    return this.svcsByIp.get(`${ns}\0${ip}`) ?? EMPTY;
  }

  keys(): Iterable<string> {
    return this.slices.keys();
  }
}

const EMPTY: ReadonlySet<string> = new Set();
