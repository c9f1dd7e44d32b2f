// Bad input never crashes a proxy and never gets a byte through: garbage on 15008, wrong
// certificates both ways, malformed CONNECTs, SOCKS5 abuse. Loopback range 127.0.44.0/24.
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HboneServer } from '../../src/hbone/server.js';
import { componentLogger } from '../../src/common/log.js';
import type { Ip } from '../../src/common/addr.js';
import { TestMesh, closeServer, tcpEcho } from '../support/mesh.js';
import { foreignCert, meshSignedCert, type TestCert } from '../support/certs.js';

const O = 44;
const IMPOSTOR = `127.0.${O}.30`;
// A pod on a node that has no proxy: the test itself answers on its HBONE port, with the wrong identity.
const extra = `apiVersion: v1
kind: Pod
metadata: {name: impostor, namespace: demo, labels: {app: impostor}}
spec: {nodeName: node-3, serviceAccountName: echo}
status: {podIP: ${IMPOSTOR}}
`;
const m = new TestMesh({ octet: O, extraManifests: extra });
const servers: net.Server[] = [];
const SLEEP = m.ip(10);
const ECHO_V1 = m.ip(11);
const sleepId = { trustDomain: 'cluster.local', namespace: 'demo', serviceAccount: 'sleep' };

beforeAll(async () => {
  await m.start();
  servers.push(await tcpEcho(ECHO_V1, 7000), await tcpEcho(m.ip(12), 7000));
}, 60_000);

afterAll(async () => {
  await Promise.all(servers.map(closeServer));
  await m.stop();
});

/** Proves the proxy still serves after the abuse. */
async function stillServes(): Promise<void> {
  const s = await m.socks(SLEEP, ECHO_V1, 7000);
  const back = await new Promise<string>((resolve) => {
    s.once('data', (c) => resolve(c.toString()));
    s.write('alive');
  });
  s.destroy();
  expect(back).toBe('alive');
}

/** An HBONE request straight to a pod's :15008 with the given client certificate. */
function hboneRequest(
  cert: TestCert,
  host: string,
  headers: http2.OutgoingHttpHeaders,
): Promise<{ status?: number; error?: string }> {
  return new Promise((resolve) => {
    const session = http2.connect(`https://${host}:15008`, {
      key: cert.keyPem,
      cert: cert.certChainPem.join('\n'),
      ca: cert.rootPem,
      ALPNProtocols: ['h2'],
      checkServerIdentity: () => undefined,
    });
    const done = (r: { status?: number; error?: string }) => {
      session.destroy();
      resolve(r);
    };
    session.on('error', (err) => done({ error: err.message }));
    session.on('close', () => done({ error: 'session closed' }));
    const req = session.request(headers, { endStream: false });
    req.on('response', (h) => done({ status: Number(h[':status']) }));
    req.on('error', (err) => done({ error: err.message }));
    setTimeout(() => done({ error: 'timeout' }), 5000);
  });
}

describe('garbage on the HBONE port', () => {
  it('closes a plain-text connection, logs it and keeps serving', async () => {
    const from = m.logs.length;
    const s = net.connect(15008, ECHO_V1);
    s.on('error', () => {});
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => s.once('close', r));
    await m.waitForLog(
      (l) => l.component === 'node/node-1' && l.rec.msg === 'hbone: TLS handshake failed',
      5000,
      from,
    );
    await stillServes();
  });

  it('refuses a TLS client that does not speak h2', async () => {
    const cert = await meshSignedCert(m.stateDir, sleepId);
    const s = tls.connect({
      host: ECHO_V1,
      port: 15008,
      key: cert.keyPem,
      cert: cert.certChainPem[0],
      ca: cert.rootPem,
      ALPNProtocols: ['http/1.1'],
      checkServerIdentity: () => undefined,
    });
    s.on('error', () => {});
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const got: Buffer[] = [];
    s.on('data', (c: Buffer) => got.push(c));
    await new Promise((r) => s.once('close', r));
    expect(Buffer.concat(got).toString()).not.toMatch(/HTTP\/1\.1 200/);
    await stillServes();
  });
});

describe('client certificates the mesh must refuse', () => {
  it.each([
    ['from another trust domain', () => foreignCert({ ...sleepId, trustDomain: 'evil.local' })],
    ['signed by another CA', () => foreignCert(sleepId)],
    [
      'expired',
      () =>
        meshSignedCert(m.stateDir, sleepId, {
          notBefore: new Date(Date.now() - 7200_000),
          notAfter: new Date(Date.now() - 3600_000),
        }),
    ],
  ])('refuses a client certificate %s: no tunnel, no byte to the app', async (_name, make) => {
    const cert = await make();
    const appConns = servers[0]!.listenerCount('connection');
    let accepted = 0;
    const count = () => accepted++;
    servers[0]!.on('connection', count);
    const r = await hboneRequest(cert, ECHO_V1, { ':method': 'CONNECT', ':authority': `${ECHO_V1}:7000` });
    servers[0]!.off('connection', count);
    expect(r.status).toBeUndefined();
    expect(r.error).toBeDefined();
    expect(accepted).toBe(0);
    expect(servers[0]!.listenerCount('connection')).toBe(appConns);
    await stillServes();
  });

  it('logs a client from another trust domain by the identity it presented', async () => {
    const from = m.logs.length;
    // Same root, wrong trust domain: the chain verifies, the trust-domain check must refuse it.
    const cert = await meshSignedCert(m.stateDir, { ...sleepId, trustDomain: 'evil.local' });
    const r = await hboneRequest(cert, ECHO_V1, { ':method': 'CONNECT', ':authority': `${ECHO_V1}:7000` });
    expect(r.status).toBeUndefined();
    const line = await m.waitForLog(
      (l) => typeof l.rec.msg === 'string' && String(l.rec.msg).includes('not in trust domain cluster.local'),
      5000,
      from,
    );
    expect(line.rec['src.identity']).toBe('spiffe://evil.local/ns/demo/sa/sleep');
  });
});

