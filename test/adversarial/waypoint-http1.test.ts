// Attacks on the waypoint's HTTP/1.1 entry point (issue 12, holes 1 and 2), as a real client in
// pod demo/sleep through its node proxy's capture (SOCKS5) → HBONE → the waypoint → HBONE → the
// node proxy of echo → a real backend. Each attack is written out byte for byte; each test fails
// if the hole comes back. Loopback range 127.0.120.0/24.
//
// The Service is `echo`; the shared test mesh already defines `demo/echo` without a
// waypoint (and the first definition of an object wins), so the same Service (selector app=echo,
// port 8080 named http) is `echo-wp` here, bound to the waypoint with `istio.io/use-waypoint`.
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestMesh, closeServer, listen } from '../support/mesh.js';
import { demoService, serviceAuthorizationPolicy, waypointGateway } from '../support/waypoint-manifests.js';

const O = 120;
const ip = (n: number) => `127.0.${O}.${n}`;
const SLEEP = ip(10);
const BACKENDS = [ip(11), ip(12)];
const ECHO_WP = ip(101);
const WEB = ip(102);
const RAW = ip(103);
const OPEN = ip(104);
const WAYPOINT = ip(200);

const EXTRA = [
  waypointGateway(WAYPOINT),
  demoService(
    'echo-wp',
    ECHO_WP,
    { app: 'echo' },
    '[{name: http, port: 8080}, {name: http-ws, port: 8081}]',
    true,
  ),
  serviceAuthorizationPolicy(
    'echo-deny-admin',
    'echo-wp',
    'DENY',
    ` [{to: [{operation: {paths: ["/admin", "/admin/*"]}}]}]`,
  ),
  // a port named `web`: no protocol declared, so the waypoint sniffs
  demoService('web', WEB, { app: 'echo' }, '[{name: web, port: 9080}]', true),
  serviceAuthorizationPolicy(
    'web-allow-nobody',
    'web',
    'ALLOW',
    ` [{from: [{source: {principals: [cluster.local/ns/demo/sa/nobody]}}]}]`,
  ),
  demoService('raw', RAW, { app: 'echo' }, '[{name: raw, port: 9082}]', true),
  serviceAuthorizationPolicy('raw-deny-admin', 'raw', 'DENY', ` [{to: [{operation: {paths: ["/admin"]}}]}]`),
  demoService('open', OPEN, { app: 'echo' }, '[{name: raw, port: 9083}]', true),
].join('---\n');

const m = new TestMesh({ octet: O, extraManifests: EXTRA });
const servers: net.Server[] = [];
/** What the HTTP backends on 8080/8081 were asked, "METHOD path". */
const received: string[] = [];
/** Bytes that reached the raw TCP backends, by port. */
const rawBytes = new Map<number, number>();

beforeAll(async () => {
  await m.start();
  for (const host of BACKENDS) {
    // 8080: a backend that ignores Upgrade (Node's server without an 'upgrade' listener answers it as a request)
    const plain = http.createServer((req, res) => {
      received.push(`${req.method} ${req.url}`);
      res.end(`ok ${req.url}`);
    });
    servers.push(await listen(plain, host, 8080));
    // 8081: a WebSocket-style backend: 101, then echoes bytes
    const ws = http.createServer((req, res) => {
      received.push(`${req.method} ${req.url}`);
      res.end('no upgrade');
    });
    ws.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
      received.push(`UPGRADE ${req.url}`);
      socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n');
      if (head.length) socket.write(head);
      socket.pipe(socket);
    });
    servers.push(await listen(ws, host, 8081));
    for (const port of [9080, 9082, 9083]) {
      const tcp = net.createServer((s) => {
        s.on('error', () => {});
        s.on('data', (c: Buffer) => rawBytes.set(port, (rawBytes.get(port) ?? 0) + c.length));
        s.pipe(s);
      });
      servers.push(await listen(tcp, host, port));
    }
  }
  await m.waypointReady(30_000);
}, 60_000);

afterAll(async () => {
  await Promise.all(servers.map(closeServer));
  await m.stop();
});

