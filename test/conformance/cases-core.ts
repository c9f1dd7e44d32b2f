// Expectations of the suite's mesh tests whose features are only Mesh and HTTPRoute (the core of
// the MESH-HTTP profile), and of the tests about which frontend a route applies to. Written from
// gateway-api conformance/tests/mesh/<file>.go at 4564255a: the same requests and expected answers,
// in our own data shape (case-types.ts).
import type { MeshCase, MeshTest } from './case-types.js';

const NS = 'gateway-conformance-mesh';
/** A GET on host "echo" (the suite's default) expected at `backend`. */
const to = (path: string, backend: string, headers?: Record<string, string>): MeshCase => ({
  name: `${path}${headers ? ` with ${JSON.stringify(headers)}` : ''} -> ${backend}`,
  request: { path, headers },
  backend,
});

export const CORE_TESTS: MeshTest[] = [
  {
    // mesh-basic.go
    shortName: 'MeshBasic',
    description: 'a mesh client reaches a mesh server with no configuration applied',
    features: ['Mesh'],
    manifests: [],
    cases: [{ name: 'GET echo answers 200', request: { host: 'echo' } }],
  },
  {
    // mesh-split.go
    shortName: 'MeshTrafficSplit',
    description: 'a Service split between two versions by path',
    features: ['Mesh', 'HTTPRoute'],
    manifests: ['mesh-split.yaml'],
    cases: [to('/v1', 'echo-v1'), to('/v2', 'echo-v2')],
  },
  {
    // httproute-matching.go
    shortName: 'MeshHTTPRouteMatching',
    description: 'path and header matches choose the backend',
    features: ['Mesh', 'HTTPRoute'],
    manifests: ['httproute-matching.yaml'],
    cases: [
      to('/', 'echo-v1'),
      to('/example', 'echo-v1'),
      to('/', 'echo-v1', { Version: 'one' }),
      to('/v2', 'echo-v2'),
      to('/v2/example', 'echo-v2'),
      to('/', 'echo-v2', { Version: 'two' }),
      to('/v2/', 'echo-v2'),
      // Not a whole path segment: must not match the /v2 prefix.
      to('/v2example', 'echo-v1'),
      to('/foo/v2/example', 'echo-v1'),
    ],
  },
  {
    // httproute-redirect-host-and-status.go
    shortName: 'MeshHTTPRouteRedirectHostAndStatus',
    description: 'RequestRedirect with hostname and statusCode',
    features: ['Mesh', 'HTTPRoute'],
    manifests: ['httproute-redirect-host-and-status.yaml'],
    cases: [
      {
        name: '/hostname-redirect -> 302 to example.org',
        request: { path: '/hostname-redirect' },
        status: [302],
        redirect: { host: 'example.org' },
      },
      {
        name: '/host-and-status -> 301 to example.org',
        request: { path: '/host-and-status' },
        status: [301],
        redirect: { host: 'example.org' },
      },
    ],
  },
  {
    // httproute-request-header-modifier.go (MeshHTTPRouteRequestHeaderModifier)
    shortName: 'MeshHTTPRouteRequestHeaderModifier',
    description: 'RequestHeaderModifier filters on the rule',
    features: ['Mesh', 'HTTPRoute'],
    manifests: ['httproute-request-header-modifier.yaml'],
    cases: headerModifierCases(),
  },
  {
    // httproute-simple-same-namespace.go
    shortName: 'MeshHTTPRouteSimpleSameNamespace',
    description: 'an HTTPRoute attaches to a Service of its own namespace',
    features: ['Mesh', 'HTTPRoute'],
    manifests: ['httproute-simple-same-namespace.yaml'],
    cases: [to('/', 'echo-v1')],
  },
  {
    // httproute-weight.go
    shortName: 'MeshHTTPRouteWeight',
    description: 'weighted backendRefs share the traffic 70/30',
    features: ['Mesh', 'HTTPRoute'],
    manifests: ['httproute-weight.yaml'],
    cases: [{ name: 'GET echo answers 200', request: { path: '/', host: 'echo' } }],
    weight: { request: { path: '/', host: 'echo' }, weights: { 'echo-v1': 0.7, 'echo-v2': 0.3 } },
  },
  {
    // mesh-frontend.go
    shortName: 'MeshFrontend',
    description: 'a route applies to its Service frontend only, not to the pod addressed directly',
    features: ['Mesh', 'HTTPRoute', 'HTTPRouteResponseHeaderModification'],
    manifests: ['mesh-frontend.yaml'],
    cases: [
      {
        name: 'send to the service',
        request: { host: 'echo-v2' },
        responseHeaders: { 'X-Header-Set': 'set' },
        backend: 'echo-v2',
      },
      {
        // The host is filled in by the test with the address of the first echo-v2 pod.
        name: 'send to the pod IP',
        request: { host: '{echo-v2.podIP}:8080' },
        absentResponseHeaders: ['X-Header-Set'],
        backend: 'echo-v2',
      },
    ],
  },
  {
    // mesh-frontend-hostname.go
    shortName: 'MeshFrontendHostname',
    description: 'the parentRef matches the Service IP the client dialled, not the Host header',
    features: ['Mesh', 'MeshClusterIPMatching', 'HTTPRoute', 'HTTPRouteResponseHeaderModification'],
    manifests: ['mesh-frontend.yaml'],
    cases: [
      {
        name: 'dial echo-v2 with Host echo-v1: the echo-v2 route applies',
        request: { host: 'echo-v2', headers: { Host: 'echo-v1' } },
        responseHeaders: { 'X-Header-Set': 'set' },
        backend: 'echo-v2',
      },
      {
        name: 'dial echo-v1 with Host echo-v2: no route applies',
        request: { host: 'echo-v1', headers: { Host: 'echo-v2' } },
        absentResponseHeaders: ['X-Header-Set'],
        backend: 'echo-v1',
      },
    ],
  },
  {
    // mesh-ports.go
    shortName: 'MeshPorts',
    description: "a route's parentRef port narrows it to that Service port",
    features: ['Mesh', 'HTTPRoute', 'HTTPRouteParentRefPort', 'HTTPRouteResponseHeaderModification'],
    manifests: ['mesh-ports.yaml'],
    cases: [
      {
        name: 'explicit port set, send to that port',
        request: { host: 'echo-v1' },
        responseHeaders: { 'X-Header-Set': 'v1' },
        backend: 'echo-v1',
      },
      {
        name: 'explicit port set, send to another port',
        request: { host: 'echo-v1:8080' },
        absentResponseHeaders: ['X-Header-Set'],
        backend: 'echo-v1',
      },
      {
        name: 'no port set, port 80',
        request: { host: 'echo-v2' },
        responseHeaders: { 'X-Header-Set': 'v2' },
        backend: 'echo-v2',
      },
      {
        name: 'no port set, port 8080',
        request: { host: 'echo-v2:8080' },
        responseHeaders: { 'X-Header-Set': 'v2' },
        backend: 'echo-v2',
      },
    ],
  },
  {
    // mesh-consumer-route.go
    shortName: 'MeshConsumerRoute',
    description:
      "a route in another namespace than its Service applies to requests from the route's namespace only",
    features: ['Mesh', 'MeshConsumerRoute', 'HTTPRoute', 'HTTPRouteResponseHeaderModification'],
    manifests: ['mesh-consumer-route.yaml'],
    cases: [
      {
        name: "from the consumer route's namespace: modified",
        from: 'consumer/echo-v1',
        request: { host: `echo-v1.${NS}`, path: '/' },
        responseHeaders: { 'X-Header-Set': 'set' },
        backend: 'echo-v1',
      },
      {
        name: "from the Service's namespace: not modified",
        request: { host: `echo-v1.${NS}`, path: '/' },
        absentResponseHeaders: ['X-Header-Set'],
        backend: 'echo-v1',
      },
    ],
  },
];

