// A malformed AuthorizationPolicy is in force in its fail-closed form, never skipped (issue 12,
// hole 3). Through the real loader, so the issues are exactly the schema's.
import { describe, expect, it } from 'vitest';
import { fc, test as fcTest } from '@fast-check/vitest';
import { parseManifests } from '../../../src/config/load.js';
import { keepLastGood } from '../../../src/config/file-source.js';
import { validateKubeObject } from '../../../src/config/kube-validate.js';
import { WATCHED_TYPES } from '../../../src/config/kube-resources.js';
import { degradedEffects } from '../../../src/config/authz-degrade.js';
import { ANNOTATION_DEGRADED, type AuthorizationPolicy } from '../../../src/config/types.js';
import { convertAuthorizationPolicy } from '../../../src/controlplane/authz-convert.js';

const policy = (spec: string, meta = '{name: p, namespace: demo}') =>
  `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: ${meta}\nspec:\n${spec}`;

const ALLOW_HTTP_PORT = policy(`  selector: {matchLabels: {app: echo}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/demo/sa/nobody]}}]
    to: [{operation: {ports: ['http']}}]`);

function load(text: string) {
  const r = parseManifests(text, 'f.yaml');
  return { r, entry: r.entries[0], spec: r.entries[0]?.object.spec as Record<string, unknown> | undefined };
}

describe('degraded AuthorizationPolicy (fail closed)', () => {
  it('the issue-12 ALLOW with ports [http] is kept with no rules, so it denies app=echo', () => {
    const { r, entry, spec } = load(ALLOW_HTTP_PORT);
    expect(r.errors.map(String)).toEqual([
      'f.yaml:9: spec.rules[0].to[0].operation.ports[0]: must be a port number between 1 and 65535 (got "http")',
    ]);
    expect(spec).toEqual({ selector: { matchLabels: { app: 'echo' } }, action: 'ALLOW', rules: [] });
    expect(entry?.degraded?.join('\n')).toContain('rule 0 dropped (spec.rules[0].to[0].operation.ports[0]');
    expect(entry?.degraded?.join('\n')).toContain('it denies every request to app=echo in namespace demo');
    // And the node proxies get an ALLOW with no rules (denies), said as a warning first.
    const c = convertAuthorizationPolicy(entry!.object as AuthorizationPolicy, 'istio-system');
    expect(c.authorization).toMatchObject({ action: 'ALLOW', rules: [], scope: 'WORKLOAD_SELECTOR' });
    expect(c.degraded?.length).toBeGreaterThan(0);
    expect(c.warnings[0]).toMatch(/failed validation; in force degraded \(fail closed\)/);
  });

  it('the same policy with ports [8080] is valid and unmarked', () => {
    const { r, entry } = load(ALLOW_HTTP_PORT.replace("'http'", "'8080'"));
    expect(r.errors).toEqual([]);
    expect(entry?.degraded).toBeUndefined();
    expect(entry?.object.metadata.annotations?.[ANNOTATION_DEGRADED]).toBeUndefined();
  });

  it.each([
    [
      'ALLOW keeps its readable rules and drops the bad one',
      `  action: ALLOW\n  rules:\n  - to: [{operation: {ports: ['x']}}]\n  - from: [{source: {namespaces: [a]}}]`,
      { action: 'ALLOW', rules: [{ from: [{ source: { namespaces: ['a'] } }] }] },
    ],
    [
      'DENY: a rule with an unreadable part matches everything',
      `  action: DENY\n  rules:\n  - to: [{operation: {ports: ['http']}}]\n  - from: [{source: {namespaces: [a]}}]`,
      { action: 'DENY', rules: [{}, { from: [{ source: { namespaces: ['a'] } }] }] },
    ],
    [
      'DENY with an unknown when key matches everything',
      `  action: DENY\n  rules:\n  - when: [{key: request.nonsense, values: [x]}]`,
      { action: 'DENY', rules: [{}] },
    ],
    [
      'an unreadable action denies everything in scope (selector kept)',
      `  selector: {matchLabels: {app: echo}}\n  action: ALOW\n  rules: [{from: [{source: {namespaces: [a]}}]}]`,
      { action: 'DENY', rules: [{}], selector: { matchLabels: { app: 'echo' } } },
    ],
    [
      'an unreadable selector on an ALLOW: namespace-wide, no rules',
      `  selector: {matchLabels: {app: [1]}}\n  action: ALLOW\n  rules: [{from: [{source: {namespaces: [a]}}]}]`,
      { action: 'ALLOW', rules: [] },
    ],
    [
      'an unreadable selector on a DENY: namespace-wide, rules kept',
      `  selector: {matchLabels: {app: [1]}}\n  action: DENY\n  rules: [{from: [{source: {namespaces: [a]}}]}]`,
      { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['a'] } }] }] },
    ],
    [
      'an unreadable targetRef on an ALLOW: namespace-wide, no rules',
      `  targetRefs: [{kind: Pod, name: echo}]\n  action: ALLOW\n  rules: [{}]`,
      { action: 'ALLOW', rules: [] },
    ],
    [
      'CUSTOM without a provider denies what its rules match (istiod)',
      `  action: CUSTOM\n  rules: [{to: [{operation: {paths: [/admin]}}]}]`,
      { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] },
    ],
    [
      'rules that are not a list: DENY matches everything',
      `  action: DENY\n  rules: {from: x}`,
      { action: 'DENY', rules: [{}] },
    ],
    [
      'rules that are not a list: ALLOW keeps none',
      `  action: ALLOW\n  rules: 5`,
      { action: 'ALLOW', rules: [] },
    ],
  ])('%s', (_name, spec, want) => {
    const { r, entry, spec: got } = load(policy(spec));
    expect(r.errors.length).toBeGreaterThan(0);
    expect(got).toEqual(want);
    expect(entry?.degraded?.length).toBeGreaterThan(0);
    expect(degradedEffects(entry!.object)).toEqual(entry!.degraded);
  });

  it('a stray top-level field (rules indented wrongly) makes the policy deny everything', () => {
    const text = policy(`  action: DENY`) + `\nrules:\n- from: [{source: {namespaces: [evil]}}]`;
    const { spec, entry } = load(text);
    expect(spec).toEqual({ action: 'DENY', rules: [{}] });
    expect(entry?.object).not.toHaveProperty('rules');
  });

  it('a policy that cannot be named is still skipped (nothing to key it by)', () => {
    const { r, entry } = load(policy(`  action: DENY`, '{name: Bad_Name, namespace: demo}'));
    expect(r.errors.length).toBeGreaterThan(0);
    expect(entry).toBeUndefined();
  });

  it('a user cannot mark a valid policy degraded', () => {
    const { entry } = load(
      policy(
        `  action: DENY\n  rules: [{}]`,
        `{name: p, namespace: demo, annotations: {${ANNOTATION_DEGRADED}: hi}}`,
      ),
    );
    expect(entry?.object.metadata.annotations?.[ANNOTATION_DEGRADED]).toBeUndefined();
  });

  it('an edit that breaks a good policy keeps the good version; a degraded one is replaced by the newer', () => {
    const good = parseManifests(ALLOW_HTTP_PORT.replace("'http'", "'8080'"), 'f.yaml');
    const broken = parseManifests(ALLOW_HTTP_PORT, 'f.yaml');
    const kept = keepLastGood({ parse: good, entries: good.entries }, broken);
    expect(kept).toHaveLength(1);
    expect(kept[0]!.degraded).toBeUndefined();
    expect((kept[0]!.object.spec as { rules: unknown[] }).rules).toHaveLength(1);
    const worse = parseManifests(ALLOW_HTTP_PORT.replace("'http'", "'web'"), 'f.yaml');
    const next = keepLastGood({ parse: broken, entries: broken.entries }, worse);
    expect(next).toHaveLength(1);
    expect(next[0]!.degraded?.join()).toContain('"web"');
  });

  it('from the API server: the same stand-in (kube-validate)', () => {
    const raw = {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'p', namespace: 'demo', resourceVersion: '1' },
      spec: {
        selector: { matchLabels: { app: 'echo' } },
        action: 'ALLOW',
        rules: [{ to: [{ operation: { ports: ['http'] } }] }],
      },
    };
    const v = validateKubeObject(
      { ...WATCHED_TYPES.AuthorizationPolicy, kind: 'AuthorizationPolicy' },
      raw as never,
    );
    expect(v.ok).toBe(false);
    if (v.ok) return;
    expect(v.errors[0]!.toString()).toContain('AuthorizationPolicy demo/p');
    expect(v.degraded?.object.spec).toEqual({
      selector: { matchLabels: { app: 'echo' } },
      action: 'ALLOW',
      rules: [],
    });
  });
});

