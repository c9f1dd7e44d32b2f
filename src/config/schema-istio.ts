// Schemas for the Istio kinds (security.istio.io, networking.istio.io). Field names and rules
// follow istio/api and the checks istiod applies at admission; only fields that users get wrong or
// that ambit acts on are spelled out, and every object stays open so unknown fields pass through.
import { isIP } from 'node:net';
import * as z from 'zod';
import { quote } from './config-error.js';
import {
  addIssue,
  checkUnique,
  dns1123Label,
  hostname,
  ipOrCidr,
  isCidr,
  isDns1123Label,
  isPort,
  istioDuration,
  labels,
  port,
  stringList,
  stringRule,
} from './schema-fields.js';

const loose = z.looseObject;

const workloadSelector = loose({ matchLabels: labels.optional() });

// Istio admits policies only on these targets (istio/api type/v1beta1/selector.proto).
const TARGET_KINDS = new Set([
  '/Service',
  'core/Service',
  'networking.istio.io/ServiceEntry',
  'gateway.networking.k8s.io/Gateway',
  'gateway.networking.k8s.io/GatewayClass',
]);
const policyTargetRef = loose({
  group: z.string().optional(),
  kind: z.string().min(1),
  name: z.string().min(1),
  namespace: z.string().optional(),
}).superRefine((ref, ctx) => {
  if (!TARGET_KINDS.has(`${ref.group ?? ''}/${ref.kind}`)) {
    addIssue(
      ctx,
      ['kind'],
      `must refer to a Service, a ServiceEntry (group networking.istio.io) or a Gateway or GatewayClass (group gateway.networking.k8s.io); got group ${quote(ref.group ?? '')} kind ${quote(ref.kind)}`,
    );
  }
});

function checkTargets(
  ctx: z.RefinementCtx,
  spec: { selector?: unknown; targetRef?: unknown; targetRefs?: unknown },
): void {
  if (spec.targetRef !== undefined && spec.targetRefs !== undefined) {
    addIssue(ctx, ['targetRefs'], 'set targetRefs or targetRef, not both');
  } else if (spec.selector !== undefined && (spec.targetRef !== undefined || spec.targetRefs !== undefined)) {
    addIssue(
      ctx,
      [spec.targetRef !== undefined ? 'targetRef' : 'targetRefs'],
      'cannot be used together with selector',
    );
  }
}

// ---- PeerAuthentication ----

const mutualTls = loose({ mode: z.enum(['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT']).optional() });
const portKey = stringRule(
  (s) => /^\d{1,5}$/.test(s) && isPort(Number(s)),
  'must be a port number between 1 and 65535',
);

export const peerAuthenticationSpec = loose({
  selector: workloadSelector.optional(),
  mtls: mutualTls.optional(),
  portLevelMtls: z.record(portKey, mutualTls).optional(),
}).superRefine((spec, ctx) => {
  // Ports only mean something for a known set of workloads (istiod rejects this too).
  if (spec.portLevelMtls && Object.keys(spec.portLevelMtls).length > 0 && !spec.selector) {
    addIssue(
      ctx,
      ['portLevelMtls'],
      'needs a selector: namespace-wide and mesh-wide policies cannot set port-level mTLS',
    );
  }
});

// ---- RequestAuthentication ----

const jwtHeader = loose({ name: z.string().min(1), prefix: z.string().optional() });
const jwtRule = loose({
  issuer: z.string().min(1),
  audiences: z.array(z.string().min(1)).optional(),
  jwksUri: z.string().min(1).optional(),
  jwks: z.string().min(1).optional(),
  fromHeaders: z.array(jwtHeader).optional(),
  fromParams: z.array(z.string().min(1)).optional(),
  fromCookies: z.array(z.string().min(1)).optional(),
  outputPayloadToHeader: z.string().optional(),
  forwardOriginalToken: z.boolean().optional(),
  outputClaimToHeaders: z.array(loose({ header: z.string().min(1), claim: z.string().min(1) })).optional(),
}).superRefine((rule, ctx) => {
  if (rule.jwks !== undefined && rule.jwksUri !== undefined)
    addIssue(ctx, ['jwks'], 'set jwks or jwksUri, not both');
  if (rule.jwks !== undefined) {
    try {
      JSON.parse(rule.jwks);
    } catch {
      addIssue(ctx, ['jwks'], 'must be a JSON Web Key Set (JSON text)');
    }
  }
});

export const requestAuthenticationSpec = loose({
  selector: workloadSelector.optional(),
  targetRef: policyTargetRef.optional(),
  targetRefs: z.array(policyTargetRef).optional(),
  jwtRules: z.array(jwtRule).optional(),
}).superRefine((spec, ctx) => checkTargets(ctx, spec));

