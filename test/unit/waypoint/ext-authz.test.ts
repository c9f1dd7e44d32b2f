// CUSTOM AuthorizationPolicy (ext_authz) pieces, each against real servers on loopback
// (127.0.130.*): MeshConfig parsing and its path to waypoints (load → config object → decode),
// CUSTOM matching (authz-l7.ts matchCustom), and decideCustom with a real HTTP ext_authz server
// and a real @grpc/grpc-js Authorization server (ext-authz-http.ts, ext-authz-grpc.ts).
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import {
  checkMeshSettings,
  meshConfigObject,
  parseMeshConfigYaml,
  type ExtAuthzProvider,
} from '../../../src/config/mesh-config.js';
import { parseManifests } from '../../../src/config/load.js';
import {
  decodeConfigObject,
  encodeConfigObject,
  type ConfigObject,
} from '../../../src/xds/config-objects.js';
import { compileWaypointPolicies, matchCustom } from '../../../src/waypoint/policy/authz-l7.js';
import {
  decideCustom,
  providerHostname,
  type CheckInput,
  type CustomDecision,
  type ProviderDial,
} from '../../../src/waypoint/policy/ext-authz.js';
import type { L7Request } from '../../../src/waypoint/routing/types.js';
import { FakeApiServer } from '../../support/fake-apiserver.js';
import { fastKubeSource, untilSnapshot } from '../../support/kube.js';
import { captureLogger } from '../../support/capture-logger.js';
import { addExtAuthzService } from '../../support/ext-authz.js';

const IP = '127.0.130.1';

describe('MeshConfig (ConfigMap istio-system/istio, key mesh)', () => {
  const MESH = `
pathNormalization: {normalization: DECODE_AND_MERGE_SLASHES}
extensionProviders:
- name: http-authz
  envoyExtAuthzHttp:
    service: authz/ext-authz
    port: 8000
    pathPrefix: /check
    timeout: 0.5s
    includeRequestHeadersInCheck: [x-ext-authz, "x-user-*"]
    headersToUpstreamOnAllow: [x-authz-user]
    headersToDownstreamOnDeny: [x-authz-why]
    includeRequestBodyInCheck: {maxRequestBytes: 100}
- name: grpc-authz
  envoyExtAuthzGrpc: {service: ext-authz.authz.svc.cluster.local, port: 9000, failOpen: true, statusOnError: "503"}
- name: otel
  envoyOtelAls: {service: otel.x, port: 4317}
`;

  it('reads both provider kinds with Istio/Envoy defaults, and says what it declines', () => {
    const r = parseMeshConfigYaml(MESH);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.settings.pathNormalization).toBe('DECODE_AND_MERGE_SLASHES');
    const [h, g] = r.settings.extensionProviders;
    expect(h).toMatchObject({
      kind: 'http',
      name: 'http-authz',
      port: 8000,
      timeoutMs: 500,
      failOpen: false, // Istio's default
      statusOnError: 403, // Envoy's default
      includeRequestHeadersInCheck: ['x-ext-authz', 'x-user-*'],
    });
    expect(h!.invalid).toBeUndefined();
    expect(g).toMatchObject({ kind: 'grpc', timeoutMs: 600_000, failOpen: true, statusOnError: 503 });
    expect(r.settings.warnings.join('\n')).toMatch(/includeRequestBodyInCheck is not supported/);
    expect(r.settings.warnings.join('\n')).toMatch(/otel.*not an ext_authz provider/);
  });

  it.each([
    ['port: 0', /port must be in the range/],
    ['port: 8000\n    pathPrefix: check', /pathPrefix must begin with/],
    ['port: 8000\n    statusOnError: "abc"', /statusOnError/],
    ['port: 8000\n    timeout: soon', /timeout/],
  ])('keeps a provider with %s as invalid, with the reason', (extra, why) => {
    const r = parseMeshConfigYaml(
      `extensionProviders:\n- name: p\n  envoyExtAuthzHttp:\n    service: a/b\n    ${extra}\n`,
    );
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.settings.extensionProviders[0]!.invalid).toMatch(why);
  });

  it.each([
    ['pathNormalization: {normalization: WEIRD}', 'pathNormalization.normalization'],
    [
      'extensionProviders: [{name: a, envoyExtAuthzHttp: {service: a/b, port: 1}}, {name: a, envoyExtAuthzGrpc: {service: a/b, port: 1}}]',
      'extensionProviders[1].name',
    ],
    ['extensionProviders: {a: 1}', 'extensionProviders'],
    ['[1, 2', 'mesh'],
  ])('refuses %s, naming %s', (text, field) => {
    const r = parseMeshConfigYaml(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.issues.map((i) => i.field)).toContain(field);
  });

  it('loads the ConfigMap from a manifest file, and reports a bad one with file, document and field', () => {
    const cm = (mesh: string) =>
      `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n${mesh
        .split('\n')
        .map((l) => `    ${l}`)
        .join('\n')}\n`;
    const good = parseManifests(cm(MESH), 'mesh.yaml');
    expect(good.errors).toEqual([]);
    expect(good.objects.map((o) => o.kind)).toEqual(['ConfigMap']);
    const bad = parseManifests(cm('pathNormalization: {normalization: WEIRD}'), 'mesh.yaml');
    expect(bad.errors.map(String).join('\n')).toMatch(
      /mesh\.yaml.*data\.mesh.*pathNormalization\.normalization/,
    );
    const other = parseManifests(
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: demo}\ndata: {a: b}\n',
      'x.yaml',
    );
    expect(other.objects).toEqual([]);
    expect(other.warnings.map(String).join('\n')).toMatch(/not used by ambit/);
  });

  it('travels to waypoints as MeshConfig/istio-system/mesh; a bad one is refused at decode (NACK)', () => {
    const r = parseMeshConfigYaml(MESH);
    if (!r.ok) throw new Error('bad');
    const obj = meshConfigObject(r.settings) as unknown as ConfigObject;
    const back = decodeConfigObject('MeshConfig/istio-system/mesh', encodeConfigObject(obj));
    expect(checkMeshSettings(back.spec)).toEqual(r.settings);
    const tampered = { ...obj, spec: { ...obj.spec, pathNormalization: 'SOMETIMES' } };
    expect(() => decodeConfigObject('MeshConfig/istio-system/mesh', encodeConfigObject(tampered))).toThrow(
      /MeshConfig: pathNormalization/,
    );
  });

  it('resolves provider services as Istio names them', () => {
    expect(providerHostname('authz/ext-authz')).toBe('ext-authz.authz.svc.cluster.local');
    expect(providerHostname('authz/ext-authz.authz.svc.cluster.local')).toBe(
      'ext-authz.authz.svc.cluster.local',
    );
    expect(providerHostname('ext-authz.authz.svc.cluster.local')).toBe('ext-authz.authz.svc.cluster.local');
    expect(providerHostname('ext-authz')).toBeUndefined();
  });
});

