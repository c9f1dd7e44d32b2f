import { describe, expect, it } from 'vitest';
import type { ForwardAction } from '../../../src/waypoint/routing/index.js';
import {
  grpcRoute,
  httpRoute,
  outcome,
  route,
  table,
  to,
  warningsOf,
  type ReqOptions,
} from './routing-fixtures.js';

const fwd = (a: unknown) => a as ForwardAction;

describe('HTTPRoute path matches', () => {
  const prefixFoo = table([
    httpRoute('r', [to('reviews', { matches: [{ path: { type: 'PathPrefix', value: '/foo' } }] })]),
  ]);
  it.each([
    ['/foo', 'reviews'],
    ['/foo/', 'reviews'],
    ['/foo/bar', 'reviews'],
    ['/foo/bar/baz', 'reviews'],
    ['/foobar', '404'],
    ['/fo', '404'],
    ['/', '404'],
    ['/FOO', '404'],
  ])('PathPrefix /foo matches whole segments: %s → %s', (path, want) => {
    expect(outcome(route(prefixFoo, path))).toBe(want);
  });

  it('ignores a trailing slash in a PathPrefix value ("/foo/" matches "/foo")', () => {
    const t = table([
      httpRoute('r', [to('reviews', { matches: [{ path: { type: 'PathPrefix', value: '/foo/' } }] })]),
    ]);
    expect(outcome(route(t, '/foo'))).toBe('reviews');
    expect(outcome(route(t, '/foox'))).toBe('404');
  });

  it.each([
    ['/foo', 'reviews'],
    ['/foo/', '404'],
    ['/foo/bar', '404'],
  ])('Exact /foo: %s → %s', (path, want) => {
    const t = table([
      httpRoute('r', [to('reviews', { matches: [{ path: { type: 'Exact', value: '/foo' } }] })]),
    ]);
    expect(outcome(route(t, path))).toBe(want);
  });

  it.each([
    ['/items/12', 'reviews'],
    ['/items/12/x', '404'],
    ['/items/abc', '404'],
    ['/v1/items/12', '404'],
  ])('RegularExpression matches the whole path: %s → %s', (path, want) => {
    const t = table([
      httpRoute('r', [
        to('reviews', { matches: [{ path: { type: 'RegularExpression', value: '/items/[0-9]+' } }] }),
      ]),
    ]);
    expect(outcome(route(t, path))).toBe(want);
  });

  it('treats a rule without matches as PathPrefix "/"', () => {
    const t = table([httpRoute('r', [to('reviews')])]);
    expect(outcome(route(t, '/anything/at/all'))).toBe('reviews');
  });
});

describe('HTTPRoute header, query and method matches', () => {
  const t = table([
    httpRoute('r', [
      to('reviews', { matches: [{ headers: [{ name: 'X-Canary', value: 'yes' }] }] }),
      to('ratings', {
        matches: [{ headers: [{ type: 'RegularExpression', name: 'user-agent', value: '.*Mobile.*' }] }],
      }),
      to('api', { matches: [{ queryParams: [{ name: 'v', value: '2' }] }] }),
      to('other', { matches: [{ method: 'POST' }] }),
    ]),
  ]);
  it.each<[string, ReqOptions, string]>([
    ['exact header (name case-insensitive)', { headers: { 'x-canary': 'yes' } }, 'reviews'],
    ['exact header, other value', { headers: { 'x-canary': 'no' } }, '404'],
    ['regex header', { headers: { 'user-agent': 'Foo Mobile Safari' } }, 'ratings'],
    ['regex header must match the whole value', { headers: { 'user-agent': 'Mobile' } }, 'ratings'],
    ['regex header, no match', { headers: { 'user-agent': 'curl/8' } }, '404'],
    ['query param', { query: 'v=2' }, 'api'],
    ['query param, first value counts', { query: 'v=2&v=3' }, 'api'],
    ['query param, other value', { query: 'v=3' }, '404'],
    ['method', { method: 'POST' }, 'other'],
    ['method, other', { method: 'PUT' }, '404'],
    ['no condition met', {}, '404'],
  ])('%s', (_name, o, want) => {
    expect(outcome(route(t, '/', o))).toBe(want);
  });

  it('joins a repeated header with "," before matching', () => {
    const t2 = table([
      httpRoute('r', [to('reviews', { matches: [{ headers: [{ name: 'x-a', value: '1,2' }] }] })]),
    ]);
    expect(outcome(route(t2, '/', { headers: { 'x-a': ['1', '2'] } }))).toBe('reviews');
  });

  it('needs every condition of one match, and any one of the matches', () => {
    const t2 = table([
      httpRoute('r', [
        to('reviews', {
          matches: [
            { path: { value: '/a' }, method: 'GET', headers: [{ name: 'x', value: '1' }] },
            { path: { value: '/b' } },
          ],
        }),
      ]),
    ]);
    expect(outcome(route(t2, '/a', { headers: { x: '1' } }))).toBe('reviews');
    expect(outcome(route(t2, '/a', { headers: { x: '1' }, method: 'POST' }))).toBe('404');
    expect(outcome(route(t2, '/a'))).toBe('404');
    expect(outcome(route(t2, '/b', { method: 'DELETE' }))).toBe('reviews');
  });
});