// ---- AuthorizationPolicy ----

const ipList = z.array(ipOrCidr);
const portStrings = z.array(
  stringRule((s) => /^\d{1,5}$/.test(s) && isPort(Number(s)), 'must be a port number between 1 and 65535'),
);

// Istio matches these with "*" only as a whole value, a prefix or a suffix; principals are
// written without "spiffe://" (cluster.local/ns/NS/sa/SA).
const wildcardValue = stringRule(
  (s) => s !== '' && !(s.length > 2 && s.slice(1, -1).includes('*')),
  'must be non-empty with * only at the start or the end',
);
const principalValue = stringRule(
  (s) => s !== '' && !(s.length > 2 && s.slice(1, -1).includes('*')) && !s.startsWith('spiffe://'),
  'must be a principal like cluster.local/ns/NS/sa/SA (no spiffe:// prefix), with * only at the start or the end',
);
const source = loose({
  principals: z.array(principalValue).optional(),
  notPrincipals: z.array(principalValue).optional(),
  requestPrincipals: stringList.optional(),
  notRequestPrincipals: stringList.optional(),
  namespaces: z.array(wildcardValue).optional(),
  notNamespaces: z.array(wildcardValue).optional(),
  serviceAccounts: stringList.optional(),
  notServiceAccounts: stringList.optional(),
  ipBlocks: ipList.optional(),
  notIpBlocks: ipList.optional(),
  remoteIpBlocks: ipList.optional(),
  notRemoteIpBlocks: ipList.optional(),
});
const operation = loose({
  hosts: stringList.optional(),
  notHosts: stringList.optional(),
  ports: portStrings.optional(),
  notPorts: portStrings.optional(),
  methods: stringList.optional(),
  notMethods: stringList.optional(),
  paths: stringList.optional(),
  notPaths: stringList.optional(),
});

// The attributes a `when` condition may test (istio.io/docs/reference/config/security/conditions).
const CONDITION_KEYS = new Set([
  'source.ip',
  'remote.ip',
  'source.namespace',
  'source.principal',
  'source.serviceAccount',
  'request.auth.principal',
  'request.auth.audiences',
  'request.auth.presenter',
  'destination.ip',
  'destination.port',
  'connection.sni',
]);
function isConditionKey(key: string): boolean {
  return (
    CONDITION_KEYS.has(key) ||
    /^request\.headers\[[^\]]+\]$/.test(key) ||
    /^request\.auth\.claims(\[[^\]]+\])+$/.test(key) ||
    key.startsWith('experimental.envoy.filters.')
  );
}
const condition = loose({
  key: z.string().min(1),
  values: stringList.optional(),
  notValues: stringList.optional(),
}).superRefine((c, ctx) => {
  if (!isConditionKey(c.key)) {
    addIssue(
      ctx,
      ['key'],
      `unknown attribute ${quote(c.key)}; see istio.io/docs/reference/config/security/conditions`,
    );
    return;
  }
  if (!c.values?.length && !c.notValues?.length)
    addIssue(ctx, ['values'], `at least one of values or notValues must be set for ${c.key}`);
  const checkAll = (test: (v: string) => boolean, rule: string) => {
    for (const field of ['values', 'notValues'] as const) {
      c[field]?.forEach((v, i) => {
        if (!test(v)) addIssue(ctx, [field, i], `${rule} for ${c.key} (got ${quote(v)})`);
      });
    }
  };
  if (c.key.endsWith('.ip')) checkAll(isCidr, 'must be an IP address or CIDR block');
  if (c.key === 'destination.port')
    checkAll((v) => /^\d{1,5}$/.test(v) && isPort(Number(v)), 'must be a port number');
});

const rule = loose({
  from: z.array(loose({ source })).optional(),
  to: z.array(loose({ operation })).optional(),
  when: z.array(condition).optional(),
});

export const authorizationPolicySpec = loose({
  selector: workloadSelector.optional(),
  targetRef: policyTargetRef.optional(),
  targetRefs: z.array(policyTargetRef).optional(),
  rules: z.array(rule).optional(),
  action: z.enum(['ALLOW', 'DENY', 'AUDIT', 'CUSTOM']).optional(),
  provider: loose({ name: z.string().min(1) }).optional(),
}).superRefine((spec, ctx) => {
  checkTargets(ctx, spec);
  if (spec.action === 'CUSTOM' && !spec.provider)
    addIssue(ctx, ['provider'], 'required when action is CUSTOM');
  if (spec.action !== 'CUSTOM' && spec.provider)
    addIssue(ctx, ['provider'], 'may only be set when action is CUSTOM');
});

// ---- VirtualService ----

