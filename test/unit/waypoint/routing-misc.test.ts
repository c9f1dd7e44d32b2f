import { describe, expect, it } from 'vitest';
import { parseDurationMs } from '../../../src/waypoint/routing/duration.js';
import { compileRe2 } from '../../../src/waypoint/routing/string-match.js';
import {
  compileRouteTable,
  matchRoute,
  rewritePath,
  type ForwardAction,
  type ServiceInfo,
} from '../../../src/waypoint/routing/index.js';
import { httpRoute, outcome, request, service, virtualService } from './routing-fixtures.js';

describe('parseDurationMs', () => {
  it.each<[string | undefined, number | undefined]>([
    ['10s', 10_000],
    ['1.5s', 1500],
    ['250ms', 250],
    ['1h30m', 5_400_000],
    ['1m0s', 60_000],
    ['0s', 0],
    ['100us', 1],
    ['', undefined],
    [undefined, undefined],
    ['10', undefined],
    ['5 s', undefined],
  ])('%s → %s', (text, ms) => {
    expect(parseDurationMs(text)).toBe(ms);
  });
});

describe('rewritePath', () => {
  // The Gateway API ReplacePrefixMatch table (prefix and replacement with trailing slashes
  // removed, as the compiler stores them), and Istio's literal prefix_rewrite.
  it.each<[string, { from: string; to: string }, string]>([
    ['/foo/bar', { from: '/foo', to: '/xyz' }, '/xyz/bar'],
    ['/foo', { from: '/foo', to: '/xyz' }, '/xyz'],
    ['/foo/bar', { from: '/foo', to: '' }, '/bar'],
    ['/foo', { from: '/foo', to: '' }, '/'],
    ['/foo', { from: '', to: '/xyz' }, '/xyz/foo'],
    ['/v1/users', { from: '/v1/', to: '/' }, '/users'],
    ['/V1/users', { from: '/v1/', to: '/' }, '/users'],
    ['/other', { from: '/v1/', to: '/' }, '/other'],
    // Istio rewrite.uri after a prefix match is Envoy prefix_rewrite: exactly the matched
    // characters are replaced, so "/common" → "/" turns "/common/api" into "//api".
    ['/common/api', { from: '/common', to: '/' }, '//api'],
    ['/common', { from: '/common', to: '/' }, '/'],
    ['/commonx', { from: '/common', to: '/new' }, '/newx'],
  ])('%s with %j → %s', (path, pathPrefix, want) => {
    expect(rewritePath(path, { pathPrefix })).toBe(want);
  });

  it('replaces the whole path, or leaves it alone without a path rewrite', () => {
    expect(rewritePath('/a/b', { path: '/c' })).toBe('/c');
    expect(rewritePath('/a/b', { authority: 'x' })).toBe('/a/b');
    expect(rewritePath('/a/b', undefined)).toBe('/a/b');
  });
});

describe('compileRe2', () => {
  it.each<[string, string, boolean]>([
    ['/api/[0-9]+', '/api/42', true],
    ['/api/[0-9]+', '/api/42/x', false],
    ['a|b', 'b', true],
    ['a|b', 'ab', false],
    ['(?i)hello', 'HeLLo', true],
    ['(?P<id>[0-9]+)', '12', true],
    ['\\Aabc\\z', 'abc', true],
  ])('%s on %s → %s', (pattern, value, want) => {
    const r = compileRe2(pattern);
    expect(r.ok && r.re.test(value)).toBe(want);
  });

  it.each([
    ['(?=a)a', /lookaround/],
    ['(?<!a)b', /lookaround/],
    ['(a)\\1', /backreferences/],
    ['[[:alpha:]]+', /POSIX/],
    ['a(?i)b', /inline flags/],
    ['(unclosed', /Unterminated group|Invalid regular expression/],
  ])('refuses %s', (pattern, why) => {
    const r = compileRe2(pattern);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(why);
  });
});

describe('1 000 rules', () => {
  const services: ServiceInfo[] = [service('big'), service('vs-big'), service('small')];
  // 100 HTTPRoutes × 10 rules on one service: exact, prefix, header and regex matches mixed.
  const routes = Array.from({ length: 100 }, (_, r) =>
    httpRoute(
      `r${String(r).padStart(3, '0')}`,
      Array.from({ length: 10 }, (_, k) => {
        const n = r * 10 + k;
        const kind = n % 4;
        const match =
          kind === 0
            ? { path: { type: 'Exact', value: `/e/${n}` } }
            : kind === 1
              ? { path: { type: 'PathPrefix', value: `/p/${n}` } }
              : kind === 2
                ? { path: { type: 'PathPrefix', value: '/h' }, headers: [{ name: 'x-n', value: String(n) }] }
                : { path: { type: 'RegularExpression', value: `/re/${n}/[a-z]+` } };
        return { matches: [match], backendRefs: [{ name: 'small', port: 80, weight: n + 1 }] };
      }),
      { parent: 'big' },
    ),
  );
  const vs = virtualService('vs-big', {
    hosts: ['vs-big'],
    http: Array.from({ length: 1000 }, (_, n) => ({
      match: [{ uri: { prefix: `/p/${n}/` } }],
      route: [{ destination: { host: 'small' }, weight: n + 1 }],
    })),
  });
  const t = compileRouteTable([...routes, vs], services);
  const weight = (path: string, o: Parameters<typeof request>[1] = {}) => {
    const a = matchRoute(t, request(path, { to: 'big.shop', ...o }));
    return a.kind === 'forward' ? a.backends[0]!.weight - 1 : a.kind === 'direct' ? -a.status : NaN;
  };

  it('compiles without warnings', () => {
    expect(t.warnings.size).toBe(0);
    expect(t.routes.size).toBe(2);
  });

  it('finds every rule by its own match', () => {
    for (let n = 0; n < 1000; n++) {
      const kind = n % 4;
      const got =
        kind === 0
          ? weight(`/e/${n}`)
          : kind === 1
            ? weight(`/p/${n}/x`)
            : kind === 2
              ? weight('/h/x', { headers: { 'x-n': String(n) } })
              : weight(`/re/${n}/abc`);
      expect(got).toBe(n);
    }
    expect(weight('/nothing')).toBe(-404);
  });

  it('matches 20 000 requests against the 1 000 VirtualService routes in first-match order', () => {
    let hits = 0;
    for (let i = 0; i < 20_000; i++) {
      const n = i % 1000;
      const a = matchRoute(t, request(`/p/${n}/item`, { to: 'vs-big.shop' })) as ForwardAction;
      if (a.backends[0]!.weight === n + 1) hits++;
    }
    expect(hits).toBe(20_000);
    expect(outcome(matchRoute(t, request('/x', { to: 'vs-big.shop' })))).toBe('404');
  });

  it('leaves other services on their default route', () => {
    expect(outcome(matchRoute(t, request('/e/0', { to: 'small.shop' })))).toBe('small');
  });
});
