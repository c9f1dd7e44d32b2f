import { describe, expect, it } from 'vitest';
import { destinationPolicy, rewritePath, type ForwardAction } from '../../../src/waypoint/routing/index.js';
import {
  destinationRule,
  httpRoute,
  outcome,
  route,
  table,
  to,
  virtualService,
  warningsOf,
  type ReqOptions,
} from './routing-fixtures.js';

const fwd = (a: unknown) => a as ForwardAction;
const dest = (host: string, extra: Record<string, unknown> = {}) => ({ destination: { host, ...extra } });
const vs = (http: unknown[], hosts = ['web'], extra: Record<string, unknown> = {}) =>
  virtualService('vs', { hosts, http, ...extra });
const SUBSETS = destinationRule('reviews', {
  host: 'reviews',
  subsets: [
    { name: 'v1', labels: { version: 'v1' } },
    { name: 'v2', labels: { version: 'v2' } },
  ],
});

describe('VirtualService hosts', () => {
  it.each([
    ['short name in its own namespace', ['web'], 'shop'],
    ['name.namespace', ['web.shop'], 'ops'],
    ['FQDN', ['web.shop.svc.cluster.local'], 'ops'],
    ['wildcard', ['*.shop.svc.cluster.local'], 'ops'],
  ])('applies for %s', (_n, hosts, ns) => {
    const t = table([
      virtualService('vs', { hosts, http: [{ route: [dest('reviews.shop.svc.cluster.local')] }] }, ns),
    ]);
    expect(outcome(route(t, '/'))).toBe('reviews');
  });

  it('reads a short name in the VirtualService namespace, not the service one', () => {
    const t = table([
      virtualService('vs', { hosts: ['web'], http: [{ route: [dest('reviews.shop')] }] }, 'ops'),
    ]);
    expect(fwd(route(t, '/')).routeName).toBe('default');
    expect(warningsOf(t, 'VirtualService/ops/vs')[0]).toMatch(/^UNKNOWN_SERVICE spec\.hosts\[0\]/);
  });

  it('ignores a VirtualService bound to gateways only, and applies one that lists mesh', () => {
    const gwOnly = table([vs([{ route: [dest('reviews')] }], ['web'], { gateways: ['ingress'] })]);
    expect(outcome(route(gwOnly, '/'))).toBe('web');
    const withMesh = table([vs([{ route: [dest('reviews')] }], ['web'], { gateways: ['ingress', 'mesh'] })]);
    expect(outcome(route(withMesh, '/'))).toBe('reviews');
  });
});