const stringMatch = loose({
  exact: z.string().optional(),
  prefix: z.string().optional(),
  regex: z.string().optional(),
}).superRefine((m, ctx) => {
  const set = (['exact', 'prefix', 'regex'] as const).filter((k) => m[k] !== undefined);
  if (set.length > 1)
    addIssue(ctx, [set[1]!], `set only one of exact, prefix and regex (found ${set.join(' and ')})`);
});
const portSelector = loose({ number: port.optional() });
const destination = loose({
  host: z.string().min(1),
  subset: z.string().optional(),
  port: portSelector.optional(),
});
const routeDestination = loose({ destination, weight: z.number().int().min(0).optional() });

const httpMatch = loose({
  name: z.string().optional(),
  uri: stringMatch.optional(),
  scheme: stringMatch.optional(),
  method: stringMatch.optional(),
  authority: stringMatch.optional(),
  headers: z.record(z.string(), stringMatch).optional(),
  withoutHeaders: z.record(z.string(), stringMatch).optional(),
  queryParams: z.record(z.string(), stringMatch).optional(),
  port: port.optional(),
  sourceLabels: labels.optional(),
  gateways: stringList.optional(),
  sourceNamespace: z.string().optional(),
  ignoreUriCase: z.boolean().optional(),
});
const httpRoute = loose({
  name: z.string().optional(),
  match: z.array(httpMatch).optional(),
  route: z.array(routeDestination).optional(),
  redirect: loose({}).optional(),
  directResponse: loose({ status: z.number().int().min(200).max(599) }).optional(),
  delegate: loose({ name: z.string().min(1), namespace: z.string().optional() }).optional(),
  rewrite: loose({}).optional(),
  timeout: istioDuration.optional(),
  retries: loose({
    attempts: z.number().int().min(0).optional(),
    perTryTimeout: istioDuration.optional(),
    retryOn: z.string().optional(),
  }).optional(),
  mirror: destination.optional(),
  headers: loose({}).optional(),
}).superRefine((r, ctx) => {
  const actions = (['route', 'redirect', 'directResponse', 'delegate'] as const).filter(
    (k) => r[k] !== undefined,
  );
  if (actions.length === 0)
    addIssue(
      ctx,
      ['route'],
      'required: an http route needs one of route, redirect, directResponse or delegate',
    );
  else if (actions.length > 1) addIssue(ctx, [actions[1]!], `cannot be combined with ${actions[0]}`);
});
const l4MatchFields = {
  destinationSubnets: z.array(ipOrCidr).optional(),
  port: port.optional(),
  sourceLabels: labels.optional(),
  gateways: stringList.optional(),
  sourceNamespace: z.string().optional(),
};
const tcpRoute = loose({
  match: z.array(loose(l4MatchFields)).optional(),
  route: z.array(routeDestination).optional(),
});
const tlsRoute = loose({
  match: z.array(loose({ ...l4MatchFields, sniHosts: z.array(z.string()).min(1) })).min(1),
  route: z.array(routeDestination).optional(),
});

export const virtualServiceSpec = loose({
  hosts: stringList.optional(),
  gateways: stringList.optional(),
  http: z.array(httpRoute).optional(),
  tls: z.array(tlsRoute).optional(),
  tcp: z.array(tcpRoute).optional(),
  exportTo: stringList.optional(),
});

// ---- DestinationRule ----

const tlsSettings = loose({ mode: z.enum(['DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL']).optional() });
const loadBalancer = loose({
  simple: z
    .enum(['UNSPECIFIED', 'LEAST_CONN', 'RANDOM', 'PASSTHROUGH', 'ROUND_ROBIN', 'LEAST_REQUEST'])
    .optional(),
});
const policyFields = {
  loadBalancer: loadBalancer.optional(),
  connectionPool: loose({}).optional(),
  outlierDetection: loose({}).optional(),
  tls: tlsSettings.optional(),
};
const trafficPolicy = loose({
  ...policyFields,
  portLevelSettings: z.array(loose({ ...policyFields, port: portSelector.optional() })).optional(),
});
const subsetName = stringRule(isDns1123Label, 'must be a DNS-1123 label: lowercase letters, digits and -');

export const destinationRuleSpec = loose({
  host: z.string().min(1),
  trafficPolicy: trafficPolicy.optional(),
  subsets: z
    .array(loose({ name: subsetName, labels: labels.optional(), trafficPolicy: trafficPolicy.optional() }))
    .optional(),
  exportTo: stringList.optional(),
  workloadSelector: workloadSelector.optional(),
}).superRefine((spec, ctx) => checkUnique(ctx, spec.subsets, 'subsets', (s) => s.name, 'subset name'));

