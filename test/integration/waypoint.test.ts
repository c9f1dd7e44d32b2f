// Waypoints end to end with real processes on 127.0.48.0/24: sleep → node proxy → HBONE → the
// waypoint (L7 authz, routing) → HBONE as the waypoint → destination node proxy → app.
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { H2_PREFACE, h2Frame } from '../support/h2-frames.js';
import * as grpc from '@grpc/grpc-js';
import { generateKeyPairSync } from 'node:crypto';
import { SignJWT, importJWK, type JWK } from 'jose';
import { startEcho } from '../../src/cli/echo.js';
import { socksConnect } from '../../src/cli/socks-client.js';
import { TestMesh, closeServer, listen, readAll, tcpEcho, type LogRecord } from '../support/mesh.js';
import { meshSignedCert, type TestCert } from '../support/certs.js';
import { ECHO_SERVICE, socksForwarder, type EchoMsg } from '../support/mesh-grpc.js';
import { demoService, serviceAuthorizationPolicy, waypointGateway } from '../support/waypoint-manifests.js';

const O = 48;
const ip = (n: number) => `127.0.${O}.${n}`;
const WAYPOINT = ip(200);
const SLEEP = ip(10);
const ECHO_V1 = ip(11);
const ECHO_V2 = ip(12);
const WEB_VIP = ip(101);
const GRPC_VIP = ip(104);
const ECHO_VIP = ip(100); // the base mesh's `echo`: not bound to the waypoint
const FLAKY_VIP = ip(105);
const GUARDED_VIP = ip(106);

// A signing key whose public half the RequestAuthentication below carries inline.
const jwtKeys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const JWK_PUBLIC = {
  ...(jwtKeys.publicKey.export({ format: 'jwk' }) as JWK),
  kid: 'test',
  alg: 'ES256',
  use: 'sig',
};
const JWK_PRIVATE = { ...(jwtKeys.privateKey.export({ format: 'jwk' }) as JWK), kid: 'test', alg: 'ES256' };
async function token(claims: { iss?: string; sub?: string; expSeconds?: number } = {}): Promise<string> {
  const key = await importJWK(JWK_PRIVATE, 'ES256');
  return new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', kid: 'test' })
    .setIssuer(claims.iss ?? 'https://issuer.test')
    .setSubject(claims.sub ?? 'alice')
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + (claims.expSeconds ?? 600))
    .sign(key);
}