describe('VirtualService matches, in first-match order', () => {
  const t = table([
    vs([
      { match: [{ uri: { exact: '/exact' } }], route: [dest('reviews')] },
      { match: [{ uri: { prefix: '/pre' } }], route: [dest('ratings')] },
      { match: [{ uri: { regex: '/r/[a-z]+' } }], route: [dest('api')] },
      { match: [{ uri: { exact: '/case' }, ignoreUriCase: true }], route: [dest('other.ops')] },
      { match: [{ headers: { 'x-user': { exact: 'jason' } } }], route: [dest('reviews')] },
      {
        match: [{ headers: { 'x-beta': { prefix: 'on' } }, withoutHeaders: { 'x-block': {} } }],
        route: [dest('ratings')],
      },
      { match: [{ headers: { 'x-any': {} } }], route: [dest('api')] },
      { match: [{ queryParams: { debug: { exact: '1' } } }], route: [dest('other.ops')] },
      { match: [{ method: { exact: 'DELETE' } }], route: [dest('reviews')] },
      { match: [{ port: 8080 }], route: [dest('ratings')] },
      { match: [{ authority: { prefix: 'api.' } }], route: [dest('api')] },
      { match: [{ uri: { prefix: '/a' } }, { uri: { prefix: '/b' } }], route: [dest('other.ops')] },
    ]),
  ]);
  it.each<[string, ReqOptions, string]>([
    ['/exact', {}, 'reviews'],
    ['/exact/x', {}, '404'],
    ['/prefix-is-plain-string', {}, 'ratings'],
    ['/r/abc', {}, 'api'],
    ['/r/abc/d', {}, '404'],
    ['/CASE', {}, 'other'],
    ['/x', { headers: { 'x-user': 'jason' } }, 'reviews'],
    ['/x', { headers: { 'x-beta': 'on-2' } }, 'ratings'],
    ['/x', { headers: { 'x-beta': 'on', 'x-block': '' } }, '404'],
    ['/x', { headers: { 'x-any': '' } }, 'api'],
    ['/x', { query: 'debug=1' }, 'other'],
    ['/x', { method: 'DELETE' }, 'reviews'],
    ['/x', { port: 8080 }, 'ratings'],
    ['/x', { authority: 'api.example' }, 'api'],
    ['/b/c', {}, 'other'],
    ['/zzz', {}, '404'],
  ])('%s %j → %s', (path, o, want) => {
    expect(outcome(route(t, path, o))).toBe(want);
  });

  it('takes the first matching route even when a later one is more specific', () => {
    const t2 = table([
      vs([
        { match: [{ uri: { prefix: '/' } }], route: [dest('ratings')] },
        { match: [{ uri: { exact: '/x' } }], route: [dest('reviews')] },
      ]),
    ]);
    expect(outcome(route(t2, '/x'))).toBe('ratings');
  });

  it('keeps written order across exact, prefix, regex and path-less matches (the index never reorders)', () => {
    const t2 = table([
      vs([
        { match: [{ uri: { prefix: '/a' }, headers: { x: { exact: '1' } } }], route: [dest('reviews')] },
        { match: [{ headers: { y: { exact: '1' } } }], route: [dest('ratings')] },
        { match: [{ uri: { regex: '/a/[a-z]+' } }], route: [dest('api')] },
        { match: [{ uri: { exact: '/a/b' } }], route: [dest('other.ops')] },
        { match: [{ uri: { prefix: '/' } }], route: [dest('web')] },
      ]),
    ]);
    const cases: [string, ReqOptions, string][] = [
      ['/a/b', { headers: { x: '1', y: '1' } }, 'reviews'],
      ['/a/b', { headers: { y: '1' } }, 'ratings'],
      ['/a/b', {}, 'api'],
      ['/a/1', {}, 'web'],
      ['/zz', { headers: { y: '1' } }, 'ratings'],
    ];
    for (const [path, o, want] of cases) expect(outcome(route(t2, path, o)), path).toBe(want);
  });

  it('never matches on sourceLabels (a waypoint cannot see them) and says so', () => {
    const t2 = table([
      vs([
        { match: [{ sourceLabels: { app: 'a' } }], route: [dest('reviews')] },
        { route: [dest('ratings')] },
      ]),
    ]);
    expect(outcome(route(t2, '/'))).toBe('ratings');
    expect(warningsOf(t2, 'VirtualService/shop/vs')[0]).toMatch(
      /^UNSUPPORTED_FIELD spec\.http\[0\]\.match\[0\]\.sourceLabels/,
    );
  });

  it('translates a leading (?i) of an RE2 pattern', () => {
    const t2 = table([vs([{ match: [{ uri: { regex: '(?i)/abc' } }], route: [dest('reviews')] }])]);
    expect(outcome(route(t2, '/ABC'))).toBe('reviews');
  });
});