// ---- WorkloadEntry (also the shape of ServiceEntry endpoints) ----

function checkAddress(
  address: string | undefined,
  ports: Record<string, number> | undefined,
  ctx: z.RefinementCtx,
): void {
  if (address === undefined || !address.startsWith('unix://')) return;
  const socket = address.slice('unix://'.length);
  if (!socket.startsWith('/') && !socket.startsWith('@'))
    addIssue(ctx, ['address'], 'a unix socket address must be an absolute path or start with @');
  else if (socket.endsWith('/')) addIssue(ctx, ['address'], 'a unix socket address cannot be a directory');
  if (ports && Object.keys(ports).length > 0)
    addIssue(ctx, ['ports'], 'a unix socket address cannot have ports');
}
const workloadFields = {
  address: z.string().min(1).optional(),
  ports: z.record(dns1123Label, port).optional(),
  labels: labels.optional(),
  network: z.string().optional(),
  locality: z.string().optional(),
  weight: z.number().int().min(0).optional(),
  serviceAccount: z.string().optional(),
};
const endpoint = loose(workloadFields).superRefine((e, ctx) => checkAddress(e.address, e.ports, ctx));

export const workloadEntrySpec = loose(workloadFields).superRefine((e, ctx) => {
  if (e.address === undefined && !e.network) addIssue(ctx, ['address'], 'required (unless network is set)');
  checkAddress(e.address, e.ports, ctx);
});

// ---- ServiceEntry ----

// The protocols istiod recognises on a port (case does not matter).
const PROTOCOLS = new Set([
  'HTTP',
  'HTTPS',
  'HTTP2',
  'HTTP_PROXY',
  'GRPC',
  'GRPC-WEB',
  'TCP',
  'TLS',
  'UDP',
  'MONGO',
  'REDIS',
  'MYSQL',
]);
const protocol = stringRule(
  (s) => PROTOCOLS.has(s.toUpperCase()),
  `must be one of ${[...PROTOCOLS].join(', ')}`,
);
const servicePort = loose({
  number: port,
  name: z.string().min(1),
  protocol: protocol.optional(),
  targetPort: port.optional(),
});

export const serviceEntrySpec = loose({
  hosts: z.array(z.string().min(1)).min(1),
  addresses: z.array(ipOrCidr).optional(),
  ports: z.array(servicePort).optional(),
  location: z.enum(['MESH_EXTERNAL', 'MESH_INTERNAL']).optional(),
  resolution: z.enum(['NONE', 'STATIC', 'DNS', 'DNS_ROUND_ROBIN']).optional(),
  endpoints: z.array(endpoint).optional(),
  workloadSelector: loose({ labels: labels.optional() }).optional(),
  exportTo: stringList.optional(),
  subjectAltNames: stringList.optional(),
}).superRefine((spec, ctx) => {
  spec.hosts.forEach((h, i) => {
    if (h === '*') addIssue(ctx, ['hosts', i], 'cannot be the wildcard "*"');
    else if (!hostname.safeParse(h.toLowerCase()).success)
      addIssue(ctx, ['hosts', i], `must be a hostname, optionally starting with "*." (got ${quote(h)})`);
  });
  checkUnique(ctx, spec.ports, 'ports', (p) => p.name, 'port name');
  checkUnique(ctx, spec.ports, 'ports', (p) => p.number, 'port number');
  if (spec.endpoints && spec.workloadSelector)
    addIssue(ctx, ['workloadSelector'], 'cannot be used together with endpoints');
  const resolution = spec.resolution ?? 'NONE';
  if (resolution === 'DNS' || resolution === 'DNS_ROUND_ROBIN') {
    spec.addresses?.forEach((a, i) => {
      if (a.includes('/'))
        addIssue(
          ctx,
          ['addresses', i],
          `CIDR blocks are only allowed with resolution NONE or STATIC (got ${quote(a)})`,
        );
    });
  }
  if (resolution === 'NONE' && spec.endpoints?.length)
    addIssue(ctx, ['endpoints'], 'must be empty when resolution is NONE');
  if (resolution === 'DNS_ROUND_ROBIN' && (spec.endpoints?.length ?? 0) > 1) {
    addIssue(ctx, ['endpoints'], 'may have at most one endpoint when resolution is DNS_ROUND_ROBIN');
  }
  if (resolution === 'STATIC') {
    spec.endpoints?.forEach((e, i) => {
      if (e.address !== undefined && !e.address.startsWith('unix://') && isIP(e.address) === 0) {
        addIssue(
          ctx,
          ['endpoints', i, 'address'],
          `must be an IP address when resolution is STATIC (got ${quote(e.address)})`,
        );
      }
    });
  }
});
