// The whole L4 path with real processes: SOCKS5 → source node proxy → HBONE mTLS → destination
// node proxy → app, on loopback range 127.0.41.0/24.
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEcho } from '../../src/cli/echo.js';
import { SocksError } from '../../src/cli/socks-client.js';
import { TestMesh, closeServer, readAll, tcpEcho } from '../support/mesh.js';

const m = new TestMesh({ octet: 41 });
const servers: net.Server[] = [];
const SLEEP = m.ip(10);
const ECHO_V1 = m.ip(11);
const ECHO_V2 = m.ip(12);
const PLAIN = m.ip(13);

beforeAll(async () => {
  await m.start();
  servers.push(await startEcho({ host: ECHO_V1, port: 8080, pod: 'demo/echo-v1' }));
  servers.push(await startEcho({ host: ECHO_V2, port: 8080, pod: 'demo/echo-v2' }));
  servers.push(await startEcho({ host: PLAIN, port: 8080, pod: 'legacy/plain' }));
  servers.push(await tcpEcho(ECHO_V1, 7000));
  servers.push(await tcpEcho(ECHO_V2, 7000));
}, 60_000);

afterAll(async () => {
  await Promise.all(servers.map(closeServer));
  await m.stop();
});

async function httpGet(
  host: string,
  port: number,
  path = '/',
): Promise<{ status: number; body: Record<string, unknown>; clientAddr: string }> {
  const socket = await m.socks(SLEEP, host, port);
  const clientAddr = `${socket.localAddress}:${socket.localPort}`;
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host, port, path, createConnection: () => socket, headers: { connection: 'close' } },
      (res) => {
        let data = '';
        res.on('data', (c) => (data += c));
        res.on('end', () =>
          resolve({ status: res.statusCode!, body: JSON.parse(data) as Record<string, unknown>, clientAddr }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('the L4 path through two node proxies', () => {
  it('reaches a service by name, and the destination proxy logs the source identity it verified', async () => {
    const from = m.logs.length;
    const r = await httpGet('echo.demo', 8080, '/by-name');
    expect(r.status).toBe(200);
    expect(['demo/echo-v1', 'demo/echo-v2']).toContain(r.body.pod);
    expect(r.body.path).toBe('/by-name');
    const inbound = await m.waitForLog(
      (l) =>
        l.rec.direction === 'inbound' &&
        l.rec.msg === 'connection complete' &&
        l.rec['src.addr'] === r.clientAddr,
      10_000,
      from,
    );
    expect(inbound.rec['src.identity']).toBe('spiffe://cluster.local/ns/demo/sa/sleep');
    expect(inbound.rec['dst.identity']).toBe('spiffe://cluster.local/ns/demo/sa/echo');
  });

  it('balances a service round robin over both endpoints on both nodes', async () => {
    const pods = new Set<unknown>();
    for (let i = 0; i < 4; i++) pods.add((await httpGet('echo.demo.svc.cluster.local', 8080)).body.pod);
    expect(pods).toEqual(new Set(['demo/echo-v1', 'demo/echo-v2']));
  });

  it('reaches a pod by IP, and the app sees the source pod IP', async () => {
    const r = await httpGet(ECHO_V2, 8080, '/by-ip');
    expect(r.body.pod).toBe('demo/echo-v2');
    expect(String(r.body.remote)).toMatch(new RegExp(`^${SLEEP.replace(/\./g, '\\.')}:`));
  });

  it('resolves a short service name in the source namespace', async () => {
    expect((await httpGet('echo', 8080)).status).toBe(200);
  });

  it('sends traffic to a pod outside the mesh as plain TCP', async () => {
    const from = m.logs.length;
    const r = await httpGet(PLAIN, 8080);
    expect(r.body.pod).toBe('legacy/plain');
    const out = await m.waitForLog(
      (l) =>
        l.rec.direction === 'outbound' &&
        l.rec.msg === 'connection complete' &&
        l.rec['dst.addr'] === `${PLAIN}:8080`,
      10_000,
      from,
    );
    expect(out.rec.route).toBe('passthrough');
  });

  it('answers an unknown service name with SOCKS "host unreachable"', async () => {
    await expect(m.socks(SLEEP, 'nope.demo', 8080)).rejects.toMatchObject({ reply: 4 });
  });

  it('answers "connection refused" when the destination app is not listening', async () => {
    const err = await m.socks(SLEEP, ECHO_V2, 9999).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SocksError);
    expect((err as SocksError).reply).toBe(5);
  });

  it.each([
    ['1 MiB', 1 << 20],
    ['100 MiB', 100 << 20],
  ])(
    'carries %s byte-exact in both directions',
    async (_name, size) => {
      const data = randomBytes(1 << 20);
      const s = await m.socks(SLEEP, ECHO_V2, 7000);
      const got = readAll(s);
      const hash = createHash('sha256');
      for (let sent = 0; sent < size; sent += data.length) {
        const chunk = data.subarray(0, Math.min(data.length, size - sent));
        hash.update(chunk);
        if (!s.write(chunk)) await new Promise((r) => s.once('drain', r));
      }
      s.end();
      const back = await got;
      expect(back.length).toBe(size);
      expect(sha(back)).toBe(hash.digest('hex'));
    },
    120_000,
  );

  it('passes a half-close through: the app can still answer after the client sent FIN', async () => {
    // An app that replies only after it has read the client's whole request (FIN).
    const app = net.createServer({ allowHalfOpen: true }, (s) => {
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('end', () => setTimeout(() => s.end(`got ${Buffer.concat(chunks).length} bytes after FIN`), 100));
    });
    await new Promise<void>((r) => app.listen(7100, ECHO_V1, r));
    try {
      const s = await m.socks(SLEEP, ECHO_V1, 7100);
      const got = readAll(s);
      s.end('x'.repeat(1000));
      expect((await got).toString()).toBe('got 1000 bytes after FIN');
    } finally {
      await closeServer(app);
    }
  });

  it('carries 1 000 concurrent tunnels over pooled connections, dialing ceil(1000/100) times', async () => {
    const from = m.logs.length;
    const N = 1000;
    const sockets = await Promise.all(Array.from({ length: N }, () => m.socks(SLEEP, ECHO_V1, 7000)));
    const answers = await Promise.all(
      sockets.map(
        (s, i) =>
          new Promise<string>((resolve, reject) => {
            let got = '';
            s.on('data', (c) => {
              got += c;
              if (got.length >= `hello ${i}`.length) resolve(got);
            });
            s.once('error', reject);
            s.write(`hello ${i}`);
          }),
      ),
    );
    expect(answers).toEqual(sockets.map((_s, i) => `hello ${i}`));
    for (const s of sockets) s.destroy();
    const dials = m.logs
      .slice(from)
      .filter(
        (l) =>
          l.component === 'node/node-1' &&
          l.rec.msg === 'hbone pool: -> Connecting' &&
          l.rec['dst.hbone_addr'] === `${ECHO_V1}:15008`,
      );
    expect(dials.length).toBeLessThanOrEqual(Math.ceil(N / 100));
    expect(dials.length).toBeGreaterThanOrEqual(1);
  }, 60_000);
});