describe('Gateway API precedence across every route of a service', () => {
  const cases: [string, unknown[], string, ReqOptions, string][] = [
    [
      'Exact beats PathPrefix, whatever the order',
      [
        httpRoute('a', [to('ratings', { matches: [{ path: { value: '/foo' } }] })]),
        httpRoute('b', [to('reviews', { matches: [{ path: { type: 'Exact', value: '/foo' } }] })]),
      ],
      '/foo',
      {},
      'reviews',
    ],
    [
      'the longer prefix wins',
      [
        httpRoute('a', [to('ratings', { matches: [{ path: { value: '/api' } }] })]),
        httpRoute('b', [to('reviews', { matches: [{ path: { value: '/api/v1' } }] })]),
      ],
      '/api/v1/x',
      {},
      'reviews',
    ],
    [
      'PathPrefix beats RegularExpression',
      [
        httpRoute('a', [
          to('ratings', { matches: [{ path: { type: 'RegularExpression', value: '/api/.*' } }] }),
        ]),
        httpRoute('b', [to('reviews', { matches: [{ path: { value: '/api' } }] })]),
      ],
      '/api/x',
      {},
      'reviews',
    ],
    [
      'a method match beats none on the same path',
      [
        httpRoute('a', [
          to('ratings', { matches: [{ path: { value: '/' }, headers: [{ name: 'x', value: '1' }] }] }),
        ]),
        httpRoute('b', [to('reviews', { matches: [{ path: { value: '/' }, method: 'GET' }] })]),
      ],
      '/',
      { headers: { x: '1' } },
      'reviews',
    ],
    [
      'more header matches win',
      [
        httpRoute('a', [to('ratings', { matches: [{ headers: [{ name: 'x', value: '1' }] }] })]),
        httpRoute('b', [
          to('reviews', {
            matches: [
              {
                headers: [
                  { name: 'x', value: '1' },
                  { name: 'y', value: '2' },
                ],
              },
            ],
          }),
        ]),
      ],
      '/',
      { headers: { x: '1', y: '2' } },
      'reviews',
    ],
    [
      'more query matches win',
      [
        httpRoute('a', [to('ratings', { matches: [{ queryParams: [{ name: 'a', value: '1' }] }] })]),
        httpRoute('b', [
          to('reviews', {
            matches: [
              {
                queryParams: [
                  { name: 'a', value: '1' },
                  { name: 'b', value: '2' },
                ],
              },
            ],
          }),
        ]),
      ],
      '/',
      { query: 'a=1&b=2' },
      'reviews',
    ],
    [
      'on a tie the older route wins (namespace/name order)',
      [httpRoute('zeta', [to('ratings')]), httpRoute('alpha', [to('reviews')])],
      '/',
      {},
      'reviews',
    ],
    [
      'on a tie within a route, the first rule wins',
      [httpRoute('r', [to('reviews'), to('ratings')])],
      '/x',
      {},
      'reviews',
    ],
    [
      'a more specific later rule beats an earlier catch-all',
      [httpRoute('r', [to('ratings'), to('reviews', { matches: [{ path: { value: '/x' } }] })])],
      '/x/y',
      {},
      'reviews',
    ],
  ];
  it.each(cases)('%s', (_name, objects, path, o, want) => {
    expect(outcome(route(table(objects as never), path, o))).toBe(want);
  });
});