const svc = demoService;
const BOUND = true;
const EXTRA = [
  waypointGateway(WAYPOINT),
  svc('web', WEB_VIP, { app: 'echo' }, '[{name: http, port: 8080}, {name: tcp-echo, port: 7000}]', BOUND),
  svc('echo-v1', ip(102), { app: 'echo', version: 'v1' }, '[{name: http, port: 8080}]'),
  svc('echo-v2', ip(103), { app: 'echo', version: 'v2' }, '[{name: http, port: 8080}]'),
  svc('grpc', GRPC_VIP, { app: 'echo' }, '[{name: grpc, port: 9000}]', BOUND),
  svc('guarded', GUARDED_VIP, { app: 'echo' }, '[{name: http, port: 8090}]', BOUND),
  `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: guarded, namespace: demo}
spec:
  host: guarded.demo.svc.cluster.local
  trafficPolicy:
    connectionPool: {http: {http2MaxRequests: 1, http1MaxPendingRequests: 1}}
    outlierDetection: {consecutive5xxErrors: 5, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}
`,
  svc('flaky', FLAKY_VIP, { app: 'echo' }, '[{name: http, port: 8090}, {name: http-ws, port: 8091}]', BOUND),
  `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: flaky, namespace: demo}
spec:
  hosts: [flaky.demo.svc.cluster.local]
  http:
    - match: [{uri: {prefix: /slow}}]
      timeout: 0.2s
      route: [{destination: {host: flaky.demo.svc.cluster.local, port: {number: 8090}}}]
    - match: [{uri: {prefix: /fault}}]
      fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
      route: [{destination: {host: flaky.demo.svc.cluster.local, port: {number: 8090}}}]
    - match: [{uri: {prefix: /noretry}}]
      retries: {attempts: 0}
      route: [{destination: {host: flaky.demo.svc.cluster.local, port: {number: 8090}}}]
    - match: [{port: 8091}]
      route: [{destination: {host: flaky.demo.svc.cluster.local, port: {number: 8091}}}]
    - match: [{port: 8090}]
      retries: {attempts: 4, retryOn: 5xx}
      route: [{destination: {host: flaky.demo.svc.cluster.local, port: {number: 8090}}}]
`,
  `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 8080}]
  rules:
    - matches: [{path: {type: PathPrefix, value: /}, headers: [{name: x-canary, value: "true"}]}]
      backendRefs: [{name: echo-v2, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /split}}]
      backendRefs: [{name: echo-v1, port: 8080, weight: 90}, {name: echo-v2, port: 8080, weight: 10}]
    - matches: [{path: {type: PathPrefix, value: /api}}]
      backendRefs: [{name: web, port: 8080}]
    - matches: [{path: {type: PathPrefix, value: /gone}}]
      backendRefs: [{name: missing, port: 8080}]
`,
  `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-direct-sleep, namespace: demo}
spec:
  selector: {matchLabels: {app: echo}}
  action: DENY
  rules: [{from: [{source: {principals: [cluster.local/ns/demo/sa/sleep]}}], to: [{operation: {ports: ["8090"]}}]}]
`,
  `
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: demo}
spec:
  targetRefs: [{kind: Service, group: "", name: web}]
  jwtRules:
    - issuer: https://issuer.test
      jwks: '${JSON.stringify({ keys: [JWK_PUBLIC] })}'
`,
  // These DENYs are scoped to port 8080: at the TCP port 7000 a DENY's HTTP-only fields are dropped
  // (Envoy network RBAC, istio model.go checkError), so unscoped they would deny every TCP connection.
  serviceAuthorizationPolicy(
    'secure-needs-jwt',
    'web',
    'DENY',
    ' [{from: [{source: {notRequestPrincipals: ["*"]}}], to: [{operation: {paths: ["/api/secure*"], ports: ["8080"]}}]}]',
  ),
  serviceAuthorizationPolicy(
    'no-admin',
    'web',
    'DENY',
    ' [{to: [{operation: {paths: ["/api/admin*"], ports: ["8080"]}}]}]',
  ),
].join('---\n');

const m = new TestMesh({ octet: O, extraManifests: EXTRA });
const servers: net.Server[] = [];
let grpcServers: grpc.Server[] = [];

type Msg = EchoMsg;

async function startGrpc(host: string, pod: string): Promise<grpc.Server> {
  const server = new grpc.Server();
  server.addService(ECHO_SERVICE, {
    Unary: (call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
      if (call.request.text === 'fail')
        return cb({ code: grpc.status.FAILED_PRECONDITION, details: 'asked to fail' });
      cb(null, { text: call.request.text, pod });
    },
    Chat: (call: grpc.ServerDuplexStream<Msg, Msg>) => {
      call.on('data', (m: Msg) => call.write({ text: m.text.toUpperCase(), pod }));
      call.on('end', () => call.end());
    },
  });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`${host}:9000`, grpc.ServerCredentials.createInsecure(), (err) =>
      err ? reject(err) : resolve(),
    ),
  );
  return server;
}