describe('malformed CONNECT requests', () => {
  let cert: TestCert;
  beforeAll(async () => {
    cert = await meshSignedCert(m.stateDir, sleepId);
  });

  it.each([
    ['a pod that is not this listener’s', () => ({ ':method': 'CONNECT', ':authority': `${m.ip(12)}:7000` })],
    ['a malformed :authority', () => ({ ':method': 'CONNECT', ':authority': 'echo.demo' })],
    ['a proxy port as target', () => ({ ':method': 'CONNECT', ':authority': `${ECHO_V1}:15008` })],
    ['a GET instead of CONNECT', () => ({ ':method': 'GET', ':path': '/', ':authority': `${ECHO_V1}:7000` })],
  ])('answers 400 to %s', async (_name, headers) => {
    const from = m.logs.length;
    const r = await hboneRequest(cert, ECHO_V1, headers());
    expect(r.status).toBe(400);
    await m.waitForLog((l) => l.rec.msg === 'hbone: request refused' && l.rec.status === 400, 5000, from);
  });

  it('answers 503 when the app is not listening', async () => {
    const r = await hboneRequest(cert, ECHO_V1, { ':method': 'CONNECT', ':authority': `${ECHO_V1}:7999` });
    expect(r.status).toBe(503);
  });

  it('answers 200 to a well-formed CONNECT (the control for the cases above)', async () => {
    const r = await hboneRequest(cert, ECHO_V1, { ':method': 'CONNECT', ':authority': `${ECHO_V1}:7000` });
    expect(r.status).toBe(200);
  });
});

describe('a server presenting the wrong identity', () => {
  it('aborts the tunnel, the client sees a failure, and the log names both identities', async () => {
    const wrong = await meshSignedCert(m.stateDir, {
      trustDomain: 'cluster.local',
      namespace: 'demo',
      serviceAccount: 'other',
    });
    let connects = 0;
    const fake = new HboneServer({
      podIp: IMPOSTOR as Ip,
      port: 15008,
      identity: wrong,
      trustDomain: 'cluster.local',
      logger: componentLogger('test'),
      onTunnel: (t) => {
        connects++;
        t.stream.respond({ ':status': 200 });
      },
    });
    await fake.start();
    try {
      const from = m.logs.length;
      await expect(m.socks(SLEEP, IMPOSTOR, 8080)).rejects.toMatchObject({ reply: 1 });
      const line = await m.waitForLog(
        (l) => l.rec.msg === 'connection failed' && l.rec['dst.addr'] === `${IMPOSTOR}:8080`,
        5000,
        from,
      );
      expect(String(line.rec.error)).toContain('expected spiffe://cluster.local/ns/demo/sa/echo');
      expect(String(line.rec.error)).toContain('presented spiffe://cluster.local/ns/demo/sa/other');
      expect(connects).toBe(0);
    } finally {
      await fake.stop(0);
    }
  });
});

describe('SOCKS5 abuse', () => {
  function raw(bytes: number[]): Promise<Buffer> {
    return new Promise((resolve) => {
      const s = net.connect(15080, SLEEP);
      const got: Buffer[] = [];
      s.on('data', (c: Buffer) => got.push(c));
      s.on('error', () => {});
      s.once('close', () => resolve(Buffer.concat(got)));
      s.write(Buffer.from(bytes));
      setTimeout(() => s.destroy(), 3000);
    });
  }

  it('closes on garbage without answering', async () => {
    expect((await raw([0x47, 0x45, 0x54, 0x20])).length).toBe(0);
    await stillServes();
  });

  it('answers "no acceptable methods" when no-auth is not offered', async () => {
    expect([...(await raw([5, 1, 2]))]).toEqual([5, 0xff]);
  });

  it('answers "command not supported" to BIND', async () => {
    const r = await raw([5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 80]);
    expect(r[3]).toBe(0x07);
  });

  it('answers "address type not supported" to an unknown address type', async () => {
    const r = await raw([5, 1, 0, 5, 1, 0, 9, 1, 2, 3, 4, 0, 80]);
    expect(r[3]).toBe(0x08);
  });

  it('answers "host unreachable" to an unknown service name', async () => {
    await expect(m.socks(SLEEP, 'nope.demo.svc.cluster.local', 80)).rejects.toMatchObject({ reply: 4 });
  });
});
