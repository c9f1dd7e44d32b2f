// Attacks on the capture entry point in local mode (SOCKS5 on podIP:15080), against real node
// proxies (child processes) on 127.0.161.*:
// - a pod asks its capture for a mesh port (another pod's :15080 SOCKS, a node's admin :15000,
//   readiness, metrics, HBONE…): the proxy's own listeners must never be reachable through the
//   mesh with another identity (ztunnel outbound.rs: loopback + cfg.illegal_ports → SelfCall);
// - malformed SOCKS5 (RFC 1928): wrong version, no acceptable method, unknown command or address
//   type, bad or oversized names, port 0, oversized handshakes, truncated input: each gets the
//   RFC's reply or a close, a log line, and the proxy keeps serving.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestMesh, closeServer, tcpEcho } from '../support/mesh.js';
import { SocksError } from '../../src/cli/socks-client.js';
import { MESH_PORTS } from '../../src/common/ports.js';

const O = 161;
const ip = (n: number) => `127.0.${O}.${n}`;
const SLEEP = ip(10);
const ECHO_V1 = ip(11);
const ECHO_V2 = ip(12);
const NODE_1 = ip(1);
const VIP = ip(100);

const m = new TestMesh({ octet: O });
const servers: net.Server[] = [];

beforeAll(async () => {
  await m.start();
  servers.push(await tcpEcho(ECHO_V2, 7000));
}, 60_000);

afterAll(async () => {
  await Promise.all(servers.map(closeServer));
  await m.stop();
});

async function socksReply(host: string, port: number): Promise<number> {
  try {
    const s = await m.socks(SLEEP, host, port);
    s.destroy();
    return 0;
  } catch (err) {
    if (err instanceof SocksError) return err.reply;
    throw err;
  }
}

describe('a pod cannot reach a proxy listener through its capture', () => {
  it.each([...MESH_PORTS])(
    'SOCKS to echo-v1:%d is refused (reply 2, not allowed) and logged',
    async (port) => {
      const from = m.logs.length;
      expect(await socksReply(ECHO_V1, port)).toBe(2);
      const line = await m.waitForLog(
        (l) =>
          l.component === 'node/node-1' &&
          l.rec.msg === 'connection failed' &&
          l.rec['dst.target'] === `${ECHO_V1}:${port}`,
        5000,
        from,
      );
      expect(String(line.rec.error)).toContain('mesh proxy port');
    },
  );

  it.each([
    ["the node's admin", NODE_1, 15000],
    ["the node's readiness", NODE_1, 15021],
    ["the node's metrics", NODE_1, 15020],
    ['localhost admin', '127.0.0.1', 15000],
    ['the service VIP on a mesh port', VIP, 15080],
  ])('%s (%s:%d) is refused', async (_name, host, port) => {
    expect(await socksReply(host, port)).toBe(2);
  });

  it('a mesh name on a mesh port (echo.demo.svc.cluster.local:15080) is refused too', async () => {
    expect(await socksReply('echo.demo.svc.cluster.local', 15080)).toBe(2);
  });

  it('an app port still works (control)', async () => {
    const s = await m.socks(SLEEP, ECHO_V2, 7000);
    s.write('ping');
    expect(await new Promise<string>((r) => s.once('data', (d: Buffer) => r(d.toString())))).toBe('ping');
    s.destroy();
  });
});

/** Sends raw bytes to sleep's SOCKS listener; resolves with what came back and whether it closed. */
function raw(chunks: Buffer[], waitMs = 1500): Promise<{ reply: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: SLEEP, port: 15080 });
    let reply = Buffer.alloc(0);
    let closed = false;
    s.on('data', (d: Buffer) => (reply = Buffer.concat([reply, d])));
    s.on('error', () => {});
    s.once('close', () => {
      closed = true;
      clearTimeout(timer);
      resolve({ reply, closed });
    });
    s.once('connect', () => {
      for (const c of chunks) s.write(c);
    });
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ reply, closed });
    }, waitMs);
  });
}

const GREETING = Buffer.from([0x05, 0x01, 0x00]);
const OK_METHOD = [0x05, 0x00];
const req = (cmd: number, atyp: number, addr: number[], port: number) =>
  Buffer.from([0x05, cmd, 0x00, atyp, ...addr, port >> 8, port & 0xff]);
const v4 = (a: string) => a.split('.').map(Number);
const name = (n: string) => [n.length, ...Buffer.from(n, 'latin1')];

