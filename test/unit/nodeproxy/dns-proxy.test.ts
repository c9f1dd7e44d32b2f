// The DNS proxy on real UDP and TCP sockets (127.0.50.x), with a fake upstream resolver.
import dgram from 'node:dgram';
import { promises as dnsPromises } from 'node:dns';
import { once } from 'node:events';
import net from 'node:net';
import * as dnsPacket from 'dns-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostPort, Ip } from '../../../src/common/addr.js';
import {
  DNS_UPSTREAM_TIMEOUT_MS,
  DnsProxy,
  meshResolver,
  type DnsProxyOptions,
} from '../../../src/nodeproxy/dns.js';
import { ProxyState } from '../../../src/proxy/state.js';
import type { Address, Service } from '../../../src/xds/resources.js';
import { pino } from 'pino';

const silent = pino({ level: 'silent' });

function service(hostname: string, vips: string[]): Service {
  return {
    name: hostname.split('.')[0]!,
    namespace: 'demo',
    hostname,
    addresses: vips.map((v) => ({ network: '', address: v as Ip })),
    ports: [],
    subjectAltNames: [],
  };
}

const state = new ProxyState();
state.applyAddresses(
  new Map<string, Address>([
    [
      'demo/echo.demo.svc.cluster.local',
      { service: service('echo.demo.svc.cluster.local', ['127.0.100.1']) },
    ],
    [
      'demo/dual.demo.svc.cluster.local',
      { service: service('dual.demo.svc.cluster.local', ['127.0.100.2', 'fd00::2']) },
    ],
    ['demo/api.example.com', { service: service('api.example.com', ['127.0.100.4']) }],
  ]),
  [],
);

/** A fake upstream resolver on UDP and TCP: example.org → 192.0.2.10, anything else NXDOMAIN. */
class FakeUpstream {
  readonly seen: { id: number; name: string; type: string; transport: 'udp' | 'tcp' }[] = [];
  private udp = dgram.createSocket('udp4');
  private tcp = net.createServer((s) => this.serveTcp(s));
  addr!: HostPort;

  constructor(private readonly silentMode = false) {}

  async start(host: string): Promise<this> {
    await new Promise<void>((r) => this.udp.bind(0, host, r));
    const port = this.udp.address().port;
    await new Promise<void>((r) => this.tcp.listen(port, host, r));
    this.udp.on('message', (msg, rinfo) => {
      const reply = this.answer(msg, 'udp');
      if (reply) this.udp.send(reply, rinfo.port, rinfo.address);
    });
    this.addr = { host, port };
    return this;
  }

  private serveTcp(socket: net.Socket): void {
    let buf = Buffer.alloc(0);
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        const reply = this.answer(msg, 'tcp');
        if (reply) socket.write(Buffer.concat([u16(reply.length), reply]));
      }
    });
  }

  private answer(msg: Buffer, transport: 'udp' | 'tcp'): Buffer | undefined {
    const q = dnsPacket.decode(msg);
    const question = q.questions![0]!;
    this.seen.push({ id: q.id!, name: question.name, type: question.type, transport });
    if (this.silentMode) return undefined;
    const known = question.name === 'example.org';
    return dnsPacket.encode({
      type: 'response',
      id: q.id,
      flags: dnsPacket.RECURSION_AVAILABLE | (known ? 0 : 3),
      questions: q.questions,
      answers:
        known && question.type === 'A'
          ? [{ type: 'A', name: 'example.org', ttl: 300, data: '192.0.2.10' }]
          : [],
    });
  }

  async close(): Promise<void> {
    this.udp.close();
    await new Promise((r) => this.tcp.close(r));
  }
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

let nextId = 100;
function query(name: string, type: dnsPacket.RecordType = 'A', id = nextId++): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name, class: 'IN' }],
  });
}

