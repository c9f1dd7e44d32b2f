// Which workloads a node proxy serves on its node: shared by NodeProxy (its per-pod listeners)
// and the multi-worker primary (which certificates to keep), in a file of its own so the primary
// does not load the data path to know it.
import type { ProxyState } from '../proxy/state.js';
import type { Workload } from '../xds/resources.js';
/** The local ambient pods a node proxy serves, by uid (also the primary's view: primary.ts). */
export function localAmbientPods(state: ProxyState, nodeName: string): Map<string, Workload> {
  const desired = new Map<string, Workload>();
  for (const w of state.allWorkloads()) {
    // Waypoints (nativeTunnel) terminate HBONE themselves: no listeners for them here.
    if (w.node === nodeName && w.tunnelProtocol === 'HBONE' && !w.nativeTunnel && w.addresses.length > 0)
      desired.set(w.uid, w);
  }
  return desired;
}
