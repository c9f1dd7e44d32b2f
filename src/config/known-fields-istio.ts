// The fields of every Istio kind ambit reads, message by message, for unknown-field warnings
// (known-fields.ts). Names are the JSON names of istio/api's protos; each block names its proto.
// Checked against the generated CRDs (istio/api kubernetes/customresourcedefinitions.gen.yaml,
// releases 1.22 to master: the field set is the same in every one, and the same for v1alpha3,
// v1beta1 and v1). Maps with free keys (labels, header names) are `mapOf(...)`: their keys are
// data, only their values have fields. `status` is not checked: Istio's CRDs declare it
// `x-kubernetes-preserve-unknown-fields` and ambit never reads it.
import { mapOf, type FieldTree } from './known-field-tree.js';

const leaf = true as const;

// ---- istio/api type/v1beta1/selector.proto ----
const workloadSelector: FieldTree = { matchLabels: leaf }; // WorkloadSelector
const portSelector: FieldTree = { number: leaf }; // PortSelector
const policyTargetReference: FieldTree = { group: leaf, kind: leaf, name: leaf, namespace: leaf };

// ---- networking/v1alpha3/virtual_service.proto ----
const stringMatch: FieldTree = { exact: leaf, prefix: leaf, regex: leaf }; // StringMatch (a oneof)
const percent: FieldTree = { value: leaf }; // Percent
const destination: FieldTree = { host: leaf, subset: leaf, port: portSelector }; // Destination
const headerOperations: FieldTree = { set: leaf, add: leaf, remove: leaf }; // Headers.HeaderOperations
const headers: FieldTree = { request: headerOperations, response: headerOperations }; // Headers
const httpMatchRequest: FieldTree = {
  name: leaf,
  uri: stringMatch,
  scheme: stringMatch,
  method: stringMatch,
  authority: stringMatch,
  headers: mapOf(stringMatch),
  port: leaf,
  sourceLabels: leaf,
  gateways: leaf,
  queryParams: mapOf(stringMatch),
  ignoreUriCase: leaf,
  withoutHeaders: mapOf(stringMatch),
  sourceNamespace: leaf,
  statPrefix: leaf,
};
const httpRedirect: FieldTree = {
  uri: leaf,
  authority: leaf,
  port: leaf,
  derivePort: leaf,
  scheme: leaf,
  redirectCode: leaf,
  prefixRewrite: leaf,
};
const httpRewrite: FieldTree = {
  uri: leaf,
  authority: leaf,
  uriRegexRewrite: { match: leaf, rewrite: leaf }, // RegexRewrite
};
const httpRetry: FieldTree = {
  attempts: leaf,
  perTryTimeout: leaf,
  retryOn: leaf,
  retryRemoteLocalities: leaf,
  retryIgnorePreviousHosts: leaf,
  backoff: leaf,
};
const corsPolicy: FieldTree = {
  allowOrigin: leaf, // deprecated, still defined
  allowOrigins: [stringMatch],
  allowMethods: leaf,
  allowHeaders: leaf,
  exposeHeaders: leaf,
  maxAge: leaf,
  allowCredentials: leaf,
  unmatchedPreflights: leaf,
};
const httpFaultInjection: FieldTree = {
  delay: { fixedDelay: leaf, exponentialDelay: leaf, percentage: percent, percent: leaf },
  abort: { httpStatus: leaf, grpcStatus: leaf, http2Error: leaf, percentage: percent },
};
const httpRoute: FieldTree = {
  name: leaf,
  match: [httpMatchRequest],
  route: [{ destination, weight: leaf, headers }], // HTTPRouteDestination
  redirect: httpRedirect,
  directResponse: { status: leaf, body: { string: leaf, bytes: leaf } }, // HTTPDirectResponse, HTTPBody
  delegate: { name: leaf, namespace: leaf }, // Delegate
  rewrite: httpRewrite,
  timeout: leaf,
  retries: httpRetry,
  fault: httpFaultInjection,
  mirror: destination,
  mirrors: [{ destination, percentage: percent }], // HTTPMirrorPolicy
  mirrorPercent: leaf,
  mirror_percent: leaf, // the deprecated field's proto name, which the CRD also accepts
  mirrorPercentage: percent,
  corsPolicy,
  headers,
};
const routeDestination: FieldTree = { destination, weight: leaf }; // RouteDestination
const l4Match = {
  // L4MatchAttributes
  destinationSubnets: leaf,
  port: leaf,
  sourceLabels: leaf,
  gateways: leaf,
  sourceNamespace: leaf,
};
const VIRTUAL_SERVICE: FieldTree = {
  hosts: leaf,
  gateways: leaf,
  http: [httpRoute],
  tls: [{ match: [{ ...l4Match, sniHosts: leaf }], route: [routeDestination] }], // TLSRoute, TLSMatchAttributes
  tcp: [{ match: [{ ...l4Match, sourceSubnet: leaf }], route: [routeDestination] }], // TCPRoute
  exportTo: leaf,
};

