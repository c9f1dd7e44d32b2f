// Attack: reach a path a waypoint DENY protects by writing it differently (issue 12, "the path
// that policy matched is the path that is forwarded"). Real mesh on 127.0.130.0/24: sleep →
// node proxy (SOCKS) → HBONE → waypoint → HBONE → node proxy → backends that record every path
// they get. A DENY on `/admin`, `/admin/*` (targetRefs Service api, the policy) must hold
// for every spelling, over HTTP/1.1 (raw request lines, so nothing is cleaned up by a client
// library) and HTTP/2 (`:path`), and the backend must receive exactly the normalized path.
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendPathView } from '../support/backend-path.js';
import { TestMesh, closeServer, listen } from '../support/mesh.js';
import { demoService, serviceAuthorizationPolicy, waypointGateway } from '../support/waypoint-manifests.js';

const O = 130;
const ip = (n: number) => `127.0.${O}.${n}`;
const SLEEP = ip(10);

const EXTRA = [
  waypointGateway(ip(200)),
  demoService(
    'api',
    ip(101),
    { app: 'echo' },
    '[{name: http, port: 8080}, {name: http-h2, port: 9100}]',
    true,
  ),
  serviceAuthorizationPolicy(
    'api-deny-admin',
    'api',
    'DENY',
    ` [{to: [{operation: {paths: ["/admin", "/admin/*"]}}]}]`,
  ),
].join('---\n');

const m = new TestMesh({ octet: O, extraManifests: EXTRA });
const servers: net.Server[] = [];
/** Every request target a backend received (HTTP/1.1 `req.url`, HTTP/2 `:path`). */
const received: string[] = [];

/** How a typical backend router reads a path: query dropped, %XX decoded except / and \, dots resolved, slashes merged. */
const backendView = (target: string): string => backendPathView(target.split('?')[0]!);
const forbidden = (target: string) => {
  const v = backendView(target);
  return v === '/admin' || v.startsWith('/admin/');
};

beforeAll(async () => {
  await m.start();
  for (const host of [ip(11), ip(12)]) {
    const h1 = http.createServer((req, res) => {
      received.push(req.url ?? '');
      res.end(`saw ${req.url}`);
    });
    servers.push(await listen(h1, host, 8080));
    const h2 = http2.createServer();
    h2.on('stream', (s, h) => {
      received.push(String(h[':path']));
      s.respond({ ':status': 200 });
      s.end(`saw ${String(h[':path'])}`);
    });
    servers.push(await listen(h2, host, 9100));
  }
  await m.waypointReady();
}, 60_000);

afterAll(async () => {
  await m.stop(); // first: the waypoint's pooled upstream sessions would keep the backends open
  await Promise.all(servers.map(closeServer));
});

/** One raw HTTP/1.1 request through the mesh as sleep; the status and what the backend got. */
async function rawH1(
  target: string,
  extraHeaders = '',
): Promise<{ status: number; body: string; seen?: string }> {
  const before = received.length;
  const s = await m.socks(SLEEP, ip(101), 8080);
  s.write(
    `GET ${target} HTTP/1.1\r\nHost: api.demo:8080\r\n${extraHeaders}Connection: close\r\n\r\n`,
    'latin1',
  );
  // The answer is complete at its Content-Length (or the chunked end): the tunnel may stay open.
  const text = await new Promise<string>((resolve) => {
    let t = '';
    const done = () => {
      s.destroy();
      resolve(t);
    };
    s.setEncoding('latin1');
    s.on('data', (c: string) => {
      t += c;
      const end = t.indexOf('\r\n\r\n');
      if (end < 0) return;
      const len = /\r\ncontent-length: *(\d+)/i.exec(t.slice(0, end));
      if (len ? t.length - end - 4 >= Number(len[1]) : t.endsWith('0\r\n\r\n')) done();
    });
    s.once('end', done);
    s.once('close', done);
    s.once('error', done);
  });
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
  return { status, body: text.slice(text.indexOf('\r\n\r\n') + 4), seen: received.slice(before).at(-1) };
}