describe('VirtualService destinations and DestinationRule subsets', () => {
  it('resolves subsets to endpoint labels with weights', () => {
    const t = table([
      SUBSETS,
      vs([
        {
          route: [
            { ...dest('reviews', { subset: 'v1' }), weight: 90 },
            { ...dest('reviews', { subset: 'v2' }), weight: 10 },
          ],
        },
      ]),
    ]);
    expect(fwd(route(t, '/')).backends).toEqual([
      {
        service: { namespace: 'shop', hostname: 'reviews.shop.svc.cluster.local' },
        port: 80,
        weight: 90,
        subset: { version: 'v1' },
        subsetName: 'v1',
      },
      {
        service: { namespace: 'shop', hostname: 'reviews.shop.svc.cluster.local' },
        port: 80,
        weight: 10,
        subset: { version: 'v2' },
        subsetName: 'v2',
      },
    ]);
  });

  it('splits evenly when no destination has a weight', () => {
    const a = fwd(route(table([vs([{ route: [dest('reviews'), dest('ratings')] }])]), '/'));
    expect(a.backends.map((b) => b.weight)).toEqual([1, 1]);
  });

  it('marks a subset without a DestinationRule invalid (503) and warns', () => {
    const t = table([vs([{ route: [dest('ratings', { subset: 'v1' })] }])]);
    expect(route(t, '/')).toMatchObject({ kind: 'direct', status: 503 });
    expect(warningsOf(t, 'VirtualService/shop/vs')[0]).toMatch(
      /^NO_DESTINATION_RULE spec\.http\[0\]\.route\[0\]\.destination\.subset: subset v1 of ratings/,
    );
  });

  it('marks a subset the DestinationRule lacks invalid and warns', () => {
    const t = table([
      SUBSETS,
      vs([
        {
          route: [
            { ...dest('reviews', { subset: 'v3' }), weight: 50 },
            { ...dest('reviews', { subset: 'v1' }), weight: 50 },
          ],
        },
      ]),
    ]);
    const a = fwd(route(t, '/'));
    expect(a.backends[0]!.invalid).toEqual({
      status: 503,
      reason: 'subset v3 is not defined by DestinationRule/shop/reviews',
    });
    expect(a.backends[1]!.invalid).toBeUndefined();
    expect(warningsOf(t, 'VirtualService/shop/vs')[0]).toMatch(/^UNKNOWN_SUBSET/);
  });

  it('takes the port of a single-port service, or the request port for a multi-port one', () => {
    const t = table([vs([{ route: [dest('web')] }], ['reviews'])]);
    const a = fwd(route(t, '/', { to: 'reviews.shop', port: 80 }));
    expect(a.backends[0]!.port).toBe(80);
    const t2 = table([vs([{ route: [dest('web')] }])]);
    expect(fwd(route(t2, '/', { port: 8080 })).backends[0]!.port).toBe(8080);
    expect(fwd(route(t2, '/', { port: 80 })).backends[0]!.port).toBe(80);
  });

  it('warns about a destination host no service has', () => {
    const t = table([vs([{ route: [dest('ghost')] }])]);
    expect(fwd(route(t, '/')).backends[0]!.service).toEqual({
      namespace: 'shop',
      hostname: 'ghost.shop.svc.cluster.local',
    });
    expect(warningsOf(t, 'VirtualService/shop/vs')[0]).toMatch(/^UNKNOWN_BACKEND/);
  });

  it('applies per-destination header edits to that backend', () => {
    const t = table([
      vs([{ route: [{ ...dest('reviews'), headers: { request: { set: { 'X-V': '1' } } } }] }]),
    ]);
    expect(fwd(route(t, '/')).backends[0]!.requestHeaders).toEqual({
      set: [{ name: 'x-v', value: '1' }],
      add: [],
      remove: [],
    });
  });
});

