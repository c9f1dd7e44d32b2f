// The Kubernetes objects ambit reads, as typed values. These interfaces are the contract between
// the config sources (files now, Kubernetes API later) and everything that consumes config.
// The schemas in schema.ts validate documents into exactly these shapes.

export interface ObjectMeta {
  name: string;
  namespace?: string; // absent for cluster-scoped kinds; defaulted to "default" for namespaced kinds by the loader
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  /** RFC 3339; set by Kubernetes, optional in files. Breaks precedence ties (precedence.ts). */
  creationTimestamp?: string;
}

interface KubeObject<K extends string, A extends string = string> {
  apiVersion: A;
  kind: K;
  metadata: ObjectMeta;
}

// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- a named kind, kept as an interface like its siblings
export interface Namespace extends KubeObject<'Namespace', 'v1'> {}

export interface NodeAddress {
  type: string; // InternalIP, ExternalIP, Hostname
  address: string;
}
export interface Node extends KubeObject<'Node', 'v1'> {
  status?: { addresses?: NodeAddress[] };
}

export interface ContainerPort {
  name?: string;
  containerPort: number;
  protocol?: string;
}
export interface Pod extends KubeObject<'Pod', 'v1'> {
  spec: {
    nodeName?: string;
    serviceAccountName?: string;
    containers?: { name: string; image?: string; ports?: ContainerPort[] }[];
    hostNetwork?: boolean;
  };
  status?: {
    podIP?: string;
    podIPs?: { ip: string }[];
    phase?: string;
    conditions?: { type: string; status: string }[];
  };
}

export interface ServicePort {
  name?: string;
  port: number;
  targetPort?: number | string;
  protocol?: string;
  appProtocol?: string;
}
export interface Service extends KubeObject<'Service', 'v1'> {
  spec: {
    clusterIP?: string;
    clusterIPs?: string[];
    type?: string;
    selector?: Record<string, string>;
    ports?: ServicePort[];
  };
}

/** Who an EndpointSlice says backs its Service (discovery.k8s.io/v1): Services without a selector. */
export interface EndpointSliceEndpoint {
  addresses: string[];
  conditions?: { ready?: boolean; serving?: boolean; terminating?: boolean };
  nodeName?: string;
  targetRef?: { kind?: string; name?: string; namespace?: string };
}
export interface EndpointSlice extends KubeObject<'EndpointSlice', 'discovery.k8s.io/v1'> {
  addressType: 'IPv4' | 'IPv6' | 'FQDN';
  endpoints?: EndpointSliceEndpoint[];
  ports?: { name?: string; port?: number; protocol?: string; appProtocol?: string }[];
}
/** The Service an EndpointSlice belongs to (label set by the EndpointSlice controller). */
export const LABEL_SERVICE_NAME = 'kubernetes.io/service-name';

// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- a named kind, kept as an interface like its siblings
export interface ServiceAccount extends KubeObject<'ServiceAccount', 'v1'> {}

/** The Istio and Gateway API kinds: stored and validated structurally; later issues act on them. */
export interface GenericSpecObject<K extends string> extends KubeObject<K> {
  spec: Record<string, unknown>;
  status?: Record<string, unknown>;
}
export type PeerAuthentication = GenericSpecObject<'PeerAuthentication'>;
export type AuthorizationPolicy = GenericSpecObject<'AuthorizationPolicy'>;
export type RequestAuthentication = GenericSpecObject<'RequestAuthentication'>;
export type VirtualService = GenericSpecObject<'VirtualService'>;
export type DestinationRule = GenericSpecObject<'DestinationRule'>;
export type ServiceEntry = GenericSpecObject<'ServiceEntry'>;
export type WorkloadEntry = GenericSpecObject<'WorkloadEntry'>;
export type Gateway = GenericSpecObject<'Gateway'>;
export type HTTPRoute = GenericSpecObject<'HTTPRoute'>;
export type GRPCRoute = GenericSpecObject<'GRPCRoute'>;

/**
 * A ConfigMap: ambit reads one, Istio's mesh config `istio-system/istio` (key `mesh`,
 * config/mesh-config.ts); others load with a warning and are not used.
 */
export interface ConfigMap extends KubeObject<'ConfigMap', 'v1'> {
  data?: Record<string, string>;
}

export type KubeResource =
  | ConfigMap
  | Namespace
  | Node
  | Pod
  | Service
  | EndpointSlice
  | ServiceAccount
  | PeerAuthentication
  | AuthorizationPolicy
  | RequestAuthentication
  | VirtualService
  | DestinationRule
  | ServiceEntry
  | WorkloadEntry
  | Gateway
  | HTTPRoute
  | GRPCRoute;

export type Kind = KubeResource['kind'];

export const CLUSTER_SCOPED_KINDS: ReadonlySet<Kind> = new Set<Kind>(['Namespace', 'Node']);

/** "Kind/namespace/name" (cluster-scoped: "Kind/name"): the identity of an object in a snapshot. */
export type ObjectKey = string;

export function objectKey(o: { kind: string; metadata: { name: string; namespace?: string } }): ObjectKey {
  return o.metadata.namespace
    ? `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`
    : `${o.kind}/${o.metadata.name}`;
}

/** Everything a config source currently holds, keyed by objectKey. */
export interface ConfigSnapshot {
  readonly objects: ReadonlyMap<ObjectKey, KubeResource>;
}

export interface ConfigChange {
  upserted: KubeResource[];
  deleted: { kind: Kind; metadata: ObjectMeta }[];
}

/**
 * A config source (files, Kubernetes API). `start()` resolves after the first full load.
 * Listeners are called after each change with the delta and the new snapshot.
 */
export interface ConfigSource {
  start(): Promise<void>;
  snapshot(): ConfigSnapshot;
  onChange(listener: (change: ConfigChange, snapshot: ConfigSnapshot) => void): void;
  stop(): Promise<void>;
}

// Labels and annotations ambit reads.
export const LABEL_DATAPLANE_MODE = 'istio.io/dataplane-mode';
export const DATAPLANE_MODE_AMBIENT = 'ambient';
export const LABEL_USE_WAYPOINT = 'istio.io/use-waypoint';
/** Local mode: a command `ambit up` runs as the pod's app, bound to the pod IP ($POD_IP). */
export const ANNOTATION_LOCAL_COMMAND = 'ambit.dev/command';
/** Set by the config layer on an AuthorizationPolicy that failed validation and is in force in its
 *  fail-closed form (authz-degrade.ts): the effects, one per line. Never trusted from the user. */
export const ANNOTATION_DEGRADED = 'ambit.dev/degraded';