/** A raw client socket through sleep's capture, with a reader of whole HTTP/1.1 answers. */
class RawClient {
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;
  private constructor(readonly sock: net.Socket) {
    sock.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      this.wake();
    });
    // 'end' too: the client socket is half-open (socks), so a peer's FIN alone does not close it
    for (const ev of ['end', 'close'])
      sock.on(ev, () => {
        this.closed = true;
        this.wake();
      });
    sock.on('error', () => {});
  }
  static async open(host: string, port: number): Promise<RawClient> {
    return new RawClient(await m.socks(SLEEP, host, port));
  }
  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
  private async until<T>(take: () => T | undefined, ms = 5000): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = take();
      if (v !== undefined) return v;
      if (this.closed)
        throw new Error(`connection closed; had ${JSON.stringify(this.buf.toString('latin1'))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; had ${JSON.stringify(this.buf.toString('latin1'))}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }
  /** The next whole answer (content-length or chunked framing). */
  response(method = 'GET'): Promise<{ status: number; headers: Record<string, string>; body: string }> {
    return this.until(() => {
      const text = this.buf.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return undefined;
      const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines)
        headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
      const status = Number(statusLine!.split(' ')[1]);
      let rest = text.slice(end + 4);
      let body = '';
      let used = end + 4;
      if (method === 'HEAD' || status === 101 || status === 204 || status === 304) {
        // no body
      } else if (headers['content-length'] !== undefined) {
        const n = Number(headers['content-length']);
        if (rest.length < n) return undefined;
        body = rest.slice(0, n);
        used += n;
      } else if (headers['transfer-encoding'] === 'chunked') {
        for (;;) {
          const nl = rest.indexOf('\r\n');
          if (nl < 0) return undefined;
          const size = parseInt(rest.slice(0, nl), 16);
          if (rest.length < nl + 2 + size + 2) return undefined;
          body += rest.slice(nl + 2, nl + 2 + size);
          used += nl + 2 + size + 2;
          rest = rest.slice(nl + 2 + size + 2);
          if (size === 0) break;
        }
      } else if (!this.closed) return undefined;
      else body = rest;
      this.buf = this.buf.subarray(used);
      return { status, headers, body };
    });
  }
  /** Bytes as they come, until `want` of them or the timeout. */
  bytes(want: number, ms = 3000): Promise<string> {
    return this.until(() => (this.buf.length >= want ? this.buf.toString('latin1') : undefined), ms);
  }
  /** Resolves with whatever arrived once the connection is closed (reset or end). */
  ended(ms = 5000): Promise<string> {
    return this.until(() => (this.closed ? this.buf.toString('latin1') : undefined), ms);
  }
  write(s: string | Buffer): void {
    this.sock.write(s);
  }
  close(): void {
    this.sock.destroy();
  }
}

/** Names the step of a multi-step attack whose answer did not come. */
const step = (what: string) => (err: Error) => {
  throw new Error(`${what}: ${err.message}`);
};
const req = (method: string, path: string, extra = '') =>
  `${method} ${path} HTTP/1.1\r\nHost: echo-wp.demo:8080\r\n${extra}\r\n`;
const UPGRADE_WS =
  'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';
const waypointLog = (pred: (r: Record<string, unknown>) => boolean, from: number) =>
  m.waitForLog((l) => l.component === 'waypoint/demo/waypoint' && pred(l.rec), 5000, from);

describe('waypoint HTTP/1.1: Upgrade is not a way around policy (issue 12, hole 1)', () => {
  it('the attack as written: an Upgrade answered 200 leaves the connection HTTP/1.1, and GET /admin on it is denied and logged', async () => {
    const c = await RawClient.open(ECHO_WP, 8080);
    const before = received.length;
    const logFrom = m.logs.length;
    c.write(req('GET', '/public', UPGRADE_WS));
    const first = await c.response();
    expect(first.status).toBe(200); // the backend ignored Upgrade
    expect(first.body).toBe('ok /public');
    c.write(req('GET', '/admin'));
    const second = await c.response();
    expect(second.status).toBe(403);
    expect(second.body).toMatch(/RBAC: access denied/);
    expect(received.slice(before)).toEqual(['GET /public']); // /admin never reached echo
    const line = await waypointLog((r) => r.msg === 'request complete' && r.path === '/admin', logFrom);
    expect(line.rec.status).toBe(403);
    // and the connection is still a working HTTP/1.1 connection, through the pipeline
    c.write(req('GET', '/public/again'));
    expect((await c.response()).body).toBe('ok /public/again');
    c.close();
  });

  it('a pipelined GET /admin sent in the same packet as the Upgrade request is parsed and denied too', async () => {
    const c = await RawClient.open(ECHO_WP, 8080);
    const before = received.length;
    c.write(req('GET', '/public', UPGRADE_WS) + req('GET', '/admin/users'));
    expect((await c.response()).status).toBe(200);
    expect((await c.response()).status).toBe(403);
    expect(received.slice(before)).toEqual(['GET /public']);
    c.close();
  });

  it('a real WebSocket upgrade (upstream 101) is spliced both ways and recorded as 101', async () => {
    const c = await RawClient.open(ECHO_WP, 8081);
    const logFrom = m.logs.length;
    c.write(`GET /ws HTTP/1.1\r\nHost: echo-wp.demo:8081\r\n${UPGRADE_WS}\r\n`);
    const r = await c.response();
    expect(r.status).toBe(101);
    expect(r.headers.upgrade).toBe('websocket');
    c.write('frame bytes after the upgrade');
    expect(await c.bytes('frame bytes after the upgrade'.length)).toBe('frame bytes after the upgrade');
    const line = await waypointLog((rec) => rec.msg === 'request complete' && rec.path === '/ws', logFrom);
    expect(line.rec.status).toBe(101);
    expect(line.rec.upgrade).toBe('websocket');
    c.close();
  });

  it.each(['/admin', '/admin/x', '/public/../admin', '//admin', '/%61dmin'])(
    'a WebSocket upgrade to %s (a denied path) is refused before anything reaches the backend',
    async (path) => {
      const c = await RawClient.open(ECHO_WP, 8081);
      const before = received.length;
      c.write(`GET ${path} HTTP/1.1\r\nHost: echo-wp.demo:8081\r\n${UPGRADE_WS}\r\n`);
      expect((await c.response()).status).toBe(403);
      expect(received.slice(before)).toEqual([]);
      c.close();
    },
  );

  it('Upgrade: h2c is not an upgrade (Envoy strips it): answered as HTTP/1.1, and the next request is checked', async () => {
    const c = await RawClient.open(ECHO_WP, 8080);
    const before = received.length;
    const h2c =
      'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n';
    c.write(req('GET', '/public', h2c));
    const first = await c.response();
    expect(first.status).toBe(200);
    c.write(req('GET', '/admin', h2c));
    expect((await c.response().catch(step('the answer to the second h2c request'))).status).toBe(403);
    c.write(req('GET', '/admin'));
    expect((await c.response().catch(step('the answer to the plain request after it'))).status).toBe(403);
    expect(received.slice(before)).toEqual(['GET /public']);
    c.close();
  });

  it('an upgrade type other than websocket gets 403 (upgrade_failed), as Envoy without an upgrade config', async () => {
    const c = await RawClient.open(ECHO_WP, 8080);
    const before = received.length;
    c.write(req('GET', '/public', 'Connection: Upgrade\r\nUpgrade: foo/1\r\n'));
    expect((await c.response()).status).toBe(403);
    expect(received.slice(before)).toEqual([]);
    c.close();
  });

  it('an Upgrade with a body is proxied as a plain request: its body cannot smuggle a second request', async () => {
    const c = await RawClient.open(ECHO_WP, 8080);
    const before = received.length;
    const smuggled = req('GET', '/admin');
    c.write(
      `POST /public HTTP/1.1\r\nHost: echo-wp.demo:8080\r\n${UPGRADE_WS}Content-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
    );
    expect((await c.response()).status).toBe(200);
    c.write(req('GET', '/admin'));
    expect((await c.response()).status).toBe(403);
    expect(received.slice(before)).toEqual(['POST /public']);
    c.close();
  });

  it('HTTP/1.1 CONNECT inside the tunnel is refused with 403 (Envoy: CONNECT is off by default)', async () => {
    const c = await RawClient.open(ECHO_WP, 8080);
    const before = received.length;
    c.write(`CONNECT ${BACKENDS[0]}:8080 HTTP/1.1\r\nHost: ${BACKENDS[0]}:8080\r\n\r\n`);
    expect((await c.response()).status).toBe(403);
    c.write(req('GET', '/admin')); // nothing was opened: these bytes go nowhere
    await c.ended();
    expect(received.slice(before)).toEqual([]);
  });
});