describe('VirtualService actions', () => {
  it.each<[string, Record<string, unknown>, string, Record<string, unknown>]>([
    [
      'prefix match: the matched prefix (literally)',
      { match: [{ uri: { prefix: '/v1/' } }], rewrite: { uri: '/' } },
      '/v1/x',
      { pathPrefix: { from: '/v1/', to: '/' } },
    ],
    [
      'exact match: the whole path',
      { match: [{ uri: { exact: '/old' } }], rewrite: { uri: '/new' } },
      '/old',
      { path: '/new' },
    ],
    [
      'no uri match: the "/" prefix, as Envoy does',
      { rewrite: { uri: '/api' } },
      '/x',
      { pathPrefix: { from: '/', to: '/api' } },
    ],
    ['authority', { rewrite: { authority: 'backend.local' } }, '/x', { authority: 'backend.local' }],
  ])('rewrites: %s', (_n, http, path, rewrite) => {
    const t = table([vs([{ ...http, route: [dest('reviews')] }])]);
    expect(fwd(route(t, path)).rewrite).toEqual(rewrite);
  });

  it.each<[string, Record<string, unknown>, ReqOptions, number, string]>([
    ['uri (default 301)', { uri: '/moved' }, {}, 301, 'http://web.shop/moved?a=1'],
    [
      'authority and code',
      { authority: 'new.example', redirectCode: 302 },
      {},
      302,
      'http://new.example/p?a=1',
    ],
    ['scheme https', { scheme: 'https' }, {}, 301, 'https://web.shop/p?a=1'],
    ['port', { port: 9000 }, {}, 301, 'http://web.shop:9000/p?a=1'],
    [
      'keeps a non-default request port',
      {},
      { authority: 'web.shop:8080' },
      301,
      'http://web.shop:8080/p?a=1',
    ],
  ])('redirects: %s', (_n, redirect, o, status, location) => {
    const t = table([vs([{ redirect }])]);
    expect(route(t, '/p', { query: 'a=1', ...o })).toMatchObject({ kind: 'redirect', status, location });
  });

  it('answers a direct response with body and response headers', () => {
    const t = table([
      vs([
        {
          directResponse: { status: 418, body: { string: 'teapot' } },
          headers: { response: { set: { 'content-type': 'text/plain' } } },
        },
      ]),
    ]);
    expect(route(t, '/')).toEqual({
      kind: 'direct',
      status: 418,
      body: 'teapot',
      headers: { 'content-type': 'text/plain' },
      routeName: 'VirtualService/shop/vs:http[0]',
    });
  });

  it('decodes a base64 direct response body', () => {
    const t = table([
      vs([{ directResponse: { status: 200, body: { bytes: Buffer.from('hi').toString('base64') } } }]),
    ]);
    expect(route(t, '/')).toMatchObject({ body: 'hi' });
  });

  it('converts header edits, timeout, retries, fault and mirrors', () => {
    const t = table([
      vs([
        {
          name: 'main',
          route: [dest('reviews')],
          headers: {
            request: { set: { 'X-A': '1' }, add: { 'x-b': '2' }, remove: ['X-C'] },
            response: { remove: ['server'] },
          },
          timeout: '2s',
          retries: {
            attempts: 3,
            perTryTimeout: '500ms',
            retryOn: '5xx,gateway-error,503,unavailable,envoy-ratelimited',
          },
          fault: {
            delay: { fixedDelay: '100ms', percentage: { value: 10 } },
            abort: { httpStatus: 503, percentage: { value: 0.5 } },
          },
          mirror: { host: 'ratings' },
          mirrorPercentage: { value: 20 },
          mirrors: [{ destination: { host: 'api' }, percentage: { value: 5 } }],
        },
      ]),
    ]);
    const a = fwd(route(t, '/'));
    expect(a.routeName).toBe('VirtualService/shop/vs:main');
    expect(a.requestHeaders).toEqual({
      set: [{ name: 'x-a', value: '1' }],
      add: [{ name: 'x-b', value: '2' }],
      remove: ['x-c'],
    });
    expect(a.responseHeaders.remove).toEqual(['server']);
    expect(a.timeoutMs).toBe(2000);
    expect(a.perTryTimeoutMs).toBe(500);
    expect(a.retry).toMatchObject({ attempts: 3, perTryTimeoutMs: 500, retriableStatusCodes: [503] });
    expect([...a.retry!.retryOn].sort()).toEqual([
      '5xx',
      'gateway-error',
      'retriable-status-codes',
      'unavailable',
    ]);
    expect(a.fault).toEqual({ delay: { percent: 10, ms: 100 }, abort: { percent: 0.5, status: 503 } });
    expect(
      a.mirror!.map((m) => [m.backend.service.hostname.split('.')[0], m.percent, m.backend.port]),
    ).toEqual([
      ['ratings', 20, 80],
      ['api', 5, 80],
    ]);
    expect(warningsOf(t, 'VirtualService/shop/vs')).toEqual([
      expect.stringMatching(
        /^UNSUPPORTED_FIELD spec\.http\[0\]\.retries\.retryOn: retryOn value "envoy-ratelimited"/,
      ),
    ]);
  });

  it("keeps Istio's default retryOn when only attempts are set, and attempts 0 turns retries off", () => {
    const t = table([
      vs([
        { match: [{ uri: { prefix: '/a' } }], route: [dest('reviews')], retries: { attempts: 4 } },
        { route: [dest('reviews')], retries: { attempts: 0 } },
      ]),
    ]);
    const a = fwd(route(t, '/a'));
    expect(a.retry).toMatchObject({ attempts: 4, retriableStatusCodes: [503] });
    expect(a.retry!.retryOn.has('connect-failure')).toBe(true);
    expect(fwd(route(t, '/b')).retry?.attempts).toBe(0);
  });

  it('injects no fault when a percentage is missing (Istio) and warns', () => {
    const t = table([vs([{ route: [dest('reviews')], fault: { abort: { httpStatus: 500 } } }])]);
    expect(fwd(route(t, '/')).fault).toEqual({ abort: { percent: 0, status: 500 } });
    expect(warningsOf(t, 'VirtualService/shop/vs')[0]).toMatch(
      /^INVALID_VALUE spec\.http\[0\]\.fault\.abort\.percentage/,
    );
  });

  it('skips delegate routes and reports unsupported fields', () => {
    const t = table([
      vs([{ delegate: { name: 'child' } }, { route: [dest('reviews')], corsPolicy: {} }], ['web'], {
        tcp: [{}],
      }),
    ]);
    expect(outcome(route(t, '/'))).toBe('reviews');
    expect(warningsOf(t, 'VirtualService/shop/vs').map((w) => w.split(':')[0])).toEqual([
      'UNSUPPORTED_FIELD spec.tcp',
      'UNSUPPORTED_FIELD spec.http[0].delegate',
      'UNSUPPORTED_FIELD spec.http[1].corsPolicy',
    ]);
  });
});

