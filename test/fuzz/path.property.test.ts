// Properties of the waypoint's path normalization (src/waypoint/http/http-request.ts
// normalizeRequestPath: Istio meshConfig.pathNormalization on Envoy's normalize_path /
// merge_slashes / path_with_escaped_slashes_action). The path policy matched is the path that is
// forwarded, so the property that matters is: no spelling of /admin/... normalizes to a path
// outside /admin (issue 12: "/admin/../", "%2e%2e", "//admin" must not pass a DENY on /admin*).
import { test, fc } from '@fast-check/vitest';
import { expect } from 'vitest';
import {
  DEFAULT_PATH_NORMALIZATION as defaultMode,
  normalizeRequestPath as norm,
} from '../../src/waypoint/http/http-request.js';
import { runs } from './runs.js';

const segment = fc.stringMatching(/^[A-Za-z0-9._~!$&'()*+,;=:@%-]{0,8}$/);
const rawPath = fc
  .array(
    fc.tuple(
      fc.constantFrom('/', '\\', '//'),
      fc.oneof(segment, fc.constantFrom('.', '..', '%2e', '%2E%2e', '', 'a%2fb', '%5c', '%252e')),
    ),
    { maxLength: 8 },
  )
  .map((parts) => `/${parts.map(([sep, seg], i) => (i ? sep : '') + seg).join('')}`);

/** One character spelled as itself or percent-encoded (either hex case). */
const spell = (ch: string) =>
  /[A-Za-z0-9\-._~]/.test(ch)
    ? fc.constantFrom(
        ch,
        `%${ch.charCodeAt(0).toString(16)}`,
        `%${ch.charCodeAt(0).toString(16).toUpperCase()}`,
      )
    : fc.constant(ch);
const spellWord = (w: string) => fc.tuple(...[...w].map(spell)).map((cs) => cs.join(''));
/** A path that means /admin/<rest> to a backend that resolves dots and merges slashes. */
const adminVariant = fc
  .record({
    before: fc.array(fc.constantFrom('./', 'x/../', '/', '%2e/', 'x/%2e%2e/', '\\'), { maxLength: 3 }),
    admin: spellWord('admin'),
    sep: fc.constantFrom('/', '//', '/./', '\\', '/x/../'),
    rest: fc.stringMatching(/^[a-z0-9]{0,6}$/),
  })
  .map(({ before, admin, sep, rest }) => `/${before.join('')}${admin}${sep}${rest}`);

test.prop([adminVariant], runs())(
  `no spelling of /admin/... leaves /admin under the default (${defaultMode})`,
  (p) => {
    const r = norm(p, defaultMode);
    if (!r.ok) return; // refused outright: never reaches a backend
    expect(r.path === '/admin' || r.path.startsWith('/admin/'), `${p} -> ${r.path}`).toBe(true);
  },
);

for (const mode of ['BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'] as const) {
  test.prop([rawPath], runs(0.5))(
    `${mode}: a rooted path with no dot segment and no escaped unreserved byte`,
    (p) => {
      const r = norm(p, mode);
      if (!r.ok) {
        expect(r.status).toBeGreaterThanOrEqual(400);
        return;
      }
      expect(r.path.startsWith('/')).toBe(true);
      const segs = r.path.split('/').slice(1);
      for (const s of segs) expect(s === '.' || s === '..', `${p} -> ${r.path}`).toBe(false);
      expect(
        /%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])/.test(r.path),
        `${p} -> ${r.path}`,
      ).toBe(false);
      if (mode !== 'BASE') expect(r.path.includes('//'), `${p} -> ${r.path}`).toBe(false);
      expect(r.path.includes('\\')).toBe(false);
    },
  );

  test.prop([rawPath], runs(0.5))(
    `${mode}: normalizing twice changes nothing (policy and backend read one path)`,
    (p) => {
      const r = norm(p, mode);
      if (!r.ok) return;
      const again = norm(r.path, mode);
      expect(again.ok && again.path, `${p} -> ${r.path}`).toBe(r.path);
    },
  );
}
