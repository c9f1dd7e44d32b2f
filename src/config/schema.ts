// The schema of every kind ambit reads, and the registry the loader dispatches on. A document is
// validated once, here, into the interfaces of types.ts; nothing after the loader re-checks shape.
// Core kinds keep only the fields ambit reads (the rest of a Pod is dropped); the Istio and
// Gateway API kinds keep everything, since later code and `ambit ctl` show them as written.
import * as z from 'zod';
import type { Kind, KubeResource } from './types.js';
import { isMeshConfigMap, meshSettingsOfConfigMap, MESH_CONFIGMAP_KEY } from './mesh-config.js';
import {
  addIssue,
  checkUnique,
  clusterMeta,
  dns1035Label,
  dns1123Label,
  dns1123Subdomain,
  ipAddress,
  isIanaSvcName,
  labels,
  namespacedMeta,
  port,
  portNumberOrName,
  stringRule,
} from './schema-fields.js';
import { grpcRouteSpec, gatewaySpec, httpRouteSpec } from './schema-gateway.js';
import {
  authorizationPolicySpec,
  destinationRuleSpec,
  peerAuthenticationSpec,
  requestAuthenticationSpec,
  serviceEntrySpec,
  virtualServiceSpec,
  workloadEntrySpec,
} from './schema-istio.js';
import { isIP } from 'node:net';

const CORE = ['v1'] as const;
const SECURITY = ['security.istio.io/v1', 'security.istio.io/v1beta1'] as const;
const NETWORKING = [
  'networking.istio.io/v1',
  'networking.istio.io/v1beta1',
  'networking.istio.io/v1alpha3',
] as const;
const GATEWAY = ['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1'] as const;
const GATEWAY_GRPC = [...GATEWAY, 'gateway.networking.k8s.io/v1alpha2'] as const;

const protocol = z.enum(['TCP', 'UDP', 'SCTP']);

// ---- Namespace, Node ----

export const namespaceSchema = z.object({
  apiVersion: z.enum(CORE),
  kind: z.literal('Namespace'),
  metadata: clusterMeta(dns1123Label),
});

const ADDRESS_TYPES = ['InternalIP', 'ExternalIP', 'Hostname', 'InternalDNS', 'ExternalDNS'] as const;
const nodeAddress = z
  .object({ type: z.enum(ADDRESS_TYPES), address: z.string().min(1) })
  .superRefine((a, ctx) => {
    if (a.type.endsWith('IP') && isIP(a.address) === 0) {
      addIssue(
        ctx,
        ['address'],
        `must be an IP address for type ${a.type} (got ${JSON.stringify(a.address)})`,
      );
    }
  });

export const nodeSchema = z.object({
  apiVersion: z.enum(CORE),
  kind: z.literal('Node'),
  metadata: clusterMeta(dns1123Subdomain),
  status: z.object({ addresses: z.array(nodeAddress).optional() }).optional(),
});

// ---- Pod ----

const portName = stringRule(
  isIanaSvcName,
  "must be a port name of at most 15 lowercase letters, digits and '-'",
);
const container = z.object({
  name: dns1123Label,
  image: z.string().optional(),
  ports: z
    .array(z.object({ name: portName.optional(), containerPort: port, protocol: protocol.optional() }))
    .optional(),
});

export const podSchema = z.object({
  apiVersion: z.enum(CORE),
  kind: z.literal('Pod'),
  metadata: namespacedMeta(dns1123Subdomain),
  spec: z.object({
    nodeName: dns1123Subdomain.optional(),
    serviceAccountName: dns1123Subdomain.optional(),
    containers: z.array(container).optional(),
    hostNetwork: z.boolean().optional(),
  }),
  status: z
    .object({
      podIP: ipAddress.optional(),
      podIPs: z.array(z.object({ ip: ipAddress })).optional(),
      phase: z.enum(['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown']).optional(),
      conditions: z.array(z.object({ type: z.string(), status: z.string() })).optional(),
    })
    .superRefine((s, ctx) => {
      const first = s.podIPs?.[0]?.ip;
      if (s.podIP !== undefined && first !== undefined && first !== s.podIP) {
        addIssue(ctx, ['podIPs', 0, 'ip'], `must equal podIP (${s.podIP}) (got ${first})`);
      }
    })
    .optional(),
});

// ---- Service ----

// "None" makes a headless Service; "" asks the cluster to allocate one, as in a fresh manifest.
const clusterIP = stringRule(
  (s) => s === 'None' || s === '' || isIP(s) !== 0,
  'must be an IP address or "None"',
);
const servicePort = z.object({
  name: dns1123Label.optional(),
  port,
  targetPort: portNumberOrName.optional(),
  protocol: protocol.optional(),
  appProtocol: z.string().optional(),
});

export const serviceSchema = z.object({
  apiVersion: z.enum(CORE),
  kind: z.literal('Service'),
  metadata: namespacedMeta(dns1035Label),
  spec: z
    .object({
      clusterIP: clusterIP.optional(),
      clusterIPs: z.array(clusterIP).optional(),
      type: z.enum(['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName']).optional(),
      selector: labels.optional(),
      ports: z.array(servicePort).optional(),
    })
    .superRefine((spec, ctx) => {
      const ports = spec.ports ?? [];
      if (ports.length > 1) {
        ports.forEach((p, i) => {
          if (p.name === undefined)
            addIssue(ctx, ['ports', i, 'name'], 'required when a Service has more than one port');
        });
      }
      checkUnique(ctx, ports, 'ports', (p) => p.name, 'port name');
      checkUnique(ctx, ports, 'ports', (p) => `${p.port}/${p.protocol ?? 'TCP'}`, 'port/protocol');
      const first = spec.clusterIPs?.[0];
      if (spec.clusterIP && first !== undefined && first !== spec.clusterIP) {
        addIssue(ctx, ['clusterIPs', 0], `must equal clusterIP (${spec.clusterIP}) (got ${first})`);
      }
    }),
});