// ---- networking/v1alpha3/destination_rule.proto ----
const localityFailover: FieldTree = { from: leaf, to: leaf };
const loadBalancerSettings: FieldTree = {
  simple: leaf,
  consistentHash: {
    httpHeaderName: leaf,
    httpCookie: { name: leaf, path: leaf, ttl: leaf, attributes: [{ name: leaf, value: leaf }] },
    useSourceIp: leaf,
    httpQueryParameterName: leaf,
    ringHash: { minimumRingSize: leaf },
    maglev: { tableSize: leaf },
    minimumRingSize: leaf,
  },
  localityLbSetting: {
    distribute: [{ from: leaf, to: leaf }], // `to` is a map of locality → weight
    failover: [localityFailover],
    failoverPriority: leaf,
    enabled: leaf,
  },
  warmupDurationSecs: leaf,
  warmup: { duration: leaf, minimumPercent: leaf, aggression: leaf },
  zoneAwareLbSetting: {
    enabled: leaf,
    failover: [localityFailover],
    failoverPriority: leaf,
    minClusterSize: leaf,
  },
};
const connectionPoolSettings: FieldTree = {
  tcp: {
    maxConnections: leaf,
    connectTimeout: leaf,
    tcpKeepalive: { probes: leaf, time: leaf, interval: leaf },
    maxConnectionDuration: leaf,
    idleTimeout: leaf,
  },
  http: {
    http1MaxPendingRequests: leaf,
    http2MaxRequests: leaf,
    maxRequestsPerConnection: leaf,
    maxRetries: leaf,
    idleTimeout: leaf,
    h2UpgradePolicy: leaf,
    useClientProtocol: leaf,
    maxConcurrentStreams: leaf,
    http2KeepAlive: { interval: leaf, timeout: leaf },
  },
};
const outlierDetection: FieldTree = {
  splitExternalLocalOriginErrors: leaf,
  consecutiveLocalOriginFailures: leaf,
  consecutiveGatewayErrors: leaf,
  consecutive5xxErrors: leaf,
  consecutiveErrors: leaf, // deprecated, still defined
  interval: leaf,
  baseEjectionTime: leaf,
  maxEjectionPercent: leaf,
  minHealthPercent: leaf,
  outlierDetectionHttpErrorCodes: leaf,
};
const clientTlsSettings: FieldTree = {
  mode: leaf,
  clientCertificate: leaf,
  privateKey: leaf,
  caCertificates: leaf,
  credentialName: leaf,
  subjectAltNames: leaf,
  sni: leaf,
  insecureSkipVerify: leaf,
  caCrl: leaf,
};
const portTrafficPolicy: FieldTree = {
  port: portSelector,
  loadBalancer: loadBalancerSettings,
  connectionPool: connectionPoolSettings,
  outlierDetection,
  tls: clientTlsSettings,
};
const trafficPolicy: FieldTree = {
  loadBalancer: loadBalancerSettings,
  connectionPool: connectionPoolSettings,
  outlierDetection,
  tls: clientTlsSettings,
  portLevelSettings: [portTrafficPolicy],
  tunnel: { protocol: leaf, targetHost: leaf, targetPort: leaf },
  proxyProtocol: { version: leaf },
  retryBudget: { percent: leaf, minRetryConcurrency: leaf, budgetInterval: leaf },
};
const DESTINATION_RULE: FieldTree = {
  host: leaf,
  trafficPolicy,
  subsets: [{ name: leaf, labels: leaf, trafficPolicy }], // Subset
  exportTo: leaf,
  workloadSelector,
};