describe('VirtualService and HTTPRoute on one service', () => {
  it('applies the HTTPRoute and warns on the VirtualService', () => {
    const t = table([vs([{ route: [dest('ratings')] }]), httpRoute('r', [to('reviews')])]);
    expect(outcome(route(t, '/'))).toBe('reviews');
    expect(warningsOf(t, 'VirtualService/shop/vs')).toEqual([
      expect.stringMatching(
        /^ROUTE_CONFLICT spec\.hosts: HTTPRoute\/shop\/r also route web\.shop\.svc\.cluster\.local/,
      ),
    ]);
  });

  it('keeps the VirtualService for the other services it names', () => {
    const t = table([vs([{ route: [dest('ratings')] }], ['web', 'api']), httpRoute('r', [to('reviews')])]);
    expect(outcome(route(t, '/', { to: 'api.shop' }))).toBe('ratings');
  });

  it('prefers the VirtualService in the service namespace over another one', () => {
    const t = table([
      virtualService('a', { hosts: ['web.shop'], http: [{ route: [dest('ratings.shop')] }] }, 'ops'),
      virtualService('z', { hosts: ['web'], http: [{ route: [dest('reviews')] }] }),
    ]);
    expect(outcome(route(t, '/'))).toBe('reviews');
    expect(warningsOf(t, 'VirtualService/ops/a')[0]).toMatch(/^ROUTE_CONFLICT .*VirtualService\/shop\/z/);
  });
});