describe('HTTPRoute backends', () => {
  it('lists weighted backends with their ports and drops weight 0', () => {
    const t = table([
      httpRoute('r', [
        {
          backendRefs: [
            { name: 'reviews', port: 80, weight: 90 },
            { name: 'ratings', port: 80, weight: 10 },
            { name: 'api', port: 80, weight: 0 },
          ],
        },
      ]),
    ]);
    const a = fwd(route(t, '/'));
    expect(a.kind).toBe('forward');
    expect(a.backends).toEqual([
      {
        service: { namespace: 'shop', hostname: 'reviews.shop.svc.cluster.local' },
        port: 80,
        weight: 90,
        unknownServiceStatus: 500,
      },
      {
        service: { namespace: 'shop', hostname: 'ratings.shop.svc.cluster.local' },
        port: 80,
        weight: 10,
        unknownServiceStatus: 500,
      },
    ]);
    expect(a.routeName).toBe('HTTPRoute/shop/r:rules[0]');
  });

  it.each([
    ['no backendRefs', { matches: [{ path: { value: '/' } }] }, 'the rule has no backendRefs'],
    [
      'every weight 0',
      { backendRefs: [{ name: 'reviews', port: 80, weight: 0 }] },
      'every backendRef of the rule has weight 0',
    ],
  ])('answers 500 when the rule has %s', (_n, rule, reason) => {
    expect(route(table([httpRoute('r', [rule])]), '/')).toMatchObject({
      kind: 'direct',
      status: 500,
      reason,
    });
  });

  it('keeps a backendRef to an unknown Service and warns', () => {
    const t = table([httpRoute('r', [to('nope')])]);
    expect(fwd(route(t, '/')).backends[0]!.service.hostname).toBe('nope.shop.svc.cluster.local');
    expect(warningsOf(t, 'HTTPRoute/shop/r')).toEqual([
      expect.stringMatching(
        /^UNKNOWN_BACKEND spec\.rules\[0\]\.backendRefs\[0\]: Service shop\/nope does not exist/,
      ),
    ]);
  });

  it('marks an unsupported backend kind invalid (its share gets 500)', () => {
    const t = table([
      httpRoute('r', [
        {
          backendRefs: [
            { name: 'reviews', port: 80 },
            { group: 'networking.istio.io', kind: 'Hostname', name: 'x.com', port: 80 },
          ],
        },
      ]),
    ]);
    const a = fwd(route(t, '/'));
    expect(a.backends[1]!.invalid).toMatchObject({ status: 500 });
    expect(warningsOf(t, 'HTTPRoute/shop/r')[0]).toMatch(/^UNSUPPORTED_FIELD .*Hostname is not supported/);
  });

  it('applies per-backend header filters to that backend only', () => {
    const t = table([
      httpRoute('r', [
        {
          backendRefs: [
            {
              name: 'reviews',
              port: 80,
              filters: [
                {
                  type: 'RequestHeaderModifier',
                  requestHeaderModifier: { set: [{ name: 'X-B', value: '1' }] },
                },
              ],
            },
            { name: 'ratings', port: 80 },
          ],
        },
      ]),
    ]);
    const a = fwd(route(t, '/'));
    expect(a.backends[0]!.requestHeaders?.set).toEqual([{ name: 'x-b', value: '1' }]);
    expect(a.backends[1]!.requestHeaders).toBeUndefined();
  });
});

