// The C peers of the benchmarks (bench/peers/peers.mjs): each one starts, carries bytes exactly
// (or answers an HTTP GET), and leaves no listening port behind when stopped. A peer whose binary
// is missing is skipped with the reason (bench/peers/install.sh installs them). Addresses:
// 127.0.80.0/24 only.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  PeerUnavailable,
  httpConnect,
  startHaproxy,
  startNghttpxPair,
  startNginxBackend,
  startStunnelPair,
  // @ts-expect-error: plain ESM module without type declarations
} from './peers.mjs';

type Addr = { host: string; port: number };
type Proc = { pid: number; role: string; helper: boolean };
type Peer = {
  name: string;
  entry: Addr & { connect?: boolean };
  pids: number[];
  processes: Proc[];
  stop(): Promise<void>;
};

/** `processes` names every pid of `pids` once (the cost suite charges by role; issue 16). */
function rolesOf(peer: Peer): string[] {
  expect(peer.processes.map((p) => p.pid).sort()).toEqual([...peer.pids].sort());
  return peer.processes.map((p) => `${p.role}${p.helper ? ' (helper)' : ''}`).sort();
}

const ECHO: Addr = { host: '127.0.80.30', port: 18700 };
const PAYLOAD = randomBytes(48 * 1024);

let echo: net.Server;
let certDir = '';

beforeAll(async () => {
  certDir = await mkdtemp(path.join(tmpdir(), 'ambit-peer-certs-'));
  echo = net.createServer((s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen(ECHO.port, ECHO.host, r));
});

afterAll(async () => {
  await new Promise((r) => echo?.close(r));
  if (certDir) await rm(certDir, { recursive: true, force: true });
});

/** Starts a peer, or skips the test with the reason when its binary is missing. */
async function startOrSkip(ctx: { skip: (note?: string) => void }, start: () => Promise<Peer>) {
  try {
    return await start();
  } catch (err) {
    if (err instanceof PeerUnavailable) {
      console.warn(`skipped: ${(err as Error).message}`);
      ctx.skip((err as Error).message);
    }
    throw err;
  }
}

/** Writes PAYLOAD through `s` (connected to the echo server via the peer) and reads it back. */
async function roundTrip(s: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  const done = new Promise<void>((resolve, reject) => {
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      n += c.length;
      if (n >= PAYLOAD.length) resolve();
    });
    s.on('error', reject);
    s.on('close', () => resolve());
  });
  s.resume();
  s.write(PAYLOAD);
  await done;
  s.destroy();
  return Buffer.concat(chunks);
}

const connectPlain = (a: Addr) =>
  new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect(a, () => resolve(s));
    s.once('error', reject);
  });

/** True when nothing listens on `a` any more. */
const closed = (a: Addr) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect(a);
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });

/** The server side rejects a TLS client without a certificate with a TLS alert. */
const refusesWithoutClientCert = (a: Addr) =>
  new Promise<string>((resolve) => {
    const s = tls.connect({ ...a, servername: 'server', rejectUnauthorized: false, ALPNProtocols: ['h2'] });
    s.on('secureConnect', () => s.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'));
    s.on('data', () => resolve('got data'));
    s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    s.on('close', () => resolve('closed without alert'));
    setTimeout(() => {
      s.destroy();
      resolve('timeout');
    }, 3000);
  });

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function checkStopped(peer: Peer, addrs: Addr[]) {
  await peer.stop();
  for (const a of addrs) expect(await closed(a), `${a.host}:${a.port} still open`).toBe(true);
  for (const pid of peer.pids) expect(alive(pid), `pid ${pid} still running`).toBe(false);
}

describe('bench peers', () => {
  it('stunnel pair: mTLS tunnel carries bytes exactly', async (ctx) => {
    const clientAddr = { host: '127.0.80.1', port: 18701 };
    const serverAddr = { host: '127.0.80.2', port: 18702 };
    const peer = await startOrSkip(ctx, () =>
      startStunnelPair({ clientAddr, serverAddr, target: ECHO, certDir }),
    );
    try {
      expect(peer.pids.length).toBeGreaterThanOrEqual(2);
      expect(rolesOf(peer)).toEqual(['stunnel client side', 'stunnel server side']);
      for (let i = 0; i < 3; i++)
        expect((await roundTrip(await connectPlain(peer.entry))).equals(PAYLOAD)).toBe(true);
      expect(await refusesWithoutClientCert(serverAddr)).toMatch(/ALERT_CERTIFICATE_REQUIRED/);
    } finally {
      await checkStopped(peer, [clientAddr, serverAddr]);
    }
  });

  it('nghttpx pair: HTTP/2 CONNECT over mTLS carries bytes exactly', async (ctx) => {
    const clientAddr = { host: '127.0.80.1', port: 18711 };
    const serverAddr = { host: '127.0.80.2', port: 18712 };
    const finalAddr = { host: '127.0.80.3', port: 18713 };
    const peer = await startOrSkip(ctx, () =>
      startNghttpxPair({ clientAddr, serverAddr, finalAddr, target: ECHO, certDir }),
    );
    try {
      expect(peer.entry.connect).toBe(true);
      // Two ends, each an idle master and its worker, and tinyproxy beside them: a helper, which
      // the cost suite lists apart and does not charge to the proxy role.
      expect(rolesOf(peer)).toEqual([
        'nghttpx client side, master',
        'nghttpx client side, worker',
        'nghttpx server side, master',
        'nghttpx server side, worker',
        'tinyproxy (last CONNECT hop) (helper)',
      ]);
      // Several tunnels at once: they share the pooled h2 connection between the two nghttpx.
      const results = await Promise.all(
        [0, 1, 2].map(async () => roundTrip(await httpConnect(peer.entry, ECHO))),
      );
      for (const r of results) expect(r.equals(PAYLOAD)).toBe(true);
      expect(await refusesWithoutClientCert(serverAddr)).toMatch(/ALERT_CERTIFICATE_REQUIRED/);
    } finally {
      await checkStopped(peer, [clientAddr, serverAddr, finalAddr]);
    }
  });

  it('nginx backend and haproxy in front of it answer HTTP/1.1 GETs with keep-alive', async (ctx) => {
    const backend = { host: '127.0.80.20', port: 18720 };
    const front = { host: '127.0.80.21', port: 18721 };
    const nginx = await startOrSkip(ctx, () => startNginxBackend({ listen: backend }));
    let haproxy: Peer | undefined;
    try {
      const direct = await fetch(`http://${backend.host}:${backend.port}/`);
      expect(direct.status).toBe(200);
      expect(await direct.text()).toBe('x'.repeat(64));
      haproxy = await startOrSkip(ctx, () => startHaproxy({ listen: front, target: backend }));
      // Two requests on one connection, written by hand, to see keep-alive through haproxy.
      const s = await connectPlain(haproxy.entry);
      let got = '';
      s.on('data', (c: Buffer) => (got += c.toString('latin1')));
      const req = `GET / HTTP/1.1\r\nHost: ${front.host}\r\n\r\n`;
      s.write(req + req);
      const deadline = Date.now() + 5000;
      while ((got.match(/x{64}/g) ?? []).length < 2 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      s.destroy();
      expect(got.match(/HTTP\/1\.1 200/g)).toHaveLength(2);
      expect(got.match(/x{64}/g)).toHaveLength(2);
    } finally {
      if (haproxy) await checkStopped(haproxy, [front]);
      await checkStopped(nginx, [backend]);
    }
  });
});
