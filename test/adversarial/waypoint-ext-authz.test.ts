// Attack: get past a CUSTOM AuthorizationPolicy (ext_authz) at the waypoint — it used to be
// ignored (fail open). Real mesh on 127.0.131.0/24 with Istio's mesh ConfigMap naming real
// providers of our own: an HTTP ext_authz server inside the mesh (reached over HBONE as the
// waypoint) and a gRPC Authorization server outside it (plain TCP), plus a provider that is not
// in the MeshConfig, one whose port answers nothing (failOpen false and true), and one too slow
// for its timeout. Each service's CUSTOM policy covers `/private*` only.
import http from 'node:http';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { TestMesh, closeServer, listen } from '../support/mesh.js';
import { SocksAgent, meshGet } from '../support/mesh-http.js';
import { demoService, waypointGateway } from '../support/waypoint-manifests.js';
import { addExtAuthzService } from '../support/ext-authz.js';

const O = 131;
const ip = (n: number) => `127.0.${O}.${n}`;
const SLEEP = ip(10);
const AUTHZ_POD = ip(20); // demo/authz, in the mesh
const PLAIN_POD = ip(13); // legacy/plain, outside the mesh

const MESH = `
extensionProviders:
- name: http-authz
  envoyExtAuthzHttp:
    service: demo/authz-http
    port: 8000
    timeout: 2s
    includeRequestHeadersInCheck: [x-ext-authz]
    headersToUpstreamOnAllow: [x-authz-user]
    headersToDownstreamOnDeny: [x-authz-why]
- name: grpc-authz
  envoyExtAuthzGrpc: {service: legacy/authz-grpc, port: 9000, timeout: 2s}
- name: dead-authz
  envoyExtAuthzHttp: {service: demo/authz-http, port: 8001}
- name: open-authz
  envoyExtAuthzHttp: {service: demo/authz-http, port: 8001, failOpen: true}
- name: slow-authz
  envoyExtAuthzHttp: {service: demo/authz-http, port: 8000, pathPrefix: /slow, timeout: 0.3s, statusOnError: "504"}
- name: hang-authz
  envoyExtAuthzHttp: {service: demo/authz-http, port: 8000, pathPrefix: /hang, timeout: 60s}
`;

const custom = (service: string, provider: string) => `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ${service}-custom, namespace: demo}
spec:
  targetRefs: [{kind: Service, group: "", name: ${service}}]
  action: CUSTOM
  provider: {name: ${provider}}
  rules: [{to: [{operation: {paths: ["/private*"]}}]}]
`;
const APIS: [name: string, vip: number, provider: string][] = [
  ['api-http', 101, 'http-authz'],
  ['api-grpc', 102, 'grpc-authz'],
  ['api-missing', 103, 'no-such-provider'],
  ['api-dead', 104, 'dead-authz'],
  ['api-open', 105, 'open-authz'],
  ['api-slow', 106, 'slow-authz'],
  ['api-hang', 107, 'hang-authz'],
];

const EXTRA = [
  waypointGateway(ip(200)),
  `apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
${MESH.split('\n')
  .map((l) => `    ${l}`)
  .join('\n')}
`,
  `apiVersion: v1
kind: Pod
metadata: {name: authz, namespace: demo, labels: {app: authz}}
spec: {nodeName: node-1, serviceAccountName: authz}
status: {podIP: ${AUTHZ_POD}}
`,
  demoService(
    'authz-http',
    ip(110),
    { app: 'authz' },
    '[{name: http, port: 8000}, {name: http-dead, port: 8001}]',
  ),
  `apiVersion: v1
kind: Service
metadata: {name: authz-grpc, namespace: legacy}
spec:
  clusterIP: ${ip(111)}
  selector: {app: plain}
  ports: [{name: grpc, port: 9000}]
`,
  ...APIS.flatMap(([name, vip, provider]) => [
    demoService(name, ip(vip), { app: 'echo' }, '[{name: http, port: 8080}]', true),
    custom(name, provider),
  ]),
].join('---\n');

const m = new TestMesh({ octet: O, extraManifests: EXTRA });
const servers: net.Server[] = [];
const grpcServer = new grpc.Server();
const agent = new SocksAgent(SLEEP, { keepAlive: false });
/** What the backends received: path and the headers the CUSTOM step may have edited. */
const backend: { url: string; user?: string; extAuthz?: string }[] = [];
const httpChecks: { url: string; headers: http.IncomingHttpHeaders; remote?: string }[] = [];
const grpcChecks: Record<string, unknown>[] = [];
/** Checks the hanging provider holds open, and when each was closed by the waypoint. */
const hanging: { at: number; closedAt?: number }[] = [];

