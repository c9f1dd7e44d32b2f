// Expectations of the suite's mesh tests that need an extended feature: query parameter matches,
// redirects (path, port, scheme, 303/307/308), path rewrites, backendRef filters and named rules.
// Written from gateway-api conformance/tests/mesh/<file>.go at 4564255a, as data (case-types.ts).
import type { MeshCase, MeshTest, RedirectExpectation } from './case-types.js';
import { headerModifierCases } from './cases-core.js';

const to = (path: string, backend: string, headers?: Record<string, string>): MeshCase => ({
  name: `${path}${headers ? ` with ${JSON.stringify(headers)}` : ''} -> ${backend}`,
  request: { path, headers },
  backend,
});
const notFound = (path: string): MeshCase => ({ name: `${path} -> 404`, request: { path }, status: [404] });
const redirect = (path: string, status: number, where: RedirectExpectation): MeshCase => ({
  name: `${path} -> ${status} ${JSON.stringify(where)}`,
  request: { path },
  status: [status],
  redirect: where,
});
const rewrite = (
  path: string,
  seenPath: string,
  headers?: { sent: Record<string, string>; seen: Record<string, string>; absent: string[] },
): MeshCase => ({
  name: `${path} reaches the backend as ${seenPath}`,
  request: { path, headers: headers?.sent },
  seen: { path: seenPath, headers: headers?.seen, absent: headers?.absent },
  backend: 'echo-v1',
});
const REWRITE_HEADERS = {
  sent: { 'X-Header-Remove': 'remove-val', 'X-Header-Add-Append': 'append-val-1', 'X-Header-Set': 'set-val' },
  seen: {
    'X-Header-Add': 'header-val-1',
    'X-Header-Add-Append': 'append-val-1,header-val-2',
    'X-Header-Set': 'set-overwrites-values',
  },
  absent: ['X-Header-Remove'],
};

