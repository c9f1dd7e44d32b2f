// The node proxy's DNS proxy (ztunnel's, on :15053 in each pod's netns): A and AAAA queries for
// names the mesh knows (services by every short form a pod may write, ServiceEntry hosts,
// wildcard hosts) are answered from the proxy state with TTL 30 s; everything else goes upstream
// unchanged (same id, same transport) and comes back unchanged. As in ztunnel:
// - a known name with no address of the asked family gets an empty NOERROR answer, not NXDOMAIN;
// - an unknown name, also inside cluster.local, is forwarded (the cluster DNS answers it), unless
//   the proxy is told it is authoritative for that zone (`authoritativeZones`, for a mesh with no
//   cluster DNS behind it, as in netns mode): then NXDOMAIN without forwarding;
// - a name found by stripping one of the pod's search domains is answered with a CNAME to it;
// - non-A/AAAA queries are forwarded; an upstream that does not answer in 5 s gives SERVFAIL.
// Garbage never crashes the proxy: undecodable packets are dropped with a debug line, a TCP
// length prefix over MAX_TCP_MESSAGE closes the connection.
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import * as dnsPacket from 'dns-packet';
import type { HostPort } from '../common/addr.js';
import { errorMessage } from '../common/errors.js';
import { componentLogger, type Logger } from '../common/log.js';
import type { ProxyState } from '../proxy/state.js';
import type { Service } from '../xds/resources.js';

export const DNS_TTL_SECONDS = 30;
export const DNS_UPSTREAM_TIMEOUT_MS = 5_000;
/** Largest DNS message we accept over TCP; a query is at most a few hundred bytes. */
export const MAX_TCP_MESSAGE = 4_096;
/** A TCP client that sends nothing for this long is closed (ztunnel: 5 s). */
export const TCP_IDLE_TIMEOUT_MS = 5_000;

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4 } as const;
type Rcode = (typeof RCODE)[keyof typeof RCODE];

/** What the mesh knows about a name: its addresses (both families), and the canonical name when the query matched only after a search domain was stripped. */
export interface MeshAnswer {
  ips: string[];
  cname?: string;
}

/** Looks a queried name up as a pod in `clientNamespace` would mean it; undefined = not a mesh name. */
export type MeshResolver = (name: string, clientNamespace: string) => MeshAnswer | undefined;

/** How the proxy reaches upstream resolvers; in netns mode sockets made inside the pod's namespace. */
export interface DnsUpstreamTransport {
  udpSocket(family: 4 | 6): Promise<dgram.Socket>;
  tcpConnect(addr: HostPort): Promise<net.Socket>;
}

export interface DnsProxyOptions {
  resolve: MeshResolver;
  /** The client's namespace: fixed (one proxy per pod netns) or by source IP; undefined → SERVFAIL, as ztunnel does for an unknown source. */
  clientNamespace: string | ((sourceIp: string) => string | undefined);
  /** Default: the nameservers of /etc/resolv.conf, port 53. */
  upstreams?: HostPort[];
  upstreamTimeoutMs?: number;
  /** Zones whose unknown names get NXDOMAIN instead of being forwarded (e.g. ["cluster.local"]). */
  authoritativeZones?: string[];
  transport?: DnsUpstreamTransport;
  logger?: Logger;
}

export interface DnsCounters {
  queries: number;
  answered: number;
  forwarded: number;
  nxdomain: number;
  servfail: number;
  dropped: number;
}

type Transport = 'udp' | 'tcp';

export class DnsProxy {
  private readonly log: Logger;
  private readonly upstreams: HostPort[];
  private readonly timeoutMs: number;
  private readonly zones: string[];
  private readonly transport: DnsUpstreamTransport;
  private udp: dgram.Socket | undefined;
  private tcp: net.Server | undefined;
  private readonly tcpClients = new Set<net.Socket>();
  private readonly stats: DnsCounters = {
    queries: 0,
    answered: 0,
    forwarded: 0,
    nxdomain: 0,
    servfail: 0,
    dropped: 0,
  };