// ---- matching ----

const WAYPOINT = { namespace: 'demo', name: 'waypoint' };
const ECHO = { namespace: 'demo', hostname: 'echo.demo.svc.cluster.local', name: 'echo' };
function custom(
  name: string,
  provider: string | undefined,
  rules: unknown[],
  annotations?: Record<string, string>,
) {
  return {
    kind: 'AuthorizationPolicy',
    metadata: { name, namespace: 'demo', ...(annotations ? { annotations } : {}) },
    spec: {
      targetRefs: [{ kind: 'Service', group: '', name: 'echo' }],
      action: 'CUSTOM',
      ...(provider !== undefined ? { provider: { name: provider } } : {}),
      rules,
    },
  };
}
function authzReq(path: string) {
  return {
    method: 'GET',
    path,
    host: 'echo.demo:8080',
    headers: {},
    source: { principal: 'cluster.local/ns/demo/sa/sleep', ip: '10.0.0.5' },
    destination: { service: ECHO, ip: '10.96.0.10', port: 8080 },
  };
}

describe('matchCustom: only what a CUSTOM policy’s rules match goes to its provider', () => {
  const set = compileWaypointPolicies(
    [
      custom('admin', 'ext', [{ to: [{ operation: { paths: ['/admin*'] } }] }]),
      custom('none', 'ext', []), // no rules: matches nothing (istiod's rbacPolicyMatchNever)
      custom('dry', 'ext', [{}], { 'istio.io/dry-run': 'true' }),
    ],
    WAYPOINT,
    'istio-system',
  );
  it('matches its rules (after path normalization), reports dry-run ones without asking', () => {
    expect(matchCustom(set, authzReq('/admin/x')).matched).toEqual([
      { policy: 'demo/admin', provider: 'ext', ruleIndex: 0 },
    ]);
    expect(matchCustom(set, authzReq('//admin')).matched.map((m) => m.policy)).toEqual(['demo/admin']);
    expect(matchCustom(set, authzReq('/public')).matched).toEqual([]);
    expect(matchCustom(set, authzReq('/public')).dryRun).toEqual(['demo/dry']);
  });
});