describe('HTTPRoute filters', () => {
  it('converts request and response header modifiers (names lower-cased)', () => {
    const t = table([
      httpRoute('r', [
        to('reviews', {
          filters: [
            {
              type: 'RequestHeaderModifier',
              requestHeaderModifier: {
                set: [{ name: 'X-Set', value: 'a' }],
                add: [{ name: 'X-Add', value: 'b' }],
                remove: ['X-Gone'],
              },
            },
            {
              type: 'ResponseHeaderModifier',
              responseHeaderModifier: { add: [{ name: 'X-Served-By', value: 'ambit' }] },
            },
          ],
        }),
      ]),
    ]);
    const a = fwd(route(t, '/'));
    expect(a.requestHeaders).toEqual({
      set: [{ name: 'x-set', value: 'a' }],
      add: [{ name: 'x-add', value: 'b' }],
      remove: ['x-gone'],
    });
    expect(a.responseHeaders).toEqual({
      set: [],
      add: [{ name: 'x-served-by', value: 'ambit' }],
      remove: [],
    });
  });

  it('rewrites hostname and the full path', () => {
    const t = table([
      httpRoute('r', [
        to('reviews', {
          filters: [
            {
              type: 'URLRewrite',
              urlRewrite: {
                hostname: 'new.example',
                path: { type: 'ReplaceFullPath', replaceFullPath: '/fixed' },
              },
            },
          ],
        }),
      ]),
    ]);
    expect(fwd(route(t, '/x')).rewrite).toEqual({ authority: 'new.example', path: '/fixed' });
  });

  it('rewrites the matched prefix per match', () => {
    const t = table([
      httpRoute('r', [
        to('reviews', {
          matches: [{ path: { value: '/v1/' } }, { path: { value: '/legacy' } }],
          filters: [
            {
              type: 'URLRewrite',
              urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/api/' } },
            },
          ],
        }),
      ]),
    ]);
    expect(fwd(route(t, '/v1/x')).rewrite).toEqual({ pathPrefix: { from: '/v1', to: '/api' } });
    expect(fwd(route(t, '/legacy')).rewrite).toEqual({ pathPrefix: { from: '/legacy', to: '/api' } });
  });

  it.each<[string, Record<string, unknown>, ReqOptions & { path?: string }, string]>([
    [
      'scheme https drops the port',
      { scheme: 'https' },
      { authority: 'web.shop:80' },
      'https://web.shop/p?q=1',
    ],
    [
      'hostname and status',
      { hostname: 'www.example.com', statusCode: 301 },
      {},
      'http://www.example.com/p?q=1',
    ],
    ['explicit port', { scheme: 'https', port: 8443 }, {}, 'https://web.shop:8443/p?q=1'],
    [
      'no scheme: the service (listener) port',
      {},
      { port: 8080, authority: 'web.shop:8080' },
      'http://web.shop:8080/p?q=1',
    ],
    [
      'full path',
      { path: { type: 'ReplaceFullPath', replaceFullPath: '/new' } },
      {},
      'http://web.shop/new?q=1',
    ],
  ])('redirects: %s', (_n, redirect, o, location) => {
    const t = table([
      httpRoute('r', [{ filters: [{ type: 'RequestRedirect', requestRedirect: redirect }] }]),
    ]);
    const a = route(t, '/p', { query: 'q=1', ...o });
    expect(a).toMatchObject({ kind: 'redirect', status: redirect.statusCode ?? 302, location });
  });

  it('redirects with the matched prefix replaced', () => {
    const t = table([
      httpRoute('r', [
        {
          matches: [{ path: { value: '/old' } }],
          filters: [
            {
              type: 'RequestRedirect',
              requestRedirect: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' } },
            },
          ],
        },
      ]),
    ]);
    expect(route(t, '/old/page')).toMatchObject({ location: 'http://web.shop/new/page' });
  });

  it('mirrors with percent, fraction, or 100 by default', () => {
    const t = table([
      httpRoute('r', [
        to('reviews', {
          filters: [
            { type: 'RequestMirror', requestMirror: { backendRef: { name: 'ratings', port: 80 } } },
            { type: 'RequestMirror', requestMirror: { backendRef: { name: 'api', port: 80 }, percent: 25 } },
            {
              type: 'RequestMirror',
              requestMirror: {
                backendRef: { name: 'api', port: 80 },
                fraction: { numerator: 1, denominator: 8 },
              },
            },
          ],
        }),
      ]),
    ]);
    const m = fwd(route(t, '/')).mirror!;
    expect(m.map((x) => [x.backend.service.hostname.split('.')[0], x.percent])).toEqual([
      ['ratings', 100],
      ['api', 25],
      ['api', 12.5],
    ]);
  });

  it('answers 500 for an ExtensionRef filter it cannot apply, and ignores CORS with a warning', () => {
    const t = table([
      httpRoute('r', [
        to('reviews', {
          matches: [{ path: { value: '/ext' } }],
          filters: [{ type: 'ExtensionRef', extensionRef: { group: 'x', kind: 'y', name: 'z' } }],
        }),
        to('reviews', { filters: [{ type: 'CORS', cors: {} }] }),
      ]),
    ]);
    expect(route(t, '/ext')).toMatchObject({ kind: 'direct', status: 500 });
    expect(route(t, '/other').kind).toBe('forward');
    expect(warningsOf(t, 'HTTPRoute/shop/r').map((w) => w.split(' ')[0])).toEqual([
      'UNSUPPORTED_FIELD',
      'UNSUPPORTED_FIELD',
    ]);
  });

  it('reports rule fields it does not apply', () => {
    const t = table([httpRoute('r', [to('reviews', { sessionPersistence: { type: 'Cookie' } })])]);
    expect(warningsOf(t, 'HTTPRoute/shop/r')).toEqual([
      expect.stringMatching(/^UNSUPPORTED_FIELD spec\.rules\[0\]\.sessionPersistence: /),
    ]);
  });

  it('converts timeouts and the experimental retry', () => {
    const t = table([
      httpRoute('r', [
        to('reviews', {
          timeouts: { request: '10s', backendRequest: '1500ms' },
          retry: { attempts: 3, codes: [502, 503], backoff: '100ms' },
        }),
      ]),
    ]);
    const a = fwd(route(t, '/'));
    expect(a.timeoutMs).toBe(10_000);
    expect(a.perTryTimeoutMs).toBe(1500);
    expect(a.retry).toMatchObject({
      attempts: 3,
      retriableStatusCodes: [502, 503],
      backoff: { baseMs: 100, maxMs: 1000 },
      perTryTimeoutMs: 1500,
    });
    expect([...a.retry!.retryOn].sort()).toEqual([
      'connect-failure',
      'refused-stream',
      'retriable-status-codes',
    ]);
  });

  it('leaves retry and timeouts unset when the rule sets none', () => {
    const a = fwd(route(table([httpRoute('r', [to('reviews')])]), '/'));
    expect(a.retry).toBeUndefined();
    expect(a.timeoutMs).toBeUndefined();
  });

  it('shares frozen actions between requests', () => {
    const t = table([httpRoute('r', [to('reviews')])]);
    const a = route(t, '/');
    expect(route(t, '/b')).toBe(a);
    expect(Object.isFrozen(a)).toBe(true);
  });
});