/** Sends raw datagrams from one socket; resolves with every reply that arrives until the last is answered or the wait ends. */
async function udpExchange(
  to: HostPort,
  messages: Buffer[],
  waitMs = 2_000,
): Promise<dnsPacket.DecodedPacket[]> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.50.1', r));
  const replies: dnsPacket.DecodedPacket[] = [];
  const lastId = messages.at(-1)!.length >= 2 ? messages.at(-1)!.readUInt16BE(0) : -1;
  try {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, waitMs);
      s.on('message', (m) => {
        const p = dnsPacket.decode(m);
        replies.push(p);
        if (p.id === lastId) {
          clearTimeout(timer);
          resolve();
        }
      });
      for (const m of messages) s.send(m, to.port, to.host);
    });
  } finally {
    s.close();
  }
  return replies;
}

async function udpQuery(to: HostPort, msg: Buffer): Promise<dnsPacket.DecodedPacket & { rcode?: string }> {
  const replies = await udpExchange(to, [msg]);
  expect(replies).toHaveLength(1);
  return replies[0]!;
}

/** Writes `chunks` to one TCP connection and collects `want` length-prefixed replies. */
async function tcpExchange(to: HostPort, chunks: Buffer[], want: number): Promise<dnsPacket.DecodedPacket[]> {
  const s = net.connect(to.port, to.host);
  await once(s, 'connect');
  const replies: dnsPacket.DecodedPacket[] = [];
  let buf = Buffer.alloc(0);
  const done = new Promise<void>((resolve, reject) => {
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        replies.push(dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0))));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (replies.length >= want) resolve();
    });
    s.on('error', reject);
    s.on('close', () => reject(new Error(`closed after ${replies.length} replies`)));
  });
  for (const c of chunks) {
    s.write(c);
    await new Promise((r) => setImmediate(r));
  }
  try {
    await done;
  } finally {
    s.destroy();
  }
  return replies;
}

function framed(msg: Buffer): Buffer {
  return Buffer.concat([u16(msg.length), msg]);
}

const proxies: DnsProxy[] = [];
async function startProxy(over: Partial<DnsProxyOptions> = {}): Promise<{ proxy: DnsProxy; addr: HostPort }> {
  const proxy = new DnsProxy({
    resolve: meshResolver(state),
    clientNamespace: 'demo',
    upstreams: [upstream.addr],
    logger: silent,
    ...over,
  });
  await proxy.start({ host: '127.0.50.1', port: 0 });
  proxies.push(proxy);
  return { proxy, addr: proxy.address().udp! };
}

let upstream: FakeUpstream;
let blackHole: FakeUpstream;
let main: { proxy: DnsProxy; addr: HostPort };

beforeAll(async () => {
  upstream = await new FakeUpstream().start('127.0.50.2');
  blackHole = await new FakeUpstream(true).start('127.0.50.3');
  main = await startProxy();
});
afterAll(async () => {
  await Promise.all(proxies.map((p) => p.close()));
  await upstream.close();
  await blackHole.close();
});

describe('DnsProxy answers mesh names', () => {
  it.each(['echo', 'echo.demo', 'echo.demo.svc', 'echo.demo.svc.cluster.local'])(
    'answers %s with the service VIP, authoritative, TTL 30, same id',
    async (name) => {
      const r = await udpQuery(main.addr, query(name, 'A', 4242));
      expect(r).toMatchObject({ id: 4242, type: 'response', rcode: 'NOERROR', flag_aa: true, flag_rd: true });
      expect(r.answers).toEqual([expect.objectContaining({ type: 'A', name, ttl: 30, data: '127.0.100.1' })]);
    },
  );

  it('answers a ServiceEntry host', async () => {
    const r = await udpQuery(main.addr, query('api.example.com'));
    expect(r.answers).toEqual([expect.objectContaining({ type: 'A', data: '127.0.100.4' })]);
  });

  it('answers a name with a search domain appended with a CNAME to the real host', async () => {
    const r = await udpQuery(main.addr, query('api.example.com.demo.svc.cluster.local'));
    expect(r.answers).toEqual([
      expect.objectContaining({
        type: 'CNAME',
        name: 'api.example.com.demo.svc.cluster.local',
        data: 'api.example.com',
      }),
      expect.objectContaining({ type: 'A', name: 'api.example.com', data: '127.0.100.4' }),
    ]);
  });

  it('answers AAAA of an IPv4-only service with an empty NOERROR, without asking upstream', async () => {
    const before = upstream.seen.length;
    const r = await udpQuery(main.addr, query('echo', 'AAAA'));
    expect(r).toMatchObject({ rcode: 'NOERROR', flag_aa: true });
    expect(r.answers).toEqual([]);
    expect(upstream.seen.length).toBe(before);
  });

  it('answers AAAA of a dual-stack service with its IPv6 VIP only', async () => {
    const r = await udpQuery(main.addr, query('dual', 'AAAA'));
    expect(r.answers).toEqual([expect.objectContaining({ type: 'AAAA', data: 'fd00::2' })]);
    const a = await udpQuery(main.addr, query('dual', 'A'));
    expect(a.answers).toEqual([expect.objectContaining({ type: 'A', data: '127.0.100.2' })]);
  });

  it("serves Node's own resolver (c-ares) like any pod's resolver", async () => {
    const resolver = new dnsPromises.Resolver({ timeout: 2_000, tries: 1 });
    resolver.setServers([`${main.addr.host}:${main.addr.port}`]);
    expect(await resolver.resolve4('echo.demo')).toEqual(['127.0.100.1']);
    expect(await resolver.resolve4('example.org')).toEqual(['192.0.2.10']);
  });
});

