// The native socket helpers in real network namespaces with real iptables rules. Needs root, the
// built addon, `ip` and iptables; skipped with the reason printed otherwise (CI runs it as root).
import { once } from 'node:events';
import { readlinkSync } from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  connectInNetns,
  getMark,
  listenInNetns,
  originalDst,
  setMark,
  udpSocketInNetns,
} from '../../src/redirect/native.js';
import { TestNetns, iptablesCommand, natRedirect, netnsSkipReason } from '../support/netns.js';

const ns = new TestNetns('ambit-t50-a');
const NS_PATH = ns.path;
const HOST = '127.0.50.1';

const reason = netnsSkipReason();
if (reason) console.log(`skipping native netns e2e tests: ${reason}`);

function ownNetns(): string {
  return readlinkSync('/proc/thread-self/ns/net');
}

function port(server: net.Server): number {
  return (server.address() as net.AddressInfo).port;
}

function firstData(
  server: net.Server,
): Promise<{ data: string; remote: string | undefined; socket: net.Socket }> {
  return new Promise((resolve) => {
    server.once('connection', (socket) => {
      socket.once('data', (d) => resolve({ data: String(d), remote: socket.remoteAddress, socket }));
    });
  });
}

describe.skipIf(reason !== undefined)('native socket helpers in a network namespace', () => {
  const closers: (() => void)[] = [];

  beforeAll(() => {
    ns.create();
    console.log(`native netns e2e: using ${iptablesCommand()}`);
  });

  afterAll(() => {
    for (const c of closers) c();
    ns.delete();
  });

  it('listens inside the namespace: a client there connects, the root namespace cannot', async () => {
    const before = ownNetns();
    const server = await listenInNetns(NS_PATH, HOST, 0);
    closers.push(() => server.close());
    expect(ownNetns()).toBe(before);
    const p = port(server);
    const got = firstData(server);
    await ns.node(
      `const s=require('net').connect(${p},'${HOST}',()=>s.end('hello from the pod'));s.on('close',()=>{})`,
    );
    const { data, remote, socket } = await got;
    socket.destroy();
    expect(data).toBe('hello from the pod');
    expect(remote).toBe('127.0.0.1');
    // Nothing listens on that address in the root namespace.
    await expect(
      new Promise((resolve, reject) => net.connect(p, HOST, resolve as () => void).once('error', reject)),
    ).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('reads the original destination of a connection redirected by iptables', async () => {
    const server = await listenInNetns(NS_PATH, '0.0.0.0', 0, { reuseaddr: true });
    closers.push(() => server.close());
    const p = port(server);
    ns.iptables(natRedirect({ dst: '127.0.50.9', dport: 8080, toPort: p }));
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    const client = ns.node(
      `const s=require('net').connect(8080,'127.0.50.9',()=>{});s.on('data',d=>{process.stdout.write(String(d));s.end()})`,
    );
    const socket = await accepted;
    const dst = originalDst(socket);
    socket.end(`${dst.ip}:${dst.port}`);
    expect(dst).toEqual({ ip: '127.0.50.9', port: 8080, family: 4 });
    expect(await client).toBe('127.0.50.9:8080');
  });

  it('reads the original destination on an IPv6 (dual-stack) listener, for IPv6 and IPv4 clients', async () => {
    const server = await listenInNetns(NS_PATH, '::', 0, { reuseaddr: true });
    closers.push(() => server.close());
    const p = port(server);
    ns.iptables(natRedirect({ dst: '::1', dport: 8081, toPort: p }), true);
    ns.iptables(natRedirect({ dst: '127.0.50.9', dport: 8082, toPort: p }));
    const seen: unknown[] = [];
    server.on('connection', (socket) => {
      seen.push(originalDst(socket));
      socket.end('ok');
    });
    const connect = (host: string, dport: number) =>
      ns.node(
        `const s=require('net').connect(${dport},'${host}');s.on('data',d=>process.stdout.write(String(d)))`,
      );
    expect(await connect('::1', 8081)).toBe('ok');
    expect(await connect('127.0.50.9', 8082)).toBe('ok');
    expect(seen).toEqual([
      { ip: '::1', port: 8081, family: 6 },
      { ip: '127.0.50.9', port: 8082, family: 4 },
    ]);
  });

  it('connects from inside the namespace with a mark that iptables sees', async () => {
    const server = await listenInNetns(NS_PATH, HOST, 0);
    closers.push(() => server.close());
    const p = port(server);
    ns.iptables([
      '-A',
      'OUTPUT',
      '-p',
      'tcp',
      '-d',
      HOST,
      '--dport',
      String(p),
      '-m',
      'mark',
      '--mark',
      '0x539',
      '-j',
      'ACCEPT',
    ]);
    const got = firstData(server);
    const socket = await connectInNetns(NS_PATH, HOST, p, { mark: 0x539 });
    expect(getMark(socket)).toBe(0x539);
    socket.write('marked');
    const { data, socket: peer } = await got;
    expect(data).toBe('marked');
    peer.end('reply');
    const [reply] = (await once(socket, 'data')) as [Buffer];
    expect(String(reply)).toBe('reply');
    socket.destroy();
    const counters = ns.iptables(['-L', 'OUTPUT', '-v', '-x', '-n']);
    const rule = counters.split('\n').find((l) => l.includes('mark match 0x539') && l.includes(`dpt:${p}`));
    expect(rule, counters).toBeDefined();
    expect(Number(rule!.trim().split(/\s+/)[0])).toBeGreaterThan(0);
  });

  it('sets and reads back SO_MARK on an accepted socket', async () => {
    const server = await listenInNetns(NS_PATH, HOST, 0);
    closers.push(() => server.close());
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    const client = await connectInNetns(NS_PATH, HOST, port(server));
    const socket = await accepted;
    expect(getMark(socket)).toBe(0);
    setMark(socket, 0x111);
    expect(getMark(socket)).toBe(0x111);
    socket.destroy();
    client.destroy();
  });

  it('rejects a refused connection with ECONNREFUSED', async () => {
    await expect(connectInNetns(NS_PATH, HOST, 1)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('binds a UDP socket inside the namespace', async () => {
    const udp = await udpSocketInNetns(NS_PATH, HOST, 0);
    closers.push(() => udp.close());
    const message = once(udp, 'message') as Promise<[Buffer, { address: string }]>;
    const p = udp.address().port;
    await ns.node(
      `const s=require('dgram').createSocket('udp4');s.send('ping',${p},'${HOST}',()=>s.close())`,
    );
    const [msg, rinfo] = await message;
    expect(String(msg)).toBe('ping');
    expect(rinfo.address).toBe('127.0.0.1');
  });

  it('fails with the errno and stays in its own namespace when a step inside fails', async () => {
    const before = ownNetns();
    await expect(listenInNetns('/var/run/netns/ambit-t50-missing', HOST, 0)).rejects.toMatchObject({
      code: 'ENOENT',
      syscall: 'open(netns)',
      message: expect.stringContaining('/var/run/netns/ambit-t50-missing'),
    });
    await expect(listenInNetns('/etc/hostname', HOST, 0)).rejects.toMatchObject({
      code: 'EINVAL',
      syscall: 'setns(CLONE_NEWNET)',
    });
    // 192.0.2.1 is not an address of the namespace: bind fails after the switch.
    await expect(listenInNetns(NS_PATH, '192.0.2.1', 0)).rejects.toMatchObject({
      code: 'EADDRNOTAVAIL',
      syscall: 'bind',
    });
    const busy = await listenInNetns(NS_PATH, HOST, 0);
    closers.push(() => busy.close());
    await expect(listenInNetns(NS_PATH, HOST, port(busy))).rejects.toMatchObject({ code: 'EADDRINUSE' });
    expect(ownNetns()).toBe(before);
    // …and sockets made afterwards are in the root namespace again.
    const root = await listenInNetns(null, HOST, 0);
    closers.push(() => root.close());
    await new Promise<void>((resolve, reject) => {
      const c = net.connect(port(root), HOST, () => {
        c.destroy();
        resolve();
      });
      c.once('error', reject);
    });
  });
});
