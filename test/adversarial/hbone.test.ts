// Attacks on the HBONE entry point (podIP:15008), as a real client with real certificates against
// real node proxies (child processes) or a real HboneServer in this process. Loopback
// 127.0.160.* (mesh) and 127.0.162.* (in-process server).
//
// - issue 12 item 6: a valid mesh cert for ns/attacker CONNECTs to a pod's own proxy ports
//   (echo-v1:15080 SOCKS) to launder its identity; no mesh port is ever a CONNECT target (ztunnel:
//   cfg.illegal_ports → SelfCall, inbound.rs);
// - certificates whose SANs are ambiguous or hide a URI in other text identify nobody
//   (X.509-SVID §2: exactly one URI SAN);
// - a node proxy that dies mid-transfer: the source app sees a reset, not a clean end (RFC 9113 §8.5);
// - readiness after a restart means listening;
// - slowloris handshakes, a session flood from one peer, idle sessions, expired certificates in the pool.
import net from 'node:net';
import http from 'node:http';
import http2 from 'node:http2';
import tls from 'node:tls';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { endKind, keepHalfOpen } from '../support/end-kind.js';
import { TestMesh, closeServer, tcpEcho } from '../support/mesh.js';
import { captureLogger } from '../support/capture-logger.js';
import { forwardTunnelToApp } from '../support/hbone.js';
import { issuedBy, meshRoot, meshSignedCert, type TestCert } from '../support/certs.js';
import { HbonePool, type TunnelRequest } from '../../src/hbone/pool.js';
import { HboneServer } from '../../src/hbone/server.js';
import { MESH_PORTS } from '../../src/common/ports.js';
import type { TlsIdentity } from '../../src/hbone/tls.js';
import { MeshCa } from '../../src/controlplane/ca.js';
import { generateKeyPair } from '../../src/identity/keys.js';
import { x509 } from '../../src/identity/x509.js';
import { isAmbitError } from '../../src/common/errors.js';
import { formatSocketAddr, type Ip } from '../../src/common/addr.js';

const O = 160;
const ip = (n: number) => `127.0.${O}.${n}`;
const SLEEP = ip(10);
const ECHO_V1 = ip(11);
const ECHO_V2 = ip(12);
const ATTACKER_IP = ip(50); // not a pod: an attacker's own host on the network
const ECHO_ID = 'spiffe://cluster.local/ns/demo/sa/echo';

const POLICY = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo-v2-only-demo, namespace: demo}
spec:
  selector: {matchLabels: {version: v2}}
  action: ALLOW
  rules:
  - from: [{source: {namespaces: ["demo"]}}]