describe('destinationPolicy', () => {
  const svc = { namespace: 'shop', hostname: 'reviews.shop.svc.cluster.local' };
  it('is LEAST_REQUEST without a DestinationRule (Istio default)', () => {
    expect(destinationPolicy(table([]), svc)).toEqual({ lb: { kind: 'LEAST_REQUEST' } });
  });

  it.each<[string, Record<string, unknown>, unknown]>([
    ['ROUND_ROBIN', { simple: 'ROUND_ROBIN' }, { kind: 'ROUND_ROBIN' }],
    ['RANDOM', { simple: 'RANDOM' }, { kind: 'RANDOM' }],
    ['LEAST_CONN (old name)', { simple: 'LEAST_CONN' }, { kind: 'LEAST_REQUEST' }],
    [
      'header hash',
      { consistentHash: { httpHeaderName: 'X-User' } },
      { kind: 'CONSISTENT_HASH', by: { header: 'x-user' } },
    ],
    [
      'cookie hash',
      { consistentHash: { httpCookie: { name: 'sid', ttl: '1h' } } },
      { kind: 'CONSISTENT_HASH', by: { cookie: 'sid', ttlMs: 3_600_000 } },
    ],
    [
      'source IP hash',
      { consistentHash: { useSourceIp: true } },
      { kind: 'CONSISTENT_HASH', by: { sourceIp: true } },
    ],
  ])('load balancer %s', (_n, loadBalancer, lb) => {
    const t = table([destinationRule('d', { host: 'reviews', trafficPolicy: { loadBalancer } })]);
    expect(destinationPolicy(t, svc).lb).toEqual(lb);
  });

  it('converts outlier detection and the connection pool', () => {
    const t = table([
      destinationRule('d', {
        host: 'reviews.shop.svc.cluster.local',
        trafficPolicy: {
          outlierDetection: {
            consecutive5xxErrors: 7,
            consecutiveGatewayErrors: 3,
            interval: '5s',
            baseEjectionTime: '1m',
            maxEjectionPercent: 50,
          },
          connectionPool: {
            tcp: { maxConnections: 10 },
            http: {
              http1MaxPendingRequests: 5,
              http2MaxRequests: 100,
              maxRequestsPerConnection: 1,
              idleTimeout: '90s',
            },
          },
        },
      }),
    ]);
    expect(destinationPolicy(t, svc)).toEqual({
      lb: { kind: 'LEAST_REQUEST' },
      outlier: {
        consecutive5xx: 7,
        consecutiveGatewayErrors: 3,
        intervalMs: 5000,
        baseEjectionMs: 60_000,
        maxEjectionPercent: 50,
      },
      pool: {
        maxConnections: 10,
        http1MaxPendingRequests: 5,
        http2MaxRequests: 100,
        maxRequestsPerConnection: 1,
        idleTimeoutMs: 90_000,
      },
    });
  });

  it('fills Istio outlier defaults (5 consecutive 5xx, 10 s, 30 s, 10 %)', () => {
    const t = table([destinationRule('d', { host: 'reviews', trafficPolicy: { outlierDetection: {} } })]);
    expect(destinationPolicy(t, svc).outlier).toEqual({
      consecutive5xx: 5,
      intervalMs: 10_000,
      baseEjectionMs: 30_000,
      maxEjectionPercent: 10,
    });
  });

  it('overrides by port, then by subset', () => {
    const t = table([
      destinationRule('d', {
        host: 'reviews',
        trafficPolicy: {
          loadBalancer: { simple: 'RANDOM' },
          connectionPool: { tcp: { maxConnections: 1 } },
          portLevelSettings: [{ port: { number: 80 }, loadBalancer: { simple: 'ROUND_ROBIN' } }],
        },
        subsets: [
          {
            name: 'v2',
            labels: { version: 'v2' },
            trafficPolicy: { connectionPool: { tcp: { maxConnections: 9 } } },
          },
        ],
      }),
    ]);
    expect(destinationPolicy(t, svc)).toEqual({ lb: { kind: 'RANDOM' }, pool: { maxConnections: 1 } });
    expect(destinationPolicy(t, svc, 80)).toEqual({
      lb: { kind: 'ROUND_ROBIN' },
      pool: { maxConnections: 1 },
    });
    expect(destinationPolicy(t, svc, 80, 'v2')).toEqual({
      lb: { kind: 'ROUND_ROBIN' },
      pool: { maxConnections: 9 },
    });
    expect(destinationPolicy(t, svc, 80, 'v2')).toBe(destinationPolicy(t, svc, 80, 'v2'));
  });

  it('prefers an exact host over a wildcard, and warns about the loser', () => {
    const t = table([
      destinationRule('a-wild', {
        host: '*.shop.svc.cluster.local',
        trafficPolicy: { loadBalancer: { simple: 'RANDOM' } },
      }),
      destinationRule('z-exact', {
        host: 'reviews',
        trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' } },
      }),
    ]);
    expect(destinationPolicy(t, svc).lb).toEqual({ kind: 'ROUND_ROBIN' });
    expect(
      destinationPolicy(t, { namespace: 'shop', hostname: 'ratings.shop.svc.cluster.local' }).lb,
    ).toEqual({ kind: 'RANDOM' });
    expect(warningsOf(t, 'DestinationRule/shop/a-wild')[0]).toMatch(/^ROUTE_CONFLICT .*z-exact.*reviews/);
  });

  it('reports fields it does not apply', () => {
    const t = table([
      destinationRule('d', {
        host: 'reviews',
        trafficPolicy: {
          loadBalancer: { simple: 'PASSTHROUGH', localityLbSetting: {} },
          connectionPool: { tcp: { connectTimeout: '1s' } },
          outlierDetection: { minHealthPercent: 50 },
          tls: { mode: 'SIMPLE' },
        },
      }),
    ]);
    expect(warningsOf(t, 'DestinationRule/shop/d').map((w) => w.split(':')[0])).toEqual([
      'UNSUPPORTED_FIELD spec.trafficPolicy.loadBalancer.localityLbSetting',
      'UNSUPPORTED_FIELD spec.trafficPolicy.loadBalancer.simple',
      'UNSUPPORTED_FIELD spec.trafficPolicy.outlierDetection.minHealthPercent',
      'UNSUPPORTED_FIELD spec.trafficPolicy.connectionPool.tcp.connectTimeout',
      'UNSUPPORTED_FIELD spec.trafficPolicy.tls.mode',
    ]);
    expect(destinationPolicy(t, svc).lb).toEqual({ kind: 'LEAST_REQUEST' });
  });
});

