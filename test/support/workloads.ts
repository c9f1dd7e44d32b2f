// A Workload as the workload API delivers it, for unit tests: a pod in `demo` on node-1, healthy,
// HBONE-capable; anything can be overridden.
import type { Ip } from '../../src/common/addr.js';
import type { Workload } from '../../src/xds/resources.js';

/** The `services` entry of a pod behind `demo/echo` (port 80 → 8080). */
export const ECHO_PORTS: Workload['services'] = {
  'demo/echo.demo.svc.cluster.local': [{ servicePort: 80, targetPort: 8080 }],
};

export function testWorkload(name: string, ip: string, over: Partial<Workload> = {}): Workload {
  return {
    uid: `Kubernetes//Pod/demo/${name}`,
    name,
    namespace: 'demo',
    addresses: [ip as Ip],
    network: '',
    tunnelProtocol: 'HBONE',
    trustDomain: 'cluster.local',
    serviceAccount: name,
    node: 'node-1',
    canonicalName: name,
    canonicalRevision: 'latest',
    workloadName: name,
    services: {},
    authorizationPolicies: [],
    status: 'HEALTHY',
    clusterId: 'Kubernetes',
    ...over,
  };
}
