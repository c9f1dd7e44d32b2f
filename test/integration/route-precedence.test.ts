// Issue 13 divergence 7 through a real mesh (127.0.220.0/24): two HTTPRoutes on one Service tie on
// every match criterion; the oldest metadata.creationTimestamp wins, then namespace/name
// (Gateway API HTTPRouteRule.Matches: "If ties still exist across multiple Routes ... The oldest
// Route based on creation timestamp ... alphabetical order by <namespace>/<name>").
import http from 'node:http';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestMesh, closeServer, listen } from '../support/mesh.js';
import { SocksAgent } from '../support/mesh-http.js';
import { demoPod, demoService, waypointGateway } from '../support/waypoint-manifests.js';

const O = 220;
const ip = (n: number) => `127.0.${O}.${n}`;
const SLEEP = ip(10);

const pod = (name: string, last: number, app: string) => demoPod(name, ip(last), app);

const route = (name: string, parent: string, backend: string, ts?: string) => `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${name}, namespace: demo${ts ? `, creationTimestamp: "${ts}"` : ''}}
spec:
  parentRefs: [{group: "", kind: Service, name: ${parent}, port: 8080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /x}}]
    backendRefs: [{name: ${backend}, port: 8080}]
`;

// File order puts the route that must lose first each time; the Services themselves select
// "two", so only the winning route answers "one".
const EXTRA = [
  waypointGateway(ip(200)),
  pod('one-1', 15, 'one'),
  pod('two-1', 16, 'two'),
  demoService('one', ip(101), { app: 'one' }, '[{name: http, port: 8080}]'),
  demoService('two', ip(102), { app: 'two' }, '[{name: http, port: 8080}]'),
  demoService('dated', ip(103), { app: 'two' }, '[{name: http, port: 8080}]', true),
  demoService('undated', ip(104), { app: 'two' }, '[{name: http, port: 8080}]', true),
  route('aa-newer', 'dated', 'two', '2024-05-01T10:00:01Z'),
  route('zz-older', 'dated', 'one', '2024-05-01T10:00:00Z'),
  route('zz-second', 'undated', 'two'),
  route('aa-first', 'undated', 'one'),
].join('---\n');

const m = new TestMesh({ octet: O, extraManifests: EXTRA });
const servers: net.Server[] = [];
const agent = new SocksAgent(SLEEP, { keepAlive: true });

function get(host: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port: 8080, path, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

beforeAll(async () => {
  await m.start();
  for (const [last, name] of [
    [15, 'one'],
    [16, 'two'],
  ] as const) {
    servers.push(
      await listen(
        http.createServer((_req, res) => res.end(name)),
        ip(last),
        8080,
      ),
    );
  }
  await m.waypointReady();
}, 60_000);

afterAll(async () => {
  agent.destroy();
  for (const s of servers) await closeServer(s);
  await m.stop();
});

describe('HTTPRoutes tied on every match criterion, through the waypoint', () => {
  it('the oldest creationTimestamp wins although its name sorts last and it comes second', async () => {
    expect(await get('dated.demo.svc.cluster.local', '/x/1')).toEqual({ status: 200, body: 'one' });
  });
  it('without timestamps, the first by namespace/name wins whatever the file order', async () => {
    expect(await get('undated.demo.svc.cluster.local', '/x/1')).toEqual({ status: 200, body: 'one' });
  });
});
