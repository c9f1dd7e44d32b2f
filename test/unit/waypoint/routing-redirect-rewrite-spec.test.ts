// HTTPRoute path modifiers and redirects against the Gateway API's own examples and rules
// (gateway-api apis/v1/httproute_types.go): the ReplacePrefixMatch table of HTTPPathModifier, for
// URLRewrite and RequestRedirect alike; HTTPRequestRedirectFilter.Port's derivation (scheme set:
// its well-known port; scheme empty: the listener port, here the Service port; no port written
// for http:80 and https:443); and the query kept byte for byte in Location, as Envoy's
// RedirectAction does unless strip_query is set (it defaults to false).
import { describe, expect, it } from 'vitest';
import { matchRoute, rewritePath } from '../../../src/waypoint/routing/index.js';
import type { ForwardAction } from '../../../src/waypoint/routing/index.js';
import { httpRoute, request, route, table, to } from './routing-fixtures.js';

// Request path | prefix match | ReplacePrefixMatch | modified path (the spec's table, in order).
const TABLE: [string, string, string, string][] = [
  ['/foo/bar', '/foo', '/xyz', '/xyz/bar'],
  ['/foo/bar', '/foo', '/xyz/', '/xyz/bar'],
  ['/foo/bar', '/foo/', '/xyz', '/xyz/bar'],
  ['/foo/bar', '/foo/', '/xyz/', '/xyz/bar'],
  ['/foo', '/foo', '/xyz', '/xyz'],
  ['/foo/', '/foo', '/xyz', '/xyz/'],
  ['/foo/bar', '/foo', '', '/bar'],
  ['/foo/', '/foo', '', '/'],
  ['/foo', '/foo', '', '/'],
  ['/foo/', '/foo', '/', '/'],
  ['/foo', '/foo', '/', '/'],
];

describe('ReplacePrefixMatch: the spec table', () => {
  it.each(TABLE)('URLRewrite %s with prefix %s and %j -> %s', (path, prefix, replace, want) => {
    const t = table([
      httpRoute('r', [
        to('reviews', {
          matches: [{ path: { type: 'PathPrefix', value: prefix } }],
          filters: [
            {
              type: 'URLRewrite',
              urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: replace } },
            },
          ],
        }),
      ]),
    ]);
    const a = route(t, path) as ForwardAction;
    expect(a.kind).toBe('forward');
    expect(rewritePath(path, a.rewrite)).toBe(want);
  });

  it.each(TABLE)('RequestRedirect %s with prefix %s and %j -> %s', (path, prefix, replace, want) => {
    const t = table([
      httpRoute('r', [
        {
          matches: [{ path: { type: 'PathPrefix', value: prefix } }],
          filters: [
            {
              type: 'RequestRedirect',
              requestRedirect: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: replace } },
            },
          ],
        },
      ]),
    ]);
    expect(route(t, path)).toMatchObject({ kind: 'redirect', location: `http://web.shop${want}` });
  });
});

describe('RequestRedirect port and query', () => {
  const redirect = (requestRedirect: Record<string, unknown>) =>
    table([httpRoute('r', [{ filters: [{ type: 'RequestRedirect', requestRedirect }] }])]);

  it.each<[string, Record<string, unknown>, number, string]>([
    ['no scheme, Service port 80: no port written', {}, 80, 'http://web.shop/p'],
    ['no scheme, Service port 8080: the listener port', {}, 8080, 'http://web.shop:8080/p'],
    ['scheme https from port 8080: 443, not written', { scheme: 'https' }, 8080, 'https://web.shop/p'],
    ['scheme http from port 8080: 80, not written', { scheme: 'http' }, 8080, 'http://web.shop/p'],
    [
      'hostname only, from port 8080: the listener port',
      { hostname: 'example.org' },
      8080,
      'http://example.org:8080/p',
    ],
    ['port 443 with scheme https: not written', { scheme: 'https', port: 443 }, 80, 'https://web.shop/p'],
    ['port 80 without scheme: not written', { port: 80 }, 8080, 'http://web.shop/p'],
    ['port 8083: written', { port: 8083 }, 80, 'http://web.shop:8083/p'],
  ])('%s', (_n, requestRedirect, port, location) => {
    const t = redirect(requestRedirect);
    expect(route(t, '/p', { port, authority: `web.shop:${port}` })).toMatchObject({ location });
  });

  it('keeps the query exactly as received (no re-encoding)', () => {
    const t = redirect({ hostname: 'example.org' });
    const req = { ...request('/p', { query: 'a=b%20c&flag&x=1+2' }), rawQuery: 'a=b%20c&flag&x=1+2' };
    expect(matchRoute(t, req)).toMatchObject({ location: 'http://example.org/p?a=b%20c&flag&x=1+2' });
  });
});