`;

const m = new TestMesh({ octet: O, extraManifests: POLICY });
const servers: net.Server[] = [];
const quiet = pino({ level: 'silent' });
let attacker: TestCert;
let pool: HbonePool;

beforeAll(async () => {
  await m.start();
  for (const host of [ECHO_V1, ECHO_V2]) servers.push(await tcpEcho(host, 8080));
  attacker = await meshSignedCert(m.stateDir, {
    trustDomain: 'cluster.local',
    namespace: 'attacker',
    serviceAccount: 'evil',
  });
  pool = new HbonePool(quiet);
}, 60_000);

afterAll(async () => {
  pool?.close();
  await Promise.all(servers.map(closeServer));
  await m.stop();
});

function connectReq(source: TlsIdentity, dstIp: string, port: number): TunnelRequest {
  return {
    source,
    sourceIp: ATTACKER_IP,
    clientAddr: { host: ATTACKER_IP, port: 4242 },
    hboneAddr: { host: dstIp, port: 15008 },
    expectedIdentity: ECHO_ID,
    authority: formatSocketAddr(dstIp, port),
  };
}

async function connectError(req: TunnelRequest, via = pool): Promise<unknown> {
  try {
    const s = await via.connect(req);
    s.destroy();
    return undefined;
  } catch (err) {
    return err;
  }
}

describe('HBONE CONNECT to a mesh port (issue 12 item 6: identity laundering)', () => {
  it('the attacker (valid mesh cert, ns/attacker) is denied at echo-v2:8080 by policy: 401', async () => {
    const err = await connectError(connectReq(attacker, ECHO_V2, 8080));
    expect(isAmbitError(err, 'HBONE_POLICY_DENIED')).toBe(true);
    expect(String((err as Error).message)).toContain('401');
  });

  it.each([...MESH_PORTS])(
    'CONNECT to echo-v1:%d is refused with 400 before policy, and logged with the reason',
    async (port) => {
      const from = m.logs.length;
      const err = await connectError(connectReq(attacker, ECHO_V1, port));
      expect(isAmbitError(err, 'HBONE_BAD_REQUEST')).toBe(true);
      expect(String((err as Error).message)).toContain('400');
      const line = await m.waitForLog(
        (l) =>
          l.component === 'node/node-1' &&
          l.rec.msg === 'hbone: request refused' &&
          String(l.rec.reason).includes(`target port ${port} is a mesh proxy port`),
        5000,
        from,
      );
      expect(line.rec['src.identity']).toBe(attacker.spiffeId);
      expect(line.rec.status).toBe(400);
    },
  );

  it('so the laundering path (CONNECT to :15080, then SOCKS to echo-v2) never starts', async () => {
    const err = await connectError(connectReq(attacker, ECHO_V1, 15080));
    expect(isAmbitError(err, 'HBONE_BAD_REQUEST')).toBe(true);
    // and echo-v2 saw no connection attributed to echo-v1's identity from the attacker
    const laundered = m.logs.filter(
      (l) =>
        l.component === 'node/node-2' &&
        l.rec['src.identity'] === ECHO_ID &&
        String(l.rec['dst.addr']).startsWith(ECHO_V2),
    );
    expect(laundered).toEqual([]);
  });

  it('a demo workload is still allowed to echo-v2:8080 (the policy itself works)', async () => {
    const s = await m.socks(SLEEP, ECHO_V2, 8080);
    s.write('ping');
    const got = await new Promise<string>((r) => s.once('data', (d: Buffer) => r(d.toString())));
    expect(got).toBe('ping');
    s.destroy();
  });
});

/** A leaf signed by the mesh root with the SANs and subject the test chooses. */
async function craftedCert(
  names: { type: 'url' | 'dns'; value: string }[],
  subject = '',
  extraSanExtension?: { type: 'url' | 'dns'; value: string }[],
): Promise<TestCert> {
  const { root, rootKey, rootPem } = await meshRoot(m.stateDir);
  const keys = await generateKeyPair('ECDSA_P256');
  const extensions: x509.Extension[] = [];
  if (names.length) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
  if (extraSanExtension) extensions.push(new x509.SubjectAlternativeNameExtension(extraSanExtension, false));
  extensions.push(
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.ExtendedKeyUsageExtension(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']),
  );
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomBytes(8).toString('hex'),
    issuer: root.subject,
    subject,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    publicKey: keys.publicKey,
    signingKey: rootKey,
    extensions,
  });
  return {
    spiffeId: 'spiffe://cluster.local/ns/demo/sa/sleep',
    keyPem: keys.privateKeyPem,
    certChainPem: [cert.toString('pem')],
    rootPem,
  };
}

describe('certificates that name no single SPIFFE id identify nobody (X.509-SVID §2)', () => {
  const DEMO = 'spiffe://cluster.local/ns/demo/sa/sleep';
  const pools: HbonePool[] = [];
  const fresh = () => {
    const p = new HbonePool(quiet);
    pools.push(p);
    return p;
  };
  afterAll(() => pools.forEach((p) => p.close()));
  const EVIL = 'spiffe://cluster.local/ns/attacker/sa/evil';

  it('control: one URI SAN spiffe://…/ns/demo/… is allowed to echo-v2 (namespace demo)', async () => {
    const good = await craftedCert([{ type: 'url', value: DEMO }]);
    const s = await pool.connect(connectReq(good, ECHO_V2, 8080));
    s.destroy();
  });

  it.each([
    [
      'two SPIFFE URI SANs',
      [
        { type: 'url' as const, value: EVIL },
        { type: 'url' as const, value: DEMO },
      ],
      '',
    ],
    [
      'a SPIFFE URI next to an https URI',
      [
        { type: 'url' as const, value: 'https://evil.example/' },
        { type: 'url' as const, value: DEMO },
      ],
      '',
    ],
    [
      'a DNS SAN whose text spells ", URI:spiffe://…/ns/demo/…"',
      [{ type: 'dns' as const, value: `evil.example, URI:${DEMO}` }],
      '',
    ],
    ['no SAN, the subject saying URI:spiffe://…/ns/demo/…', [], `CN=URI:${DEMO}`],
  ])('%s: the TLS session is closed, the request never reaches policy', async (_name, names, subject) => {
    const from = m.logs.length;
    const bad = await craftedCert(names, subject);
    const err = await connectError(connectReq(bad, ECHO_V2, 8080), fresh()); // not the control's pooled connection
    expect(err).toBeInstanceOf(Error);
    expect(isAmbitError(err, 'HBONE_POLICY_DENIED')).toBe(false); // refused earlier than policy
    await m.waitForLog(
      (l) =>
        l.component === 'node/node-2' &&
        String(l.rec.msg).startsWith('hbone: client identity not in trust domain') &&
        l.rec['src.identity'] === null,
      5000,
      from,
    );
  });

  it('two subjectAltName extensions (RFC 5280 §4.2: never repeated): no identity', async () => {
    const from = m.logs.length;
    const bad = await craftedCert([{ type: 'url', value: DEMO }], '', [{ type: 'url', value: EVIL }]);
    const err = await connectError(connectReq(bad, ECHO_V2, 8080), fresh());
    expect(err).toBeInstanceOf(Error);
    // OpenSSL itself refuses such a certificate in the handshake (duplicate extensions); our
    // parser would also read no identity from it (test/unit/identity/spiffe.test.ts).
    const line = await m.waitForLog(
      (l) =>
        l.component === 'node/node-2' &&
        (l.rec.msg === 'hbone: TLS handshake failed' ||
          String(l.rec.msg).startsWith('hbone: client identity not in trust domain')),
      5000,
      from,
    );
    expect(line.rec['src.identity'] ?? null).toBeNull();
  });
});

describe('a cut on either side is passed on as a cut, through two real node proxies', () => {
  it('the destination app resets mid-transfer: the source app sees ECONNRESET; both proxies record UC', async () => {
    const resetter = net.createServer((s) => {
      s.on('error', () => {});
      s.write(Buffer.alloc(100_000, 5), () => setTimeout(() => s.resetAndDestroy(), 50));
    });
    await new Promise<void>((r) => resetter.listen(7001, ECHO_V2, r));
    servers.push(resetter);
    const from = m.logs.length;
    const s = await m.socks(SLEEP, ECHO_V2, 7001);
    const ended = new Promise<string>((resolve) => {
      s.on('data', () => {});
      s.once('end', () => resolve('FIN'));
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    });
    expect(await ended).toBe('ECONNRESET');
    for (const node of ['node/node-1', 'node/node-2']) {
      const rec = await m.waitForLog(
        (l) =>
          l.component === node &&
          l.rec.msg === 'connection complete' &&
          l.rec['dst.addr'] === `${ECHO_V2}:7001`,
        5000,
        from,
      );
      expect(rec.rec.response_flags).toBe('UC');
    }
  });

  it('the source app resets mid-transfer: the destination app sees ECONNRESET; both proxies record DC', async () => {
    let appSaw: (v: string) => void = () => {};
    const appOutcome = new Promise<string>((r) => (appSaw = r));
    const sink = net.createServer((s) => {
      s.on('data', () => {});
      s.once('end', () => appSaw('FIN'));
      s.once('error', (e: NodeJS.ErrnoException) => appSaw(e.code ?? e.message));
    });
    await new Promise<void>((r) => sink.listen(7002, ECHO_V2, r));
    servers.push(sink);
    const from = m.logs.length;
    const s = await m.socks(SLEEP, ECHO_V2, 7002);
    s.on('error', () => {});
    s.write(Buffer.alloc(100_000, 6));
    await new Promise((r) => setTimeout(r, 100));
    s.resetAndDestroy();
    expect(await appOutcome).toBe('ECONNRESET');
    for (const node of ['node/node-1', 'node/node-2']) {
      const rec = await m.waitForLog(
        (l) =>
          l.component === node &&
          l.rec.msg === 'connection complete' &&
          l.rec['dst.addr'] === `${ECHO_V2}:7002`,
        5000,
        from,
      );
      expect(rec.rec.response_flags).toBe('DC');
    }
  });
});

describe('a destination node proxy that dies mid-transfer', () => {
  it('the source app sees ECONNRESET (not a clean end) and node-1 records the cut with flag UC', async () => {
    // A server that streams until it is cut, behind echo-v2 (node-2).
    const streamer = net.createServer((s) => {
      s.on('error', () => {});
      const chunk = Buffer.alloc(64 * 1024, 1);
      const pump = () => {
        while (!s.destroyed && s.write(chunk));
      };
      s.on('drain', pump);
      pump();
    });
    await new Promise<void>((r) => streamer.listen(7000, ECHO_V2, r));
    servers.push(streamer);
    const from = m.logs.length;
    const s = await m.socks(SLEEP, ECHO_V2, 7000);
    keepHalfOpen(s);
    let bytes = 0;
    const ended = new Promise<string>((resolve) => {
      s.on('data', (c: Buffer) => (bytes += c.length));
      // Node may report the RST as 'end' while bytes are unread (libuv#2319): ask the kernel.
      s.once('end', () => void endKind(s).then((k) => resolve(k === 'RST' ? 'ECONNRESET' : 'FIN')));
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    });
    while (bytes < 1_000_000) await new Promise((r) => setTimeout(r, 20));
    await m.mesh.kill('node/node-2');
    expect(await ended).toBe('ECONNRESET');
    const rec = await m.waitForLog(
      (l) =>
        l.component === 'node/node-1' &&
        l.rec.msg === 'connection complete' &&
        l.rec['dst.addr'] === `${ECHO_V2}:7000`,
      5000,
      from,
    );
    expect(rec.rec.response_flags).toBe('UC');
    expect(String(rec.rec.error)).toMatch(/upstream/);
  }, 30_000);

  it("after a restart, /healthz/ready answers 200 only once the pods' 15008 and 15080 accept connections", async () => {
    // node-2 was killed by the previous test (or is killed now).
    if (m.mesh.pid('node/node-2')) await m.mesh.kill('node/node-2');
    const restarting = m.mesh.restart('node/node-2');
    const bound = (port: number) =>
      new Promise<boolean>((resolve) => {
        const c = net.connect({ host: ECHO_V2, port });
        c.once('connect', () => (c.destroy(), resolve(true)));
        c.once('error', () => resolve(false));
      });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 }); // poll as fast as we can
    const ready = () =>
      new Promise<number>((resolve) => {
        const req = http.get(
          { host: ip(2), port: 15021, path: '/healthz/ready', timeout: 500, agent },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on('error', () => resolve(0));
        req.on('timeout', () => req.destroy());
      });
    let checks = 0;
    for (const deadline = Date.now() + 20_000; Date.now() < deadline;) {
      if ((await ready()) === 200) {
        // The first 200: both listeners must already accept.
        expect(await bound(15008)).toBe(true);
        expect(await bound(15080)).toBe(true);
        checks++;
        break;
      }
    }
    agent.destroy();
    expect(checks).toBe(1);
    await restarting;
  }, 40_000);
});

// ---- limits of a single HboneServer, in this process (127.0.162.*) ----

describe('15008 limits (in-process HboneServer, real TLS)', () => {
  const SERVER_IP = '127.0.162.11' as Ip;
  let ca: MeshCa;
  let server: HboneServer;
  let echoApp: net.Server;
  const captured = captureLogger();

  const identity = (sa: string, ttlSeconds = 3600): Promise<TlsIdentity> =>
    issuedBy(ca, { trustDomain: 'cluster.local', namespace: 'demo', serviceAccount: sa }, ttlSeconds);

  beforeAll(async () => {
    ca = await MeshCa.loadOrCreate({
      stateDir: await mkdtemp(path.join(tmpdir(), 'ambit-adv-hbone-')),
      trustDomain: 'cluster.local',
    });
    echoApp = await tcpEcho(SERVER_IP, 7000);
    server = new HboneServer({
      podIp: SERVER_IP,
      port: 15008,
      identity: await identity('echo'),
      trustDomain: 'cluster.local',
      logger: captured.logger,
      limits: { handshakeTimeoutMs: 500, idleTimeoutMs: 400, maxSessionsPerPeer: 3 },
      onTunnel: forwardTunnelToApp,
    });
    await server.start();
  });

  afterAll(async () => {
    await server.stop(0);
    await closeServer(echoApp);
  });

  /** Resolves with how long the server took to close a connection that is sent `bytes` only. */
  function closedAfter(bytes: Buffer, localAddress: string): Promise<number> {
    return new Promise((resolve) => {
      const start = Date.now();
      const s = net.connect({ host: SERVER_IP, port: 15008, localAddress }, () => s.write(bytes));
      s.on('error', () => {});
      s.on('data', () => {});
      s.once('close', () => resolve(Date.now() - start));
    });
  }

  it('slowloris: a connection that never completes the TLS handshake is closed at the handshake timeout', async () => {
    const silent = await closedAfter(Buffer.alloc(0), '127.0.162.20');
    // a partial ClientHello record header, then nothing
    const partial = await closedAfter(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]), '127.0.162.21');
    for (const ms of [silent, partial]) {
      expect(ms).toBeGreaterThanOrEqual(400);
      expect(ms).toBeLessThan(3000);
    }
  });

  it('one peer gets at most 3 concurrent connections; a fourth is closed at once, another peer is served', async () => {
    const held: tls.TLSSocket[] = [];
    const client = await identity('sleep');
    const open = (localAddress: string) =>
      new Promise<tls.TLSSocket | undefined>((resolve) => {
        const s = tls.connect({
          host: SERVER_IP,
          port: 15008,
          localAddress,
          key: client.keyPem,
          cert: client.certChainPem.join('\n'),
          ca: client.rootPem,
          ALPNProtocols: ['h2'],
          checkServerIdentity: () => undefined,
        });
        s.once('secureConnect', () => resolve(s));
        s.once('error', () => resolve(undefined));
        s.once('close', () => resolve(undefined));
      });
    for (let i = 0; i < 3; i++) {
      const s = await open('127.0.162.30');
      expect(s).toBeDefined();
      held.push(s!);
    }
    const from = captured.lines.length;
    for (let i = 0; i < 5; i++) expect(await open('127.0.162.30')).toBeUndefined();
    // one warn line for the flood, not one per refused connection
    const warns = captured.lines.slice(from).filter((l) => (l.level as number) >= 40);
    expect(warns.map((l) => l.msg)).toEqual([
      'hbone: too many concurrent sessions from one peer; refusing new connections',
    ]);
    const other = await open('127.0.162.31');
    expect(other).toBeDefined();
    other!.destroy();
    held.forEach((s) => s.destroy());
    await new Promise((r) => setTimeout(r, 100));
    const again = await open('127.0.162.30'); // closed ones no longer count
    expect(again).toBeDefined();
    again!.destroy();
  });

  it('a session with no stream is closed after the idle timeout; one with an open stream is not', async () => {
    const client = await identity('sleep');
    const dial = () =>
      http2.connect(`https://${SERVER_IP}:15008`, {
        localAddress: '127.0.162.40',
        key: client.keyPem,
        cert: client.certChainPem.join('\n'),
        ca: client.rootPem,
        checkServerIdentity: () => undefined,
      });
    const idle = dial();
    idle.on('error', () => {});
    const start = Date.now();
    await new Promise((r) => idle.once('close', r));
    expect(Date.now() - start).toBeLessThan(3000);

    const busy = dial();
    busy.on('error', () => {});
    const stream = busy.request({ ':method': 'CONNECT', ':authority': `${SERVER_IP}:7000` });
    stream.on('error', () => {});
    await new Promise((r) => stream.once('response', r));
    await new Promise((r) => setTimeout(r, 1200)); // three idle timeouts
    expect(busy.closed || busy.destroyed).toBe(false);
    stream.write('still here');
    const echoed = await new Promise<string>((r) => stream.once('data', (d: Buffer) => r(d.toString())));
    expect(echoed).toBe('still here');
    busy.destroy();
  });

  it('a pooled connection is not reused once a certificate of its handshake has expired: the pool dials again', async () => {
    const p = new HbonePool(quiet);
    try {
      const short = await identity('sleep', 3); // expires in 3 s
      const renewed = await identity('sleep'); // the rotated certificate, same identity
      const req = (source: TlsIdentity): TunnelRequest => ({
        source,
        sourceIp: '127.0.162.50',
        clientAddr: { host: '127.0.162.50', port: 1 },
        hboneAddr: { host: SERVER_IP, port: 15008 },
        expectedIdentity: 'spiffe://cluster.local/ns/demo/sa/echo',
        authority: formatSocketAddr(SERVER_IP, 7000),
      });
      const first = await p.connect(req(short));
      const second = await p.connect(req(renewed)); // before expiry: same connection
      expect(p.stats().handshakes).toBe(1);
      await new Promise((r) => setTimeout(r, 3500));
      const third = await p.connect(req(renewed)); // after expiry: a new handshake
      expect(p.stats().handshakes).toBe(2);
      third.write('x');
      expect(await new Promise<string>((r) => third.once('data', (d: Buffer) => r(d.toString())))).toBe('x');
      for (const s of [first, second, third]) s.destroy();
    } finally {
      p.close();
    }
  }, 15_000);
});
