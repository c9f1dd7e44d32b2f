// HBONE client pool against a real HBONE server, in one process: stream caps, single-flight
// dialing, idle close, dead-peer detection by ping, identity checks. Loopback 127.0.45.0/24.
import net from 'node:net';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { HbonePool, type TunnelRequest } from '../../src/hbone/pool.js';
import { HboneServer } from '../../src/hbone/server.js';
import type { TlsIdentity } from '../../src/hbone/tls.js';
import { MeshCa } from '../../src/controlplane/ca.js';
import { formatSocketAddr, type Ip } from '../../src/common/addr.js';
import { isAmbitError } from '../../src/common/errors.js';
import { closeServer, tcpEcho } from '../support/mesh.js';
import { forwardTunnelToApp } from '../support/hbone.js';
import { issuedBy } from '../support/certs.js';

const SERVER = '127.0.45.11' as Ip;
const RELAY = '127.0.45.12';
const CLIENT_IP = '127.0.45.10';
const log = pino({ level: 'silent' });
let ca: MeshCa;
let client: TlsIdentity;
let server: HboneServer;
let echo: net.Server;
const seenHeaders: Record<string, unknown>[] = [];

const identity = (sa: string): Promise<TlsIdentity> =>
  issuedBy(ca, { trustDomain: 'cluster.local', namespace: 'demo', serviceAccount: sa });

beforeAll(async () => {
  ca = await MeshCa.loadOrCreate({
    stateDir: await mkdtemp(path.join(tmpdir(), 'ambit-pool-')),
    trustDomain: 'cluster.local',
  });
  client = await identity('sleep');
  echo = await tcpEcho(SERVER, 7000);
  server = new HboneServer({
    podIp: SERVER,
    port: 15008,
    identity: await identity('echo'),
    trustDomain: 'cluster.local',
    logger: log,
    onTunnel: (t) => {
      seenHeaders.push(t.headers);
      forwardTunnelToApp(t);
    },
  });
  await server.start();
});

afterAll(async () => {
  await server.stop(0);
  await closeServer(echo);
});

function request(over: Partial<TunnelRequest> = {}): TunnelRequest {
  return {
    source: client,
    sourceIp: CLIENT_IP,
    clientAddr: { host: CLIENT_IP, port: 1234 },
    hboneAddr: { host: SERVER, port: 15008 },
    expectedIdentity: 'spiffe://cluster.local/ns/demo/sa/echo',
    authority: formatSocketAddr(SERVER, 7000),
    ...over,
  };
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('HBONE pool', () => {
  it('opens 1 000 simultaneous tunnels to a new destination with ceil(1000/100) handshakes', async () => {
    const pool = new HbonePool(log);
    const streams = await Promise.all(Array.from({ length: 1000 }, () => pool.connect(request())));
    expect(pool.stats()).toMatchObject({ connections: 10, streams: 1000, handshakes: 10 });
    const echoed = await new Promise<string>((resolve) => {
      streams[999]!.once('data', (c: Buffer) => resolve(c.toString()));
      streams[999]!.write('over a pooled stream');
    });
    expect(echoed).toBe('over a pooled stream');
    for (const s of streams) s.destroy();
    pool.close();
  });

  it('sends forwarded (the client address) and a fresh W3C traceparent on every CONNECT', async () => {
    const pool = new HbonePool(log);
    const from = seenHeaders.length;
    const a = await pool.connect(request({ clientAddr: { host: CLIENT_IP, port: 4321 } }));
    const b = await pool.connect(request());
    const [ha, hb] = seenHeaders.slice(from);
    expect(ha!.forwarded).toBe(`for="${CLIENT_IP}:4321"`);
    expect(ha!.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    expect(hb!.traceparent).not.toBe(ha!.traceparent);
    expect(ha![':authority']).toBe(`${SERVER}:7000`);
    a.destroy();
    b.destroy();
    pool.close();
  });

  it('opens a second connection once the first carries 100 streams', async () => {
    const pool = new HbonePool(log);
    const first = await Promise.all(Array.from({ length: 100 }, () => pool.connect(request())));
    expect(pool.stats().connections).toBe(1);
    const extra = await pool.connect(request());
    expect(pool.stats()).toMatchObject({ connections: 2, handshakes: 2 });
    for (const s of [...first, extra]) s.destroy();
    pool.close();
  });

  it('keeps separate connections per source identity', async () => {
    const pool = new HbonePool(log);
    const other = await identity('other');
    const a = await pool.connect(request());
    const b = await pool.connect(request({ source: other }));
    expect(pool.stats()).toMatchObject({ keys: 2, connections: 2 });
    a.destroy();
    b.destroy();
    pool.close();
  });

  it('closes a connection that stays idle past the idle timeout', async () => {
    const pool = new HbonePool(log, { idleMs: 200 });
    const s = await pool.connect(request());
    s.destroy();
    await until(() => pool.stats().connections === 0, 3000);
    expect(pool.stats().keys).toBe(0);
  });

  it('detects a peer that stops answering pings and drops the connection', async () => {
    // A relay we can freeze: bytes stop flowing in both directions, as with a dead peer.
    const frozen: net.Socket[] = [];
    const relay = net.createServer((down) => {
      const up = net.connect(15008, SERVER);
      down.pipe(up).pipe(down);
      frozen.push(down, up);
      down.on('error', () => up.destroy());
      up.on('error', () => down.destroy());
    });
    await new Promise<void>((r) => relay.listen(15008, RELAY, r));
    try {
      const pool = new HbonePool(log, { pingIntervalMs: 100, pingTimeoutMs: 300 });
      const s = await pool.connect(request({ hboneAddr: { host: RELAY, port: 15008 } }));
      s.on('error', () => {});
      const closed = new Promise((r) => s.once('close', r));
      for (const sock of frozen) {
        sock.unpipe();
        sock.pause();
      }
      await closed;
      await until(() => pool.stats().connections === 0, 3000);
    } finally {
      for (const sock of frozen) sock.destroy();
      await closeServer(relay);
    }
  });

  it('refuses a server whose identity is not the expected one, naming both', async () => {
    const pool = new HbonePool(log);
    const err = await pool
      .connect(request({ expectedIdentity: 'spiffe://cluster.local/ns/demo/sa/someone-else' }))
      .catch((e: unknown) => e);
    expect(isAmbitError(err)).toBe(true);
    expect(String((err as Error).message)).toMatch(
      /expected spiffe:\/\/cluster\.local\/ns\/demo\/sa\/someone-else.*presented spiffe:\/\/cluster\.local\/ns\/demo\/sa\/echo/,
    );
    pool.close();
  });

  it('reports a destination that refuses TCP as HBONE_CONNECT_REFUSED', async () => {
    const pool = new HbonePool(log);
    const err = await pool
      .connect(request({ hboneAddr: { host: '127.0.45.99', port: 15008 } }))
      .catch((e: unknown) => e);
    expect(isAmbitError(err, 'HBONE_CONNECT_REFUSED')).toBe(true);
  });
});