  constructor(private readonly opts: DnsProxyOptions) {
    this.log = opts.logger ?? componentLogger('dns');
    this.upstreams = opts.upstreams ?? readResolvConf();
    this.timeoutMs = opts.upstreamTimeoutMs ?? DNS_UPSTREAM_TIMEOUT_MS;
    this.zones = (opts.authoritativeZones ?? []).map(normalizeName);
    this.transport = opts.transport ?? defaultTransport;
  }

  /**
   * Starts serving: binds UDP and TCP on host:port, or adopts sockets made elsewhere (in netns
   * mode, inside the pod's namespace: `udpSocketInNetns` / `listenInNetns` of redirect/native.ts).
   */
  async start(on: HostPort | { udp: dgram.Socket; tcp?: net.Server }): Promise<void> {
    if ('udp' in on) {
      this.udp = on.udp;
      this.tcp = on.tcp;
    } else {
      this.udp = await bindUdp(on);
      try {
        this.tcp = await listenTcp({ host: on.host, port: this.udp.address().port });
      } catch (err) {
        this.udp.close();
        throw err;
      }
    }
    this.udp.on('message', (msg, rinfo) => this.onUdp(msg, rinfo));
    this.udp.on('error', (err) => this.log.warn({ err: errorMessage(err) }, 'dns udp socket error'));
    this.tcp?.on('connection', (socket) => this.onTcp(socket));
    this.log.info(
      { udp: this.udp.address(), tcp: this.tcp?.address(), upstreams: this.upstreams },
      'dns proxy listening',
    );
  }

  address(): { udp: HostPort | undefined; tcp: HostPort | undefined } {
    const u = this.udp?.address();
    const t = this.tcp?.address();
    return {
      udp: u ? { host: u.address, port: u.port } : undefined,
      tcp: t && typeof t === 'object' ? { host: t.address, port: t.port } : undefined,
    };
  }

  counters(): DnsCounters {
    return { ...this.stats };
  }

  async close(): Promise<void> {
    for (const s of this.tcpClients) s.destroy();
    await Promise.all([
      new Promise<void>((r) => (this.udp ? this.udp.close(() => r()) : r())),
      new Promise<void>((r) => (this.tcp ? this.tcp.close(() => r()) : r())),
    ]);
  }

  /** One DNS message in, the reply out (undefined = drop). Public for the node agent and tests. */
  async handle(query: Buffer, sourceIp: string, transport: Transport): Promise<Buffer | undefined> {
    try {
      return await this.handleQuery(query, sourceIp, transport);
    } catch (err) {
      // A bug or an input dns-packet decodes but cannot encode back: never an unhandled rejection.
      this.log.warn({ 'src.ip': sourceIp, transport, err: errorMessage(err) }, 'dns query failed');
      return this.drop(sourceIp, transport, `handling failed: ${errorMessage(err)}`);
    }
  }

  private async handleQuery(
    query: Buffer,
    sourceIp: string,
    transport: Transport,
  ): Promise<Buffer | undefined> {
    let packet: dnsPacket.DecodedPacket;
    try {
      packet = dnsPacket.decode(query);
    } catch (err) {
      return this.drop(sourceIp, transport, `undecodable packet: ${errorMessage(err)}`);
    }
    if (packet.type !== 'query') return this.drop(sourceIp, transport, 'not a query');
    this.stats.queries++;
    const opcode = (query.readUInt16BE(2) >> 11) & 0xf;
    if (opcode !== 0) return this.reply(packet, RCODE.NOTIMP);
    const question = packet.questions?.[0];
    if (!question || packet.questions!.length !== 1) return this.reply(packet, RCODE.FORMERR);

    const name = normalizeName(question.name);
    const ns =
      typeof this.opts.clientNamespace === 'string'
        ? this.opts.clientNamespace
        : this.opts.clientNamespace(sourceIp);
    if (ns === undefined) {
      this.log.debug({ 'src.ip': sourceIp, query: name }, 'dns query from an unknown source');
      return this.reply(packet, RCODE.SERVFAIL);
    }
    const match = this.opts.resolve(name, ns);
    const inZone = this.zones.some((z) => name === z || name.endsWith(`.${z}`));
    if (match && (question.type === 'A' || question.type === 'AAAA') && question.class === 'IN') {
      this.log.debug(
        { 'src.ip': sourceIp, query: name, type: question.type, ips: match.ips },
        'dns answered',
      );
      return this.answer(packet, question, match, transport);
    }
    if (inZone) return this.reply(packet, match ? RCODE.NOERROR : RCODE.NXDOMAIN);
    return this.forward(query, packet, transport);
  }