describe('waypoint sniffing and the TCP path (issue 12, hole 2): Service port `web`, ALLOW only sa/nobody', () => {
  const web = (s: string) => `${s} HTTP/1.1\r\nHost: web.demo:9080\r\n\r\n`;

  it.each<[string, string]>([
    ['GET / (the control case)', web('GET /')],
    ['a leading empty line: \\r\\nGET /admin', `\r\n${web('GET /admin')}`],
    ['several leading empty lines', `\r\n\r\n\n${web('GET /admin')}`],
    ['PROPFIND /', web('PROPFIND /')],
    ['MKCOL /x', web('MKCOL /x')],
    ['HTTP/1.0', 'GET /admin HTTP/1.0\r\n\r\n'],
  ])('%s is sniffed as HTTP and denied with 403; no byte reaches the backend', async (_n, bytes) => {
    const c = await RawClient.open(WEB, 9080);
    const before = rawBytes.get(9080) ?? 0;
    c.write(bytes);
    const r = await c.response();
    expect(r.status).toBe(403);
    expect(r.body).toMatch(/RBAC: access denied/);
    c.close();
    expect(rawBytes.get(9080) ?? 0).toBe(before);
  });

  it('a custom method token goes to the HTTP parser (400), never to the backend as TCP', async () => {
    const c = await RawClient.open(WEB, 9080);
    const before = rawBytes.get(9080) ?? 0;
    c.write(web('FROBNICATE /admin'));
    const r = await c.response();
    expect([400, 403]).toContain(r.status);
    c.close();
    expect(rawBytes.get(9080) ?? 0).toBe(before);
  });

  it('one byte every 40 ms (longer than the sniff timer) is still HTTP and denied', async () => {
    const c = await RawClient.open(WEB, 9080);
    const before = rawBytes.get(9080) ?? 0;
    const bytes = `\r\n${web('GET /admin')}`;
    for (const ch of bytes) {
      c.write(ch);
      await new Promise((r) => setTimeout(r, 40));
    }
    expect((await c.response()).status).toBe(403);
    c.close();
    expect(rawBytes.get(9080) ?? 0).toBe(before);
  }, 15_000);

  it('a client silent past the sniff timer is TCP, and the TCP path applies the ALLOW: reset, nothing reaches the backend', async () => {
    const c = await RawClient.open(WEB, 9080);
    const before = rawBytes.get(9080) ?? 0;
    const logFrom = m.logs.length;
    await new Promise((r) => setTimeout(r, 600));
    c.write(web('GET /admin'));
    const got = await c.ended();
    expect(got).toBe('');
    expect(rawBytes.get(9080) ?? 0).toBe(before);
    const line = await waypointLog(
      (r) => r.msg === 'connection denied by policy' && r.protocol === 'tcp',
      logFrom,
    );
    expect(line.rec.policy).toBe('demo/web-allow-nobody');
  });

  it('binary (non-HTTP) bytes are TCP and denied by the same ALLOW', async () => {
    const c = await RawClient.open(WEB, 9080);
    const before = rawBytes.get(9080) ?? 0;
    c.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]));
    expect(await c.ended()).toBe('');
    expect(rawBytes.get(9080) ?? 0).toBe(before);
  });

  it('a DENY with an HTTP-only field (paths) denies TCP connections to its service (Envoy network RBAC)', async () => {
    const c = await RawClient.open(RAW, 9082);
    const logFrom = m.logs.length;
    c.write(Buffer.from([0x00, 0x01, 0x02, 0x03]));
    expect(await c.ended()).toBe('');
    expect(rawBytes.get(9082) ?? 0).toBe(0);
    const line = await waypointLog(
      (r) => r.msg === 'connection denied by policy' && r.protocol === 'tcp',
      logFrom,
    );
    expect(line.rec.policy).toBe('demo/raw-deny-admin');
    const metrics = await new Promise<string>((resolve, reject) => {
      http
        .get({ host: WAYPOINT, port: 15020, path: '/metrics' }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (ch: string) => (body += ch));
          res.on('end', () => resolve(body));
        })
        .once('error', reject);
    });
    expect(metrics).toMatch(/ambit_authz_denied_total\{policy="demo\/raw-deny-admin",protocol="tcp"\} [1-9]/);
  });

  it('the TCP path still carries traffic no policy denies (control)', async () => {
    const c = await RawClient.open(OPEN, 9083);
    c.write(Buffer.from([0x00, 0x01, 0x02, 0x03]));
    expect((await c.bytes(4)).length).toBe(4);
    c.close();
  });
});