export const EXTENDED_TESTS: MeshTest[] = [
  {
    // httproute-query-param-matching.go
    shortName: 'MeshHTTPRouteQueryParamMatching',
    description: 'query parameter matches, alone, ANDed and ORed with other matches',
    features: ['Mesh', 'HTTPRoute', 'MeshHTTPRouteQueryParamMatching'],
    manifests: ['httproute-query-param-matching.yaml'],
    cases: [
      to('/?animal=whale', 'echo-v1'),
      to('/?animal=dolphin', 'echo-v2'),
      to('/?animal=whale&otherparam=irrelevant', 'echo-v1'),
      to('/?animal=dolphin&color=yellow', 'echo-v2'),
      notFound('/?color=blue'),
      notFound('/?animal=dog'),
      notFound('/?animal=whaledolphin'),
      notFound('/'),
      to('/path1?animal=whale', 'echo-v1'),
      to('/?animal=whale', 'echo-v2', { version: 'one' }),
      to('/path3?animal=shark', 'echo-v1'),
      to('/path4?animal=kraken', 'echo-v1', { version: 'three' }),
      notFound('/?animal=shark'),
      notFound('/path4?animal=kraken'),
      to('/path5?animal=hydra', 'echo-v1'),
    ],
  },
  {
    // httproute-redirect-path.go
    shortName: 'MeshHTTPRouteRedirectPath',
    description: 'RequestRedirect with ReplacePrefixMatch and ReplaceFullPath',
    features: ['Mesh', 'HTTPRoute', 'MeshHTTPRouteRedirectPath'],
    manifests: ['httproute-redirect-path.yaml'],
    cases: [
      redirect('/original-prefix/lemon', 302, { path: '/replacement-prefix/lemon' }),
      redirect('/full/path/original', 302, { path: '/full-path-replacement' }),
      redirect('/path-and-host', 302, { host: 'example.org', path: '/replacement-prefix' }),
      redirect('/path-and-status', 301, { path: '/replacement-prefix' }),
      redirect('/full-path-and-host', 302, { host: 'example.org', path: '/replacement-full' }),
      redirect('/full-path-and-status', 301, { path: '/replacement-full' }),
    ],
  },
  {
    // httproute-redirect-port.go
    shortName: 'MeshHTTPRouteRedirectPort',
    description: 'RequestRedirect with a port',
    features: ['Mesh', 'HTTPRoute', 'MeshHTTPRouteRedirectPort'],
    manifests: ['httproute-redirect-port.yaml'],
    cases: [
      redirect('/port', 302, { port: '8083' }),
      redirect('/port-and-host', 302, { host: 'example.org', port: '8083' }),
      redirect('/port-and-status', 301, { port: '8083' }),
      redirect('/port-and-host-and-status', 302, { port: '8083', host: 'example.org' }),
    ],
  },
  {
    // httproute-redirect-scheme.go
    shortName: 'MeshHTTPRouteSchemeRedirect',
    description: 'RequestRedirect with a scheme',
    features: ['Mesh', 'HTTPRoute', 'MeshHTTPRouteSchemeRedirect'],
    manifests: ['httproute-redirect-scheme.yaml'],
    cases: [
      redirect('/scheme', 302, { scheme: 'https' }),
      redirect('/scheme-and-host', 302, { host: 'example.org', scheme: 'https' }),
      redirect('/scheme-and-status', 301, { scheme: 'https' }),
      redirect('/scheme-and-host-and-status', 302, { scheme: 'https', host: 'example.org' }),
    ],
  },
  {
    // httproute-rewrite-path.go
    shortName: 'MeshHTTPRouteRewritePath',
    description: 'URLRewrite of the path (prefix and full), with header filters beside it',
    features: ['Mesh', 'HTTPRoute', 'MeshHTTPRouteRewritePath'],
    manifests: ['httproute-rewrite-path.yaml'],
    cases: [
      rewrite('/prefix/one/two', '/one/two'),
      rewrite('/strip-prefix/three', '/three'),
      rewrite('/strip-prefix', '/'),
      rewrite('/full/one/two', '/one'),
      rewrite('/full/rewrite-path-and-modify-headers/test', '/test', REWRITE_HEADERS),
      rewrite('/prefix/rewrite-path-and-modify-headers/one', '/prefix/one', REWRITE_HEADERS),
    ],
  },
  {
    // httproute-request-header-modifier.go (MeshHTTPRouteBackendRequestHeaderModifier)
    shortName: 'MeshHTTPRouteBackendRequestHeaderModifier',
    description: 'RequestHeaderModifier filters on the backendRef',
    features: ['Mesh', 'HTTPRoute', 'MeshHTTPRouteBackendRequestHeaderModification'],
    manifests: ['httproute-request-header-modifier-backend.yaml'],
    cases: headerModifierCases(),
  },
  {
    // httproute-named-rule.go
    shortName: 'MeshHTTPRouteNamedRule',
    description: 'a rule with a name routes like any other',
    provisional: true,
    features: ['Mesh', 'HTTPRoute', 'MeshHTTPRouteNamedRouteRule'],
    manifests: ['httproute-named-rule.yaml'],
    cases: [
      {
        name: '/named -> echo-v1',
        request: { path: '/named' },
        seen: { path: '/named' },
        backend: 'echo-v1',
      },
      // The suite writes "/named" as the path this request arrives with; its mesh client never
      // compares paths, and the route has no rewrite, so the backend sees the path as sent.
      {
        name: '/unnamed -> echo-v2',
        request: { path: '/unnamed' },
        seen: { path: '/unnamed' },
        backend: 'echo-v2',
      },
    ],
  },
  {
    // httproute-303-redirect.go
    shortName: 'MeshHTTPRoute303Redirect',
    description: 'RequestRedirect with statusCode 303',
    provisional: true,
    features: ['Mesh', 'HTTPRoute', 'HTTPRoute303RedirectStatusCode'],
    manifests: ['httproute-303-redirect.yaml'],
    cases: [redirect('/redirect', 303, { path: '/redirect' })],
  },
  {
    // httproute-307-redirect.go
    shortName: 'MeshHTTPRoute307Redirect',
    description: 'RequestRedirect with statusCode 307',
    provisional: true,
    features: ['Mesh', 'HTTPRoute', 'HTTPRoute307RedirectStatusCode'],
    manifests: ['httproute-307-redirect.yaml'],
    cases: [redirect('/temporary', 307, { path: '/temporary' })],
  },
  {
    // httproute-308-redirect.go
    shortName: 'MeshHTTPRoute308Redirect',
    description: 'RequestRedirect with statusCode 308',
    provisional: true,
    features: ['Mesh', 'HTTPRoute', 'HTTPRoute308RedirectStatusCode'],
    manifests: ['httproute-308-redirect.yaml'],
    cases: [redirect('/permanent', 308, { path: '/permanent' })],
  },
];
