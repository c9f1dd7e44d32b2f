// Path normalization (http-request.ts normalizeRequestPath), the table of variants: Envoy's
// normalize_path / merge_slashes / path_with_escaped_slashes_action as Istio's
// meshConfig.pathNormalization sets them. Expected values follow Envoy's own table
// (test/common/http/path_utility_test.cc) and Istio's "Authorization Policy Normalization" page.
import { describe, expect, it } from 'vitest';
import { backendPathView } from '../../support/backend-path.js';
import { fc, test as fcTest } from '@fast-check/vitest';
import {
  DEFAULT_PATH_NORMALIZATION,
  fromAbsoluteForm,
  normalizeRequestPath,
  rewrittenPath,
  toL7Request,
  type PathNormalization,
} from '../../../src/waypoint/http/http-request.js';
import { compileWaypointPolicies, evaluateL7, normalizePath } from '../../../src/waypoint/policy/authz-l7.js';
import type { TunnelContext } from '../../../src/waypoint/tunnel-context.js';
import { malformedField } from '../../../src/waypoint/http/http2.js';

const ok = (raw: string, mode: PathNormalization = DEFAULT_PATH_NORMALIZATION) => {
  const r = normalizeRequestPath(raw, mode);
  if (!r.ok) throw new Error(`refused ${raw}: ${r.reason}`);
  return r.path;
};

describe('normalizeRequestPath, the default (MERGE_SLASHES: BASE + merge_slashes)', () => {
  it('is MERGE_SLASHES, a deliberate difference from Istio BASE so //admin cannot pass a DENY on /admin*', () =>
    expect(DEFAULT_PATH_NORMALIZATION).toBe('MERGE_SLASHES'));
  it.each([
    ['/admin', '/admin'],
    ['/admin/../admin', '/admin'],
    ['/public/../admin', '/admin'],
    ['/public/%2e%2e/admin', '/admin'], // %2e is an unreserved "." (Envoy: "/a/b/%2E%2E/c" → "/a/c")
    ['/public/%2E%2E/admin', '/admin'],
    ['/public/.%2e/admin', '/admin'],
    ['/./admin', '/admin'],
    ['/admin/.', '/admin/'],
    ['//admin', '/admin'],
    ['///admin//x', '/admin/x'],
    ['/admin\\x', '/admin/x'], // backslash is a slash (chromium canonicalizer, Istio: "\\da" → "/da")
    ['/public\\..\\admin', '/admin'], // Envoy: "/a/..\\c" → "/c"
    ['/%61dmin', '/admin'], // unreserved letters decoded
    ['/%7Euser', '/~user'],
    ['/admin%2Fx', '/admin%2Fx'], // escaped slash kept (KEEP_UNCHANGED)
    ['/admin%2fx', '/admin%2fx'], // ... with its case (Envoy: "/a/%2F%2f/c" unchanged)
    ['/admin%5Cx', '/admin%5Cx'],
    ['/%c0%af', '/%c0%af'], // not unreserved: kept as written
    ['/ADMIN', '/ADMIN'], // case is significant: no change
    ['/admin;x', '/admin;x'], // ";" is an ordinary path character to Envoy
    ['/../admin', '/admin'], // above the root stays at the root (Envoy: "/../a/b" → "/a/b")
    ['/a/b/../../../../admin', '/admin'],
    ['/a/b/..', '/a/'],
    ['/caf\u00e9', '/caf%C3%A9'], // non-ASCII escaped (UTF-8)
    ['/', '/'],
  ])('%s → %s', (raw, want) => expect(ok(raw)).toBe(want));
});

describe('normalizeRequestPath by mode', () => {
  it.each<[string, PathNormalization, string]>([
    ['//admin', 'NONE', '//admin'],
    ['/a/../admin', 'NONE', '/a/../admin'],
    ['//admin', 'BASE', '//admin'], // Istio's default keeps double slashes
    ['/a/../admin', 'BASE', '/admin'],
    ['/admin%2Fx', 'MERGE_SLASHES', '/admin%2Fx'],
    ['/admin%2Fx', 'DECODE_AND_MERGE_SLASHES', '/admin/x'],
    ['/admin%2f', 'DECODE_AND_MERGE_SLASHES', '/admin/'],
    ['/%2Fadmin', 'DECODE_AND_MERGE_SLASHES', '/admin'], // decoded, then merged
    ['/public%2F..%2Fadmin', 'DECODE_AND_MERGE_SLASHES', '/admin'], // decoded before dot segments
    ['/public%5C..%5Cadmin', 'DECODE_AND_MERGE_SLASHES', '/admin'], // %5C → "\" → "/"
    ['/public%2F..%2Fadmin', 'MERGE_SLASHES', '/public%2F..%2Fadmin'], // one segment, as Envoy
  ])('%s under %s → %s', (raw, mode, want) => expect(ok(raw, mode)).toBe(want));
});

describe('normalizeRequestPath refusals (Envoy)', () => {
  it.each<[string, number]>([
    ['/admin%00', 400], // chromium canonicalizer refuses NUL; Istio: "always rejected with 400"
    ['/x/.%00./admin', 400],
    ['/admin#frag', 400], // http_reject_path_with_fragment
    ['admin', 404], // not origin-form: downstream_rq_non_relative_path
    ['*', 404],
    ['', 404],
  ])('%s → %i in every mode', (raw, status) => {
    for (const mode of ['NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'] as const) {
      const r = normalizeRequestPath(raw, mode);
      expect(r.ok, mode).toBe(false);
      if (!r.ok) expect(r.status).toBe(status);
    }
  });
});