  private onUdp(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    void this.handle(msg, rinfo.address, 'udp').then((reply) => {
      if (reply && this.udp)
        this.udp.send(reply, rinfo.port, rinfo.address, (err) => err && this.sendFailed(err));
    });
  }

  // RFC 7766 framing: a 2-byte length, then the message; several queries may be in flight at once.
  private onTcp(socket: net.Socket): void {
    this.tcpClients.add(socket);
    // A client may half-close after its last query: answer what is in flight, then end.
    socket.allowHalfOpen = true;
    let pending = 0;
    let ended = false;
    // Idle = nothing in flight either: a forwarded query has its own 5 s deadline.
    socket.setTimeout(TCP_IDLE_TIMEOUT_MS, () => pending === 0 && socket.destroy());
    socket.on('end', () => {
      ended = true;
      if (pending === 0) socket.end();
    });
    socket.on('close', () => this.tcpClients.delete(socket));
    socket.on('error', (err) => this.log.debug({ err: errorMessage(err) }, 'dns tcp client error'));
    const source = socket.remoteAddress ?? '';
    let buf: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (len < 12 || len > MAX_TCP_MESSAGE) {
          this.drop(source, 'tcp', `length prefix ${len} out of range 12..${MAX_TCP_MESSAGE}: closing`);
          socket.destroy();
          return;
        }
        if (buf.length < 2 + len) return;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        pending++;
        void this.handle(Buffer.from(msg), source, 'tcp').then((reply) => {
          pending--;
          if (socket.destroyed) return;
          if (reply) {
            const prefix = Buffer.alloc(2);
            prefix.writeUInt16BE(reply.length);
            socket.write(Buffer.concat([prefix, reply]));
          }
          if (ended && pending === 0) socket.end();
        });
      }
    });
  }

  private answer(
    query: dnsPacket.DecodedPacket,
    q: dnsPacket.Question,
    m: MeshAnswer,
    transport: Transport,
  ): Buffer {
    const family = q.type === 'A' ? 4 : 6;
    const owner = m.cname ?? q.name;
    const answers: dnsPacket.Answer[] = [];
    if (m.cname) answers.push({ type: 'CNAME', name: q.name, ttl: DNS_TTL_SECONDS, data: m.cname });
    for (const ip of m.ips)
      if (net.isIP(ip) === family)
        answers.push({ type: q.type as 'A' | 'AAAA', name: owner, ttl: DNS_TTL_SECONDS, data: ip });
    const reply = this.reply(query, RCODE.NOERROR, answers);
    if (transport === 'udp' && reply.length > maxUdpSize(query))
      return this.reply(query, RCODE.NOERROR, [], true);
    this.stats.answered++;
    return reply;
  }

  private reply(
    query: dnsPacket.DecodedPacket,
    rcode: Rcode,
    answers: dnsPacket.Answer[] = [],
    truncated = false,
  ): Buffer {
    if (rcode === RCODE.NXDOMAIN) this.stats.nxdomain++;
    if (rcode === RCODE.SERVFAIL) this.stats.servfail++;
    let flags = dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_AVAILABLE | rcode;
    if (query.flag_rd) flags |= dnsPacket.RECURSION_DESIRED;
    if (truncated) flags |= dnsPacket.TRUNCATED_RESPONSE;
    return dnsPacket.encode({ type: 'response', id: query.id, flags, questions: query.questions, answers });
  }

  private async forward(
    query: Buffer,
    packet: dnsPacket.DecodedPacket,
    transport: Transport,
  ): Promise<Buffer> {
    const errors: string[] = [];
    for (const upstream of this.upstreams) {
      try {
        const reply =
          transport === 'udp'
            ? await forwardUdp(query, upstream, this.timeoutMs, this.transport)
            : await forwardTcp(query, upstream, this.timeoutMs, this.transport);
        this.stats.forwarded++;
        return reply;
      } catch (err) {
        errors.push(`${upstream.host}:${upstream.port}: ${errorMessage(err)}`);
      }
    }
    const name = packet.questions?.[0]?.name;
    this.log.warn({ query: name, errors, transport }, 'dns forwarding failed: answering SERVFAIL');
    return this.reply(packet, RCODE.SERVFAIL);
  }

  private drop(sourceIp: string, transport: Transport, reason: string): undefined {
    this.stats.dropped++;
    this.log.debug({ 'src.ip': sourceIp, transport, reason }, 'dns message dropped');
    return undefined;
  }

  private sendFailed(err: Error): void {
    this.log.debug({ err: errorMessage(err) }, 'dns udp reply not sent');
  }
}