beforeAll(async () => {
  await m.start();
  for (const host of [ip(11), ip(12)]) {
    const app = http.createServer((req, res) => {
      backend.push({
        url: req.url ?? '',
        ...(req.headers['x-authz-user'] ? { user: String(req.headers['x-authz-user']) } : {}),
        ...(req.headers['x-ext-authz'] ? { extAuthz: String(req.headers['x-ext-authz']) } : {}),
      });
      res.end('backend');
    });
    servers.push(await listen(app, host, 8080));
  }
  const authz = http.createServer((req, res) => {
    httpChecks.push({ url: req.url ?? '', headers: req.headers, remote: req.socket.remoteAddress });
    if (req.url?.startsWith('/slow')) return; // never answers
    if (req.url?.startsWith('/hang')) {
      const h: { at: number; closedAt?: number } = { at: Date.now() };
      hanging.push(h);
      res.once('close', () => (h.closedAt = Date.now()));
      return; // never answers: only the waypoint giving up closes it
    }
    if (req.headers['x-ext-authz'] === 'allow')
      return res.writeHead(200, { 'x-authz-user': 'alice', 'x-authz-internal': 'not for upstream' }).end();
    res.writeHead(401, { 'x-authz-why': 'missing token', 'x-authz-internal': 'not for the client' });
    res.end('denied by the http provider');
  });
  servers.push(await listen(authz, AUTHZ_POD, 8000));
  addExtAuthzService(grpcServer, (request, cb) => {
    grpcChecks.push(request);
    const attrs = request.attributes as { request: { http: { headers: Record<string, string> } } };
    if (attrs.request.http.headers['x-ext-authz'] === 'allow')
      return cb(null, {
        status: { code: 0 },
        okResponse: { headers: [{ header: { key: 'x-authz-user', value: 'bob' } }] },
      });
    cb(null, {
      status: { code: 7 },
      deniedResponse: {
        status: { code: 429 },
        body: 'slow down',
        headers: [{ header: { key: 'x-why', value: 'quota' } }],
      },
    });
  });
  await new Promise<void>((resolve, reject) =>
    grpcServer.bindAsync(`${PLAIN_POD}:9000`, grpc.ServerCredentials.createInsecure(), (e) =>
      e ? reject(e) : resolve(),
    ),
  );
  await m.waypointReady();
}, 60_000);

afterAll(async () => {
  agent.destroy();
  grpcServer.forceShutdown();
  await m.stop();
  await Promise.all(servers.map(closeServer));
});

const get = (service: string, path: string, headers: Record<string, string> = {}) =>
  meshGet(agent, `${service}.demo`, 8080, path, headers);

describe('CUSTOM with an HTTP ext_authz provider in the mesh', () => {
  it('a request its rules do not match never reaches the provider', async () => {
    const before = httpChecks.length;
    const r = await get('api-http', '/public');
    expect(r.status).toBe(200);
    expect(httpChecks.length).toBe(before);
  });

  it('denied by the provider: its status, body and listed headers reach the client, the backend sees nothing', async () => {
    const before = backend.length;
    const r = await get('api-http', '/private/report');
    expect(r.status).toBe(401);
    expect(r.text).toContain('denied by the http provider');
    expect(r.headers['x-authz-why']).toBe('missing token');
    expect(r.headers['x-authz-internal']).toBeUndefined();
    expect(backend.length).toBe(before);
  });

  it('path spellings of /private are checked too (the normalized path is matched and sent)', async () => {
    const before = backend.length;
    for (const p of ['//private', '/public/../private', '/%70rivate'])
      expect((await get('api-http', p)).status, p).toBe(401);
    expect(backend.length).toBe(before);
    expect(httpChecks.at(-1)!.url).toBe('/private');
  });

  it('allowed by the provider: the listed answer headers go upstream, the others do not', async () => {
    const r = await get('api-http', '/private/report', { 'x-ext-authz': 'allow', cookie: 'secret' });
    expect(r.status).toBe(200);
    expect(backend.at(-1)).toMatchObject({ url: '/private/report', user: 'alice' });
    const check = httpChecks.at(-1)!;
    expect(check.headers['x-ext-authz']).toBe('allow');
    expect(check.headers.cookie).toBeUndefined(); // not in includeRequestHeadersInCheck
  });

  it('the check reached the provider through the mesh: its node proxy logged the waypoint as the source', async () => {
    const from = m.logs.length;
    expect((await get('api-http', '/private/z')).status).toBe(401);
    const line = await m.waitForLog(
      (l) =>
        JSON.stringify(l.rec).includes(`${AUTHZ_POD}:8000`) && JSON.stringify(l.rec).includes('sa/waypoint'),
      10_000,
      from,
    );
    expect(line.component).toBe('node/node-1');
    expect(line.rec).toMatchObject({
      direction: 'inbound',
      connection_security_policy: 'mutual_tls',
      'src.identity': 'spiffe://cluster.local/ns/demo/sa/waypoint',
      'dst.addr': `${AUTHZ_POD}:8000`,
    });
  });

  it('a client cannot pre-set the header the provider grants', async () => {
    const r = await get('api-http', '/private/x', { 'x-ext-authz': 'allow', 'x-authz-user': 'admin' });
    expect(r.status).toBe(200);
    expect(backend.at(-1)!.user).toBe('alice'); // set (overridden) by the provider's answer
  });
});