// ---- deciding, with real servers ----

const l7 = (path: string, headers: Record<string, string> = {}): L7Request => ({
  method: 'GET',
  path,
  query: new URLSearchParams(),
  headers: { host: 'echo.demo:8080', ...headers },
  authority: 'echo.demo:8080',
  target: { service: ECHO, ip: '10.96.0.10', port: 8080 },
  grpc: false,
});
const input = (req: L7Request): CheckInput => ({
  req,
  pathWithQuery: req.path,
  protocol: 'HTTP/1.1',
  source: { ip: '10.0.0.5', principal: 'cluster.local/ns/demo/sa/sleep' },
  destination: { ip: '10.96.0.10', port: 8080 },
});
const matched = (provider: string) => ({
  matched: [{ policy: 'demo/admin', provider, ruleIndex: 0 }],
  dryRun: [],
});
const tcpDial =
  (port: () => number): ProviderDial =>
  async () => {
    const s = net.connect(port(), IP);
    await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
    return { ok: true, stream: s, authority: `${IP}:${port()}` };
  };
const httpProvider = (over: Partial<ExtAuthzProvider> = {}): ExtAuthzProvider =>
  ({
    kind: 'http',
    name: 'http',
    service: 'authz/ext-authz',
    port: 8000,
    timeoutMs: 2000,
    failOpen: false,
    statusOnError: 403,
    pathPrefix: '/check',
    includeRequestHeadersInCheck: ['x-ext-authz'],
    includeAdditionalHeadersInCheck: { 'x-from': 'waypoint' },
    headersToUpstreamOnAllow: ['x-authz-user'],
    headersToDownstreamOnDeny: ['x-authz-why'],
    headersToDownstreamOnAllow: ['x-authz-seen'],
    ...(over as object),
  }) as ExtAuthzProvider;

