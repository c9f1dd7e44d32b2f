// The waypoint's upstream HTTP/1.1 pool over real HTTP/2 CONNECT tunnels on 127.0.49.240-249:
// pool → h2c CONNECT → a stand-in for the destination node proxy (the real `splice`) → backend.
// The stand-in behaves as nodeproxy/inbound.ts does when the app closes an idle keep-alive
// connection: it ends the tunnel and stops reading it, which is what left the earlier attempt's
// requests hanging.
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { splice } from '../../src/proxy/splice.js';
import { UpstreamHttp1Pool } from '../../src/waypoint/upstream/h1-pool.js';
import { ConnectionPoolLimiter } from '../../src/waypoint/resilience/pool.js';
import type { UpstreamEndpoint } from '../../src/waypoint/upstream/upstream.js';
import type { Workload } from '../../src/xds/resources.js';
import type { Ip, SocketAddr } from '../../src/common/addr.js';
import { closeServer, listen } from '../support/mesh.js';

const BACKEND = '127.0.49.240';
const TUNNEL = '127.0.49.241';
const log = pino({ level: 'silent' });

/** The backend: counts TCP connections (one per tunnel) and can close idle ones on demand. */
interface Backend {
  server: http.Server;
  connections: number;
  open: Set<net.Socket>;
  port: number;
}
async function startBackend(port: number): Promise<Backend> {
  const b: Backend = { server: undefined as unknown as http.Server, connections: 0, open: new Set(), port };
  b.server = http.createServer((req, res) => {
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => {
      const delay = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('delay') ?? 0);
      setTimeout(() => res.end(JSON.stringify({ path: req.url, bytes: n })), delay);
    });
  });
  // No Keep-Alive hint and no idle timeout of its own: the tests close idle connections.
  b.server.keepAliveTimeout = 0;
  b.server.on('connection', (s: net.Socket) => {
    b.connections++;
    b.open.add(s);
    s.once('close', () => b.open.delete(s));
  });
  await listen(b.server, BACKEND, port);
  return b;
}

/** The destination node proxy, reduced to what matters here: CONNECT → TCP → splice. */
let tunnelServer: http2.Http2Server;
const sessions = new Set<http2.ServerHttp2Session>();
let client: http2.ClientHttp2Session;

function dialer(port: number): (ep: UpstreamEndpoint) => Promise<Duplex> {
  return () =>
    new Promise((resolve, reject) => {
      const s = client.request({ ':method': 'CONNECT', ':authority': `${BACKEND}:${port}` });
      s.once('response', (h) =>
        h[':status'] === 200 ? resolve(s) : reject(new Error(`CONNECT ${h[':status']}`)),
      );
      s.once('error', reject);
    });
}

const workload = { uid: 'test//Pod/demo/echo', name: 'echo', namespace: 'demo' } as Workload;
const ep = (port: number): UpstreamEndpoint => ({
  id: `${BACKEND}:${port}`,
  active: 0,
  workload,
  authority: `${BACKEND}:${port}` as SocketAddr,
});

function get(
  pool: UpstreamHttp1Pool,
  limiter: ConnectionPoolLimiter | undefined,
  port: number,
  path: string,
): Promise<{ status: number; body: string; reused: boolean }> {
  return pool.request(limiter, ep(port), { method: 'GET', path, headers: { host: 'echo' } }).then(
    (ex) =>
      new Promise((resolve, reject) => {
        if (!ex.ok) return reject(new Error(ex.error));
        ex.request.once('response', (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.once('end', () => resolve({ status: res.statusCode ?? 0, body, reused: ex.reused }));
        });
        ex.request.once('error', reject);
        ex.request.end();
      }),
  );
}

const within = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([
    p,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms)),
  ]);

const backends: Backend[] = [];
let nextPort = 18100;
async function backend(): Promise<Backend> {
  const b = await startBackend(nextPort++);
  backends.push(b);
  return b;
}

beforeAll(async () => {
  tunnelServer = http2.createServer();
  tunnelServer.on('session', (s) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  });
  tunnelServer.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    const [host, port] = String(headers[':authority']).split(':');
    const app = net.connect(Number(port), host as Ip);
    app.once('connect', () => {
      stream.respond({ ':status': 200 });
      void splice(stream, app);
    });
    app.once('error', () => stream.close(http2.constants.NGHTTP2_CONNECT_ERROR));
  });
  await listen(tunnelServer, TUNNEL, 0);
  const { port } = tunnelServer.address() as net.AddressInfo;
  client = http2.connect(`http://${TUNNEL}:${port}`);
  await new Promise((r) => client.once('connect', r));
});

afterEach(() => {
  for (const b of backends.splice(0)) {
    for (const s of b.open) s.destroy();
    void closeServer(b.server);
  }
});

