// The waypoint's finishing parts end to end, with real processes on 127.0.49.0/24: pooled
// keep-alive HTTP/1.1 upstream connections, HTTP/2 and gRPC resilience (retries, per-try
// timeout, http2MaxRequests), and readiness on waypointIP:15021.
// client → node proxy (SOCKS) → HBONE → waypoint → HBONE as the waypoint → node proxy → app.
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { socksConnect } from '../../src/cli/socks-client.js';
import { Waypoint } from '../../src/waypoint/waypoint.js';
import { TestMesh, closeServer, listen, type LogRecord } from '../support/mesh.js';
import { SocksAgent, meshGet, meshLoad } from '../support/mesh-http.js';
import { ECHO_SERVICE, socksForwarder, type EchoMsg } from '../support/mesh-grpc.js';
import { demoService, waypointGateway } from '../support/waypoint-manifests.js';

const O = 49;
const ip = (n: number) => `127.0.${O}.${n}`;
const WAYPOINT = ip(200);
const SLEEP = ip(10);
const PODS = [
  { ip: ip(11), pod: 'demo/echo-v1' },
  { ip: ip(12), pod: 'demo/echo-v2' },
];

const svc = (name: string, vip: number, ports: string) =>
  demoService(name, ip(vip), { app: 'echo' }, ports, true);
const EXTRA = [
  waypointGateway(WAYPOINT),
  svc('web', 101, '[{name: http, port: 8080}]'),
  svc('grpc', 104, '[{name: grpc, port: 9000}]'),
  svc('h2', 105, '[{name: http, port: 9100}]'),
  svc('h2-guarded', 106, '[{name: http, port: 9200, targetPort: 9100}]'),
  svc('h2-big', 108, '[{name: http, port: 9101}]'),
  svc('h2-mirrored', 109, '[{name: http, port: 9100}]'),
  svc('grpc-guarded', 107, '[{name: grpc, port: 9300, targetPort: 9000}]'),
  `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: grpc, namespace: demo}
spec:
  hosts: [grpc.demo.svc.cluster.local]
  http:
    - retries: {attempts: 4, retryOn: unavailable}
      route: [{destination: {host: grpc.demo.svc.cluster.local}}]
`,
  `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: h2, namespace: demo}
spec:
  hosts: [h2.demo.svc.cluster.local]
  http:
    - match: [{uri: {prefix: /slow}}]
      retries: {attempts: 2, perTryTimeout: 0.1s, retryOn: 5xx}
      route: [{destination: {host: h2.demo.svc.cluster.local}}]
    - match: [{uri: {prefix: /noretry}}]
      retries: {attempts: 0}
      route: [{destination: {host: h2.demo.svc.cluster.local}}]
    - retries: {attempts: 3, retryOn: "503"}
      route: [{destination: {host: h2.demo.svc.cluster.local}}]
`,
  `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: h2-mirrored, namespace: demo}
spec:
  hosts: [h2-mirrored.demo.svc.cluster.local]
  http:
    - route: [{destination: {host: h2-mirrored.demo.svc.cluster.local}}]
      mirror: {host: h2.demo.svc.cluster.local, port: {number: 9100}}
      mirrorPercentage: {value: 100}
`,
  ...['h2-guarded', 'grpc-guarded'].map(
    (name) => `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ${name}, namespace: demo}
spec:
  host: ${name}.demo.svc.cluster.local
  trafficPolicy:
    connectionPool: {http: {http2MaxRequests: 1}}
`,
  ),
].join('---\n');

const m = new TestMesh({ octet: O, extraManifests: EXTRA });
const servers: net.Server[] = [];
const h2servers: http2.Http2Server[] = [];
let grpcServers: grpc.Server[] = [];
/** TCP connections the HTTP/1.1 backends accepted (one per upstream HBONE stream). */
let backendConnections = 0;

// ---- backends ----

type Msg = EchoMsg;