/**
 * The mesh's names as ztunnel serves them: the queried name; its Kubernetes expansions (`svc` →
 * `svc.<ns>.svc.<domain>`, `svc.ns` → `svc.ns.svc.<domain>`, `svc.ns.svc` → `…<domain>`); the
 * same after stripping one of the pod's search domains (answered with a CNAME); each tried as is
 * and then against wildcard hosts (`*.example.com`, `*.com`). A service needs a VIP, unless it is
 * a headless Kubernetes service: then its healthy endpoints' addresses.
 */
export function meshResolver(state: ProxyState, clusterDomain = 'cluster.local'): MeshResolver {
  const domain = normalizeName(clusterDomain);
  return (query, ns) => {
    const name = normalizeName(query);
    const searchDomains = [`${ns}.svc.${domain}`, `svc.${domain}`, domain];
    const aliases: { name: string; stripped?: string }[] = [];
    const add = (n: string, stripped?: string) => {
      if (n && !aliases.some((a) => a.name === n)) aliases.push({ name: n, stripped });
    };
    add(name);
    for (const fqdn of kubeFqdns(name, ns, domain)) add(fqdn);
    for (const sd of searchDomains) {
      if (!name.endsWith(`.${sd}`)) continue;
      const stripped = name.slice(0, -sd.length - 1);
      add(stripped, stripped);
      for (const fqdn of kubeFqdns(stripped, ns, domain)) add(fqdn, stripped);
    }
    for (const alias of aliases) {
      for (const candidate of wildcards(alias.name)) {
        const svc = state.serviceByHostname(candidate);
        if (!svc) continue;
        const headless = svc.addresses.length === 0 && svc.hostname.endsWith(`.svc.${domain}`);
        if (svc.addresses.length === 0 && !headless) continue;
        const ips = headless ? endpointIps(state, svc) : svc.addresses.map((a) => a.address as string);
        const cname =
          alias.stripped !== undefined && !candidate.startsWith('*.') ? alias.stripped : undefined;
        return cname === undefined || cname === name ? { ips } : { ips, cname };
      }
    }
    return undefined;
  };
}

function kubeFqdns(name: string, ns: string, domain: string): string[] {
  const labels = name.split('.');
  if (labels.length === 1) return [`${name}.${ns}.svc.${domain}`];
  if (labels.length === 2) return [`${name}.svc.${domain}`];
  if (labels.length === 3 && labels[2] === 'svc') return [`${name}.${domain}`];
  return [];
}

/** "www.example.com" → ["www.example.com", "*.example.com", "*.com"]. */
function wildcards(name: string): string[] {
  const out = [name];
  const labels = name.split('.');
  for (let i = 1; i < labels.length; i++) out.push(`*.${labels.slice(i).join('.')}`);
  return out;
}

