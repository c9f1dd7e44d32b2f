// The haproxy pair (bench/peers/haproxy-pair.mjs), the L4 mutual-TLS peer of the l4 and cost
// suites: it carries bytes exactly on every tunnel, runs one process per end with its role, its
// server end refuses a client without a certificate or with one from another CA, its client end
// refuses a server whose certificate another CA signed, and nothing is left after stop(). Skipped,
// saying why, when haproxy is not installed. Addresses: 127.0.252.0/24 and 127.0.253.0/24 only.
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error: plain ESM module without type declarations
import { startHaproxyPair } from './haproxy-pair.mjs';
// @ts-expect-error: plain ESM module without type declarations
import { PeerUnavailable, ensureCerts } from './peers.mjs';

type Addr = { host: string; port: number };
type Peer = {
  entry: Addr;
  entries: Addr[];
  pids: number[];
  processes: { pid: number; role: string; helper: boolean }[];
  stop(): Promise<void>;
};
type Certs = { ca: string; serverCert: string; serverKey: string; clientCert: string; clientKey: string };

const ECHO: Addr = { host: '127.0.252.30', port: 18800 };
const PAYLOAD = randomBytes(48 * 1024);

let echo: net.Server;
let tmp = '';
let certs: Certs;
// A second, unrelated CA with its own server and client certificates: what an attacker holds.
let foreign: Certs;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'ambit-haproxy-pair-test-'));
  certs = await ensureCerts(path.join(tmp, 'certs'), '127.0.252.2');
  foreign = await ensureCerts(path.join(tmp, 'foreign'), '127.0.253.2');
  echo = net.createServer((s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen(ECHO.port, ECHO.host, r));
});

afterAll(async () => {
  await new Promise((r) => echo?.close(r));
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

async function startOrSkip(ctx: { skip: (note?: string) => void }, o: object): Promise<Peer> {
  try {
    return await startHaproxyPair({ certDir: path.join(tmp, 'certs'), ...o });
  } catch (err) {
    if (err instanceof PeerUnavailable) {
      console.warn(`skipped: ${(err as Error).message}`);
      ctx.skip((err as Error).message);
    }
    throw err;
  }
}

/** Connects to `a`, writes `data`, and collects what comes back until `want` bytes or close. */
function exchange(a: Addr, data: Buffer, want = data.length, timeoutMs = 5000) {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    const s = net.connect(a, () => s.write(data));
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      resolve(Buffer.concat(chunks));
    };
    const timer = setTimeout(done, timeoutMs);
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      n += c.length;
      if (n >= want) done();
    });
    s.on('close', done);
    s.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? done() : reject(err)));
  });
}

/** A TLS client of the server end, with `cert` or none; resolves with how the server ended it. */
const tlsClientOutcome = (a: Addr, cert?: { cert: string; key: string }) =>
  new Promise<string>((resolve) => {
    const s = tls.connect({ ...a, servername: 'server', rejectUnauthorized: false, ...cert });
    // In TLS 1.3 the client finishes its handshake before the server has judged its certificate:
    // the verdict arrives as an alert on the first read.
    s.on('secureConnect', () => s.write('hello'));
    s.on('data', () => resolve('got data'));
    s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    s.on('close', () => resolve('closed without alert'));
    setTimeout(() => {
      s.destroy();
      resolve('timeout');
    }, 3000);
  });

const closed = (a: Addr) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect(a);
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });

