// Issue 13 divergence 11, every kind: a field the upstream API does not define is a warning,
// for every kind ambit reads and every subtree. Istio: istio/api networking/v1alpha3/*.proto,
// security/v1beta1/*.proto, type/v1beta1/selector.proto; Gateway API: apis/v1 *_types.go; core
// kinds and metadata: the Kubernetes OpenAPI (client-node's models, known-fields-core.gen.ts).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { unknownObjectFields } from '../../../src/config/known-fields.js';
import { parseManifests } from '../../../src/config/load.js';

const show = (kind: string, object: Record<string, unknown>) =>
  unknownObjectFields(kind, object).map(
    (u) => `${u.path.join('.')}${u.suggestion ? `→${u.suggestion}` : ''}`,
  );
const spec = (s: unknown) => ({ metadata: { name: 'x' }, spec: s });

describe('unknownObjectFields: every kind, every subtree (table)', () => {
  it.each([
    // ---- metadata (ObjectMeta), any kind ----
    ['Pod', { metadata: { name: 'a', lables: { app: 'x' } }, spec: {} }, ['metadata.lables→labels']],
    [
      'AuthorizationPolicy',
      { metadata: { name: 'a', annotation: {} }, spec: {} },
      ['metadata.annotation→annotations'],
    ],
    [
      'Service',
      {
        metadata: {
          name: 'a',
          labels: { 'any/key_even.odd': 'v' },
          ownerReferences: [{ kind: 'X', nmae: 'y' }],
        },
      },
      ['metadata.ownerReferences.0.nmae→name'],
    ],
    [
      'ConfigMap',
      { metadata: { name: 'istio', namespce: 'istio-system' }, data: { mesh: '' } },
      ['metadata.namespce→namespace'],
    ],
    // ---- DestinationRule: trafficPolicy and every sub-setting, subsets, portLevelSettings, workloadSelector ----
    [
      'DestinationRule',
      spec({ host: 'r', trafficPolicy: { loadBalancer: { simpel: 'RANDOM' } } }),
      ['spec.trafficPolicy.loadBalancer.simpel→simple'],
    ],
    [
      'DestinationRule',
      spec({
        host: 'r',
        trafficPolicy: {
          connectionPool: { http: { http2MaxRequest: 1 }, tcp: { tcpKeepalive: { tim: '1s' } } },
        },
      }),
      [
        'spec.trafficPolicy.connectionPool.http.http2MaxRequest→http2MaxRequests',
        'spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.tim→time',
      ],
    ],
    [
      'DestinationRule',
      spec({
        host: 'r',
        subsets: [
          { name: 'v1', label: { v: '1' }, trafficPolicy: { outlierDetection: { intervall: '1s' } } },
        ],
      }),
      ['spec.subsets.0.label→labels', 'spec.subsets.0.trafficPolicy.outlierDetection.intervall→interval'],
    ],
    [
      'DestinationRule',
      spec({
        host: 'r',
        trafficPolicy: { portLevelSettings: [{ port: { numbr: 80 }, tls: { mode: 'DISABLE', snii: 'a' } }] },
      }),
      [
        'spec.trafficPolicy.portLevelSettings.0.port.numbr→number',
        'spec.trafficPolicy.portLevelSettings.0.tls.snii→sni',
      ],
    ],
    [
      'DestinationRule',
      spec({ host: 'r', workloadSelector: { matchLabel: {} }, exportto: ['.'] }),
      ['spec.workloadSelector.matchLabel→matchLabels', 'spec.exportto→exportTo'],
    ],
    [
      'DestinationRule',
      spec({
        host: 'r',
        trafficPolicy: {
          loadBalancer: { localityLbSetting: { distribute: [{ from: 'a', to: { 'r/z/*': 100 } }] } },
        },
      }),
      [],
    ],
    // ---- AuthorizationPolicy: selector, targetRef(s), action, provider, rules ----
    [
      'AuthorizationPolicy',
      spec({ selector: { matchlabels: { app: 'a' } } }),
      ['spec.selector.matchlabels→matchLabels'],
    ],
    [
      'AuthorizationPolicy',
      spec({ targetRefs: [{ kind: 'Service', nam: 's' }], targetRef: { knd: 'Gateway' } }),
      ['spec.targetRefs.0.nam→name', 'spec.targetRef.knd→kind'],
    ],
    ['AuthorizationPolicy', spec({ action: 'CUSTOM', provider: { nme: 'ext' } }), ['spec.provider.nme→name']],
    [
      'AuthorizationPolicy',
      spec({
        rules: [
          {
            from: [{ source: { principal: ['a'] } }],
            to: [{ operation: { method: ['GET'] } }],
            when: [{ key: 'k', value: ['v'] }],
          },
        ],
      }),
      [
        'spec.rules.0.from.0.source.principal→principals',
        'spec.rules.0.to.0.operation.method→methods',
        'spec.rules.0.when.0.value→values',
      ],
    ],
    ['AuthorizationPolicy', spec({ rules: [{ form: [{ source: {} }] }] }), ['spec.rules.0.form→from']],
    [
      'AuthorizationPolicy',
      spec({ rules: [{ from: [{ sources: {} }] }] }),
      ['spec.rules.0.from.0.sources→source'],
    ],
    // ---- PeerAuthentication: selector, mtls.mode, portLevelMtls ----
    ['PeerAuthentication', spec({ mtls: { mod: 'STRICT' } }), ['spec.mtls.mod→mode']],
    [
      'PeerAuthentication',
      spec({ portLevelMtls: { '8080': { mode: 'DISABLE' }, '9090': { mdoe: 'STRICT' } } }),
      ['spec.portLevelMtls.9090.mdoe→mode'],
    ],
    ['PeerAuthentication', spec({ mtl: {} }), ['spec.mtl→mtls']],
    // ---- RequestAuthentication ----
    [
      'RequestAuthentication',
      spec({ jwtRules: [{ issuer: 'i', jwksUri: 'u', fromHeaders: [{ name: 'a', prefx: 'B' }] }] }),
      ['spec.jwtRules.0.fromHeaders.0.prefx→prefix'],
    ],
    // ---- ServiceEntry, WorkloadEntry ----
    [
      'ServiceEntry',
      spec({ hosts: ['a'], ports: [{ number: 80, protocl: 'HTTP' }], endpoints: [{ adress: '1.2.3.4' }] }),
      ['spec.ports.0.protocl→protocol', 'spec.endpoints.0.adress→address'],
    ],
    [
      'ServiceEntry',
      spec({ hosts: ['a'], workloadSelector: { matchLabels: {} } }),
      ['spec.workloadSelector.matchLabels'],
    ],
    [
      'WorkloadEntry',
      spec({ address: '1.2.3.4', serviceAcount: 'sa' }),
      ['spec.serviceAcount→serviceAccount'],
    ],
    // ---- VirtualService subtrees ----
    [
      'VirtualService',
      spec({
        hosts: ['r'],
        http: [
          {
            rewrite: { uriRegexRewrite: { mtch: 'a' } },
            redirect: { redirectcode: 301 },
            fault: { abort: { httpstatus: 500 } },
          },
        ],
      }),
      [
        'spec.http.0.rewrite.uriRegexRewrite.mtch→match',
        'spec.http.0.redirect.redirectcode→redirectCode',
        'spec.http.0.fault.abort.httpstatus→httpStatus',
      ],
    ],
    [
      'VirtualService',
      spec({
        hosts: ['r'],
        http: [
          {
            corsPolicy: { allowOrigins: [{ exat: 'a' }] },
            mirrors: [{ destination: { host: 'm' }, percent: { value: 1 } }],
            delegate: { nam: 'd' },
            directResponse: { body: { strin: 'x' } },
          },
        ],
      }),
      [
        'spec.http.0.corsPolicy.allowOrigins.0.exat→exact',
        'spec.http.0.mirrors.0.percent',
        'spec.http.0.delegate.nam→name',
        'spec.http.0.directResponse.body.strin→string',
      ],
    ],
    [
      'VirtualService',
      spec({
        hosts: ['r'],
        tls: [{ match: [{ sniHost: ['a'] }] }],
        tcp: [{ match: [{ sourceSubnet: 'a', sniHosts: [] }] }],
      }),
      ['spec.tls.0.match.0.sniHost→sniHosts', 'spec.tcp.0.match.0.sniHosts'],
    ],
    // ---- Gateway API ----
    [
      'Gateway',
      spec({ gatewayClassName: 'istio-waypoint', listeners: [{ name: 'm', port: 15008, protocl: 'HBONE' }] }),
      ['spec.listeners.0.protocl→protocol'],
    ],
    [
      'Gateway',
      spec({ addresses: [{ valu: '1.2.3.4' }], infrastructure: { label: {} } }),
      ['spec.addresses.0.valu→value', 'spec.infrastructure.label→labels'],
    ],
    [
      'Gateway',
      spec({ listeners: [{ allowedRoutes: { namespaces: { form: 'All' } } }] }),
      ['spec.listeners.0.allowedRoutes.namespaces.form→from'],
    ],
    [
      'HTTPRoute',
      spec({
        rules: [
          {
            matches: [{ path: { typ: 'PathPrefix' } }],
            filters: [
              { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'a', vaule: 'b' }] } },
            ],
          },
        ],
      }),
      [
        'spec.rules.0.matches.0.path.typ→type',
        'spec.rules.0.filters.0.requestHeaderModifier.set.0.vaule→value',
      ],
    ],
    [
      'HTTPRoute',
      spec({
        rules: [
          {
            timeouts: { requst: '1s' },
            retry: { attemps: 2 },
            backendRefs: [
              { name: 'a', port: 80, filters: [{ urlRewrite: { path: { replacePrefixmatch: '/' } } }] },
            ],
          },
        ],
      }),
      [
        'spec.rules.0.timeouts.requst→request',
        'spec.rules.0.retry.attemps→attempts',
        'spec.rules.0.backendRefs.0.filters.0.urlRewrite.path.replacePrefixmatch→replacePrefixMatch',
      ],
    ],
    [
      'HTTPRoute',
      spec({
        rules: [{ sessionPersistence: { sessionName: 's', idleTimeout: '1m', cookie: { name: 'c' } } }],
      }),
      [],
    ],
    [
      'GRPCRoute',
      spec({ rules: [{ matches: [{ method: { servce: 's' } }], filters: [{ urlRewrite: {} }] }] }),
      ['spec.rules.0.matches.0.method.servce→service', 'spec.rules.0.filters.0.urlRewrite'],
    ],
    // ---- core kinds: spec and status, every subtree ----
    [
      'Pod',
      {
        metadata: { name: 'a' },
        spec: { containers: [{ name: 'c', ports: [{ containerport: 80 }] }], nodename: 'n' },
      },
      ['spec.containers.0.ports.0.containerport→containerPort', 'spec.nodename→nodeName'],
    ],
    [
      'Pod',
      { metadata: { name: 'a' }, spec: { containers: [{ name: 'c', securityContext: { runAsUsr: 1 } }] } },
      ['spec.containers.0.securityContext.runAsUsr→runAsUser'],
    ],
    [
      'Pod',
      { metadata: { name: 'a' }, spec: {}, status: { podIp: '10.0.0.1', podIPs: [{ ip: '10.0.0.1' }] } },
      ['status.podIp→podIP'],
    ],
    [
      'Service',
      { metadata: { name: 'a' }, spec: { selecter: { app: 'a' }, ports: [{ port: 80, targetport: 8080 }] } },
      ['spec.selecter→selector', 'spec.ports.0.targetport→targetPort'],
    ],
    [
      'Node',
      { metadata: { name: 'n' }, status: { addresses: [{ type: 'InternalIP', adress: '1.2.3.4' }] } },
      ['status.addresses.0.adress→address'],
    ],
    [
      'Namespace',
      { metadata: { name: 'n', labels: { 'istio.io/dataplane-mode': 'ambient' } }, spec: { finalizers: [] } },
      [],
    ],
    // ---- what stays unchecked ----
    [
      'VirtualService',
      { metadata: { name: 'x' }, spec: { hosts: ['r'] }, status: { anything: { goes: 1 } } },
      [],
    ],
    ['Deployment', { metadata: { name: 'x', lables: {} }, spec: { anything: 1 } }, []],
  ])('%s %j', (kind, object, want) => {
    expect(show(kind, object as Record<string, unknown>)).toEqual(want);
  });
});