function endpointIps(state: ProxyState, svc: Service): string[] {
  return state
    .endpointsOf(svc)
    .filter((w) => w.status === 'HEALTHY' && w.addresses.length > 0)
    .map((w) => w.addresses[0]!);
}

function normalizeName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

/** Nameservers of a resolv.conf (default /etc/resolv.conf), port 53; glibc's default 127.0.0.1 when none. */
export function readResolvConf(text?: string): HostPort[] {
  if (text === undefined) {
    try {
      text = readFileSync('/etc/resolv.conf', 'utf8');
    } catch {
      text = '';
    }
  }
  const out: HostPort[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    const host = m?.[1]?.replace(/%.*$/, '');
    if (host && net.isIP(host)) out.push({ host, port: 53 });
  }
  return out.length > 0 ? out : [{ host: '127.0.0.1', port: 53 }];
}

function maxUdpSize(query: dnsPacket.DecodedPacket): number {
  const opt = query.additionals?.find((a): a is dnsPacket.OptAnswer => a.type === 'OPT');
  return opt ? Math.max(512, Math.min(opt.udpPayloadSize, 4096)) : 512;
}

const defaultTransport: DnsUpstreamTransport = {
  udpSocket: async (family) => dgram.createSocket(family === 6 ? 'udp6' : 'udp4'),
  tcpConnect: (addr) =>
    new Promise((resolve, reject) => {
      const s = net.connect({ host: addr.host, port: addr.port });
      s.once('error', reject);
      s.once('connect', () => {
        s.off('error', reject);
        resolve(s);
      });
    }),
};

async function forwardUdp(
  query: Buffer,
  up: HostPort,
  timeoutMs: number,
  t: DnsUpstreamTransport,
): Promise<Buffer> {
  const socket = await t.udpSocket(net.isIP(up.host) === 6 ? 6 : 4);
  const id = query.readUInt16BE(0);
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
      const fail = (err: Error) => {
        clearTimeout(timer);
        reject(err);
      };
      socket.on('error', fail);
      // A connected socket hears only from the upstream, and learns of ICMP "port unreachable".
      socket.on('message', (msg) => {
        if (msg.length < 12 || msg.readUInt16BE(0) !== id) return;
        clearTimeout(timer);
        resolve(msg);
      });
      socket.connect(up.port, up.host, () => socket.send(query, (err) => err && fail(err)));
    });
  } finally {
    try {
      socket.close();
    } catch {
      // already closed
    }
  }
}

async function forwardTcp(
  query: Buffer,
  up: HostPort,
  timeoutMs: number,
  t: DnsUpstreamTransport,
): Promise<Buffer> {
  const id = query.readUInt16BE(0);
  let socket: net.Socket | undefined;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
  });
  const connecting = t.tcpConnect(up);
  try {
    socket = await Promise.race([connecting, timeout]);
    const s = socket;
    const reply = new Promise<Buffer>((resolve, reject) => {
      let buf = Buffer.alloc(0);
      s.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        if (msg.length < 12 || msg.readUInt16BE(0) !== id) reject(new Error('upstream answered another id'));
        else resolve(Buffer.from(msg));
      });
      s.on('error', reject);
      s.on('end', () => reject(new Error('upstream closed the connection before answering')));
    });
    reply.catch(() => undefined); // settled after the race is lost: nobody listens
    const prefix = Buffer.alloc(2);
    prefix.writeUInt16BE(query.length);
    s.write(Buffer.concat([prefix, query]));
    return await Promise.race([reply, timeout]);
  } finally {
    clearTimeout(timer);
    if (socket) socket.destroy();
    // A connection that completes after the deadline is closed at once.
    else
      connecting.then(
        (s) => s.destroy(),
        () => undefined,
      );
  }
}

function bindUdp(addr: HostPort): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket(net.isIP(addr.host) === 6 ? 'udp6' : 'udp4');
    s.once('error', reject);
    s.bind(addr.port, addr.host, () => {
      s.off('error', reject);
      resolve(s);
    });
  });
}

function listenTcp(addr: HostPort): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(addr.port, addr.host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