class SocksAgent extends http.Agent {
  override createConnection(
    opts: net.NetConnectOpts,
    cb: (err: Error | null, s?: net.Socket) => void,
  ): undefined {
    const o = opts as net.TcpNetConnectOpts;
    socksConnect({ host: SLEEP, port: 15080 }, o.host ?? '', Number(o.port)).then(
      (s) => cb(null, s),
      (e: Error) => cb(e),
    );
    return undefined;
  }
}
const agent = new SocksAgent({ keepAlive: true, maxSockets: 8 });

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json?: { pod?: string; headers?: Record<string, string>; remote?: string };
}
/** One request; `fresh` uses its own connection, closed after the response (so every proxy writes its record). */
function get(
  host: string,
  port: number,
  path: string,
  headers: Record<string, string> = {},
  fresh = false,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const options: http.RequestOptions = fresh
      ? { host, port, path, headers: { ...headers, connection: 'close' }, agent: new SocksAgent() }
      : { host, port, path, headers, agent };
    const req = http.request(options, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        let parsed: Reply['json'];
        try {
          parsed = JSON.parse(text) as Reply['json'];
        } catch {
          parsed = undefined;
        }
        resolve({ status: res.statusCode!, headers: res.headers, text, json: parsed });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

const wpLogs = (from: number) => m.logs.slice(from).filter((l) => l.component === 'waypoint/demo/waypoint');
const isRequest = (l: LogRecord) => l.rec.msg === 'request complete';

/** Port 8090: 30 % of requests fail with 503, /slow answers after 1 s; 8091: Upgrade, then echo. */
async function startFlaky(host: string, pod: string): Promise<net.Server[]> {
  const flaky = http.createServer((req, res) => {
    if (req.url?.startsWith('/slow')) {
      setTimeout(() => res.end('slow\n'), 1000);
      return;
    }
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => {
      if (req.url?.startsWith('/v1-fails')) {
        if (pod === 'demo/echo-v1') res.writeHead(500).end('v1 fails\n');
        else res.writeHead(200).end(JSON.stringify({ pod }));
      } else if (!req.url?.startsWith('/ok') && Math.random() < 0.3) {
        // /ok never fails: a 503 from echo-v1 there would count toward guarded's outlier
        // detection and eject v1 one failure early in the outlier test below.
        res.writeHead(503).end('flaky\n');
      } else
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ pod, bodyBytes: n, host: req.headers.host }));
    });
  });
  const ws = http.createServer((_req, res) => res.writeHead(426).end());
  ws.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nupgrade: ${req.headers.upgrade}\r\nconnection: upgrade\r\n\r\n`,
    );
    socket.pipe(socket);
  });
  return [await listen(flaky, host, 8090), await listen(ws, host, 8091)];
}

beforeAll(async () => {
  await m.start();
  servers.push(
    ...(await startFlaky(ECHO_V1, 'demo/echo-v1')),
    ...(await startFlaky(ECHO_V2, 'demo/echo-v2')),
  );
  servers.push(await startEcho({ host: ECHO_V1, port: 8080, pod: 'demo/echo-v1' }));
  servers.push(await startEcho({ host: ECHO_V2, port: 8080, pod: 'demo/echo-v2' }));
  servers.push(await tcpEcho(ECHO_V1, 7000));
  servers.push(await tcpEcho(ECHO_V2, 7000));
  grpcServers = [await startGrpc(ECHO_V1, 'demo/echo-v1'), await startGrpc(ECHO_V2, 'demo/echo-v2')];
}, 60_000);

afterAll(async () => {
  agent.destroy();
  for (const g of grpcServers) g.forceShutdown();
  await Promise.all(servers.map(closeServer));
  await m.stop();
});

describe('waypoint deployment', () => {
  it('is programmed by the control plane and started by ambit up with its own identity', async () => {
    await m.waitForLog(
      (l) =>
        l.component === 'controlplane' &&
        l.rec.msg === `waypoint demo/waypoint programmed, address ${WAYPOINT}`,
    );
    const ready = await m.waitForLog(
      (l) => l.component === 'waypoint/demo/waypoint' && l.rec.msg === 'waypoint ready',
    );
    expect(ready.rec.identity).toBe('spiffe://cluster.local/ns/demo/sa/waypoint');
    expect(m.mesh.description.waypoints).toEqual([
      expect.objectContaining({ namespace: 'demo', name: 'waypoint', ip: WAYPOINT, node: 'node-1' }),
    ]);
  });
});

describe('traffic through the waypoint', () => {
  it('sends bound traffic through the waypoint; the destination sees the waypoint identity', async () => {
    const from = m.logs.length;
    const r = await get('web.demo', 8080, '/api/hello', {}, true);
    expect(r.status).toBe(200);
    expect(r.json?.pod).toMatch(/^demo\/echo-v[12]$/);
    expect(r.json?.headers?.['x-forwarded-for']).toBe(SLEEP);
    expect(r.json?.headers?.['x-forwarded-proto']).toBe('http');
    expect(r.json?.headers?.['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.json?.headers?.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    const wp = await m.waitForLog((l) => isRequest(l) && l.rec.path === '/api/hello', 10_000, from);
    expect(wp.component).toBe('waypoint/demo/waypoint');
    expect(wp.rec['src.identity']).toBe('spiffe://cluster.local/ns/demo/sa/sleep');
    expect(wp.rec['dst.addr']).toBe(`${WEB_VIP}:8080`);
    const outbound = await m.waitForLog(
      (l) =>
        l.component === 'node/node-1' &&
        l.rec.direction === 'outbound' &&
        l.rec['dst.target'] === 'web.demo:8080',
      10_000,
      from,
    );
    expect(outbound.rec['dst.hbone_addr']).toBe(`${WAYPOINT}:15008`);
    expect(outbound.rec['dst.identity']).toBe('spiffe://cluster.local/ns/demo/sa/waypoint');
  });

  it("the destination's L4 policy sees the waypoint's identity, not the client's", async () => {
    // An L4 DENY for sleep on port 8090 at the echo pods: sleep is refused directly, but its
    // requests through the waypoint arrive as the waypoint and pass.
    await expect(socksConnect({ host: SLEEP, port: 15080 }, ECHO_V1, 8090)).rejects.toThrow(/SOCKS5 reply/);
    const denied = await m.waitForLog(
      (l) => l.rec.msg === 'connection denied by policy' && l.rec['dst.port'] === 8090,
    );
    expect(denied.rec['src.identity']).toBe('spiffe://cluster.local/ns/demo/sa/sleep');
    const from = m.logs.length;
    const r = await get('guarded.demo', 8090, '/ok');
    expect(r.status).toBe(200);
    const wp = await m.waitForLog((l) => isRequest(l) && l.rec.path === '/ok', 10_000, from);
    expect(wp.rec.reason).toBeUndefined();
    expect(m.logs.slice(from).filter((l) => l.rec.msg === 'connection denied by policy')).toEqual([]);
  });

  it('never touches the waypoint for traffic that is not bound to it', async () => {
    const from = m.logs.length;
    const r = await get('echo.demo', 8080, '/unbound', {}, true);
    expect(r.status).toBe(200);
    const outbound = await m.waitForLog(
      (l) =>
        l.rec.direction === 'outbound' &&
        l.rec['dst.target'] === 'echo.demo:8080' &&
        l.rec.msg === 'connection complete',
      10_000,
      from,
    );
    expect(outbound.rec['dst.hbone_addr']).not.toBe(`${WAYPOINT}:15008`);
    expect(outbound.rec['dst.waypoint']).toBeUndefined();
    await new Promise((r) => setTimeout(r, 200));
    expect(wpLogs(from).filter((l) => String(l.rec['dst.addr']).startsWith(ECHO_VIP))).toEqual([]);
    expect(r.json?.headers?.['x-request-id']).toBeUndefined();
  });

  it('splits 90/10 by HTTPRoute weights within ±3 % over 2000 requests', async () => {
    const counts = { 'demo/echo-v1': 0, 'demo/echo-v2': 0 } as Record<string, number>;
    const N = 2000;
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < N) {
          next++;
          const r = await get('web.demo', 8080, '/split');
          expect(r.status, r.text).toBe(200);
          counts[r.json!.pod!]!++;
        }
      }),
    );
    const share = counts['demo/echo-v1']! / (counts['demo/echo-v1']! + counts['demo/echo-v2']!);
    expect(share).toBeGreaterThan(0.87);
    expect(share).toBeLessThan(0.93);
  }, 120_000);

  it('routes a header canary to v2', async () => {
    for (let i = 0; i < 10; i++) {
      const r = await get('web.demo', 8080, '/anything', { 'x-canary': 'true' });
      expect(r.json?.pod).toBe('demo/echo-v2');
    }
  });

  it('answers 404 when no route matches', async () => {
    const r = await get('web.demo', 8080, '/nowhere');
    expect(r.status).toBe(404);
  });

  it('answers 500 with a reason for an HTTPRoute backendRef to a missing Service (Gateway API), and the other routes still work', async () => {
    const r = await get('web.demo', 8080, '/gone');
    expect(r.status).toBe(500);
    expect(r.text.length).toBeGreaterThan(0);
    expect((await get('web.demo', 8080, '/api/ok')).status).toBe(200);
  });

  it('denies by L7 AuthorizationPolicy with 403 RBAC: access denied and a log line naming the policy', async () => {
    const from = m.logs.length;
    const r = await get('web.demo', 8080, '/api/admin/users');
    expect(r.status).toBe(403);
    expect(r.text).toMatch(/RBAC: access denied/);
    const denial = await m.waitForLog((l) => l.rec.msg === 'request denied by policy', 10_000, from);
    expect(denial.rec.policy).toBe('demo/no-admin');
    expect((await get('web.demo', 8080, '/api/users')).status).toBe(200);
  });

  it('proxies a non-HTTP port as TCP through the waypoint', async () => {
    const from = m.logs.length;
    const s = await socksConnect({ host: SLEEP, port: 15080 }, WEB_VIP, 7000);
    const payload = Buffer.from('\x00\x01binary tcp payload\n');
    s.end(payload);
    expect((await readAll(s)).equals(payload)).toBe(true);
    const rec = await m.waitForLog(
      (l) =>
        l.component === 'waypoint/demo/waypoint' &&
        l.rec.protocol === 'tcp' &&
        l.rec.msg === 'connection complete',
      10_000,
      from,
    );
    expect(rec.rec['dst.addr']).toBe(`${WEB_VIP}:7000`);
  });
});

describe('gRPC through the waypoint', () => {
  let fwd: net.Server;
  let client: grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  beforeAll(async () => {
    fwd = await socksForwarder(SLEEP, GRPC_VIP, 9000);
    const Ctor = grpc.makeGenericClientConstructor(ECHO_SERVICE, 'Echo');
    const { port } = fwd.address() as net.AddressInfo;
    client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as typeof client;
  });
  afterAll(async () => {
    client.close();
    await closeServer(fwd);
  });

  it('carries unary calls with status and trailers', async () => {
    const from = m.logs.length;
    const unary = (text: string) =>
      new Promise<{ err: grpc.ServiceError | null; res?: Msg }>((resolve) =>
        (client.Unary as (r: Msg, cb: (e: grpc.ServiceError | null, r?: Msg) => void) => void)(
          { text },
          (err, res) => resolve({ err, res }),
        ),
      );
    const ok = await unary('hello');
    expect(ok.err).toBeNull();
    expect(ok.res?.text).toBe('hello');
    const failed = await unary('fail');
    expect(failed.err?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(failed.err?.details).toBe('asked to fail');
    const rec = await m.waitForLog((l) => isRequest(l) && l.rec.protocol === 'grpc', 10_000, from);
    expect(rec.component).toBe('waypoint/demo/waypoint');
  });

  it('carries a bidirectional stream', async () => {
    const call = (client.Chat as () => grpc.ClientDuplexStream<Msg, Msg>)();
    const got: string[] = [];
    const done = new Promise<void>((resolve, reject) => {
      call.on('data', (m: Msg) => got.push(m.text));
      call.on('end', () => resolve());
      call.on('error', reject);
    });
    for (const t of ['a', 'b', 'c', 'd']) call.write({ text: t });
    call.end();
    await done;
    expect(got).toEqual(['A', 'B', 'C', 'D']);
  });
});

describe('bad input at the waypoint', () => {
  /** Sends raw bytes to web:8080 through the mesh; resolves with the status line of the answer. */
  async function raw(bytes: string): Promise<string> {
    const s = await socksConnect({ host: SLEEP, port: 15080 }, WEB_VIP, 8080);
    s.on('error', () => {});
    s.end(bytes);
    const answer = (await readAll(s).catch(() => Buffer.alloc(0))).toString('latin1');
    return answer.split('\r\n')[0] ?? '';
  }

  it.each<[string, string, string]>([
    ['malformed request line', 'GET /\x01bad HTTP/1.1\r\nHost: web\r\n\r\n', '400'],
    [
      'headers over 60 KiB',
      `GET /api/x HTTP/1.1\r\nHost: web\r\nx-big: ${'a'.repeat(61 * 1024)}\r\n\r\n`,
      '431',
    ],
    [
      'Content-Length and Transfer-Encoding together (smuggling)',
      'POST /api/x HTTP/1.1\r\nHost: web\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      '400',
    ],
    ['obs-fold header continuation', 'GET /api/x HTTP/1.1\r\nHost: web\r\nx-a: 1\r\n folded\r\n\r\n', '400'],
    [
      'two Content-Length values',
      'POST /api/x HTTP/1.1\r\nHost: web\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab',
      '400',
    ],
  ])('%s → %s', async (_name, bytes, status) => {
    const from = m.logs.length;
    expect(await raw(bytes)).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
    const rec = await m.waitForLog((l) => l.rec.msg === 'request refused: malformed HTTP', 10_000, from);
    expect(rec.rec.status).toBe(Number(status));
  });

  it('keeps serving after bad input', async () => {
    expect((await get('web.demo', 8080, '/api/after', {}, true)).status).toBe(200);
  });
});

describe('resilience at the waypoint', () => {
  async function run(path: string, n: number, concurrency = 4): Promise<Map<number, number>> {
    const statuses = new Map<number, number>();
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < n) {
          next++;
          const r = await get('flaky.demo', 8090, path);
          statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        }
      }),
    );
    return statuses;
  }

  it('retries turn a backend failing 30 % of requests into ≥ 99 % success', async () => {
    const without = await run('/noretry', 300);
    expect((without.get(503) ?? 0) / 300).toBeGreaterThan(0.15);
    // Two at a time: the retry budget (max(3, 20 % of active requests) concurrent retries) never binds.
    const withRetries = await run('/x', 400, 2);
    expect((withRetries.get(200) ?? 0) / 400).toBeGreaterThanOrEqual(0.99);
  }, 60_000);

  it('answers 504 when the route timeout fires', async () => {
    const started = Date.now();
    const r = await get('flaky.demo', 8090, '/slow');
    expect(r.status).toBe(504);
    expect(r.text).toMatch(/upstream request timeout/);
    expect(Date.now() - started).toBeLessThan(900);
  });

  it('injects an abort fault without contacting the backend', async () => {
    const r = await get('flaky.demo', 8090, '/fault');
    expect(r.status).toBe(418);
    expect(r.text).toMatch(/fault filter abort/);
  });
});

describe('DestinationRule policies at the waypoint', () => {
  it('ejects an endpoint after 5 consecutive 5xx (outlier detection)', async () => {
    // v1 answers 5xx on this path, v2 200. The balancer's order is not assumed: send until the
    // client has seen 5 failures, then v1 must be ejected and get nothing for its 30 s ejection.
    let fails = 0;
    for (let i = 0; i < 60 && fails < 5; i++) {
      const r = await get('guarded.demo', 8090, '/v1-fails');
      if (r.status === 500) fails++; // v1's own answer; other statuses are other mechanisms
    }
    expect(fails).toBe(5);
    const ejected = await m.waitForLog(
      (l) => l.component === 'waypoint/demo/waypoint' && /ejected$/.test(String(l.rec.msg)),
    );
    expect(ejected.rec.endpoint).toBe(`${ECHO_V1}:8090`);
    const after: number[] = [];
    for (let i = 0; i < 15; i++) after.push((await get('guarded.demo', 8090, '/v1-fails')).status);
    expect(after).toEqual(Array(15).fill(200));
  });

  it('answers 503 with x-envoy-overloaded when the connection pool overflows', async () => {
    const results = await Promise.all(
      Array.from({ length: 6 }, () => get('guarded.demo', 8090, '/slow-but-ok', {}, true)),
    );
    const overflow = results.filter((r) => r.status === 503);
    expect(overflow.length).toBeGreaterThan(0);
    expect(overflow[0]?.headers['x-envoy-overloaded']).toBe('true');
    expect(overflow[0]?.text).toMatch(/overflow/);
  });
});

describe('HTTP/1.1 details through the waypoint', () => {
  it('passes an Upgrade through and then splices bytes both ways', async () => {
    const s = await socksConnect({ host: SLEEP, port: 15080 }, FLAKY_VIP, 8091);
    s.write('GET /ws HTTP/1.1\r\nHost: flaky\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    const head = await new Promise<string>((resolve) =>
      s.once('data', (c: Buffer) => resolve(c.toString('latin1'))),
    );
    expect(head).toMatch(/^HTTP\/1\.1 101 /);
    s.end('raw bytes after the upgrade');
    const rest = (await readAll(s)).toString('latin1');
    expect(rest).toContain('raw bytes after the upgrade');
  });

  it('carries request bodies with Content-Length and chunked', async () => {
    for (const chunked of [false, true]) {
      const body = Buffer.alloc(200_000, 7);
      const r = await new Promise<Reply>((resolve, reject) => {
        const headers: Record<string, string> = chunked ? {} : { 'content-length': String(body.length) };
        const req = http.request(
          { host: 'web.demo', port: 8080, path: '/api/upload', method: 'POST', headers, agent },
          (res) => {
            let text = '';
            res.on('data', (c: Buffer) => (text += c.toString()));
            res.on('end', () =>
              resolve({
                status: res.statusCode!,
                headers: res.headers,
                text,
                json: JSON.parse(text) as Reply['json'],
              }),
            );
          },
        );
        req.on('error', reject);
        if (chunked) {
          req.write(body.subarray(0, 100_000));
          req.end(body.subarray(100_000));
        } else req.end(body);
      });
      expect(r.status).toBe(200);
      expect((r.json as { bodyBytes?: number }).bodyBytes).toBe(body.length);
    }
  });
});

describe('the waypoint HBONE listener', () => {
  /** A CONNECT straight to the waypoint with a mesh certificate; the status it answers. */
  function connect(cert: TestCert, authority: string): Promise<number | string> {
    return new Promise((resolve) => {
      const session = http2.connect(`https://${WAYPOINT}:15008`, {
        key: cert.keyPem,
        cert: cert.certChainPem.join('\n'),
        ca: cert.rootPem,
        ALPNProtocols: ['h2'],
        checkServerIdentity: () => undefined,
      });
      const done = (r: number | string) => {
        session.destroy();
        resolve(r);
      };
      session.on('error', (err) => done(err.message));
      const req = session.request({ ':method': 'CONNECT', ':authority': authority }, { endStream: false });
      req.on('response', (h) => done(Number(h[':status'])));
      req.on('error', (err) => done(err.message));
    });
  }

  it.each<[string, string, number, RegExp]>([
    ['a service not bound to it', `${ECHO_VIP}:8080`, 403, /not bound to waypoint demo\/waypoint/],
    ['a pod not bound to it', `${ECHO_V1}:8080`, 403, /not bound to waypoint demo\/waypoint/],
    ['an unknown address', `127.0.48.250:80`, 400, /neither a known service nor a known workload/],
    ['a proxy port', `${WEB_VIP}:15008`, 400, /proxy port/],
  ])('refuses %s (%d) with a reason', async (_n, authority, status, reason) => {
    const from = m.logs.length;
    const cert = await meshSignedCert(m.stateDir, {
      trustDomain: 'cluster.local',
      namespace: 'demo',
      serviceAccount: 'sleep',
    });
    expect(await connect(cert, authority)).toBe(status);
    const line = await m.waitForLog(
      (l) => l.component === 'waypoint/demo/waypoint' && l.rec.msg === 'hbone: request refused',
      5000,
      from,
    );
    expect(String(line.rec.reason)).toMatch(reason);
  });

  it('accepts a bound service', async () => {
    const cert = await meshSignedCert(m.stateDir, {
      trustDomain: 'cluster.local',
      namespace: 'demo',
      serviceAccount: 'sleep',
    });
    expect(await connect(cert, `${WEB_VIP}:8080`)).toBe(200);
  });
});