describe('malformed SOCKS5 gets the RFC 1928 answer or a close, never a crash', () => {
  it.each([
    ['SOCKS4 greeting', [Buffer.from([0x04, 0x01, 0x1f, 0x40, 127, 0, 0, 1, 0])], [], true],
    ['no acceptable method (NMETHODS=0)', [Buffer.from([0x05, 0x00])], [0x05, 0xff], true],
    ['only username/password offered', [Buffer.from([0x05, 0x01, 0x02])], [0x05, 0xff], true],
    ['BIND command', [GREETING, req(0x02, 0x01, v4(ECHO_V2), 7000)], [...OK_METHOD, 0x05, 0x07], true],
    [
      'UDP ASSOCIATE command',
      [GREETING, req(0x03, 0x01, v4(ECHO_V2), 7000)],
      [...OK_METHOD, 0x05, 0x07],
      true,
    ],
    [
      'address type 5',
      [GREETING, Buffer.from([0x05, 0x01, 0x00, 0x05, 1, 2, 3, 4, 0, 80])],
      [...OK_METHOD, 0x05, 0x08],
      true,
    ],
    ['empty domain name', [GREETING, req(0x01, 0x03, name(''), 7000)], [...OK_METHOD, 0x05, 0x04], true],
    [
      'domain name with CR LF and spaces',
      [GREETING, req(0x01, 0x03, name('echo\r\nHost: x'), 7000)],
      [...OK_METHOD, 0x05, 0x04],
      true,
    ],
    [
      'domain name with a NUL',
      [GREETING, req(0x01, 0x03, name('echo\u0000.demo'), 7000)],
      [...OK_METHOD, 0x05, 0x04],
      true,
    ],
    ['port 0', [GREETING, req(0x01, 0x01, v4(ECHO_V2), 0)], [...OK_METHOD, 0x05, 0x01], true],
    [
      'request version 4 after a SOCKS5 greeting',
      [GREETING, Buffer.from([0x04, 0x01, 0x00, 0x01, 1, 2, 3, 4, 0, 80])],
      [...OK_METHOD, 0x05, 0x01],
      true,
    ],
  ])('%s', async (_name, chunks, expected, closes) => {
    const r = await raw(chunks as Buffer[]);
    expect([...r.reply.subarray(0, (expected as number[]).length)]).toEqual(expected);
    expect(r.closed).toBe(closes);
  });

  it('a 255-byte domain name (the maximum) that resolves nowhere: reply 4, host unreachable', async () => {
    const r = await raw([GREETING, req(0x01, 0x03, name('a'.repeat(255)), 7000)], 6000);
    expect([...r.reply]).toEqual([...OK_METHOD, 0x05, 0x04, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
    expect(r.closed).toBe(true);
  });

  it('a handshake longer than any valid one (255 methods, then more) is closed without a reply', async () => {
    const r = await raw([Buffer.from([0x05, 0xff, ...Array(255).fill(0x01)]), Buffer.alloc(400, 0x41)]);
    expect(r.closed).toBe(true);
    expect(r.reply.length).toBe(0); // no 0x00 method offered: no method reply either
  });

  it('a request split byte by byte is still parsed (no assumptions about framing)', async () => {
    const bytes = Buffer.concat([GREETING, req(0x01, 0x01, v4(ECHO_V2), 7000), Buffer.from('ping')]);
    const r = await raw(
      [...bytes].map((b) => Buffer.from([b])),
      1500,
    );
    // 2 bytes method reply, 10 bytes success reply, then the echoed ping
    expect([...r.reply.subarray(0, 4)]).toEqual([0x05, 0x00, 0x05, 0x00]);
    expect(r.reply.subarray(12).toString()).toBe('ping');
  });

  it('truncated handshakes and resets leave the proxy serving', async () => {
    for (const chunk of [Buffer.from([0x05]), Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01]), GREETING]) {
      const s = net.connect({ host: SLEEP, port: 15080 }, () => {
        s.write(chunk);
        setTimeout(() => s.resetAndDestroy(), 20);
      });
      s.on('error', () => {});
      await new Promise((r) => s.once('close', r));
    }
    const s = await m.socks(SLEEP, ECHO_V2, 7000);
    s.write('still up');
    expect(await new Promise<string>((r) => s.once('data', (d: Buffer) => r(d.toString())))).toBe('still up');
    s.destroy();
    // each refusal was logged with its reason
    expect(m.logs.some((l) => l.rec.msg === 'socks5: bad request' && l.rec.reason)).toBe(true);
  });
});
