// Workload certificates with a 10 s lifetime rotate at half-life while a tunnel stays open.
// Loopback range 127.0.43.0/24.
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestMesh, closeServer, tcpEcho } from '../support/mesh.js';

const m = new TestMesh({ octet: 43, certTtlSeconds: 10 });
const servers: net.Server[] = [];

beforeAll(async () => {
  await m.start();
  servers.push(await tcpEcho(m.ip(12), 7000));
}, 60_000);

afterAll(async () => {
  await Promise.all(servers.map(closeServer));
  await m.stop();
});

describe('certificate rotation', () => {
  it('rotates a 10 s certificate without dropping an open stream, and new tunnels use the new one', async () => {
    const s = await m.socks(m.ip(10), m.ip(12), 7000);
    let echoed = '';
    s.on('data', (c) => (echoed += c));
    const closed = new Promise((r) => s.once('close', r));
    let sent = '';
    const from = m.logs.length;
    // Keep traffic flowing across the rotation of both the client's and the server's certificates.
    const rotatedServer = m.waitForLog(
      (l) => l.component === 'node/node-2' && l.rec.msg === 'hbone: certificate updated',
      15_000,
      from,
    );
    const rotatedClient = m.waitForLog(
      (l) =>
        l.component === 'node/node-1' &&
        l.rec.msg === 'identity spiffe://cluster.local/ns/demo/sa/sleep: Rotating -> Valid',
      15_000,
      from,
    );
    const ticker = setInterval(() => {
      const msg = `t${Date.now()};`;
      sent += msg;
      s.write(msg);
    }, 200);
    await Promise.all([rotatedServer, rotatedClient]);
    await new Promise((r) => setTimeout(r, 1000));
    clearInterval(ticker);
    await new Promise((r) => setTimeout(r, 300));
    expect(s.destroyed).toBe(false);
    expect(echoed).toBe(sent);
    s.end();
    await closed;

    // A tunnel opened now is made with the rotated certificates.
    const s2 = await m.socks(m.ip(10), m.ip(12), 7000);
    const back = await new Promise<string>((resolve) => {
      s2.once('data', (c) => resolve(c.toString()));
      s2.write('after rotation');
    });
    expect(back).toBe('after rotation');
    s2.destroy();
  }, 40_000);
});
