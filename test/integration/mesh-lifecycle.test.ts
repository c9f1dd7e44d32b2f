// The mesh while things change: the control plane dies and comes back, a pod is added to the
// manifests. Loopback range 127.0.42.0/24.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestMesh, closeServer, tcpEcho } from '../support/mesh.js';

const m = new TestMesh({ octet: 42 });
const servers: net.Server[] = [];
const SLEEP = m.ip(10);
const ECHO_V2 = m.ip(12);

beforeAll(async () => {
  await m.start();
  servers.push(await tcpEcho(m.ip(11), 7000), await tcpEcho(ECHO_V2, 7000));
}, 60_000);

afterAll(async () => {
  await Promise.all(servers.map(closeServer));
  await m.stop();
});

function roundTrip(s: net.Socket, msg: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (c: Buffer) => {
      got += c.toString();
      if (got.length >= msg.length) {
        s.off('data', onData);
        resolve(got);
      }
    };
    s.on('data', onData);
    s.once('error', reject);
    s.write(msg);
  });
}

async function reachable(host: string, port: number, deadlineMs: number): Promise<boolean> {
  const end = Date.now() + deadlineMs;
  while (Date.now() < end) {
    try {
      const s = await m.socks(SLEEP, host, port);
      const ok = (await roundTrip(s, 'ping')) === 'ping';
      s.destroy();
      if (ok) return true;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return false;
}

describe('mesh lifecycle', () => {
  it('keeps existing and new connections working while the control plane is down, and resyncs when it returns', async () => {
    const open = await m.socks(SLEEP, 'echo.demo', 7000);
    expect(await roundTrip(open, 'before')).toBe('before');

    await m.mesh.kill('controlplane');
    // The open tunnel still carries bytes, and new tunnels to known workloads still open.
    expect(await roundTrip(open, 'during')).toBe('during');
    const fresh = await m.socks(SLEEP, ECHO_V2, 7000);
    expect(await roundTrip(fresh, 'new-during')).toBe('new-during');
    fresh.destroy();

    // A change made while the control plane is down reaches the proxies once it is back.
    const from = m.logs.length;
    await writeFile(
      path.join(m.configDir, 'late.yaml'),
      `apiVersion: v1\nkind: Pod\nmetadata: {name: late, namespace: demo, labels: {app: late}}\nspec: {nodeName: node-2, serviceAccountName: late}\nstatus: {podIP: ${m.ip(20)}}\n`,
    );
    await m.mesh.restart('controlplane');
    await m.waitForLog(
      (l) =>
        l.component === 'node/node-2' &&
        l.rec.msg === 'pod added to the mesh on this node' &&
        l.rec.pod === 'demo/late',
      15_000,
      from,
    );
    servers.push(await tcpEcho(m.ip(20), 7000));
    expect(await reachable(m.ip(20), 7000, 10_000)).toBe(true);

    expect(await roundTrip(open, 'after')).toBe('after');
    open.destroy();
  }, 60_000);

  it('makes a pod added to the manifests reachable without restarting anything', async () => {
    const ip = m.ip(21);
    const from = m.logs.length;
    await writeFile(
      path.join(m.configDir, 'added.yaml'),
      `apiVersion: v1\nkind: Pod\nmetadata: {name: added, namespace: demo, labels: {app: echo}}\nspec: {nodeName: node-1, serviceAccountName: added}\nstatus: {podIP: ${ip}}\n`,
    );
    servers.push(await tcpEcho(ip, 7000));
    const added = await m.waitForLog(
      (l) => l.rec.msg === 'pod added to the mesh on this node' && l.rec.pod === 'demo/added',
      10_000,
      from,
    );
    expect(added.component).toBe('node/node-1');
    expect(added.rec.identity).toBe('spiffe://cluster.local/ns/demo/sa/added');
    expect(await reachable(ip, 7000, 5_000)).toBe(true);
  }, 30_000);

  it('restarts a node proxy and serves its pods again', async () => {
    await m.mesh.restart('node/node-2');
    expect(await reachable(ECHO_V2, 7000, 10_000)).toBe(true);
  }, 30_000);
});