/** The seven cases shared by MeshHTTPRouteRequestHeaderModifier and its backendRef-filter twin. */
export function headerModifierCases(): MeshCase[] {
  const c = (
    name: string,
    path: string,
    sent: Record<string, string>,
    headers: Record<string, string> | undefined,
    absent?: string[],
  ): MeshCase => ({
    name,
    request: { path, headers: sent },
    seen: { path, headers, absent },
    backend: 'echo-v1',
  });
  return [
    c(
      'set adds a header',
      '/set',
      { 'Some-Other-Header': 'val' },
      {
        'Some-Other-Header': 'val',
        'X-Header-Set': 'set-overwrites-values',
      },
    ),
    c(
      'set overwrites a header',
      '/set',
      { 'Some-Other-Header': 'val', 'X-Header-Set': 'some-other-value' },
      {
        'Some-Other-Header': 'val',
        'X-Header-Set': 'set-overwrites-values',
      },
    ),
    c(
      'add adds a header',
      '/add',
      { 'Some-Other-Header': 'val' },
      {
        'Some-Other-Header': 'val',
        'X-Header-Add': 'add-appends-values',
      },
    ),
    c(
      'add appends to a header',
      '/add',
      { 'Some-Other-Header': 'val', 'X-Header-Add': 'some-other-value' },
      {
        'Some-Other-Header': 'val',
        'X-Header-Add': 'some-other-value,add-appends-values',
      },
    ),
    c('remove drops a header', '/remove', { 'X-Header-Remove': 'val' }, undefined, ['X-Header-Remove']),
    c(
      'set, add and remove together',
      '/multiple',
      {
        'X-Header-Set-2': 'set-val-2',
        'X-Header-Add-2': 'add-val-2',
        'X-Header-Remove-2': 'remove-val-2',
        'Another-Header': 'another-header-val',
      },
      {
        'X-Header-Set-1': 'header-set-1',
        'X-Header-Set-2': 'header-set-2',
        'X-Header-Add-1': 'header-add-1',
        'X-Header-Add-2': 'add-val-2,header-add-2',
        'X-Header-Add-3': 'header-add-3',
        'Another-Header': 'another-header-val',
      },
      ['X-Header-Remove-1', 'X-Header-Remove-2'],
    ),
    c(
      'header names are case-insensitive',
      '/case-insensitivity',
      {
        'x-header-set': 'original-val-set',
        'x-header-add': 'original-val-add',
        'x-header-remove': 'original-val-remove',
        'Another-Header': 'another-header-val',
      },
      {
        'X-Header-Set': 'header-set',
        'X-Header-Add': 'original-val-add,header-add',
        'Another-Header': 'another-header-val',
      },
      ['x-header-remove', 'X-Header-Remove'],
    ),
  ];
}