// Issue 13 divergence 6: Istio `rewrite.uriRegexRewrite` becomes Envoy's regex_rewrite
// (envoy/type/matcher/v3/regex.proto RegexMatchAndSubstitute: every match is replaced, `\1`
// names capture group 1 in RE2's syntax); the example is Istio's own (VirtualService reference,
// RegexRewrite: match "^/service/([^/]+)(/.*)$", rewrite "\2/instance/\1").
describe('VirtualService uriRegexRewrite', () => {
  const rewritten = (rr: Record<string, unknown>, path: string, extra: Record<string, unknown> = {}) => {
    const t = table([vs([{ rewrite: { uriRegexRewrite: rr, ...extra }, route: [dest('reviews')] }])]);
    const a = fwd(route(t, path));
    return { path: rewritePath(path, a.rewrite), warnings: warningsOf(t, 'VirtualService/shop/vs') };
  };
  it.each<[string, Record<string, string>, string, string]>([
    [
      "Istio's docs example",
      { match: '^/service/([^/]+)(/.*)$', rewrite: '\\2/instance/\\1' },
      '/service/foo/v1/api',
      '/v1/api/instance/foo',
    ],
    ['every match, not the first only', { match: 'a', rewrite: 'b' }, '/a/a/xa', '/b/b/xb'],
    ['\\0 is the whole match', { match: '/v[0-9]+', rewrite: '/api\\0' }, '/v2/x', '/api/v2/x'],
    ['\\\\ is a backslash, $1 is literal', { match: '^/(x)$', rewrite: '/\\\\$1' }, '/x', '/\\$1'],
    ['no match leaves the path', { match: '^/nomatch(.*)', rewrite: '/y\\1' }, '/other', '/other'],
    ['(?i) applies to the search', { match: '(?i)/FOO', rewrite: '/bar' }, '/foo/1', '/bar/1'],
  ])('%s', (_n, rr, path, want) => {
    const r = rewritten(rr, path);
    expect(r.warnings).toEqual([]);
    expect(r.path).toBe(want);
  });

  it.each<[string, Record<string, string>, Record<string, unknown>, RegExp]>([
    ['a group the pattern lacks', { match: '^/(a)', rewrite: '/\\2' }, {}, /INVALID_VALUE .*capture group/],
    ['a pattern RE2 refuses', { match: '^/(?=a)', rewrite: '/' }, {}, /INVALID_REGEX .*lookaround/],
    ['no rewrite', { match: '^/a' }, {}, /INVALID_VALUE .*both match and rewrite/],
    ['an empty rewrite', { match: '^/a', rewrite: '' }, {}, /INVALID_VALUE .*both match and rewrite/],
    ['together with uri', { match: '^/a', rewrite: '/b' }, { uri: '/c' }, /INVALID_VALUE .*cannot both/],
  ])('refuses %s with a warning and leaves the path alone', (_n, rr, extra, warning) => {
    const r = rewritten(rr, '/a/b', extra);
    expect(r.warnings.join('\n')).toMatch(warning);
    // with uri set, uri alone applies (the "/" prefix replaced: "/c" + "a/b")
    expect(r.path).toBe(extra.uri ? '/ca/b' : '/a/b');
  });
});