describe('RequestAuthentication (JWT) at the waypoint', () => {
  it('denies a path that needs a principal without a token (403)', async () => {
    const r = await get('web.demo', 8080, '/api/secure/x');
    expect(r.status).toBe(403);
    expect(r.text).toMatch(/RBAC: access denied/);
  });

  it('allows it with a valid token, and does not forward the token', async () => {
    const r = await get('web.demo', 8080, '/api/secure/x', { authorization: `Bearer ${await token()}` });
    expect(r.status).toBe(200);
    expect(r.json?.headers?.authorization).toBeUndefined();
  });

  it.each<[string, () => Promise<string>]>([
    ['an expired token', () => token({ expSeconds: -3600 })],
    ['a token from an unknown issuer', () => token({ iss: 'https://evil.test' })],
    ['a token with a bad signature', async () => `${(await token()).slice(0, -4)}AAAA`],
  ])('answers 401 for %s', async (_n, make) => {
    const r = await get('web.demo', 8080, '/api/open', { authorization: `Bearer ${await make()}` });
    expect(r.status).toBe(401);
  });
});

describe('hostile HTTP/2 clients at the waypoint', () => {
  const SETTINGS = h2Frame(0x4, 0, 0, Buffer.alloc(0));
  // :method GET, :scheme http, :path /, :authority "a" (HPACK static table + one literal).
  const HEADERS_BLOCK = Buffer.from([0x82, 0x86, 0x84, 0x41, 0x01, 0x61]);

  /** Waits until the waypoint closes the connection, or 5 s, then drops it. */
  async function settle(s: net.Socket): Promise<void> {
    s.resume();
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 5000);
      s.once('close', () => {
        clearTimeout(t);
        resolve();
      });
    });
    s.destroy();
  }
  async function rss(): Promise<number> {
    const pid = m.mesh.pid('waypoint/demo/waypoint');
    const status = await (await import('node:fs/promises')).readFile(`/proc/${pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024;
  }
  async function stillServes(): Promise<void> {
    const from = m.logs.length;
    const r = await get('web.demo', 8080, '/api/still-alive', {}, true);
    expect(r.status).toBe(200);
    await m.waitForLog(
      (l) =>
        l.component === 'waypoint/demo/waypoint' &&
        l.rec.msg === 'request complete' &&
        l.rec.path === '/api/still-alive',
      5000,
      from,
    );
  }

  it('survives a rapid-reset flood (HEADERS + RST_STREAM) without growing memory', async () => {
    const before = await rss();
    const s = await socksConnect({ host: SLEEP, port: 15080 }, GRPC_VIP, 9000);
    s.on('error', () => {});
    const frames: Buffer[] = [H2_PREFACE, SETTINGS];
    for (let i = 0, id = 1; i < 5000; i++, id += 2) {
      frames.push(h2Frame(0x1, 0x4 | 0x1, id, HEADERS_BLOCK), h2Frame(0x3, 0, id, Buffer.from([0, 0, 0, 8])));
    }
    s.end(Buffer.concat(frames));
    await settle(s);
    await stillServes();
    expect((await rss()) - before).toBeLessThan(64 * 1024 * 1024);
  }, 30_000);

  it('survives a CONTINUATION flood without growing memory', async () => {
    const before = await rss();
    const s = await socksConnect({ host: SLEEP, port: 15080 }, GRPC_VIP, 9000);
    s.on('error', () => {});
    s.write(Buffer.concat([H2_PREFACE, SETTINGS, h2Frame(0x1, 0, 1, HEADERS_BLOCK)]));
    // ~8 MiB of header continuation, never ending the header block.
    const literal = Buffer.concat([
      Buffer.from([0x40, 0x03]),
      Buffer.from('x-a'),
      Buffer.from([0x7f, 0x81, 0x7f]),
      Buffer.alloc(255, 0x61),
    ]);
    const cont = h2Frame(0x9, 0, 1, Buffer.concat(Array.from({ length: 16 }, () => literal)));
    for (let i = 0; i < 2000 && !s.destroyed; i++) {
      if (!s.write(cont)) await new Promise((r) => setTimeout(r, 1));
    }
    s.end();
    await settle(s);
    await stillServes();
    expect((await rss()) - before).toBeLessThan(64 * 1024 * 1024);
  }, 30_000);
});