// Properties over random policies: any mix of readable and unreadable rules, any action.
describe('degraded AuthorizationPolicy (properties)', () => {
  const goodRule = fc.record({
    from: fc.constant([{ source: { namespaces: ['a'] } }]),
    to: fc.constantFrom([{ operation: { ports: ['8080'] } }], [{ operation: { paths: ['/x'] } }]),
  });
  const badRule = fc.constantFrom(
    { to: [{ operation: { ports: ['http'] } }] },
    { from: [{ source: { ipBlocks: ['10.0.0.0/33'] } }] },
    { when: [{ key: 'nonsense', values: ['x'] }] },
    { from: [{ source: { principals: ['spiffe://cluster.local/ns/a/sa/b'] } }] },
    { to: 'not a list' },
  );
  const rules = fc.array(
    fc.oneof(
      goodRule.map((r) => ({ ok: true, r })),
      badRule.map((r) => ({ ok: false, r })),
    ),
    {
      minLength: 1,
      maxLength: 6,
    },
  );
  const action = fc.constantFrom('ALLOW', 'DENY');

  fcTest.prop([action, rules])(
    'the stand-in validates; ALLOW keeps exactly the readable rules; DENY keeps every index and makes the unreadable ones match everything',
    (act, rs) => {
      const doc = {
        apiVersion: 'security.istio.io/v1',
        kind: 'AuthorizationPolicy',
        metadata: { name: 'p', namespace: 'demo' },
        spec: { selector: { matchLabels: { app: 'echo' } }, action: act, rules: rs.map((x) => x.r) },
      };
      const r = parseManifests(JSON.stringify(doc), 'p.json');
      const anyBad = rs.some((x) => !x.ok);
      expect(r.errors.length > 0).toBe(anyBad);
      const entry = r.entries[0]!;
      expect(entry).toBeDefined();
      const spec = entry.object.spec as { action: string; rules: unknown[]; selector: unknown };
      expect(spec.action).toBe(act);
      expect(spec.selector).toEqual({ matchLabels: { app: 'echo' } });
      if (act === 'ALLOW') expect(spec.rules).toEqual(rs.filter((x) => x.ok).map((x) => x.r));
      else expect(spec.rules).toEqual(rs.map((x) => (x.ok ? x.r : {})));
      expect(entry.degraded !== undefined).toBe(anyBad);
    },
  );
});