// [request target, expected status, path the backend must receive (for 200s)]
const H1_CASES: [string, number, string?][] = [
  ['/admin', 403],
  ['/admin/users', 403],
  ['/public', 200, '/public'],
  ['/admin/../admin', 403],
  ['/public/../admin', 403],
  ['/public/%2e%2e/admin', 403],
  ['/public/%2E%2E/admin/x', 403],
  ['/public/.%2e/admin', 403],
  ['//admin', 403], // merged (ambit's default MERGE_SLASHES)
  ['///admin//users', 403],
  ['/./admin', 403],
  ['/%61dmin', 403], // unreserved %XX decoded
  ['/%61%64%6d%69%6e/x', 403],
  ['/public\\..\\admin', 403], // backslash is a slash
  ['/admin\\users', 403],
  ['/../admin', 403], // above the root stays at the root
  ['/admin/', 403], // "/admin/*" covers it
  ['/admin?x=1', 403], // the query is not the path
  ['/public?next=/admin', 200, '/public?next=/admin'], // ... and is forwarded untouched
  ['/ADMIN', 200, '/ADMIN'], // case is significant, as in Istio
  ['/administrator', 200, '/administrator'], // not a segment of /admin
  ['/admin%2F', 200, '/admin%2F'], // escaped slash kept (KEEP_UNCHANGED): one segment "admin%2F"
  ['/admin;x', 200, '/admin;x'], // ";" is an ordinary character to Envoy: not /admin
  ['/public//x/./y/../z', 200, '/public/x/z'], // forwarded normalized
  ['/admin%00', 400],
  ['/admin#frag', 400],
  ['http://api.demo:8080/admin', 403], // absolute-form
  ['http://api.demo:8080//public/../admin', 403],
  ['http://api.demo:8080/public', 200, '/public'],
  ['admin', 400], // not origin-form: Node's parser refuses it before the waypoint (which would say 404, as Envoy)
];

describe('HTTP/1.1 request targets against a DENY on /admin, /admin/*', () => {
  it.each(H1_CASES)('GET %s → %i', async (target, status, forwarded) => {
    const r = await rawH1(target);
    expect(r.status, r.body).toBe(status);
    if (status === 403) expect(r.body).toMatch(/RBAC: access denied/);
    if (status === 200) expect(r.seen).toBe(forwarded);
    else expect(r.seen).toBeUndefined();
  });
});

describe('HTTP/2 :path values against the same DENY', () => {
  let session: http2.ClientHttp2Session;
  beforeAll(async () => {
    const sock = await m.socks(SLEEP, ip(101), 9100);
    session = http2.connect('http://api.demo:9100', { createConnection: () => sock });
  });
  afterAll(() => session?.close());
  const h2 = (path: string) =>
    new Promise<{ status: number; body: string; seen?: string }>((resolve) => {
      const before = received.length;
      const s = session.request({ ':path': path, ':authority': 'api.demo:9100' });
      let body = '';
      let status = 0;
      s.on('response', (h) => (status = Number(h[':status'])));
      s.setEncoding('utf8');
      s.on('data', (c: string) => (body += c));
      s.once('end', () => resolve({ status, body, seen: received.slice(before).at(-1) }));
      // A stream reset (nghttp2 refusing a malformed request) reads as status 0.
      s.once('error', () => resolve({ status: 0, body: '', seen: received.slice(before).at(-1) }));
    });
  it.each<[string, number, string?]>([
    ['/admin', 403],
    ['//admin', 403],
    ['/public/../admin', 403],
    ['/public/%2e%2e/admin', 403],
    ['/%61dmin/x', 403],
    ['/public\\..\\admin', 403],
    ['/admin%00', 400],
    ['http://api.demo:9100/admin', 0], // no absolute form in HTTP/2: reset by nghttp2 (the waypoint would 404, as Envoy)
    ['/public//a/../b?q=/../admin', 200, '/public/b?q=/../admin'],
  ])(':path %s → %i', async (path, status, forwarded) => {
    const r = await h2(path);
    expect(r.status, r.body).toBe(status);
    if (status === 200) expect(r.seen).toBe(forwarded);
    else expect(r.seen).toBeUndefined();
  });
});

describe('nothing forbidden ever reached a backend', () => {
  it('every path the backends recorded is outside /admin, /admin/* as a backend reads it', () => {
    expect(received.length).toBeGreaterThan(5); // the allowed cases did arrive
    expect(received.filter(forbidden)).toEqual([]);
  });
  it('the backend view used above is strict enough to catch the variants (self-check)', () => {
    for (const t of ['/admin', '//admin', '/x/../admin/y', '/%61dmin', '/a\\..\\admin'])
      expect(forbidden(t), t).toBe(true);
    expect(forbidden('/administrator')).toBe(false);
  });
});