describe('parentRefs and defaults', () => {
  it('forwards to the service itself when no route targets it (all healthy endpoints)', () => {
    const a = fwd(route(table([]), '/x', { to: 'reviews.shop', port: 80 }));
    expect(a).toMatchObject({
      kind: 'forward',
      routeName: 'default',
      backends: [{ service: { hostname: 'reviews.shop.svc.cluster.local' }, port: 80, weight: 1 }],
    });
  });

  it('forwards a request addressed to a pod as addressed', () => {
    expect(route(table([httpRoute('r', [to('reviews')])]), '/', { to: null })).toMatchObject({
      kind: 'forward',
      original: true,
      backends: [],
    });
  });

  it('applies a route with a port only to that service port', () => {
    const t = table([
      httpRoute('r', [to('reviews')], {
        parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 8080 }],
      }),
    ]);
    expect(outcome(route(t, '/', { port: 8080 }))).toBe('reviews');
    expect(fwd(route(t, '/', { port: 80 })).routeName).toBe('default');
  });

  it('resolves sectionName to the named service port', () => {
    const t = table([
      httpRoute('r', [to('reviews')], {
        parentRefs: [{ group: '', kind: 'Service', name: 'web', sectionName: 'http-alt' }],
      }),
    ]);
    expect(outcome(route(t, '/', { port: 8080 }))).toBe('reviews');
    expect(outcome(route(t, '/', { port: 80 }))).toBe('web');
  });

  it.each([
    [
      'an unknown Service',
      [{ group: '', kind: 'Service', name: 'ghost' }],
      /^UNKNOWN_SERVICE spec\.parentRefs\[0\]: Service shop\/ghost does not exist/,
    ],
    [
      'a port the Service lacks',
      [{ group: '', kind: 'Service', name: 'web', port: 81 }],
      /^INVALID_VALUE spec\.parentRefs\[0\]\.port: .*no port 81/,
    ],
  ])('warns about a parentRef to %s and does not attach', (_n, parentRefs, warning) => {
    const t = table([httpRoute('r', [to('reviews')], { parentRefs })]);
    expect(warningsOf(t, 'HTTPRoute/shop/r')).toEqual([expect.stringMatching(warning)]);
    expect(t.routes.size).toBe(0);
  });

  it('accepts kind Service without a group, with a warning', () => {
    const t = table([httpRoute('r', [to('reviews')], { parentRefs: [{ kind: 'Service', name: 'web' }] })]);
    expect(outcome(route(t, '/'))).toBe('reviews');
    expect(warningsOf(t, 'HTTPRoute/shop/r')[0]).toMatch(/^INVALID_VALUE .*group ""/);
  });

  it('leaves routes for Gateways (ingress) alone, silently', () => {
    const t = table([httpRoute('r', [to('reviews')], { parentRefs: [{ name: 'ingress' }] })]);
    expect(t.routes.size).toBe(0);
    expect(t.warnings.size).toBe(0);
  });

  it('ignores hostnames on a route attached to a Service, with a warning', () => {
    const t = table([httpRoute('r', [to('reviews')], { extra: { hostnames: ['web.example.com'] } })]);
    expect(outcome(route(t, '/', { authority: 'elsewhere' }))).toBe('reviews');
    expect(warningsOf(t, 'HTTPRoute/shop/r')[0]).toMatch(/^IGNORED spec\.hostnames/);
  });

  it('answers 404 when routes exist for the service but none matches', () => {
    const t = table([
      httpRoute('r', [to('reviews', { matches: [{ path: { type: 'Exact', value: '/only' } }] })]),
    ]);
    expect(route(t, '/else')).toMatchObject({ kind: 'direct', status: 404, routeName: 'no-route' });
  });

  it('reports an unusable regex and never matches with it', () => {
    const t = table([
      httpRoute('r', [
        to('reviews', { matches: [{ path: { type: 'RegularExpression', value: '/(?=x)' } }] }),
        to('ratings', { matches: [{ path: { value: '/' } }] }),
      ]),
    ]);
    expect(outcome(route(t, '/x'))).toBe('ratings');
    expect(warningsOf(t, 'HTTPRoute/shop/r')[0]).toMatch(
      /^INVALID_REGEX spec\.rules\[0\]\.matches\[0\]\.path: .*lookaround/,
    );
  });
});