describe('DnsProxy forwards what the mesh does not know', () => {
  it('forwards an external name unchanged, with the original id, and relays the answer', async () => {
    const r = await udpQuery(main.addr, query('example.org', 'A', 777));
    expect(r).toMatchObject({ id: 777, rcode: 'NOERROR' });
    expect(r.answers).toEqual([expect.objectContaining({ type: 'A', data: '192.0.2.10', ttl: 300 })]);
    expect(upstream.seen).toContainEqual({ id: 777, name: 'example.org', type: 'A', transport: 'udp' });
  });

  it('forwards an unknown cluster.local name, as ztunnel does, and relays NXDOMAIN', async () => {
    const r = await udpQuery(main.addr, query('nope.demo.svc.cluster.local', 'A', 778));
    expect(r).toMatchObject({ id: 778, rcode: 'NXDOMAIN' });
    expect(upstream.seen).toContainEqual(
      expect.objectContaining({ id: 778, name: 'nope.demo.svc.cluster.local' }),
    );
  });

  it('answers NXDOMAIN itself for an authoritative zone, without asking upstream', async () => {
    const { addr } = await startProxy({ authoritativeZones: ['cluster.local'] });
    const before = upstream.seen.length;
    const r = await udpQuery(addr, query('nope.demo.svc.cluster.local'));
    expect(r).toMatchObject({ rcode: 'NXDOMAIN', flag_aa: true });
    const mx = await udpQuery(addr, query('echo.demo.svc.cluster.local', 'MX'));
    expect(mx).toMatchObject({ rcode: 'NOERROR' });
    expect(mx.answers).toEqual([]);
    expect(upstream.seen.length).toBe(before);
  });

  it('forwards record types other than A and AAAA, even for mesh names', async () => {
    const r = await udpQuery(main.addr, query('echo.demo', 'MX', 779));
    expect(r.id).toBe(779);
    expect(upstream.seen).toContainEqual({ id: 779, name: 'echo.demo', type: 'MX', transport: 'udp' });
  });

  it('answers SERVFAIL when the upstream does not answer in time', async () => {
    const { proxy, addr } = await startProxy({ upstreams: [blackHole.addr], upstreamTimeoutMs: 300 });
    const r = await udpQuery(addr, query('example.org', 'A', 780));
    expect(r).toMatchObject({ id: 780, rcode: 'SERVFAIL' });
    const [t] = await tcpExchange(addr, [framed(query('example.org', 'A', 781))], 1);
    expect(t).toMatchObject({ id: 781, rcode: 'SERVFAIL' });
    expect(proxy.counters().servfail).toBe(2);
    expect(DNS_UPSTREAM_TIMEOUT_MS).toBe(5_000);
  });

  it('tries the next upstream when the first refuses', async () => {
    const closed = dgram.createSocket('udp4');
    await new Promise<void>((r) => closed.bind(0, '127.0.50.4', r));
    const dead = { host: '127.0.50.4', port: closed.address().port };
    closed.close();
    const { addr } = await startProxy({ upstreams: [dead, upstream.addr], upstreamTimeoutMs: 2_000 });
    const r = await udpQuery(addr, query('example.org'));
    expect(r.answers).toEqual([expect.objectContaining({ data: '192.0.2.10' })]);
  });

  it('answers SERVFAIL to a client whose namespace it cannot tell', async () => {
    const { addr } = await startProxy({ clientNamespace: () => undefined });
    const r = await udpQuery(addr, query('echo'));
    expect(r).toMatchObject({ rcode: 'SERVFAIL' });
  });
});

