// Routing meanings that only show through a real mesh (127.0.210.0/24; issue 13 divergences 5,
// 6, 8, 9, 10): node proxy → waypoint → node proxy → app, the app answering with the path and
// headers it received.
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { socksConnect } from '../../src/cli/socks-client.js';
import { TestMesh, closeServer, listen } from '../support/mesh.js';
import { SocksAgent } from '../support/mesh-http.js';
import { demoPod, demoService, waypointGateway } from '../support/waypoint-manifests.js';

const O = 210;
const ip = (n: number) => `127.0.${O}.${n}`;
const SLEEP = ip(10);

const pod = (name: string, last: number, app: string) => demoPod(name, ip(last), app);

const EXTRA = [
  waypointGateway(ip(200)),
  pod('api-1', 15, 'api'),
  pod('locked-1', 16, 'locked'),
  demoService('api', ip(101), { app: 'api' }, '[{name: http, port: 8080}]', true),
  demoService('gw', ip(102), { app: 'api' }, '[{name: http, port: 8080}]', true),
  demoService('locked', ip(103), { app: 'locked' }, '[{name: http, port: 8080}]', true),
  demoService('locked-grpc', ip(104), { app: 'locked' }, '[{name: grpc, port: 9000}]', true),
  `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: demo}
spec:
  hosts: [api]
  http:
  - match: [{uri: {prefix: /common}}]
    rewrite: {uri: /}
    route: [{destination: {host: api}}]
  - match: [{uri: {prefix: /service/}}]
    rewrite:
      uriRegexRewrite: {match: '^/service/([^/]+)(/.*)$', rewrite: '\\2/instance/\\1'}
    route: [{destination: {host: api}}]
  - route: [{destination: {host: api}}]
`,
  `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: gw, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: gw, port: 8080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /missing}}]
    backendRefs: [{name: nosuch, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /half}}]
    backendRefs: [{name: api, port: 8080, weight: 1}, {name: nosuch, port: 8080, weight: 1}]
  - matches: [{path: {type: PathPrefix, value: /filtered}}]
    backendRefs:
    - name: api
      port: 8080
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier: {set: [{name: x-backend, value: api}]}
      - type: ResponseHeaderModifier
        responseHeaderModifier: {set: [{name: x-picked, value: api}]}
`,
  // The destination's own node proxy admits only sleep: the waypoint's onward tunnel is refused
  // there (HBONE 401), as ztunnel enforces a selector policy on the waypoint's identity.
  `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: locked-only-sleep, namespace: demo}
spec:
  selector: {matchLabels: {app: locked}}
  action: ALLOW
  rules: [{from: [{source: {principals: [cluster.local/ns/demo/sa/sleep]}}]}]
`,
].join('---\n');

const m = new TestMesh({ octet: O, extraManifests: EXTRA });
const servers: net.Server[] = [];
const agent = new SocksAgent(SLEEP, { keepAlive: true });
let lockedHits = 0;

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function get(host: string, path: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port: 8080, path, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

beforeAll(async () => {
  await m.start();
  const echo = http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ url: req.url, backend: req.headers['x-backend'] ?? null }));
  });
  servers.push(await listen(echo, ip(15), 8080));
  const locked = http.createServer((_req, res) => {
    lockedHits++;
    res.end('locked');
  });
  servers.push(await listen(locked, ip(16), 8080));
  await m.waypointReady();
}, 60_000);

afterAll(async () => {
  agent.destroy();
  await Promise.all(servers.map(closeServer));
  await m.stop();
});

describe('VirtualService rewrites through the waypoint', () => {
  it.each<[string, string, string]>([
    // Envoy prefix_rewrite replaces exactly the matched characters (issue 13 divergence 5).
    ['prefix /common → / keeps the rest as is', '/common/api?x=1', '//api?x=1'],
    ['prefix /common → / on the prefix alone', '/common', '/'],
    // Istio's uriRegexRewrite example, Envoy regex_rewrite with RE2 \N groups (divergence 6).
    ['uriRegexRewrite substitutes \\2 and \\1', '/service/foo/v1/api?q', '/v1/api/instance/foo?q'],
    ['no rewrite on the last route', '/plain', '/plain'],
  ])('%s', async (_n, path, want) => {
    const r = await get('api.demo', path);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).url).toBe(want);
  });
});

describe('HTTPRoute backendRefs through the waypoint', () => {
  it('answers 500 for a backendRef to a Service that does not exist (Gateway API HTTPRouteRule.BackendRefs)', async () => {
    expect((await get('gw.demo', '/missing')).status).toBe(500);
  });

  it('answers 500 for the share that would go to the missing Service and serves the rest', async () => {
    const statuses = new Set<number>();
    for (let i = 0; i < 40; i++) statuses.add((await get('gw.demo', `/half/${i}`)).status);
    expect([...statuses].sort()).toEqual([200, 500]);
  });

  it('applies a backendRef filter when that backend is picked (HTTPBackendRef.Filters)', async () => {
    const r = await get('gw.demo', '/filtered');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).backend).toBe('api');
    expect(r.headers['x-picked']).toBe('api');
  });
});

describe("the waypoint's onward tunnel refused by the destination's policy", () => {
  it("gives the client the waypoint's 503, not a refused connection (Envoy: upstream connect failure)", async () => {
    const from = m.logs.length;
    const r = await get('locked.demo', '/');
    expect(r.status).toBe(503);
    expect(lockedHits).toBe(0);
    // The 503 is the refusal of the waypoint's own tunnel at the destination's node proxy.
    const denial = await m.waitForLog(
      (l) => l.rec.msg === 'connection denied by policy' && l.rec.status === 401,
      5_000,
      from,
    );
    expect(String(denial.rec['src.identity'])).toMatch(/\/sa\/waypoint$/);
    // Again and again, on the client's kept-alive connection to the waypoint, and in parallel.
    const again = await Promise.all([1, 2, 3, 4].map((i) => get('locked.demo', `/again/${i}`)));
    expect(again.map((a) => a.status)).toEqual([503, 503, 503, 503]);
    expect(lockedHits).toBe(0);
  });

  it("gives a gRPC client the waypoint's UNAVAILABLE (grpc-status 14), as Envoy maps 503", async () => {
    const socket = await socksConnect({ host: SLEEP, port: 15080 }, ip(104), 9000);
    const session = http2.connect(`http://${ip(104)}:9000`, { createConnection: () => socket });
    session.on('error', () => {});
    try {
      const headers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        const req = session.request({
          ':method': 'POST',
          ':path': '/echo.Echo/Unary',
          'content-type': 'application/grpc',
          te: 'trailers',
        });
        let all: http2.IncomingHttpHeaders = {};
        req.on('response', (h) => (all = { ...all, ...h }));
        req.on('trailers', (t) => (all = { ...all, ...t }));
        req.on('data', () => {});
        req.on('end', () => resolve(all));
        req.on('error', reject);
        req.end(Buffer.from([0, 0, 0, 0, 0]));
      });
      expect(headers[':status']).toBe(200);
      expect(headers['grpc-status']).toBe('14');
      expect(lockedHits).toBe(0);
    } finally {
      session.close();
    }
  });
});