describe('GRPCRoute', () => {
  const t = table([
    grpcRoute('g', [
      to('reviews', { matches: [{ method: { service: 'shop.Catalog', method: 'Get' } }] }),
      to('ratings', { matches: [{ method: { service: 'shop.Catalog' } }] }),
      to('api', { matches: [{ method: { method: 'Health' } }] }),
      to('other', {
        matches: [{ method: { type: 'RegularExpression', service: 'admin\\..*', method: 'Set.*' } }],
      }),
      to('web', { matches: [{ headers: [{ name: 'x-tenant', value: 'a' }] }] }),
    ]),
  ]);
  it.each<[string, ReqOptions, string]>([
    ['/shop.Catalog/Get', {}, 'reviews'],
    ['/shop.Catalog/List', {}, 'ratings'],
    ['/other.Svc/Health', {}, 'api'],
    ['/admin.Users/SetName', {}, 'other'],
    ['/admin.Users/GetName', {}, '404'],
    ['/x.Y/Z', { headers: { 'x-tenant': 'a' } }, 'web'],
    ['/x.Y/Z', {}, '404'],
  ])('%s → %s', (path, o, want) => {
    expect(outcome(route(t, path, { to: 'grpc.shop', port: 9090, grpc: true, ...o }))).toBe(want);
  });

  it('ranks a service+method match above a service-only match regardless of rule order', () => {
    const t2 = table([
      grpcRoute('g', [
        to('ratings', { matches: [{ method: { service: 'a.B' } }] }),
        to('reviews', { matches: [{ method: { service: 'a.B', method: 'C' } }] }),
      ]),
    ]);
    expect(outcome(route(t2, '/a.B/C', { to: 'grpc.shop', port: 9090 }))).toBe('reviews');
  });
});