describe('decideCustom with a real HTTP ext_authz server', () => {
  const seen: { method?: string; url?: string; headers: http.IncomingHttpHeaders }[] = [];
  let port = 0;
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method, url: req.url, headers: req.headers });
    if (req.url?.includes('/slow')) return; // never answers
    if (req.headers['x-ext-authz'] === 'allow')
      return res
        .writeHead(200, {
          'x-authz-user': 'alice',
          'x-not-listed': 'no',
          'x-authz-seen': 'yes',
          'x-envoy-auth-headers-to-remove': 'x-ext-authz',
        })
        .end();
    res.writeHead(401, { 'x-authz-why': 'no token', 'x-secret': 'hidden', 'www-authenticate': 'Bearer' });
    res.end('denied by ext authz');
  });
  beforeAll(async () => {
    await new Promise<void>((r) => server.listen(0, IP, r));
    port = (server.address() as net.AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('allows on 200: upstream headers set (only those listed), removed as asked, response headers added', async () => {
    const d = await decideCustom(
      matched('http'),
      [httpProvider()],
      input(l7('/admin/x', { 'x-ext-authz': 'allow', authorization: 'Bearer t', cookie: 'c' })),
      tcpDial(() => port),
    );
    expect(d, d.reason).toMatchObject({
      allow: true,
      upstreamSet: [['x-authz-user', 'alice']],
      upstreamRemove: ['x-ext-authz'],
      downstream: [['x-authz-seen', 'yes']],
    });
    const got = seen.at(-1)!;
    expect(got.method).toBe('GET');
    expect(got.url).toBe('/check/admin/x'); // pathPrefix + path
    expect(got.headers).toMatchObject({
      'x-ext-authz': 'allow',
      authorization: 'Bearer t',
      'x-from': 'waypoint',
      host: 'echo.demo:8080',
      'content-length': '0',
    });
    expect(got.headers.cookie).toBeUndefined(); // not listed: not sent
  });

  it('denies with the server’s status, body and the listed headers (plus WWW-Authenticate)', async () => {
    const d = await decideCustom(
      matched('http'),
      [httpProvider()],
      input(l7('/admin')),
      tcpDial(() => port),
    );
    expect(d).toMatchObject({
      allow: false,
      status: 401,
      body: 'denied by ext authz',
      headers: { 'x-authz-why': 'no token', 'www-authenticate': 'Bearer' },
    });
    expect((d as { headers: Record<string, string> }).headers['x-secret']).toBeUndefined();
  });

  it('times out to statusOnError (failOpen false), or allows with failOpen true', async () => {
    const p = httpProvider({ timeoutMs: 200, statusOnError: 503 });
    const t0 = Date.now();
    const d = await decideCustom(
      matched('http'),
      [p],
      input(l7('/slow')),
      tcpDial(() => port),
    );
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(d).toMatchObject({
      allow: false,
      status: 503,
      reason: expect.stringMatching(/timeout after 200 ms/),
    });
    const open = await decideCustom(
      matched('http'),
      [{ ...p, failOpen: true }],
      input(l7('/slow')),
      tcpDial(() => port),
    );
    expect(open.allow).toBe(true);
  });

  it('an unreachable provider is an error: 403 by default', async () => {
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, IP, r));
    const dead = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const d = await decideCustom(
      matched('http'),
      [httpProvider()],
      input(l7('/admin')),
      tcpDial(() => dead),
    );
    expect(d).toMatchObject({ allow: false, status: 403 });
  });

  it.each<[string, ExtAuthzProvider[], RegExp]>([
    ['a missing provider', [], /not in meshConfig.extensionProviders/],
    ['an invalid provider', [httpProvider({ invalid: 'port must be in the range' })], /invalid/],
  ])(
    'denies what the rules match for %s, whatever failOpen says (istiod deny rules)',
    async (_w, providers, why) => {
      const d = await decideCustom(
        matched('http'),
        providers.map((p) => ({ ...p, failOpen: true })),
        input(l7('/admin')),
        tcpDial(() => port),
      );
      expect(d).toMatchObject({
        allow: false,
        status: 403,
        body: 'RBAC: access denied',
        reason: expect.stringMatching(why),
      });
    },
  );

  it('denies when the provider’s Service does not exist, even with failOpen', async () => {
    const unresolved: ProviderDial = async () => ({
      ok: false,
      unresolved: true,
      reason: 'service "authz/nope" not found',
    });
    const d: CustomDecision = await decideCustom(
      matched('http'),
      [httpProvider({ failOpen: true })],
      input(l7('/admin')),
      unresolved,
    );
    expect(d).toMatchObject({ allow: false, status: 403 });
  });

  it('denies when several different providers would have to be asked', async () => {
    const both = {
      matched: [...matched('a').matched, { policy: 'demo/b', provider: 'b', ruleIndex: 0 }],
      dryRun: [],
    };
    const d = await decideCustom(
      both,
      [httpProvider({ name: 'a' }), httpProvider({ name: 'b' })],
      input(l7('/admin')),
      tcpDial(() => port),
    );
    expect(d).toMatchObject({ allow: false, reason: expect.stringMatching(/several providers/) });
  });
});

