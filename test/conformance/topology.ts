// Turns the suite's base topology (manifests/mesh-manifests.yaml, unmodified) into what `ambit up`
// runs in local mode, the way an Istio ambient user would set it up: two Nodes; each Deployment
// becomes one or two Pods with loopback addresses spread over the Nodes (named like a
// ReplicaSet's pods, `<deployment>-<hash>-<suffix>`, so the suite's backend-name rule applies);
// each Service gets a cluster IP; both namespaces are labelled ambient and use a waypoint
// Gateway in the mesh namespace (`istio.io/use-waypoint`, plus `istio.io/use-waypoint-namespace`
// for the consumer namespace). Istio's own conformance run adds the same labels and waypoint.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';

export const MANIFESTS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'manifests');
export const MESH_NS = 'gateway-conformance-mesh';
export const CONSUMER_NS = 'gateway-conformance-mesh-consumer';
const WAYPOINT = 'waypoint';

/** Replicas per Deployment ("namespace/name"); one where unlisted. */
const REPLICAS: Record<string, number> = {
  [`${MESH_NS}/echo-v1`]: 2,
  [`${MESH_NS}/echo-v2`]: 2,
};

export interface EchoPod {
  namespace: string;
  name: string;
  ip: string;
  labels: Record<string, string>;
  /** containerPorts of the Deployment: where the echo listens. */
  ports: number[];
}

export interface Topology {
  /** Every object, as one multi-document YAML for the mesh's config folder. */
  yaml: string;
  pods: EchoPod[];
  /** "namespace/name" -> cluster IP. */
  serviceIPs: Map<string, string>;
  waypointIP: string;
  controlPlane: string;
}

type Obj = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
};

/** `octet`: third byte of the 127.0.<octet>.0/24 the mesh lives on (nodes .1-.2, pods .10+, VIPs .100+, waypoint .200). */
export function buildTopology(octet: number): Topology {
  const ip = (n: number) => `127.0.${octet}.${n}`;
  const text = readFileSync(path.join(MANIFESTS_DIR, 'mesh-manifests.yaml'), 'utf8');
  const input = parseAllDocuments(text).map((d) => d.toJS() as Obj);
  const out: Obj[] = [];
  const pods: EchoPod[] = [];
  const serviceIPs = new Map<string, string>();
  const nodes = ['node-1', 'node-2'];
  nodes.forEach((n, i) =>
    out.push({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: n },
      status: { addresses: [{ type: 'InternalIP', address: ip(i + 1) }] },
    }),
  );
  let nextPod = 10;
  let nextVip = 100;
  let spread = 0;
  for (const o of input) {
    const ns = o.metadata.namespace ?? 'default';
    if (o.kind === 'Namespace') {
      const labels: Record<string, string> = {
        ...o.metadata.labels,
        'istio.io/dataplane-mode': 'ambient',
        'istio.io/use-waypoint': WAYPOINT,
      };
      if (o.metadata.name !== MESH_NS) labels['istio.io/use-waypoint-namespace'] = MESH_NS;
      out.push({ ...o, metadata: { ...o.metadata, labels } });
    } else if (o.kind === 'Deployment') {
      const spec = o.spec as DeploymentSpec;
      const replicas = REPLICAS[`${ns}/${o.metadata.name}`] ?? 1;
      const hash = podHash(`${ns}/${o.metadata.name}`);
      const ports = spec.template.spec.containers.flatMap((c) => (c.ports ?? []).map((p) => p.containerPort));
      for (let r = 0; r < replicas; r++) {
        const name = `${o.metadata.name}-${hash}-${suffix(r)}`;
        const podIP = ip(nextPod++);
        const labels = spec.template.metadata.labels;
        out.push({
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name, namespace: ns, labels },
          spec: { nodeName: nodes[spread++ % nodes.length], containers: spec.template.spec.containers },
          status: { podIP },
        });
        pods.push({ namespace: ns, name, ip: podIP, labels, ports });
      }
    } else if (o.kind === 'Service') {
      const vip = ip(nextVip++);
      serviceIPs.set(`${ns}/${o.metadata.name}`, vip);
      out.push({ ...o, spec: { ...o.spec, clusterIP: vip } });
    } else {
      throw new Error(
        `conformance topology: unexpected ${o.kind} ${ns}/${o.metadata.name} in mesh-manifests.yaml`,
      );
    }
  }
  const waypointIP = ip(200);
  out.push({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: WAYPOINT, namespace: MESH_NS, labels: { 'istio.io/waypoint-for': 'service' } },
    spec: {
      gatewayClassName: 'istio-waypoint',
      addresses: [{ type: 'IPAddress', value: waypointIP }],
      // The consumer namespace uses this waypoint too: Istio requires the listener to allow it.
      listeners: [
        { name: 'mesh', port: 15008, protocol: 'HBONE', allowedRoutes: { namespaces: { from: 'All' } } },
      ],
    },
  });
  return {
    yaml: out.map((o) => stringify(o)).join('---\n'),
    pods,
    serviceIPs,
    waypointIP,
    controlPlane: `${ip(5)}:15012`,
  };
}

/** The first pod (in file order) of app=echo,version=<v> in a namespace: the suite's ConnectToApp. */
export function firstPod(t: Topology, namespace: string, version: string): EchoPod {
  const p = t.pods.find(
    (x) => x.namespace === namespace && x.labels.app === 'echo' && x.labels.version === version,
  );
  if (!p) throw new Error(`conformance topology: no pod app=echo,version=${version} in ${namespace}`);
  return p;
}

interface DeploymentSpec {
  template: {
    metadata: { labels: Record<string, string> };
    spec: { containers: { name: string; ports?: { containerPort: number }[] }[] };
  };
}

/** A stable 9-character "pod-template-hash" from the Deployment's name. */
function podHash(key: string): string {
  let h = 2166136261;
  for (const c of key) h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0;
  return h.toString(36).padStart(9, 'x').slice(0, 9);
}

/** A 5-character pod suffix per replica, as a ReplicaSet's generated names have. */
function suffix(r: number): string {
  return `${String.fromCharCode(97 + r)}x7kq`;
}