// ---- networking/v1alpha3/service_entry.proto, workload_entry.proto ----
const workloadEntry = {
  address: leaf,
  ports: leaf, // map of port name → number
  labels: leaf,
  network: leaf,
  locality: leaf,
  weight: leaf,
  serviceAccount: leaf,
};
const SERVICE_ENTRY: FieldTree = {
  hosts: leaf,
  addresses: leaf,
  ports: [{ number: leaf, protocol: leaf, name: leaf, targetPort: leaf }], // ServicePort
  location: leaf,
  resolution: leaf,
  endpoints: [workloadEntry],
  workloadSelector: { labels: leaf }, // ServiceEntry's own WorkloadSelector (labels, not matchLabels)
  exportTo: leaf,
  subjectAltNames: leaf,
};

// ---- security/v1beta1/authorization_policy.proto ----
const source: FieldTree = {
  principals: leaf,
  notPrincipals: leaf,
  requestPrincipals: leaf,
  notRequestPrincipals: leaf,
  namespaces: leaf,
  notNamespaces: leaf,
  serviceAccounts: leaf,
  notServiceAccounts: leaf,
  trustDomains: leaf,
  notTrustDomains: leaf,
  ipBlocks: leaf,
  notIpBlocks: leaf,
  remoteIpBlocks: leaf,
  notRemoteIpBlocks: leaf,
};
const operation: FieldTree = {
  hosts: leaf,
  notHosts: leaf,
  ports: leaf,
  notPorts: leaf,
  methods: leaf,
  notMethods: leaf,
  paths: leaf,
  notPaths: leaf,
};
const AUTHORIZATION_POLICY: FieldTree = {
  selector: workloadSelector,
  targetRef: policyTargetReference,
  targetRefs: [policyTargetReference],
  rules: [
    {
      from: [{ source }],
      to: [{ operation }],
      when: [{ key: leaf, values: leaf, notValues: leaf }], // Condition
    },
  ],
  action: leaf,
  provider: { name: leaf }, // ExtensionProvider
};

// ---- security/v1beta1/peer_authentication.proto, request_authentication.proto ----
const PEER_AUTHENTICATION: FieldTree = {
  selector: workloadSelector,
  mtls: { mode: leaf },
  portLevelMtls: mapOf({ mode: leaf }), // map of port number → MutualTLS
};
const REQUEST_AUTHENTICATION: FieldTree = {
  selector: workloadSelector,
  targetRef: policyTargetReference,
  targetRefs: [policyTargetReference],
  jwtRules: [
    {
      issuer: leaf,
      audiences: leaf,
      jwksUri: leaf,
      jwks_uri: leaf, // the proto name, which the CRD also accepts
      jwks: leaf,
      fromHeaders: [{ name: leaf, prefix: leaf }],
      fromParams: leaf,
      fromCookies: leaf,
      outputPayloadToHeader: leaf,
      forwardOriginalToken: leaf,
      outputClaimToHeaders: [{ header: leaf, claim: leaf }],
      timeout: leaf,
      spaceDelimitedClaims: leaf,
    },
  ],
};

/** The spec trees of the Istio kinds ambit reads. */
export const ISTIO_SPEC_FIELDS: Readonly<Record<string, FieldTree>> = {
  VirtualService: VIRTUAL_SERVICE,
  DestinationRule: DESTINATION_RULE,
  ServiceEntry: SERVICE_ENTRY,
  WorkloadEntry: workloadEntry,
  AuthorizationPolicy: AUTHORIZATION_POLICY,
  PeerAuthentication: PEER_AUTHENTICATION,
  RequestAuthentication: REQUEST_AUTHENTICATION,
};