afterAll(async () => {
  client.close();
  for (const s of sessions) s.destroy();
  await closeServer(tunnelServer);
});

describe('upstream HTTP/1.1 pool over HBONE-style tunnels', () => {
  it('reuses one connection for sequential requests', async () => {
    const b = await backend();
    const pool = new UpstreamHttp1Pool(dialer(b.port), log);
    const got = [];
    for (let i = 0; i < 20; i++) got.push(await get(pool, undefined, b.port, `/r${i}`));
    expect(got.map((g) => JSON.parse(g.body).path)).toEqual(Array.from({ length: 20 }, (_, i) => `/r${i}`));
    expect(got.filter((g) => g.reused)).toHaveLength(19);
    expect(b.connections).toBe(1);
    pool.close();
  });

  it('does not hang when the backend closed an idle pooled connection (the earlier bug)', async () => {
    const b = await backend();
    const pool = new UpstreamHttp1Pool(dialer(b.port), log);
    expect((await get(pool, undefined, b.port, '/first')).status).toBe(200);
    // The app closes its idle keep-alive connection; the node proxy ends the tunnel.
    for (const s of b.open) s.end();
    await new Promise((r) => setTimeout(r, 200));
    const second = await within(get(pool, undefined, b.port, '/second'), 3000, 'request after idle close');
    expect(JSON.parse(second.body).path).toBe('/second');
    expect(second.reused).toBe(false);
    expect(b.connections).toBe(2);
    expect(pool.stats().open).toBe(1);
    pool.close();
  });

  it('closes a connection on which the backend sends bytes while idle (never the next answer)', async () => {
    const b = await backend();
    const pool = new UpstreamHttp1Pool(dialer(b.port), log);
    await get(pool, undefined, b.port, '/first');
    for (const s of b.open) s.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nEVIL!');
    await new Promise((r) => setTimeout(r, 200));
    const second = await get(pool, undefined, b.port, '/second');
    expect(JSON.parse(second.body).path).toBe('/second');
    expect(second.reused).toBe(false);
    expect(b.connections).toBe(2);
    pool.close();
  });

  it('retires a connection after maxRequestsPerConnection', async () => {
    const b = await backend();
    const pool = new UpstreamHttp1Pool(dialer(b.port), log);
    const limiter = new ConnectionPoolLimiter({ maxRequestsPerConnection: 2 });
    for (let i = 0; i < 6; i++) expect((await get(pool, limiter, b.port, `/m${i}`)).status).toBe(200);
    expect(b.connections).toBe(3);
    pool.close();
  });

  it('opens at most maxConnections, queues the rest, and completes every request', async () => {
    const b = await backend();
    const pool = new UpstreamHttp1Pool(dialer(b.port), log);
    const limiter = new ConnectionPoolLimiter({ maxConnections: 2 });
    let peak = 0;
    const watch = setInterval(() => (peak = Math.max(peak, b.open.size)), 1);
    const all = await Promise.all(
      Array.from({ length: 30 }, (_, i) => get(pool, limiter, b.port, `/q${i}?delay=5`)),
    );
    clearInterval(watch);
    expect(all.map((r) => r.status)).toEqual(Array(30).fill(200));
    expect(b.connections).toBe(2);
    expect(peak).toBeLessThanOrEqual(2);
    expect(limiter.stats()).toMatchObject({ connections: 2, idle: 2, active: 0, pending: 0 });
    pool.close();
  });

  it.each([
    ['the pool default', 100, {}],
    ['DestinationRule idleTimeout', 60_000, { idleTimeoutMs: 100 }],
  ])(
    'closes idle connections after the idle timeout (%s) and tells the limiter',
    async (_n, idleMs, policy) => {
      const b = await backend();
      const pool = new UpstreamHttp1Pool(dialer(b.port), log, idleMs);
      const limiter = new ConnectionPoolLimiter(policy);
      await get(pool, limiter, b.port, '/idle');
      expect(limiter.stats()).toMatchObject({ connections: 1, idle: 1 });
      await new Promise((r) => setTimeout(r, 400));
      expect(limiter.stats()).toMatchObject({ connections: 0, idle: 0 });
      expect(b.open.size).toBe(0);
      expect(pool.stats().open).toBe(0);
    },
  );

  it('keeps 200 concurrent-ish requests on few connections', async () => {
    const b = await backend();
    const pool = new UpstreamHttp1Pool(dialer(b.port), log);
    let next = 0;
    const bodies: string[] = [];
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        while (next < 200) {
          const i = next++;
          const r = await get(pool, undefined, b.port, `/c${i}`);
          bodies.push(JSON.parse(r.body).path as string);
        }
      }),
    );
    expect(bodies.sort()).toEqual(Array.from({ length: 200 }, (_, i) => `/c${i}`).sort());
    expect(b.connections).toBeLessThanOrEqual(10);
    pool.close();
  });
});