// Issue 13 divergence 8: a backendRef to a Service that does not exist is invalid; the requests
// that would go to it get 500, the rest is served (gateway-api apis/v1/httproute_types.go,
// HTTPRouteRule.BackendRefs); GRPCRoute says UNAVAILABLE (grpcroute_types.go), i.e. 503.
describe('backendRef to a Service that does not exist', () => {
  it.each<[string, (rules: unknown[]) => never, number]>([
    ['HTTPRoute: 500', (rules) => httpRoute('r', rules) as never, 500],
    ['GRPCRoute: 503 (UNAVAILABLE)', (rules) => grpcRoute('g', rules) as never, 503],
  ])('%s for its share only, known Services keep forwarding', (_n, make, status) => {
    const t = table([
      make([
        {
          backendRefs: [
            { name: 'reviews', port: 80, weight: 1 },
            { name: 'nosuch', port: 80, weight: 1 },
          ],
        },
      ]),
    ]);
    const a = fwd(
      route(t, '/', { to: status === 500 ? 'web.shop' : 'grpc.shop', port: status === 500 ? 80 : 9090 }),
    );
    expect(a.kind).toBe('forward');
    expect(
      a.backends.map((b) => [b.service.hostname.split('.')[0], b.unknownServiceStatus, b.invalid]),
    ).toEqual([
      ['reviews', status, undefined],
      ['nosuch', status, undefined],
    ]);
    const key = status === 500 ? 'HTTPRoute/shop/r' : 'GRPCRoute/shop/g';
    expect(warningsOf(t, key).join('\n')).toMatch(
      /UNKNOWN_BACKEND .*nosuch does not exist; requests sent to it get 500/,
    );
  });

  it('leaves an Istio destination to an unknown host at 503 (no status override)', () => {
    const t = table([
      {
        apiVersion: 'networking.istio.io/v1',
        kind: 'VirtualService',
        metadata: { name: 'vs', namespace: 'shop' },
        spec: { hosts: ['web'], http: [{ route: [{ destination: { host: 'nosuch' } }] }] },
      } as never,
    ]);
    expect(fwd(route(t, '/')).backends[0]!.unknownServiceStatus).toBeUndefined();
  });
});

// Issue 13 divergence 9: backendRef-level filters belong to that backend only (gateway-api
// HTTPBackendRef.Filters: "Filters defined at this level should be executed if and only if the
// request is being forwarded to the backend defined here").
describe('backendRef filters', () => {
  it('keeps header edits on the backend they are written on, not the route', () => {
    const t = table([
      httpRoute('r', [
        {
          backendRefs: [
            {
              name: 'reviews',
              port: 80,
              filters: [
                {
                  type: 'RequestHeaderModifier',
                  requestHeaderModifier: { set: [{ name: 'X-Backend', value: 'reviews' }] },
                },
                {
                  type: 'ResponseHeaderModifier',
                  responseHeaderModifier: { add: [{ name: 'x-from', value: 'r' }] },
                },
              ],
            },
            { name: 'ratings', port: 80 },
          ],
        },
      ]),
    ]);
    const a = fwd(route(t, '/'));
    expect(a.requestHeaders.set).toEqual([]);
    expect(a.backends[0]!.requestHeaders?.set).toEqual([{ name: 'x-backend', value: 'reviews' }]);
    expect(a.backends[0]!.responseHeaders?.add).toEqual([{ name: 'x-from', value: 'r' }]);
    expect(a.backends[1]!.requestHeaders).toBeUndefined();
  });
});