describe('CUSTOM with a gRPC provider outside the mesh (plain TCP)', () => {
  it('allows with the ok_response headers and sends Envoy’s CheckRequest', async () => {
    const r = await get('api-grpc', '/private/a?x=1', { 'x-ext-authz': 'allow' });
    expect(r.status).toBe(200);
    expect(backend.at(-1)).toMatchObject({ url: '/private/a?x=1', user: 'bob' });
    expect(grpcChecks.at(-1)).toMatchObject({
      attributes: {
        source: { principal: 'spiffe://cluster.local/ns/demo/sa/sleep' },
        request: { http: { method: 'GET', path: '/private/a?x=1', host: 'api-grpc.demo:8080' } },
      },
    });
  });
  it('the CheckRequest carries the query exactly as the client sent it (Envoy passes :path unchanged)', async () => {
    // URLSearchParams would re-serialize "%20" as "+" and "flag" as "flag=": the provider must see
    // what the client sent, or a provider deciding on the query decides on something else.
    const r = await get('api-grpc', '/private/a?q=a%20b&flag', { 'x-ext-authz': 'allow' });
    expect(r.status).toBe(200);
    expect(grpcChecks.at(-1)).toMatchObject({
      attributes: { request: { http: { path: '/private/a?q=a%20b&flag' } } },
    });
  });
  it('denies with denied_response', async () => {
    const before = backend.length;
    const r = await get('api-grpc', '/private/a');
    expect(r.status).toBe(429);
    expect(r.text).toContain('slow down');
    expect(r.headers['x-why']).toBe('quota');
    expect(backend.length).toBe(before);
  });
});

describe('failing closed', () => {
  it.each<[string, string, number, RegExp | undefined]>([
    ['a provider missing from the MeshConfig', 'api-missing', 403, /RBAC: access denied/],
    ['an unreachable provider (failOpen false)', 'api-dead', 403, undefined],
    ['a provider slower than its timeout (statusOnError 504)', 'api-slow', 504, undefined],
  ])('%s: /private is refused, /public still served', async (_what, service, status, body) => {
    const before = backend.length;
    const t0 = Date.now();
    const r = await get(service, '/private/x');
    expect(r.status).toBe(status);
    if (body) expect(r.text).toMatch(body);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(backend.length).toBe(before);
    expect((await get(service, '/public')).status).toBe(200);
  });

  it('failOpen true lets /private through when the provider is unreachable', async () => {
    const r = await get('api-open', '/private/x');
    expect(r.status).toBe(200);
    expect(backend.at(-1)!.url).toBe('/private/x');
  });

  it('each refusal is logged with the policy and the reason', async () => {
    const line = await m.waitForLog(
      (l) =>
        l.rec.msg === 'request denied by CUSTOM policy' && String(l.rec.reason).includes('no-such-provider'),
    );
    expect(line.rec.policy).toBe('demo/api-missing-custom');
  });

  it('an HTTP/1.1 client that goes away mid-check ends the check (no 60 s check left open at the provider)', async () => {
    const req = http.request({ agent, host: 'api-hang.demo', port: 8080, path: '/private/x' });
    req.on('error', () => {});
    req.end();
    const t0 = Date.now();
    while (hanging.length === 0 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
    expect(hanging.length).toBe(1);
    req.destroy();
    const gone = Date.now();
    while (hanging[0]!.closedAt === undefined && Date.now() - gone < 5000)
      await new Promise((r) => setTimeout(r, 20));
    expect(hanging[0]!.closedAt).toBeDefined();
    expect(hanging[0]!.closedAt! - gone).toBeLessThan(3000);
  });
});
