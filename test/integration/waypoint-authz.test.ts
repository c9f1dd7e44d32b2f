// L7 AuthorizationPolicy at the waypoint, end to end (127.0.58.0/24): a decision table of real
// requests from two identities through node proxy → waypoint → node proxy → app.
import http from 'node:http';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestMesh, closeServer, listen } from '../support/mesh.js';
import { SocksAgent } from '../support/mesh-http.js';
import { demoService, serviceAuthorizationPolicy, waypointGateway } from '../support/waypoint-manifests.js';

const O = 58;
const ip = (n: number) => `127.0.${O}.${n}`;
const SLEEP = ip(10);
const CLIENT2 = ip(14);

const EXTRA = [
  waypointGateway(ip(200)),
  `
apiVersion: v1
kind: Pod
metadata: {name: client2, namespace: demo, labels: {app: client2}}
spec: {nodeName: node-2, serviceAccountName: client2}
status: {podIP: ${CLIENT2}}
`,
  demoService('api', ip(101), { app: 'echo' }, '[{name: http, port: 8080}]', true),
  serviceAuthorizationPolicy(
    'api-deny',
    'api',
    'DENY',
    `
    - to: [{operation: {paths: ["/admin*"]}}]
    - from: [{source: {notPrincipals: [cluster.local/ns/demo/sa/client2]}}]
      to: [{operation: {methods: [DELETE]}}]`,
  ),
  serviceAuthorizationPolicy(
    'api-allow',
    'api',
    'ALLOW',
    `
    - from: [{source: {principals: [cluster.local/ns/demo/sa/sleep]}}]
      to: [{operation: {methods: [GET, HEAD], paths: ["/public/*", "/api/*"]}}]
    - from: [{source: {principals: [cluster.local/ns/demo/sa/client2]}}]
      to: [{operation: {methods: [GET, POST, DELETE], paths: ["/api/*"]}}]
      when: [{key: "request.headers[x-team]", values: [blue, green]}]
    - to: [{operation: {paths: ["*.json"], notMethods: [PUT]}}]
    - from: [{source: {namespaces: [demo]}}]
      to: [{operation: {paths: [/health]}}]
    - to: [{operation: {methods: [OPTIONS], notPaths: ["/api/*", "/secret*"]}}]`,
  ),
].join('---\n');

type Case = [
  who: 'sleep' | 'client2',
  method: string,
  path: string,
  team: string | undefined,
  status: 200 | 403,
];
const CASES: Case[] = [
  ['sleep', 'GET', '/public/index.html', undefined, 200],
  ['sleep', 'HEAD', '/public/x', undefined, 200],
  ['sleep', 'GET', '/api/v1', undefined, 200],
  ['sleep', 'POST', '/api/v1', undefined, 403], // method not in its rule
  ['sleep', 'GET', '/other', undefined, 403], // no ALLOW rule matches
  ['sleep', 'GET', '/admin', undefined, 403], // DENY wins
  ['sleep', 'GET', '/admin/users', undefined, 403],
  ['sleep', 'GET', '/administrator', undefined, 403], // prefix match, not segment
  ['sleep', 'DELETE', '/api/v1', undefined, 403], // DENY: not client2
  ['sleep', 'GET', '/API/v1', undefined, 403], // paths are case-sensitive
  ['sleep', 'GET', '/api/../admin', undefined, 403], // normalized before matching
  ['sleep', 'GET', '/api/v1?next=/admin', undefined, 200], // the query is not the path
  ['sleep', 'GET', '/public//x', undefined, 200],
  ['sleep', 'GET', '/data.json', undefined, 200], // suffix rule, any source
  ['sleep', 'GET', '/health', undefined, 200], // namespace rule
  ['sleep', 'GET', '/health/deep', undefined, 403], // exact path only
  ['sleep', 'OPTIONS', '/anything', undefined, 200],
  ['sleep', 'OPTIONS', '/api/x', undefined, 403], // notPaths
  ['sleep', 'GET', '/api/v1', 'blue', 200], // the header condition is client2's rule only
  ['client2', 'GET', '/api/v1', 'blue', 200],
  ['client2', 'GET', '/api/v1', 'green', 200],
  ['client2', 'GET', '/api/v1', 'red', 403],
  ['client2', 'GET', '/api/v1', undefined, 403],
  ['client2', 'POST', '/api/items', 'blue', 200],
  ['client2', 'DELETE', '/api/items', 'blue', 200], // excluded from the DENY by notPrincipals
  ['client2', 'GET', '/public/x', 'blue', 403],
  ['client2', 'GET', '/admin', 'blue', 403],
  ['client2', 'GET', '/a/b/c.json', undefined, 200],
  ['client2', 'PUT', '/data.json', undefined, 403], // notMethods
  ['client2', 'GET', '/health', undefined, 200],
  ['client2', 'OPTIONS', '/secret/key', undefined, 403],
  ['client2', 'OPTIONS', '/', undefined, 200],
];

const m = new TestMesh({ octet: O, extraManifests: EXTRA });
const servers: net.Server[] = [];
const agents = {
  sleep: new SocksAgent(SLEEP, { keepAlive: true }),
  client2: new SocksAgent(CLIENT2, { keepAlive: true }),
};
const received: string[] = [];

beforeAll(async () => {
  await m.start();
  for (const host of [ip(11), ip(12)]) {
    const app = http.createServer((req, res) => {
      received.push(`${req.method} ${req.url}`);
      res.end('ok');
    });
    servers.push(await listen(app, host, 8080));
  }
  await m.waypointReady();
}, 60_000);

afterAll(async () => {
  for (const a of Object.values(agents)) a.destroy();
  await Promise.all(servers.map(closeServer));
  await m.stop();
});

describe('L7 AuthorizationPolicy decision table through the waypoint', () => {
  it.each(CASES)('%s %s %s (x-team %s) → %i', async (who, method, path, team, status) => {
    const before = received.length;
    const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        {
          host: 'api.demo',
          port: 8080,
          method,
          path,
          agent: agents[who],
          headers: team ? { 'x-team': team } : {},
        },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode!, body }));
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(r.status).toBe(status);
    if (status === 403) {
      if (method !== 'HEAD') expect(r.body).toMatch(/RBAC: access denied/);
      expect(received.length).toBe(before); // nothing reached the app
    } else expect(received.at(-1)?.startsWith(method)).toBe(true);
  });

  it('counts every request of the table in istio_requests_total, by response code (reporter waypoint)', async () => {
    const text = await new Promise<string>((resolve, reject) => {
      http
        .get({ host: ip(200), port: 15020, path: '/metrics' }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve(body));
        })
        .once('error', reject);
    });
    const sum = (code: number) =>
      text
        .split('\n')
        .filter((l) => l.startsWith('istio_requests_total{') && l.includes(`response_code="${code}"`))
        .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    expect(sum(200)).toBe(CASES.filter((c) => c[4] === 200).length);
    expect(sum(403)).toBe(CASES.filter((c) => c[4] === 403).length);
    const line = text.split('\n').find((l) => l.startsWith('istio_requests_total{') && l.includes('client2'));
    expect(line).toContain('reporter="waypoint"');
    expect(line).toContain('source_principal="spiffe://cluster.local/ns/demo/sa/client2"');
    expect(line).toContain('destination_service="api.demo.svc.cluster.local"');
  });
});