/** Unary answers UNAVAILABLE 30 % of the time for "flaky", waits 300 ms for "slow". */
async function startGrpc(host: string, pod: string): Promise<grpc.Server> {
  const server = new grpc.Server();
  server.addService(ECHO_SERVICE, {
    Unary: (call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
      const text = call.request.text;
      if (text.startsWith('flaky') && Math.random() < 0.3)
        return cb({ code: grpc.status.UNAVAILABLE, details: 'flaky backend' });
      if (text === 'slow') return void setTimeout(() => cb(null, { text, pod }), 300);
      cb(null, { text, pod });
    },
  });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`${host}:9000`, grpc.ServerCredentials.createInsecure(), (err) =>
      err ? reject(err) : resolve(),
    ),
  );
  return server;
}

/** Every h2c request the backends saw: pod, path, :authority, body bytes. */
const h2seen: { pod: string; path: string; authority: string; bytes: number }[] = [];

/**
 * h2c: answers with the pod, path and body bytes it got; /alternate fails with 503 every other
 * request (per pod), /slow and /hold wait.
 */
async function startH2(host: string, pod: string, port: number): Promise<http2.Http2Server> {
  let n = 0;
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    const path = String(headers[':path']);
    const reply = (status: number, body: string) => {
      if (stream.destroyed || stream.closed) return;
      stream.respond({ ':status': status, 'content-type': 'application/json' });
      stream.end(body);
    };
    let bytes = 0;
    stream.on('data', (c: Buffer) => (bytes += c.length));
    stream.once('end', () => {
      h2seen.push({ pod, path, authority: String(headers[':authority']), bytes });
      if (path.includes('/alternate') && n++ % 2 === 0) return reply(503, '{"error":"alternate"}');
      if (path.startsWith('/slow')) return void setTimeout(() => reply(200, '{}'), 1000);
      if (path.startsWith('/hold')) return void setTimeout(() => reply(200, JSON.stringify({ pod })), 300);
      reply(200, JSON.stringify({ pod, path, bytes }));
    });
  });
  return listen(server, host, port);
}

async function startHttp1(host: string, pod: string): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.once('end', () => res.end(JSON.stringify({ pod, path: req.url })));
  });
  server.keepAliveTimeout = 60_000;
  server.on('connection', () => backendConnections++);
  return listen(server, host, 8080);
}

// ---- clients through the mesh, as the sleep pod ----

async function h2Client(vip: string, port: number): Promise<http2.ClientHttp2Session> {
  const socket = await socksConnect({ host: SLEEP, port: 15080 }, vip, port);
  const session = http2.connect(`http://${vip}:${port}`, { createConnection: () => socket });
  session.on('error', () => {});
  return session;
}

function h2get(
  session: http2.ClientHttp2Session,
  path: string,
): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':path': path });
    let body = '';
    let headers: http2.IncomingHttpHeaders = {};
    req.on('response', (h) => (headers = h));
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => resolve({ status: Number(headers[':status']), headers, body }));
    req.on('error', reject);
    req.end();
  });
}

function h2post(
  session: http2.ClientHttp2Session,
  path: string,
  body: Buffer,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':path': path, ':method': 'POST' });
    let text = '';
    let status = 0;
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => resolve({ status, body: text }));
    req.on('error', reject);
    // In pieces, as a client streaming a large body would.
    for (let i = 0; i < body.length; i += 64 * 1024) req.write(body.subarray(i, i + 64 * 1024));
    req.end();
  });
}

type UnaryClient = grpc.Client & {
  Unary: (r: Msg, md: grpc.Metadata, cb: (e: grpc.ServiceError | null, r?: Msg) => void) => void;
};
async function grpcClient(vip: string, port: number): Promise<{ client: UnaryClient; fwd: net.Server }> {
  const fwd = await socksForwarder(SLEEP, vip, port);
  const Ctor = grpc.makeGenericClientConstructor(ECHO_SERVICE, 'Echo');
  const { port: local } = fwd.address() as net.AddressInfo;
  const client = new Ctor(`127.0.0.1:${local}`, grpc.credentials.createInsecure()) as unknown as UnaryClient;
  return { client, fwd };
}
function unary(client: UnaryClient, text: string): Promise<{ err: grpc.ServiceError | null; res?: Msg }> {
  return new Promise((resolve) =>
    client.Unary({ text }, new grpc.Metadata(), (err, res) => resolve({ err, res })),
  );
}

