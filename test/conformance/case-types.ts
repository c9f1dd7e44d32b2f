// The shape of the mesh conformance expectations (cases-*.ts): one MeshTest per test of the
// Gateway API suite's mesh profile, each a list of requests sent from a client pod and what must
// come back. Field meanings follow the suite's ExpectedResponse (conformance/utils/http) as its
// mesh client compares them (conformance/utils/echo/pod.go), plus the checks its gateway client
// makes and the mesh client skips (path seen by the backend, redirect Location): see compare.ts.

/** Feature names of gateway-api pkg/features, as the report lists them. */
export type Feature =
  | 'Mesh'
  | 'HTTPRoute'
  | 'GRPCRoute'
  | 'HTTPRouteResponseHeaderModification'
  | 'HTTPRouteParentRefPort'
  | 'HTTPRoute303RedirectStatusCode'
  | 'HTTPRoute307RedirectStatusCode'
  | 'HTTPRoute308RedirectStatusCode'
  | 'MeshClusterIPMatching'
  | 'MeshConsumerRoute'
  | 'MeshHTTPRouteRewritePath'
  | 'MeshHTTPRouteSchemeRedirect'
  | 'MeshHTTPRouteRedirectPort'
  | 'MeshHTTPRouteRedirectPath'
  | 'MeshHTTPRouteBackendRequestHeaderModification'
  | 'MeshHTTPRouteQueryParamMatching'
  | 'MeshHTTPRouteNamedRouteRule';

/** Which pod sends: the first pod of app=echo,version=<v> in the mesh namespace, or in the consumer one. */
export type ClientPod = 'echo-v1' | 'echo-v2' | 'consumer/echo-v1';

export interface MeshRequest {
  /** host[:port] the client dials (and sends as Host unless `headers.Host` says otherwise); default "echo". */
  host?: string;
  /** Path and query; default "/" (HTTP). */
  path?: string;
  method?: string;
  headers?: Record<string, string>;
  protocol?: 'http' | 'grpc';
}

export interface RedirectExpectation {
  scheme?: string;
  host?: string;
  port?: string;
  path?: string;
  /** The raw query of the Location, without "?" (ambit's own checks; the suite sets none). */
  query?: string;
}

export interface MeshCase {
  name: string;
  from?: ClientPod;
  request: MeshRequest;
  /** Acceptable status codes; default [200]. For gRPC, 200 stands for grpc-status 0. */
  status?: number[];
  /** Prefix of the answering pod's name. */
  backend?: string;
  /** What the backend must have seen: path (with query), header values (comma-joined), absent headers. */
  seen?: { path?: string; headers?: Record<string, string>; absent?: string[] };
  responseHeaders?: Record<string, string>;
  absentResponseHeaders?: string[];
  /** The Location of a redirect, compared part by part (unset parts take the suite's defaults). */
  redirect?: RedirectExpectation;
}

export interface WeightCheck {
  request: MeshRequest;
  /** Backend name (pod name without its two last dash-separated parts) -> expected share. */
  weights: Record<string, number>;
}

export interface MeshTest {
  shortName: string;
  description: string;
  provisional?: boolean;
  features: Feature[];
  /** Files under manifests/tests/mesh applied for this test. */
  manifests: string[];
  cases: MeshCase[];
  weight?: WeightCheck;
}
