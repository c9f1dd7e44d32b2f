// TunnelContext: what the waypoint knows about one inbound tunnel, from its CONNECT. Nearly every
// file of the HTTP front reads it, so it sits in a module that imports nothing of the waypoint's
// (it lived in http-proxy.ts, which imports those files: a six-file import cycle, issue 14).
import type { HostPort, Ip } from '../common/addr.js';
import type { Service, Workload } from '../xds/resources.js';

/** What the waypoint knows about one tunnel, from its CONNECT. */
export interface TunnelContext {
  /** The CONNECT :authority: a service VIP:port or a pod IP:port bound to this waypoint. */
  target: HostPort & { host: Ip };
  service?: Service;
  workload?: Workload;
  /** Verified SPIFFE id of the source (the client's node proxy presented the source pod's). */
  peerIdentity: string;
  /** Source pod IP (the HBONE connection is bound to it). */
  srcIp: string;
}