const isRequest = (l: LogRecord) =>
  l.component === 'waypoint/demo/waypoint' && l.rec.msg === 'request complete';

beforeAll(async () => {
  await m.start();
  for (const p of PODS) {
    servers.push(await startHttp1(p.ip, p.pod));
    h2servers.push(await startH2(p.ip, p.pod, 9100), await startH2(p.ip, p.pod, 9101));
  }
  grpcServers = await Promise.all(PODS.map((p) => startGrpc(p.ip, p.pod)));
  await m.waitForLog(
    (l) => l.component === 'waypoint/demo/waypoint' && l.rec.msg === 'waypoint ready',
    30_000,
  );
}, 60_000);

afterAll(async () => {
  // The mesh first: the waypoint's pooled upstream connections would keep the servers open.
  await m.stop();
  for (const g of grpcServers) g.forceShutdown();
  await Promise.all([...servers, ...h2servers].map((s) => closeServer(s)));
});

describe('pooled keep-alive HTTP/1.1 upstream', () => {
  it('carries 2 000 requests from 50 keep-alive connections on far fewer upstream connections', async () => {
    const agent = new SocksAgent(SLEEP, { keepAlive: true, maxSockets: 50 });
    const before = backendConnections;
    const N = 2000;
    const replies = await meshLoad(N, 50, (i) => meshGet(agent, 'web.demo', 8080, `/pooled/${i}`));
    const wrong = replies
      .map((r) =>
        r.status === 200 ? (JSON.parse(r.text) as { path?: string }).path : `${r.status} ${r.text}`,
      )
      .filter((p) => !p?.startsWith('/pooled/'));
    const seen = new Set(
      replies.filter((r) => r.status === 200).map((r) => (JSON.parse(r.text) as { path?: string }).path),
    );
    agent.destroy();
    expect(wrong).toEqual([]);
    expect(seen.size).toBe(N); // every request got its own answer, none lost or crossed
    const upstream = backendConnections - before;
    expect(upstream).toBeGreaterThan(0);
    expect(upstream).toBeLessThan(N / 10);
  }, 120_000);
});

describe('gRPC resilience', () => {
  it('turns a backend failing 30 % with UNAVAILABLE into ≥ 99 % success with retries', async () => {
    const { client, fwd } = await grpcClient(ip(104), 9000);
    const N = 400;
    let next = 0;
    let success = 0;
    await Promise.all(
      Array.from({ length: 2 }, async () => {
        while (next < N) {
          const r = await unary(client, `flaky-${next++}`);
          if (!r.err) success++;
        }
      }),
    );
    client.close();
    await closeServer(fwd);
    expect(success / N).toBeGreaterThanOrEqual(0.99);
    const retried = m.logs.filter(
      (l) => isRequest(l) && Number(l.rec.attempts) > 1 && l.rec.protocol === 'grpc',
    );
    expect(retried.length).toBeGreaterThan(0);
  }, 60_000);

  it('answers http2MaxRequests overflow with grpc-status UNAVAILABLE', async () => {
    const { client, fwd } = await grpcClient(ip(107), 9300);
    const results = await Promise.all(Array.from({ length: 6 }, () => unary(client, 'slow')));
    client.close();
    await closeServer(fwd);
    const overflow = results.filter((r) => r.err?.code === grpc.status.UNAVAILABLE);
    expect(overflow.length).toBeGreaterThan(0);
    expect(overflow[0]?.err?.details).toMatch(/overflow/);
    expect(results.some((r) => r.res?.text === 'slow')).toBe(true);
  });
});

