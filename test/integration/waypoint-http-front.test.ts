// The waypoint's HTTP front as the pipeline drives it (src/waypoint/pipeline.ts and the two
// protocol adapters), end to end on 127.0.238.0/24: the rules the pipeline now applies the
// same way to HTTP/1.1 and HTTP/2. A client that leaves while the waypoint is still deciding
// (here: a 1 s fault delay) costs no upstream request with either protocol, and leaves one
// record (status 0, `reset by client`). Before the adapter split only HTTP/2 checked this;
// HTTP/1.1 went on and sent the request upstream for nobody.
// client → node proxy (SOCKS) → HBONE → waypoint → HBONE as the waypoint → node proxy → app.
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { socksConnect } from '../../src/cli/socks-client.js';
import { TestMesh, closeServer, listen, type LogRecord } from '../support/mesh.js';
import { demoService, waypointGateway } from '../support/waypoint-manifests.js';

const O = 238;
const ip = (n: number) => `127.0.${O}.${n}`;
const SLEEP = ip(10);
const WAYPOINT_COMPONENT = 'waypoint/demo/waypoint';

const delayed = (name: string) => `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ${name}, namespace: demo}
spec:
  hosts: [${name}.demo.svc.cluster.local]
  http:
    - match: [{uri: {prefix: /delayed}}]
      fault: {delay: {fixedDelay: 1s, percentage: {value: 100}}}
      route: [{destination: {host: ${name}.demo.svc.cluster.local}}]
    - match: [{uri: {prefix: /moved}}]
      redirect: {uri: /elsewhere}
    - route: [{destination: {host: ${name}.demo.svc.cluster.local}}]
`;

const EXTRA = [
  waypointGateway(ip(200)),
  demoService('front-h1', ip(101), { app: 'echo' }, '[{name: http, port: 8080}]', true),
  delayed('front-h1'),
  demoService('front-h2', ip(102), { app: 'echo' }, '[{name: http, port: 9100}]', true),
  delayed('front-h2'),
].join('---\n');

const m = new TestMesh({ octet: O, extraManifests: EXTRA });
const servers: net.Server[] = [];
/** The waypoint's pooled sessions to the h2c backends: closed at the end, or server.close() waits 60 s. */
const backendSessions: http2.ServerHttp2Session[] = [];
/** Upgraded backend connections, closed at the end. */
const upgraded: net.Socket[] = [];
/** Every request path the backends received, HTTP/1.1 and h2c alike. */
const received: string[] = [];

beforeAll(async () => {
  await m.start();
  for (const host of [ip(11), ip(12)]) {
    const h1 = http.createServer((req, res) => {
      received.push(req.url ?? '');
      if (req.url?.startsWith('/unavailable')) return void res.writeHead(503).end('down\n');
      res.end('h1 backend\n');
    });
    // A WebSocket backend that keeps every upgraded connection open: one opened for a client that
    // left would stay.
    h1.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
      received.push(req.url ?? '');
      socket.on('error', () => {});
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      upgraded.push(socket);
    });
    servers.push(await listen(h1, host, 8080));
    const h2 = http2.createServer();
    h2.on('session', (session) => backendSessions.push(session));
    h2.on('stream', (stream, headers) => {
      received.push(String(headers[':path']));
      stream.respond({ ':status': String(headers[':path']).startsWith('/unavailable') ? 503 : 200 });
      stream.end('h2 backend\n');
    });
    servers.push(await listen(h2 as unknown as net.Server, host, 9100));
  }
  await m.waypointReady(20_000);
}, 60_000);

afterAll(async () => {
  await m.stop();
  for (const session of backendSessions) session.destroy();
  for (const socket of upgraded) socket.destroy();
  for (const s of servers) await closeServer(s);
});

/** The waypoint's `request complete` line for `path`, from log index `from` on. */
function recordOf(path: string, from: number): Promise<LogRecord> {
  return m.waitForLog(
    (l) => l.component === WAYPOINT_COMPONENT && l.rec.msg === 'request complete' && l.rec.path === path,
    10_000,
    from,
  );
}

/** Waits past the fault delay, so a request the waypoint (wrongly) forwarded would have arrived. */
const pastTheDelay = () => new Promise((r) => setTimeout(r, 1500));

