// The node proxy's view of the mesh, fed by xDS: workloads and services with the indexes the
// data path needs (by IP, by VIP, by hostname, endpoints of a service). Changes are applied in
// one call per xDS response and announced with a single 'change' event.
import { EventEmitter } from 'node:events';
import type { Address, Service, Workload } from '../xds/resources.js';

export class ProxyState extends EventEmitter {
  private readonly workloads = new Map<string, Workload>();
  private readonly services = new Map<string, Service>();
  private readonly workloadByIp = new Map<string, Workload>();
  private readonly serviceByVip = new Map<string, Service>();
  private readonly serviceByHost = new Map<string, Service>();
  /** service resource name ("ns/hostname") → uids of workloads that back it */
  private readonly endpointsByService = new Map<string, Set<string>>();

  applyAddresses(upserted: ReadonlyMap<string, Address>, removed: readonly string[]): void {
    for (const name of removed) this.remove(name);
    for (const [name, addr] of upserted) {
      this.remove(name);
      if ('workload' in addr) this.addWorkload(addr.workload);
      else this.addService(name, addr.service);
    }
    this.emit('change');
  }

  workload(uid: string): Workload | undefined {
    return this.workloads.get(uid);
  }

  workloadByAddress(ip: string): Workload | undefined {
    return this.workloadByIp.get(ip);
  }

  serviceByAddress(ip: string): Service | undefined {
    return this.serviceByVip.get(ip);
  }

  serviceByHostname(host: string): Service | undefined {
    return this.serviceByHost.get(host);
  }

  /** Workloads backing a service, in a stable order (by uid) so round robin is fair. */
  endpointsOf(service: Service): Workload[] {
    const uids = this.endpointsByService.get(`${service.namespace}/${service.hostname}`);
    if (!uids) return [];
    const out: Workload[] = [];
    for (const uid of [...uids].sort()) {
      const w = this.workloads.get(uid);
      if (w) out.push(w);
    }
    return out;
  }

  allWorkloads(): Workload[] {
    return [...this.workloads.values()];
  }

  allServices(): Service[] {
    return [...this.services.values()];
  }

  /** Resource name → version is kept by the xDS client; this is for config dumps. */
  counts(): { workloads: number; services: number } {
    return { workloads: this.workloads.size, services: this.services.size };
  }

  private addWorkload(w: Workload): void {
    this.workloads.set(w.uid, w);
    for (const ip of w.addresses) this.workloadByIp.set(ip, w);
    for (const svc of Object.keys(w.services)) {
      let set = this.endpointsByService.get(svc);
      if (!set) this.endpointsByService.set(svc, (set = new Set()));
      set.add(w.uid);
    }
  }

  private addService(name: string, s: Service): void {
    this.services.set(name, s);
    for (const a of s.addresses) this.serviceByVip.set(a.address, s);
    this.serviceByHost.set(s.hostname, s);
  }

  private remove(name: string): void {
    const w = this.workloads.get(name);
    if (w) {
      this.workloads.delete(name);
      for (const ip of w.addresses) if (this.workloadByIp.get(ip) === w) this.workloadByIp.delete(ip);
      for (const svc of Object.keys(w.services)) this.endpointsByService.get(svc)?.delete(w.uid);
      return;
    }
    const s = this.services.get(name);
    if (s) {
      this.services.delete(name);
      for (const a of s.addresses)
        if (this.serviceByVip.get(a.address) === s) this.serviceByVip.delete(a.address);
      if (this.serviceByHost.get(s.hostname) === s) this.serviceByHost.delete(s.hostname);
    }
  }
}