async function waitUntil(ok: () => Promise<boolean>, timeoutMs = 3000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`condition not met in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function stopAndCheck(peer: Peer, addrs: Addr[]) {
  await peer.stop();
  for (const a of addrs) expect(await closed(a), `${a.host}:${a.port} still open`).toBe(true);
  for (const pid of peer.pids) expect(alive(pid), `pid ${pid} still running`).toBe(false);
}

describe('haproxy pair (TCP mode, mutual TLS)', () => {
  it('carries bytes exactly on every tunnel, one process per end with its role, refuses clients without our certificate', async (ctx) => {
    const tunnels = [0, 1].map((i) => ({
      clientAddr: { host: '127.0.252.1', port: 18801 + i },
      serverAddr: { host: '127.0.252.2', port: 18811 + i },
      target: ECHO,
    }));
    const peer = await startOrSkip(ctx, { tunnels });
    try {
      // Plain mode, nbthread 1: exactly two processes, the two ends the cost suite charges.
      expect(peer.pids).toHaveLength(2);
      expect(peer.processes.map((p) => p.pid).sort()).toEqual([...peer.pids].sort());
      expect(peer.processes.map((p) => `${p.role}${p.helper ? ' (helper)' : ''}`).sort()).toEqual([
        'haproxy client side',
        'haproxy server side',
      ]);
      expect(peer.entries).toEqual(tunnels.map((t) => t.clientAddr));
      for (const e of peer.entries)
        for (let i = 0; i < 2; i++) expect((await exchange(e, PAYLOAD)).equals(PAYLOAD)).toBe(true);
      // Several tunnels at once, each its own TLS connection.
      const many = await Promise.all([0, 1, 2, 3].map(() => exchange(peer.entry, PAYLOAD)));
      for (const r of many) expect(r.equals(PAYLOAD)).toBe(true);

      const server = tunnels[0].serverAddr;
      expect(await tlsClientOutcome(server)).toMatch(/ALERT_CERTIFICATE_REQUIRED/);
      const fromForeignCa = await tlsClientOutcome(server, {
        cert: await readFile(foreign.clientCert, 'utf8'),
        key: await readFile(foreign.clientKey, 'utf8'),
      });
      expect(fromForeignCa).toMatch(/ALERT_(UNKNOWN_CA|BAD_CERTIFICATE|DECRYPT_ERROR)/);
      // The right certificate gets through the server end (the same check, passing).
      const ours = await tlsClientOutcome(server, {
        cert: await readFile(certs.clientCert, 'utf8'),
        key: await readFile(certs.clientKey, 'utf8'),
      });
      expect(ours).toBe('got data');
    } finally {
      await stopAndCheck(
        peer,
        tunnels.flatMap((t) => [t.clientAddr, t.serverAddr]),
      );
    }
  });

  it('client end refuses a server whose certificate another CA signed: nothing reaches it in clear', async (ctx) => {
    // The attacker takes the server end's address (the server-side haproxy is gone) and answers
    // with a certificate for "server" from the foreign CA: haproxy A must abort the handshake
    // (`verify required ca-file`) and send the client's bytes nowhere.
    const clientAddr = { host: '127.0.253.1', port: 18822 };
    const serverAddr = { host: '127.0.253.2', port: 18821 };
    const peer = await startOrSkip(ctx, {
      tunnels: [{ clientAddr, serverAddr, target: ECHO }],
      // Its own directory: the server address is part of the server certificate's names.
      certDir: path.join(tmp, 'certs-b'),
    });
    const received: Buffer[] = [];
    let handshakes = 0;
    let impostor: tls.Server | undefined;
    try {
      // The pair works before the impostor steps in, so a refusal below is the certificate's doing.
      expect((await exchange(clientAddr, PAYLOAD)).equals(PAYLOAD)).toBe(true);
      const serverSide = peer.processes.find((p) => p.role === 'haproxy server side');
      expect(serverSide).toBeDefined();
      process.kill(serverSide!.pid, 'SIGKILL');
      await waitUntil(() => closed(serverAddr));
      impostor = tls.createServer(
        { cert: await readFile(foreign.serverCert, 'utf8'), key: await readFile(foreign.serverKey, 'utf8') },
        (s) => {
          handshakes++;
          s.on('data', (c: Buffer) => received.push(c));
          s.on('error', () => {});
        },
      );
      let rejected = 0;
      impostor.on('tlsClientError', () => rejected++);
      await new Promise<void>((r) => impostor!.listen(serverAddr.port, serverAddr.host, r));
      const back = await exchange(clientAddr, Buffer.from('secret'), 1, 3000);
      expect(back.length).toBe(0);
      expect(handshakes).toBe(0);
      expect(Buffer.concat(received).toString()).not.toContain('secret');
      // haproxy A did try: the impostor saw its handshake fail (not merely no connection).
      expect(rejected).toBeGreaterThan(0);
    } finally {
      await stopAndCheck(peer, [clientAddr]);
      if (impostor) await new Promise((r) => impostor!.close(r));
    }
  });
});
