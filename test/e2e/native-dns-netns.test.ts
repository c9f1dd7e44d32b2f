// The DNS proxy serving a pod's network namespace as netns mode runs it: UDP and TCP sockets made
// inside the namespace by the native helpers, port 53 redirected to 15053 by iptables there, an
// unmodified resolver (Node's c-ares) in the namespace asking an arbitrary nameserver address.
import dgram from 'node:dgram';
import * as dnsPacket from 'dns-packet';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Ip } from '../../src/common/addr.js';
import { DnsProxy, meshResolver } from '../../src/nodeproxy/dns.js';
import { DNS_PROXY_PORT } from '../../src/common/ports.js';
import { ProxyState } from '../../src/proxy/state.js';
import { listenInNetns, udpSocketInNetns } from '../../src/redirect/native.js';
import { TestNetns, natRedirect, netnsSkipReason } from '../support/netns.js';

const ns = new TestNetns('ambit-t50-dns');

const reason = netnsSkipReason();
if (reason) console.log(`skipping DNS proxy netns e2e tests: ${reason}`);

describe.skipIf(reason !== undefined)('DNS proxy inside a pod network namespace', () => {
  let proxy: DnsProxy;
  const upstream = dgram.createSocket('udp4');

  beforeAll(async () => {
    ns.create();
    for (const proto of ['udp', 'tcp'] as const)
      ns.iptables(natRedirect({ proto, dport: 53, toPort: DNS_PROXY_PORT }));

    // The upstream, in the root namespace: answers everything with 192.0.2.20.
    await new Promise<void>((r) => upstream.bind(0, '127.0.50.2', r));
    upstream.on('message', (msg, rinfo) => {
      const q = dnsPacket.decode(msg);
      const name = q.questions![0]!.name;
      upstream.send(
        dnsPacket.encode({
          type: 'response',
          id: q.id,
          questions: q.questions,
          answers: [{ type: 'A', name, ttl: 60, data: '192.0.2.20' }],
        }),
        rinfo.port,
        rinfo.address,
      );
    });

    const state = new ProxyState();
    state.applyAddresses(
      new Map([
        [
          'demo/echo.demo.svc.cluster.local',
          {
            service: {
              name: 'echo',
              namespace: 'demo',
              hostname: 'echo.demo.svc.cluster.local',
              addresses: [{ network: '', address: '10.96.0.20' as Ip }],
              ports: [],
              subjectAltNames: [],
            },
          },
        ],
      ]),
      [],
    );
    proxy = new DnsProxy({
      resolve: meshResolver(state),
      clientNamespace: 'demo',
      upstreams: [{ host: '127.0.50.2', port: upstream.address().port }],
      logger: pino({ level: 'silent' }),
    });
    await proxy.start({
      udp: await udpSocketInNetns(ns.path, '127.0.0.1', DNS_PROXY_PORT),
      tcp: await listenInNetns(ns.path, '127.0.0.1', DNS_PROXY_PORT),
    });
  });

  afterAll(async () => {
    await proxy?.close();
    upstream.close();
    ns.delete();
  });

  it("answers the pod's resolver for a mesh name over UDP and TCP, and forwards the rest", async () => {
    const resolve = async (name: string, tcp: boolean) =>
      (
        await ns.node(
          `const d=require('dns').promises;const r=new d.Resolver({timeout:3000,tries:1});r.setServers(['127.0.50.53']);` +
            (tcp
              ? `const n=require('net');const q=Buffer.from(${JSON.stringify([...dnsPacket.encode({ type: 'query', id: 7, questions: [{ type: 'A', name }] })])});` +
                `const s=n.connect(53,'127.0.50.53',()=>{const l=Buffer.alloc(2);l.writeUInt16BE(q.length);s.write(Buffer.concat([l,q]))});` +
                `s.on('data',b=>{const a=b.subarray(2);console.log(a.subarray(a.length-4).join('.'));s.destroy()})`
              : `r.resolve4('${name}').then(a=>console.log(a.join(',')))`),
        )
      ).trim();
    expect(await resolve('echo.demo', false)).toBe('10.96.0.20');
    expect(await resolve('echo', true)).toBe('10.96.0.20');
    expect(await resolve('example.org', false)).toBe('192.0.2.20');
    expect(proxy.counters()).toMatchObject({ answered: 2, forwarded: 1 });
  });
});