describe('DnsProxy over TCP', () => {
  it('answers two queries sent in one write and one split across writes', async () => {
    const a = framed(query('echo', 'A', 900));
    const b = framed(query('api.example.com', 'A', 901));
    const c = framed(query('example.org', 'A', 902));
    const replies = await tcpExchange(
      main.addr,
      [Buffer.concat([a, b]), c.subarray(0, 1), c.subarray(1, 9), c.subarray(9)],
      3,
    );
    const byId = new Map(replies.map((r) => [r.id, r]));
    expect(byId.get(900)?.answers).toEqual([expect.objectContaining({ data: '127.0.100.1' })]);
    expect(byId.get(901)?.answers).toEqual([expect.objectContaining({ data: '127.0.100.4' })]);
    expect(byId.get(902)?.answers).toEqual([expect.objectContaining({ data: '192.0.2.10' })]);
    expect(upstream.seen).toContainEqual({ id: 902, name: 'example.org', type: 'A', transport: 'tcp' });
  });

  it('closes a connection whose length prefix is over the limit', async () => {
    const s = net.connect(main.addr.port, main.addr.host);
    await once(s, 'connect');
    s.write(Buffer.from([0xff, 0xff, 1, 2, 3]));
    await once(s, 'close');
  });

  it('answers a query sent before the client half-closes', async () => {
    const s = net.connect({ port: main.addr.port, host: main.addr.host, allowHalfOpen: true });
    await once(s, 'connect');
    s.end(framed(query('echo', 'A', 903)));
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    await once(s, 'end');
    const all = Buffer.concat(chunks);
    expect(dnsPacket.decode(all.subarray(2))).toMatchObject({ id: 903, rcode: 'NOERROR' });
    s.destroy();
  });
});

describe('DnsProxy and bad input', () => {
  it('drops garbage, truncated packets and responses, and keeps serving', async () => {
    const { proxy, addr } = await startProxy();
    const good = query('echo', 'A', 950);
    const truncated = good.subarray(0, good.length - 3);
    const response = dnsPacket.encode({ type: 'response', id: 951, questions: [{ type: 'A', name: 'x' }] });
    const replies = await udpExchange(addr, [
      Buffer.from('garbage!'),
      Buffer.from([1, 2, 3]),
      truncated,
      response,
      good,
    ]);
    expect(replies.map((r) => r.id)).toEqual([950]);
    expect(proxy.counters()).toMatchObject({ dropped: 4, answered: 1 });
  });

  it('survives a resolver that throws: the query is dropped, the proxy keeps serving', async () => {
    let fail = true;
    const resolve = meshResolver(state);
    const { proxy, addr } = await startProxy({
      resolve: (name, ns) => {
        if (fail) throw new Error('boom');
        return resolve(name, ns);
      },
    });
    expect(await udpExchange(addr, [query('echo', 'A', 970)], 300)).toEqual([]);
    expect(proxy.counters().dropped).toBe(1);
    fail = false;
    expect((await udpQuery(addr, query('echo', 'A', 971))).answers).toHaveLength(1);
  });

  it('closes a TCP connection that sends a too short message', async () => {
    const s = net.connect(main.addr.port, main.addr.host);
    await once(s, 'connect');
    s.write(Buffer.from([0, 3, 1, 2, 3]));
    await once(s, 'close');
  });

  it('keeps the TCP connection after an undecodable message of plausible size', async () => {
    const junk = Buffer.alloc(20, 0xff);
    const replies = await tcpExchange(main.addr, [framed(junk), framed(query('echo', 'A', 960))], 1);
    expect(replies.map((r) => r.id)).toEqual([960]);
  });
});