export const endpointSliceSchema = z.object({
  apiVersion: z.literal('discovery.k8s.io/v1'),
  kind: z.literal('EndpointSlice'),
  metadata: namespacedMeta(dns1123Subdomain),
  addressType: z.enum(['IPv4', 'IPv6', 'FQDN']),
  endpoints: z
    .array(
      z.object({
        addresses: z.array(z.string().min(1)).min(1),
        conditions: z
          .object({
            ready: z.boolean().optional(),
            serving: z.boolean().optional(),
            terminating: z.boolean().optional(),
          })
          .optional(),
        nodeName: z.string().optional(),
        targetRef: z
          .object({
            kind: z.string().optional(),
            name: z.string().optional(),
            namespace: z.string().optional(),
          })
          .optional(),
      }),
    )
    .optional(),
  ports: z
    .array(
      z.object({
        name: z.string().optional(),
        port: z.number().int().min(1).max(65535).optional(),
        protocol: protocol.optional(),
        appProtocol: z.string().optional(),
      }),
    )
    .optional(),
});

// Only Istio's mesh ConfigMap (istio-system/istio) is read: its `mesh` key is validated as
// MeshConfig (mesh-config.ts) so a bad provider or normalization is reported with its field.
export const configMapSchema = z
  .object({
    apiVersion: z.enum(CORE),
    kind: z.literal('ConfigMap'),
    metadata: namespacedMeta(dns1123Subdomain),
    data: z.record(z.string(), z.string()).optional(),
  })
  .superRefine((cm, ctx) => {
    if (!isMeshConfigMap(cm)) return;
    const r = meshSettingsOfConfigMap(cm);
    if (!r.ok)
      for (const issue of r.issues)
        ctx.addIssue({
          code: 'custom',
          path: ['data', MESH_CONFIGMAP_KEY],
          message: issue.field + ': ' + issue.message,
        });
  });

export const serviceAccountSchema = z.object({
  apiVersion: z.enum(CORE),
  kind: z.literal('ServiceAccount'),
  metadata: namespacedMeta(dns1123Subdomain),
});

// ---- Istio and Gateway API kinds ----

function specObject<
  K extends string,
  A extends readonly [string, ...string[]],
  S extends z.ZodType<Record<string, unknown>>,
>(kind: K, apiVersions: A, spec: S) {
  return z.object({
    apiVersion: z.enum(apiVersions),
    kind: z.literal(kind),
    metadata: namespacedMeta(dns1123Subdomain),
    spec,
    status: z.record(z.string(), z.unknown()).optional(),
  });
}

// An empty policy means something (allow nothing; inherit mTLS), so these two may omit spec.
export const peerAuthenticationSchema = specObject(
  'PeerAuthentication',
  SECURITY,
  peerAuthenticationSpec.prefault({}),
);
export const authorizationPolicySchema = specObject(
  'AuthorizationPolicy',
  SECURITY,
  authorizationPolicySpec.prefault({}),
);
export const requestAuthenticationSchema = specObject(
  'RequestAuthentication',
  SECURITY,
  requestAuthenticationSpec.prefault({}),
);
export const virtualServiceSchema = specObject('VirtualService', NETWORKING, virtualServiceSpec);
export const destinationRuleSchema = specObject('DestinationRule', NETWORKING, destinationRuleSpec);
export const serviceEntrySchema = specObject('ServiceEntry', NETWORKING, serviceEntrySpec);
export const workloadEntrySchema = specObject('WorkloadEntry', NETWORKING, workloadEntrySpec);
export const gatewaySchema = specObject('Gateway', GATEWAY, gatewaySpec);
export const httpRouteSchema = specObject('HTTPRoute', GATEWAY, httpRouteSpec);
export const grpcRouteSchema = specObject('GRPCRoute', GATEWAY_GRPC, grpcRouteSpec);

/**
 * Kind → schema. The mapped type makes the compiler check that each schema's output is
 * assignable to its interface in types.ts.
 */
export const KIND_SCHEMAS: { readonly [K in Kind]: z.ZodType<Extract<KubeResource, { kind: K }>> } = {
  Namespace: namespaceSchema,
  Node: nodeSchema,
  Pod: podSchema,
  Service: serviceSchema,
  EndpointSlice: endpointSliceSchema,
  ServiceAccount: serviceAccountSchema,
  PeerAuthentication: peerAuthenticationSchema,
  AuthorizationPolicy: authorizationPolicySchema,
  RequestAuthentication: requestAuthenticationSchema,
  VirtualService: virtualServiceSchema,
  DestinationRule: destinationRuleSchema,
  ServiceEntry: serviceEntrySchema,
  WorkloadEntry: workloadEntrySchema,
  Gateway: gatewaySchema,
  HTTPRoute: httpRouteSchema,
  GRPCRoute: grpcRouteSchema,
  ConfigMap: configMapSchema,
};

export const SUPPORTED_KINDS = Object.keys(KIND_SCHEMAS) as Kind[];

export function isSupportedKind(kind: string): kind is Kind {
  return Object.hasOwn(KIND_SCHEMAS, kind);
}
