// Waypoint resilience end to end (real node proxies and waypoint, 127.0.57.0/24): fault rates,
// local rate limit, the retry budget against a retry storm, and an ejected endpoint's return.
import http from 'node:http';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestMesh, closeServer, listen } from '../support/mesh.js';
import { SocksAgent, meshGet, meshLoad } from '../support/mesh-http.js';
import { demoService, waypointGateway } from '../support/waypoint-manifests.js';

const O = 57;
const ip = (n: number) => `127.0.${O}.${n}`;
const SLEEP = ip(10);
const ECHO_V1 = ip(11);
const ECHO_V2 = ip(12);

const svc = (name: string, vip: string, port: number) =>
  demoService(name, vip, { app: 'echo' }, `[{name: http, port: ${port}}]`, true);
const EXTRA = [
  waypointGateway(ip(200)),
  svc('faulty', ip(101), 8080),
  `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: faulty, namespace: demo}
spec:
  hosts: [faulty.demo.svc.cluster.local]
  http:
    - fault:
        delay: {fixedDelay: 100ms, percentage: {value: 50}}
        abort: {httpStatus: 418, percentage: {value: 30}}
      route: [{destination: {host: faulty.demo.svc.cluster.local}}]
`,
  svc('limited', ip(102), 8080),
  `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: limited
  namespace: demo
  annotations: {"ambit.dev/local-rate-limit": "5/2s"}
spec:
  host: limited.demo.svc.cluster.local
`,
  svc('storm', ip(103), 8081),
  `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: storm, namespace: demo}
spec:
  hosts: [storm.demo.svc.cluster.local]
  http:
    - retries: {attempts: 5, retryOn: 5xx}
      route: [{destination: {host: storm.demo.svc.cluster.local}}]
`,
  svc('healing', ip(104), 8082),
  `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: healing, namespace: demo}
spec:
  host: healing.demo.svc.cluster.local
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 5, interval: 500ms, baseEjectionTime: 1s, maxEjectionPercent: 100}
`,
  `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: healing, namespace: demo}
spec:
  hosts: [healing.demo.svc.cluster.local]
  http:
    - retries: {attempts: 0}
      route: [{destination: {host: healing.demo.svc.cluster.local}}]
`,
  svc('single', ip(105), 8083),
  `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: single, namespace: demo}
spec:
  host: single.demo.svc.cluster.local
  trafficPolicy:
    connectionPool: {http: {http2MaxRequests: 1, http1MaxPendingRequests: 1}}
`,
  `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: single, namespace: demo}
spec:
  hosts: [single.demo.svc.cluster.local]
  http:
    - retries: {attempts: 2, retryOn: 5xx}
      route: [{destination: {host: single.demo.svc.cluster.local}}]
`,
].join('---\n');

const m = new TestMesh({ octet: O, extraManifests: EXTRA });
const servers: net.Server[] = [];
const agent = new SocksAgent(SLEEP, { keepAlive: true, maxSockets: 200 });
/** Requests each backend port received, by pod. */
const hits = new Map<string, number>();
/** While true, echo-v1 answers 500 on 8082. */
let v1Broken = true;

async function backends(host: string, pod: string): Promise<void> {
  const count = (key: string) => hits.set(key, (hits.get(key) ?? 0) + 1);
  const ok = http.createServer((_req, res) => {
    count(`8080 ${pod}`);
    res.end(pod);
  });
  // Every request fails, slowly, so a burst of them is in flight at once.
  const failing = http.createServer((_req, res) => {
    count(`8081 ${pod}`);
    setTimeout(() => res.writeHead(503).end('down\n'), 150);
  });
  const healing = http.createServer((_req, res) => {
    count(`8082 ${pod}`);
    if (pod === 'demo/echo-v1' && v1Broken) res.writeHead(500).end('broken\n');
    else res.end(pod);
  });
  servers.push(
    await listen(ok, host, 8080),
    await listen(failing, host, 8081),
    await listen(healing, host, 8082),
    await listen(alternating(pod), host, 8083),
  );
}

/** Every other request of each pod answers 503: the first try of a request may fail, its retry not. */
function alternating(pod: string): http.Server {
  let n = 0;
  return http.createServer((_req, res) => {
    if (n++ % 2 === 0) res.writeHead(503).end('once\n');
    else res.end(pod);
  });
}

beforeAll(async () => {
  await m.start();
  await backends(ECHO_V1, 'demo/echo-v1');
  await backends(ECHO_V2, 'demo/echo-v2');
  await m.waitForLog((l) => l.component === 'waypoint/demo/waypoint' && l.rec.msg === 'waypoint ready');
}, 60_000);

afterAll(async () => {
  agent.destroy();
  await Promise.all(servers.map(closeServer));
  await m.stop();
});

