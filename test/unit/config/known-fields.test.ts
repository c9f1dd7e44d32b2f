// Issue 13 divergence 11: a field the upstream API does not define is named in a warning (as
// kubectl's strict field validation would), at file:line — never file:documentNumber.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { unknownFields, unknownSpecFields } from '../../../src/config/known-fields.js';
import { loadDirectory, parseManifests } from '../../../src/config/load.js';
import { ConfigError } from '../../../src/config/config-error.js';
import { formatAnalyzeMessage, loadMessages } from '../../../src/cli/ctl-analyze.js';

// istio/api networking/v1alpha3/virtual_service.proto: HTTPRouteDestination has destination,
// weight, headers; Destination has host, subset, port; PortSelector has number.
describe('unknownSpecFields (VirtualService, table)', () => {
  const vs = (route: unknown) => ({ hosts: ['r'], http: [{ route: [route] }] });
  it.each([
    [
      'a correct destination',
      vs({ destination: { host: 'r', subset: 'v1', port: { number: 80 } }, weight: 50 }),
      [],
    ],
    [
      'weigth (typo of weight)',
      vs({ destination: { host: 'r' }, weigth: 50 }),
      ['spec.http.0.route.0.weigth→weight'],
    ],
    [
      'hots (typo of host)',
      vs({ destination: { hots: 'r' } }),
      ['spec.http.0.route.0.destination.hots→host'],
    ],
    [
      'port.numbr',
      vs({ destination: { host: 'r', port: { numbr: 80 } } }),
      ['spec.http.0.route.0.destination.port.numbr→number'],
    ],
    [
      'a field like nothing known',
      vs({ destination: { host: 'r' }, colour: 'red' }),
      ['spec.http.0.route.0.colour'],
    ],
    [
      'headers operations',
      vs({ destination: { host: 'r' }, headers: { request: { sett: { a: 'b' } } } }),
      ['spec.http.0.route.0.headers.request.sett→set'],
    ],
    ['a top-level typo', { hosts: ['r'], htp: [] }, ['spec.htp→http']],
    [
      'tcp route weight typo',
      { hosts: ['r'], tcp: [{ route: [{ destination: { host: 'r' }, wieght: 1 }] }] },
      ['spec.tcp.0.route.0.wieght→weight'],
    ],
    [
      'match and retries subtrees are checked too',
      { hosts: ['r'], http: [{ match: [{ uri: { prefx: '/' } }], retries: { atempts: 1 } }] },
      ['spec.http.0.match.0.uri.prefx→prefix', 'spec.http.0.retries.atempts→attempts'],
    ],
    [
      'header-match maps: free keys, StringMatch values checked',
      { hosts: ['r'], http: [{ match: [{ headers: { 'x-Any_Name': { exac: 'a' } } }] }] },
      ['spec.http.0.match.0.headers.x-Any_Name.exac→exact'],
    ],
    [
      "the deprecated mirror_percent (the CRD's proto name) is accepted",
      { hosts: ['r'], http: [{ mirror_percent: 5, mirrorPercentage: { value: 5 } }] },
      [],
    ],
  ])('%s', (_why, spec, want) => {
    const got = unknownSpecFields('VirtualService', spec).map(
      (u) => `${u.path.join('.')}${u.suggestion ? `→${u.suggestion}` : ''}`,
    );
    expect(got).toEqual(want);
  });

  // kubernetes-sigs/gateway-api apis/v1: HTTPBackendRef = BackendObjectReference + weight + filters.
  it.each([
    [
      'HTTPRoute',
      {
        parentRefs: [{ name: 'a', port: 80 }],
        rules: [{ backendRefs: [{ name: 'a', port: 80, weight: 1 }] }],
      },
      [],
    ],
    [
      'HTTPRoute',
      { rules: [{ backendRefs: [{ name: 'a', port: 80, weigth: 1 }] }] },
      ['spec.rules.0.backendRefs.0.weigth→weight'],
    ],
    [
      'HTTPRoute',
      { parentRefs: [{ name: 'a', sectionname: 'http' }] },
      ['spec.parentRefs.0.sectionname→sectionName'],
    ],
    ['HTTPRoute', { rules: [{ backendref: [] }] }, ['spec.rules.0.backendref→backendRefs']],
    [
      'GRPCRoute',
      { rules: [{ backendRefs: [{ name: 'a', port: 9000 }], timeouts: {} }] },
      ['spec.rules.0.timeouts'],
    ],
  ])('%s %j', (kind, spec, want) => {
    const got = unknownSpecFields(kind, spec).map(
      (u) => `${u.path.join('.')}${u.suggestion ? `→${u.suggestion}` : ''}`,
    );
    expect(got).toEqual(want);
  });

  it('checks nothing for kinds without a field tree', () => {
    expect(unknownSpecFields('Service', { bogus: 1 })).toEqual([]);
    expect(unknownFields({ a: 1 }, true)).toEqual([]);
  });
});

const VS = `apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weigth: 50
    - destination: {host: reviews, subset: v2}
      weight: 50
`;

describe('a misspelt VirtualService field at load', () => {
  it('is a warning naming the field, at file:line, and the object still loads', () => {
    const r = parseManifests(VS, 'services.yaml');
    expect(r.errors).toEqual([]);
    expect(r.objects.map((o) => o.kind)).toEqual(['Namespace', 'VirtualService']);
    expect(r.warnings.map(String)).toEqual([
      `services.yaml:13: spec.http[0].route[0].weigth: unknown field "weigth" (not in VirtualService's API): ignored; did you mean weight?`,
    ]);
    expect(r.warnings[0]).toMatchObject({
      code: 'CONFIG_UNKNOWN_FIELD',
      document: 2,
      line: 13,
      kind: 'VirtualService',
    });
  });

  it("is placed at the key's line when its value is a block below it", () => {
    const text = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, namespace: shop}
spec:
  hosts: [r]
  htp:
  - route: [{destination: {host: r}}]
`;
    expect(parseManifests(text, 'vs.yaml').warnings.map(String)).toEqual([
      `vs.yaml:6: spec.htp: unknown field "htp" (not in VirtualService's API): ignored; did you mean http?`,
    ]);
  });

  it('is an AMBIT_UNKNOWN_FIELD warning in ctl analyze, placed by line', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'ambit-known-fields-'));
    try {
      await writeFile(path.join(dir, 'services.yaml'), VS);
      const load = await loadDirectory(dir);
      const lines = loadMessages(load).map(formatAnalyzeMessage);
      expect(lines).toEqual([
        `Warning [AMBIT_UNKNOWN_FIELD] (VirtualService shop/reviews) spec.http[0].route[0].weigth: unknown field "weigth" (not in VirtualService's API): ignored; did you mean weight?  [${path.join(dir, 'services.yaml')}:13]`,
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('ConfigError places: file:line, never file:documentNumber', () => {
  it.each([
    [{ file: 'a.yaml', document: 4, line: 17, path: 'spec.x', message: 'm' }, 'a.yaml:17: spec.x: m'],
    [{ file: 'a.yaml', document: 4, path: 'spec.x', message: 'm' }, 'a.yaml (document 4): spec.x: m'],
    [{ file: 'a.yaml', document: 0, message: 'unreadable' }, 'a.yaml: (file): unreadable'],
    [
      {
        code: 'CONFIG_YAML' as const,
        file: 'a.yaml',
        document: 2,
        line: 9,
        column: 3,
        message: 'YAML syntax error: x',
      },
      'a.yaml:9:3: YAML syntax error: x',
    ],
  ])('%j → %s', (init, want) => {
    expect(String(new ConfigError(init))).toBe(want);
  });
});