describe('h2c resilience', () => {
  let session: http2.ClientHttp2Session;
  beforeAll(async () => {
    session = await h2Client(ip(105), 9100);
  });
  afterAll(() => session.close());

  it('retries a 503 on another try', async () => {
    // One at a time, so the retry budget (≥ 3 concurrent retries) never binds.
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await h2get(session, `/alternate/${i}`)).status);
    expect(statuses).toEqual(Array(20).fill(200));
    const noRetry: number[] = [];
    for (let i = 0; i < 20; i++) noRetry.push((await h2get(session, `/noretry/alternate/${i}`)).status);
    expect(noRetry).toContain(503);
  });

  it('replays the request body on a retry', async () => {
    const body = Buffer.alloc(100_000, 1);
    for (let i = 0; i < 4; i++) {
      const r = await h2post(session, `/alternate/body/${i}`, body);
      expect(r.status).toBe(200);
      expect((JSON.parse(r.body) as { bytes: number }).bytes).toBe(body.length);
    }
  });

  it('streams a body past the 1 MiB replay buffer intact, to a fresh upstream session', async () => {
    const big = await h2Client(ip(108), 9101);
    const body = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
    const r = await h2post(big, '/big', body);
    big.close();
    expect(r.status).toBe(200);
    expect((JSON.parse(r.body) as { bytes: number }).bytes).toBe(body.length);
  });

  it('mirrors a request with a -shadow authority, and the answer is the primary one', async () => {
    const mirrored = await h2Client(ip(109), 9100);
    const r = await h2post(mirrored, '/mirror/once', Buffer.from('copy me'));
    mirrored.close();
    expect(r.status).toBe(200);
    const deadline = Date.now() + 5000;
    while (h2seen.filter((s) => s.path === '/mirror/once').length < 2 && Date.now() < deadline)
      await new Promise((res) => setTimeout(res, 20));
    const seen = h2seen.filter((s) => s.path === '/mirror/once');
    expect(seen.map((s) => s.authority.includes('-shadow')).sort()).toEqual([false, true]);
    expect(seen.map((s) => s.bytes)).toEqual([7, 7]);
  });

  it('fires the per-try timeout, retries, then answers 504', async () => {
    const from = m.logs.length;
    const started = Date.now();
    const r = await h2get(session, '/slow');
    expect(r.status).toBe(504);
    expect(r.body).toMatch(/upstream request timeout/);
    expect(Date.now() - started).toBeLessThan(900);
    const rec = await m.waitForLog((l) => isRequest(l) && l.rec.path === '/slow', 10_000, from);
    expect(rec.rec.attempts).toBe(3);
    expect(rec.rec.protocol).toBe('http2');
  });

  it('answers 503 with x-envoy-overloaded beyond http2MaxRequests', async () => {
    const guarded = await h2Client(ip(106), 9200);
    const results = await Promise.all(Array.from({ length: 6 }, () => h2get(guarded, '/hold')));
    guarded.close();
    const overflow = results.filter((r) => r.status === 503);
    expect(overflow.length).toBeGreaterThan(0);
    expect(overflow[0]?.headers['x-envoy-overloaded']).toBe('true');
    expect(overflow[0]?.body).toMatch(/overflow/);
    expect(results.some((r) => r.status === 200)).toBe(true);
  });
});

describe('waypoint readiness', () => {
  const ready = (host: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      http
        .get({ host, port: 15021, path: '/healthz/ready', agent: false }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        })
        .on('error', reject);
    });

  it('is ready once it has its certificate and xDS state', async () => {
    expect(await ready(WAYPOINT)).toEqual({ status: 200, body: 'ready\n' });
  });

  it('answers 503 with the reason while xDS has not answered', async () => {
    const wp = new Waypoint({
      namespace: 'demo',
      name: 'orphan',
      ip: ip(201),
      nodeName: 'node-1',
      controlPlane: `${ip(6)}:15012`, // nothing listens there
      stateDir: m.stateDir,
      logger: pino({ level: 'silent' }),
    });
    const started = wp.start().catch(() => {}); // never gets past xDS; stop() ends it
    try {
      let r = { status: 0, body: '' };
      for (let i = 0; i < 100 && !/xDS/.test(r.body); i++) {
        r = await ready(ip(201)).catch(() => r);
        if (!/xDS/.test(r.body)) await new Promise((res) => setTimeout(res, 50));
      }
      expect(r).toEqual({ status: 503, body: 'not ready: waiting for the first xDS response\n' });
    } finally {
      await wp.stop(0);
      void started;
    }
  });
});