describe('fault injection rates', () => {
  it('aborts ~30 % and delays ~50 % of 400 requests, drawn independently', async () => {
    const replies = await meshLoad(400, 8, () => meshGet(agent, 'faulty.demo', 8080, '/'));
    const aborted = replies.filter((r) => r.status === 418).length / 400;
    const delayed = replies.filter((r) => r.ms >= 100).length / 400;
    // ±4.4 standard deviations of a binomial over 400 draws: fails by chance about once in 10⁵ runs.
    expect(aborted).toBeGreaterThan(0.2);
    expect(aborted).toBeLessThan(0.4);
    expect(delayed).toBeGreaterThan(0.39);
    expect(delayed).toBeLessThan(0.61);
    expect(replies.filter((r) => r.status !== 418).every((r) => r.status === 200)).toBe(true);
    // An aborted request never reaches a backend.
    const served = (hits.get('8080 demo/echo-v1') ?? 0) + (hits.get('8080 demo/echo-v2') ?? 0);
    expect(served).toBe(replies.filter((r) => r.status === 200).length);
  }, 60_000);
});

describe('local rate limit', () => {
  it('answers 429 past the bucket, with Envoy headers, and refills', async () => {
    const burst = await Promise.all(
      Array.from({ length: 12 }, () => meshGet(agent, 'limited.demo', 8080, '/')),
    );
    const ok = burst.filter((r) => r.status === 200);
    const limited = burst.filter((r) => r.status === 429);
    expect(ok.length).toBeGreaterThanOrEqual(5);
    expect(ok.length).toBeLessThanOrEqual(10); // at most one refill of 5 during the burst
    expect(limited.length).toBe(12 - ok.length);
    expect(limited[0]!.headers['x-envoy-ratelimited']).toBe('true');
    expect(limited[0]!.text).toMatch(/local_rate_limited/);
    await new Promise((r) => setTimeout(r, 2100));
    expect((await meshGet(agent, 'limited.demo', 8080, '/')).status).toBe(200);
  }, 30_000);
});

describe('retry budget', () => {
  it('keeps a retry storm against a dead backend far below attempts × requests', async () => {
    const from = m.logs.length;
    const before = (hits.get('8081 demo/echo-v1') ?? 0) + (hits.get('8081 demo/echo-v2') ?? 0);
    const replies = await Promise.all(
      Array.from({ length: 100 }, () => meshGet(agent, 'storm.demo', 8081, '/')),
    );
    expect(replies.every((r) => r.status === 503)).toBe(true);
    const tries = (hits.get('8081 demo/echo-v1') ?? 0) + (hits.get('8081 demo/echo-v2') ?? 0) - before;
    // Without a budget: 100 × (1 + 5) = 600 tries. With Envoy's (20 % of active requests, at
    // least 3 at once) the first failure wave gets ~20 retries and the waves after a few each.
    expect(tries).toBeGreaterThanOrEqual(100);
    expect(tries).toBeLessThan(250);
    const stops = m.logs
      .slice(from)
      .filter((l) => l.component === 'waypoint/demo/waypoint' && l.rec['retry.stop'] === 'budget-exhausted');
    expect(stops.length).toBeGreaterThan(50);
  }, 60_000);
});

describe('outlier detection', () => {
  it('ejects an endpoint after 5 consecutive 5xx and sends it traffic again after the ejection time', async () => {
    const from = m.logs.length;
    let failures = 0;
    for (let i = 0; i < 40 && failures < 5; i++)
      if ((await meshGet(agent, 'healing.demo', 8082, '/')).status === 500) failures++;
    expect(failures).toBe(5);
    await m.waitForLog((l) => l.rec.msg === `endpoint ${ECHO_V1}:8082 ejected`, 5000, from);
    v1Broken = false;
    const v1Before = hits.get('8082 demo/echo-v1') ?? 0;
    // Ejected: v2 serves everything.
    for (let i = 0; i < 6; i++)
      expect((await meshGet(agent, 'healing.demo', 8082, '/')).text).toBe('demo/echo-v2');
    expect(hits.get('8082 demo/echo-v1')).toBe(v1Before);
    // The detector returns an endpoint when its time is up, at the next pick.
    await new Promise((r) => setTimeout(r, 1100));
    const served = new Set<string>();
    for (let i = 0; i < 10; i++) served.add((await meshGet(agent, 'healing.demo', 8082, '/')).text);
    expect([...served].sort()).toEqual(['demo/echo-v1', 'demo/echo-v2']);
    await m.waitForLog((l) => l.rec.msg === `endpoint ${ECHO_V1}:8082 returned after ejection`, 1000, from);
  }, 30_000);
});

describe('connection pool limit and retries', () => {
  it('a retry does not count against http2MaxRequests: 1 while the failed try is being discarded', async () => {
    const replies = [];
    for (let i = 0; i < 12; i++) replies.push(await meshGet(agent, 'single.demo', 8083, '/'));
    expect(replies.map((r) => r.status)).toEqual(Array(12).fill(200));
  }, 30_000);
});