describe('decideCustom with a real gRPC Authorization server (@grpc/grpc-js)', () => {
  let port = 0;
  let last: Record<string, unknown> | undefined;
  const server = new grpc.Server();
  beforeAll(async () => {
    addExtAuthzService(server, (request, cb) => {
      last = request;
      const http = ((request.attributes as Record<string, unknown>).request as Record<string, unknown>)
        .http as {
        path: string;
        headers: Record<string, string>;
      };
      if (http.path.startsWith('/grpc-error')) return cb({ code: grpc.status.UNAVAILABLE, details: 'down' });
      if (http.headers['x-ext-authz'] === 'allow')
        return cb(null, {
          status: { code: 0 },
          okResponse: {
            headers: [
              { header: { key: 'x-authz-user', value: 'bob' } },
              { header: { key: 'x-tag', value: 'b' }, append: { value: true } },
            ],
            headersToRemove: ['x-ext-authz'],
            responseHeadersToAdd: [{ header: { key: 'x-authz-seen', value: 'grpc' } }],
          },
        });
      cb(null, {
        status: { code: 7 },
        deniedResponse: {
          status: { code: 429 },
          headers: [{ header: { key: 'x-why', value: 'quota' } }],
          body: 'slow down',
        },
      });
    });
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${IP}:0`, grpc.ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
  });
  afterAll(() => server.forceShutdown());
  const grpcProvider = (over: Partial<ExtAuthzProvider> = {}) =>
    ({
      kind: 'grpc',
      name: 'g',
      service: 'authz/g',
      port: 9000,
      timeoutMs: 2000,
      failOpen: false,
      statusOnError: 403,
      ...(over as object),
    }) as ExtAuthzProvider;

  it('allows on status OK with the ok_response header edits, and sends Envoy’s attributes', async () => {
    const d = await decideCustom(
      matched('g'),
      [grpcProvider()],
      input(l7('/admin?q=1', { 'x-ext-authz': 'allow' })),
      tcpDial(() => port),
    );
    expect(d).toMatchObject({
      allow: true,
      upstreamSet: [['x-authz-user', 'bob']],
      upstreamAppend: [['x-tag', 'b']],
      upstreamRemove: ['x-ext-authz'],
      downstream: [['x-authz-seen', 'grpc']],
    });
    expect(last).toMatchObject({
      attributes: {
        source: {
          principal: 'spiffe://cluster.local/ns/demo/sa/sleep',
          address: { socketAddress: { address: '10.0.0.5' } },
        },
        request: {
          http: { method: 'GET', path: '/admin?q=1', host: 'echo.demo:8080', protocol: 'HTTP/1.1' },
        },
      },
    });
  });

  it('denies with denied_response status, headers and body', async () => {
    const d = await decideCustom(
      matched('g'),
      [grpcProvider()],
      input(l7('/admin')),
      tcpDial(() => port),
    );
    expect(d).toMatchObject({ allow: false, status: 429, body: 'slow down', headers: { 'x-why': 'quota' } });
  });

  it('a failed call (grpc-status UNAVAILABLE) is an error: statusOnError, or allowed with failOpen', async () => {
    const d = await decideCustom(
      matched('g'),
      [grpcProvider({ statusOnError: 500 })],
      input(l7('/grpc-error')),
      tcpDial(() => port),
    );
    expect(d).toMatchObject({ allow: false, status: 500, reason: expect.stringMatching(/grpc-status 14/) });
    const open = await decideCustom(
      matched('g'),
      [grpcProvider({ failOpen: true })],
      input(l7('/grpc-error')),
      tcpDial(() => port),
    );
    expect(open.allow).toBe(true);
  });
});

describe('MeshConfig from Kubernetes (KubeSource against the fake API server, 127.0.133.2)', () => {
  it('reads the ConfigMap istio-system/istio only, watching istio-system only; a bad mesh keeps the last good', async () => {
    const api = await new FakeApiServer({ host: '127.0.133.2', bookmarkIntervalMs: 100 }).start();
    const cm = (namespace: string, name: string, mesh: string) => ({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name, namespace },
      data: { mesh },
    });
    api.put(cm('istio-system', 'istio', 'pathNormalization: {normalization: BASE}\n'));
    api.put(cm('demo', 'istio', 'pathNormalization: {normalization: NONE}\n'));
    const { logger } = captureLogger();
    const source = fastKubeSource(api, logger);
    try {
      await source.start();
      const keys = () => [...source.snapshot().objects.keys()].filter((k) => k.startsWith('ConfigMap/'));
      expect(keys()).toEqual(['ConfigMap/istio-system/istio']);
      expect(api.requests.some((r) => r.path === '/api/v1/namespaces/istio-system/configmaps')).toBe(true);
      expect(api.requests.some((r) => r.path === '/api/v1/configmaps')).toBe(false);
      const mesh = () =>
        (source.snapshot().objects.get('ConfigMap/istio-system/istio') as { data?: Record<string, string> })
          ?.data?.mesh;
      api.put(cm('istio-system', 'istio', 'pathNormalization: {normalization: WEIRD}\n'));
      api.put(cm('istio-system', 'other', 'x: 1\n')); // a later event, to know the bad one was seen
      await untilSnapshot(source, (s) => s.objects.has('ConfigMap/istio-system/other'));
      expect(mesh()).toContain('BASE'); // the invalid edit was refused; the last good stays
      api.put(cm('istio-system', 'istio', 'pathNormalization: {normalization: MERGE_SLASHES}\n'));
      await untilSnapshot(source, () => String(mesh()).includes('MERGE_SLASHES'));
    } finally {
      source.stop();
      await api.stop();
    }
  });
});