describe('the classic metadata.lables typo, from a file', () => {
  it('warns at its line, and says the label selector it would have carried is dropped', () => {
    const text = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-web
  namespace: shop
  lables: {app: web}
spec:
  selector:
    matchLabels: {app: web}
`;
    const r = parseManifests(text, 'policy.yaml');
    expect(r.errors).toEqual([]);
    expect(r.objects).toHaveLength(1);
    expect(r.warnings.map(String)).toEqual([
      `policy.yaml:6: metadata.lables: unknown field "lables" (not in AuthorizationPolicy's API): ignored; did you mean labels?`,
    ]);
  });
});

describe('known-fields-core.gen.ts', () => {
  it('is what scripts/gen-core-fields.mjs derives from the installed @kubernetes/client-node', async () => {
    // Fails (exit 1) when client-node was updated and the table was not regenerated.
    await expect(
      promisify(execFile)(process.execPath, ['scripts/gen-core-fields.mjs', '--check']),
    ).resolves.toBeDefined();
  });
});

describe('a document full of unknown fields', () => {
  it('gets at most ten warnings and a count of the rest, so it cannot flood the log', () => {
    const junk = Array.from({ length: 500 }, (_, i) => `  junk${i}: 1`).join('\n');
    const text = `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r, namespace: shop}\nspec:\n  host: r\n${junk}\n`;
    const r = parseManifests(text, 'dr.yaml');
    expect(r.objects).toHaveLength(1);
    expect(r.warnings).toHaveLength(11);
    expect(r.warnings.every((w) => w.code === 'CONFIG_UNKNOWN_FIELD')).toBe(true);
    expect(String(r.warnings[0])).toBe(
      `dr.yaml:6: spec.junk0: unknown field "junk0" (not in DestinationRule's API): ignored`,
    );
    expect(r.warnings[10]?.message).toBe(
      "490 more unknown fields not shown (not in DestinationRule's API; ignored)",
    );
  });
});

describe('a hostile key', () => {
  it('a megabyte-long unknown key is reported quickly, without a suggestion', () => {
    const key = 'x'.repeat(1 << 20);
    const started = performance.now();
    const got = unknownObjectFields('VirtualService', { metadata: { name: 'r' }, spec: { [key]: 1 } });
    expect(got).toHaveLength(1);
    expect(got[0]?.suggestion).toBeUndefined();
    expect(performance.now() - started).toBeLessThan(1000);
  });
});