describe('a client that leaves while the waypoint decides', () => {
  it('HTTP/1.1: no upstream request, one record with status 0 and reset by client', async () => {
    // A served request first, so the path to the backend is known to work in this mesh.
    const ok = await socksConnect({ host: SLEEP, port: 15080 }, 'front-h1.demo', 8080);
    ok.write('GET /ok-h1 HTTP/1.1\r\nHost: front-h1\r\nConnection: close\r\n\r\n');
    // The answer ends with the waypoint's half of the connection (Connection: close).
    const answer = await new Promise<string>((resolve) => {
      let got = '';
      ok.on('data', (c: Buffer) => (got += c.toString()));
      ok.once('end', () => resolve(got));
      ok.once('close', () => resolve(got));
    });
    ok.destroy();
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    expect(received).toContain('/ok-h1');

    const from = m.logs.length;
    const s = await socksConnect({ host: SLEEP, port: 15080 }, 'front-h1.demo', 8080);
    s.on('error', () => {});
    s.write('GET /delayed/h1 HTTP/1.1\r\nHost: front-h1\r\n\r\n');
    await new Promise((r) => setTimeout(r, 300)); // the waypoint is in the fault delay now
    s.destroy();
    const rec = await recordOf('/delayed/h1', from);
    expect(rec.rec.status).toBe(0);
    expect(rec.rec.reason).toBe('reset by client');
    expect(rec.rec.protocol).toBe('http1');
    await pastTheDelay();
    expect(received).not.toContain('/delayed/h1');
    expect(
      m.logs.slice(from).filter((l) => l.rec.msg === 'request complete' && l.rec.path === '/delayed/h1'),
    ).toHaveLength(1);
  }, 30_000);

  it('HTTP/1.1 WebSocket upgrade: no upstream tunnel, one record with status 0 and reset by client', async () => {
    const from = m.logs.length;
    const s = await socksConnect({ host: SLEEP, port: 15080 }, 'front-h1.demo', 8080);
    s.on('error', () => {});
    s.write(
      'GET /delayed/ws HTTP/1.1\r\nHost: front-h1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    await new Promise((r) => setTimeout(r, 300)); // the waypoint is in the fault delay now
    s.destroy();
    const rec = await recordOf('/delayed/ws', from);
    expect(rec.rec.status).toBe(0);
    expect(rec.rec.reason).toBe('reset by client');
    expect(rec.rec.upgrade).toBe('websocket');
    await pastTheDelay();
    expect(received).not.toContain('/delayed/ws');
  }, 30_000);

  it('HTTP/2: no upstream request, one record with status 0 and reset by client', async () => {
    const socket = await socksConnect({ host: SLEEP, port: 15080 }, 'front-h2.demo', 9100);
    const session = http2.connect('http://front-h2:9100', { createConnection: () => socket });
    session.on('error', () => {});
    try {
      const ok = session.request({ ':path': '/ok-h2' });
      const status = await new Promise<number>((resolve, reject) => {
        ok.on('response', (h) => resolve(Number(h[':status'])));
        ok.on('error', reject);
      });
      ok.resume();
      expect(status).toBe(200);
      expect(received).toContain('/ok-h2');

      const from = m.logs.length;
      const req = session.request({ ':path': '/delayed/h2' });
      req.on('error', () => {});
      await new Promise((r) => setTimeout(r, 300));
      req.close(http2.constants.NGHTTP2_CANCEL);
      const rec = await recordOf('/delayed/h2', from);
      expect(rec.rec.status).toBe(0);
      expect(rec.rec.reason).toBe('reset by client');
      expect(rec.rec.protocol).toBe('http2');
      await pastTheDelay();
      expect(received).not.toContain('/delayed/h2');
    } finally {
      session.destroy();
    }
  }, 30_000);
});

describe('one pipeline, the same record for both protocols', () => {
  it("a backend answering 503 is tried 3 times (Istio's default retry policy) and its last answer relayed", async () => {
    const from = m.logs.length;
    const s = await socksConnect({ host: SLEEP, port: 15080 }, 'front-h1.demo', 8080);
    s.write('GET /unavailable/h1 HTTP/1.1\r\nHost: front-h1\r\nConnection: close\r\n\r\n');
    const h1Answer = await new Promise<string>((resolve) => {
      let got = '';
      s.on('data', (c: Buffer) => (got += c.toString()));
      s.once('end', () => resolve(got));
      s.once('close', () => resolve(got));
    });
    s.destroy();
    expect(h1Answer).toMatch(/^HTTP\/1\.1 503 /);
    expect(h1Answer).toContain('down');

    const socket = await socksConnect({ host: SLEEP, port: 15080 }, 'front-h2.demo', 9100);
    const session = http2.connect('http://front-h2:9100', { createConnection: () => socket });
    session.on('error', () => {});
    try {
      const req = session.request({ ':path': '/unavailable/h2' });
      const status = await new Promise<number>((resolve, reject) => {
        req.on('response', (h) => resolve(Number(h[':status'])));
        req.on('error', reject);
      });
      req.resume();
      expect(status).toBe(503);
    } finally {
      session.destroy();
    }

    const h1 = (await recordOf('/unavailable/h1', from)).rec;
    const h2 = (await recordOf('/unavailable/h2', from)).rec;
    for (const rec of [h1, h2]) {
      expect(rec.status).toBe(503);
      expect(rec.attempts).toBe(3);
      expect(rec['retry.stop']).toBe('attempts-exhausted');
    }
    expect(received.filter((p) => p === '/unavailable/h1')).toHaveLength(3);
    expect(received.filter((p) => p === '/unavailable/h2')).toHaveLength(3);
  }, 30_000);
});

describe('answers from the waypoint itself', () => {
  it('a redirect answering a gRPC request is a grpc-status that keeps its Location (Envoy local reply)', async () => {
    const socket = await socksConnect({ host: SLEEP, port: 15080 }, 'front-h2.demo', 9100);
    const session = http2.connect('http://front-h2:9100', { createConnection: () => socket });
    session.on('error', () => {});
    try {
      const req = session.request({
        ':method': 'POST',
        ':path': '/moved/pkg.Svc/Call',
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      req.end();
      const headers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        req.on('response', resolve);
        req.on('error', reject);
      });
      req.resume();
      expect(headers[':status']).toBe(200);
      expect(headers['content-type']).toBe('application/grpc');
      expect(headers['grpc-status']).toBe('2'); // 301 → UNKNOWN, as Envoy maps an HTTP status
      expect(String(headers.location)).toMatch(/\/elsewhere$/);
      expect(received.some((p) => p.startsWith('/moved'))).toBe(false);
    } finally {
      session.destroy();
    }
  }, 30_000);
});