describe('what is forwarded is what was matched', () => {
  const ctx = {
    target: { host: '10.0.0.1', port: 8080 },
    srcIp: '10.0.0.2',
    peerIdentity: '',
  } as unknown as TunnelContext;
  it('forwards the normalized path with the query untouched', () => {
    const url = '/public/../admin//x?next=/../y&a=%2e%2e';
    const l7 = toL7Request('GET', url, {}, ctx, 'echo');
    l7.path = ok(l7.path);
    expect(rewrittenPath(url, { kind: 'forward', backends: [] } as never, l7.path)).toBe(
      '/admin/x?next=/../y&a=%2e%2e',
    );
  });
  it('turns an absolute-form target into its path, with its authority replacing Host', () => {
    const l7 = toL7Request('GET', 'http://echo.demo:8080//admin?x=1', { host: 'other' }, ctx, 'other');
    expect(l7.authority).toBe('echo.demo:8080');
    expect(ok(l7.path)).toBe('/admin');
    expect(l7.query.get('x')).toBe('1');
    expect(fromAbsoluteForm('/admin')).toBeUndefined();
    expect(fromAbsoluteForm('http://user@evil/admin')?.target).toBe('http://user@evil/admin'); // refused later (not a path)
  });
  it('authz normalizePath matches exactly what the pipeline forwards (idempotent)', () => {
    for (const raw of ['//admin', '/a/%2e%2e/admin', '/x\\..\\admin', '/%61dmin;x'])
      expect(normalizePath(ok(raw))).toBe(ok(raw));
  });
});

describe('properties', () => {
  const pathChars = fc.constantFrom(
    '/',
    '.',
    '..',
    '%2e',
    '%2E',
    '%2f',
    '%5c',
    '\\',
    'a',
    'admin',
    '%61',
    ';',
    '~',
  );
  const paths = fc.array(pathChars, { maxLength: 12 }).map((xs) => `/${xs.join('')}`);
  const modes = fc.constantFrom<PathNormalization>('BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES');

  fcTest.prop([paths, modes])('normalizing twice changes nothing', (raw, mode) => {
    const once = normalizeRequestPath(raw, mode);
    if (!once.ok) return;
    const twice = normalizeRequestPath(once.path, mode);
    expect(twice.ok && twice.path).toBe(once.path);
  });

  fcTest.prop([paths, modes])(
    'the result never has a dot segment, and never "//" unless BASE',
    (raw, mode) => {
      const r = normalizeRequestPath(raw, mode);
      if (!r.ok) return;
      expect(r.path.startsWith('/')).toBe(true);
      expect(r.path.split('/').some((s) => s === '.' || s === '..')).toBe(false);
      if (mode !== 'BASE') expect(r.path).not.toContain('//');
    },
  );
});

describe('malformedField (the HTTP/2 field guard in http2.ts, RFC 9113 §8.2.1)', () => {
  it.each<[Record<string, string>, boolean]>([
    [{ ':path': '/a', 'x-a': 'b' }, false],
    [{ 'X-A': 'b' }, true],
    [{ 'x a': 'b' }, true],
    [{ 'x-a': 'b\r\nx-admin: 1' }, true],
    [{ 'x-a': 'b\0' }, true],
    [{ 'x-a': ' b' }, true],
  ])('%j → malformed %s', (h, bad) => expect(malformedField(h) !== undefined).toBe(bad));
});

describe('property: a DENY on /admin, /admin/* is never bypassed by a spelling', () => {
  const set = compileWaypointPolicies(
    [
      {
        kind: 'AuthorizationPolicy',
        metadata: { name: 'deny-admin', namespace: 'demo' },
        spec: {
          targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'waypoint' }],
          action: 'DENY',
          rules: [{ to: [{ operation: { paths: ['/admin', '/admin/*'] } }] }],
        },
      },
    ],
    { namespace: 'demo', name: 'waypoint' },
    'istio-system',
  );
  /** How a backend router reads a path (support/backend-path.ts). */
  const backendView = backendPathView;
  const token = fc.constantFrom(
    '/',
    '//',
    '.',
    '..',
    '%2e',
    '%2E',
    '\\',
    'a',
    'admin',
    'ADMIN',
    '%61',
    'dmin',
    'x',
    '%2f',
  );
  const raw = fc.array(token, { minLength: 1, maxLength: 10 }).map((xs) => `/${xs.join('')}`);

  fcTest.prop([raw], { numRuns: 2000 })(
    'whenever the forwarded path reads as /admin(/…) to a backend, the policy denied it',
    (p) => {
      const n = normalizeRequestPath(p, DEFAULT_PATH_NORMALIZATION);
      if (!n.ok) return; // refused: nothing forwarded
      const view = backendView(n.path);
      if (view !== '/admin' && !view.startsWith('/admin/')) return;
      const d = evaluateL7(set, {
        method: 'GET',
        path: n.path,
        host: 'echo',
        headers: {},
        source: { ip: '10.0.0.1' },
        destination: { ip: '10.0.0.2', port: 8080 },
      });
      expect(d.allow, `${p} → ${n.path}`).toBe(false);
    },
  );
});
