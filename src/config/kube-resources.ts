// Where each kind lives in the Kubernetes REST API: group, version, plural, scope. One table for
// the config source (what it watches) and the control plane's writers (Leases, Secrets,
// ConfigMaps, waypoint Deployments). Versions are the served storage versions of the releases
// daemonset/README.md names (Istio ≥ 1.22 serves v1; Gateway API ≥ 1.1 serves GRPCRoute v1).
import type { Kind } from './types.js';

export interface KubeResourceType {
  kind: string;
  /** Watch this namespace only (a kind ambit reads one object of, like Istio's mesh ConfigMap). */
  watchNamespace?: string;
  /** "v1" for the core group, else "group/version". */
  apiVersion: string;
  plural: string;
  namespaced: boolean;
}

const r = (kind: string, apiVersion: string, plural: string, namespaced = true): KubeResourceType => ({
  kind,
  apiVersion,
  plural,
  namespaced,
});

/** The kinds the config source watches, in the order they are first listed. */
export const WATCHED_TYPES: { readonly [K in Kind]: KubeResourceType } = {
  Namespace: r('Namespace', 'v1', 'namespaces', false),
  Node: r('Node', 'v1', 'nodes', false),
  Pod: r('Pod', 'v1', 'pods'),
  Service: r('Service', 'v1', 'services'),
  EndpointSlice: r('EndpointSlice', 'discovery.k8s.io/v1', 'endpointslices'),
  ServiceAccount: r('ServiceAccount', 'v1', 'serviceaccounts'),
  PeerAuthentication: r('PeerAuthentication', 'security.istio.io/v1', 'peerauthentications'),
  AuthorizationPolicy: r('AuthorizationPolicy', 'security.istio.io/v1', 'authorizationpolicies'),
  RequestAuthentication: r('RequestAuthentication', 'security.istio.io/v1', 'requestauthentications'),
  VirtualService: r('VirtualService', 'networking.istio.io/v1', 'virtualservices'),
  DestinationRule: r('DestinationRule', 'networking.istio.io/v1', 'destinationrules'),
  ServiceEntry: r('ServiceEntry', 'networking.istio.io/v1', 'serviceentries'),
  WorkloadEntry: r('WorkloadEntry', 'networking.istio.io/v1', 'workloadentries'),
  Gateway: r('Gateway', 'gateway.networking.k8s.io/v1', 'gateways'),
  HTTPRoute: r('HTTPRoute', 'gateway.networking.k8s.io/v1', 'httproutes'),
  GRPCRoute: r('GRPCRoute', 'gateway.networking.k8s.io/v1', 'grpcroutes'),
  // Istio's mesh config (config/mesh-config.ts): only istio-system is watched, as istiod reads it.
  ConfigMap: { ...r('ConfigMap', 'v1', 'configmaps'), watchNamespace: 'istio-system' },
};

/** What the control plane writes. */
export const SECRET = r('Secret', 'v1', 'secrets');
export const CONFIG_MAP = r('ConfigMap', 'v1', 'configmaps');
export const SERVICE_ACCOUNT = WATCHED_TYPES.ServiceAccount;
export const SERVICE = WATCHED_TYPES.Service;
export const POD = WATCHED_TYPES.Pod;
export const GATEWAY = WATCHED_TYPES.Gateway;
export const GATEWAY_CLASS = r('GatewayClass', 'gateway.networking.k8s.io/v1', 'gatewayclasses', false);
export const DEPLOYMENT = r('Deployment', 'apps/v1', 'deployments');
export const LEASE = r('Lease', 'coordination.k8s.io/v1', 'leases');
export const TOKEN_REVIEW = r('TokenReview', 'authentication.k8s.io/v1', 'tokenreviews', false);

/** The REST path of a collection (all namespaces when `namespace` is undefined) or of one object. */
export function resourcePath(
  t: KubeResourceType,
  namespace?: string,
  name?: string,
  subresource?: string,
): string {
  const base = t.apiVersion.includes('/') ? `/apis/${t.apiVersion}` : `/api/${t.apiVersion}`;
  const ns = t.namespaced && namespace !== undefined ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  const obj = name !== undefined ? `/${encodeURIComponent(name)}` : '';
  const sub = subresource ? `/${subresource}` : '';
  return `${base}${ns}/${t.plural}${obj}${sub}`;
}
