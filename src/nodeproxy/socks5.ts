// SOCKS5 outbound capture for local mode (RFC 1928), one listener per local pod on
// podIP:15080. No authentication (the listener itself identifies the source pod, as ztunnel's
// does); CONNECT only; IPv4, IPv6 and domain-name targets. The reply is sent only once the
// outbound side knows the result, so "connection refused" at the far app reaches the client.
import net from 'node:net';
import type { Socket } from 'node:net';
import type { Logger } from '../common/log.js';
import { ConnectionTracker, drainServer } from '../common/drain.js';
import type { HostPort, Ip } from '../common/addr.js';

export const SOCKS_REPLY = {
  succeeded: 0x00,
  generalFailure: 0x01,
  notAllowed: 0x02,
  networkUnreachable: 0x03,
  hostUnreachable: 0x04,
  connectionRefused: 0x05,
  ttlExpired: 0x06,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08,
} as const;
export type SocksReplyCode = (typeof SOCKS_REPLY)[keyof typeof SOCKS_REPLY];

export type SocksTarget =
  { kind: 'ip'; host: Ip; port: number } | { kind: 'name'; host: string; port: number };

export interface SocksRequest {
  socket: Socket;
  target: SocksTarget;
  /** Sends the reply; on success the caller then splices `socket`. */
  reply(code: SocksReplyCode): void;
}

const HANDSHAKE_TIMEOUT_MS = 10_000;
const MAX_HANDSHAKE_BYTES = 600; // greeting (≤257) + request (≤262)

export class Socks5Listener {
  private readonly server: net.Server;
  private readonly conns = new ConnectionTracker();
  private readonly log: Logger;

  constructor(
    private readonly addr: HostPort,
    logger: Logger,
    private readonly onRequest: (req: SocksRequest) => void,
    /** A ready listening fd (a multi-worker node proxy's SO_REUSEPORT socket), else bind addr. */
    private readonly listenFd?: () => number,
  ) {
    this.log = logger.child({ listener: 'socks5', addr: `${addr.host}:${addr.port}` });
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true, highWaterMark: 256 * 1024 }, (s) =>
      this.onConnection(s),
    );
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      const fd = this.listenFd?.();
      const at = fd === undefined ? { host: this.addr.host, port: this.addr.port } : { fd };
      this.server.listen({ ...at, backlog: 1024 }, () => {
        this.server.off('error', reject);
        this.server.on('error', (err) => this.log.error({ err: err.message }, 'socks5: server error'));
        resolve();
      });
    });
    this.log.info('socks5: listening');
  }

  address(): HostPort {
    return this.addr;
  }

  stop(graceMs = 5000): Promise<void> {
    return drainServer(this.server, this.conns, graceMs);
  }

  private onConnection(socket: Socket): void {
    this.conns.track(socket);
    socket.on('error', () => {}); // reported by whoever owns the socket next
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    let buf: Buffer = Buffer.alloc(0);
    let stage: 'greeting' | 'request' = 'greeting';
    const fail = (reason: string, reply?: SocksReplyCode) => {
      this.log.warn({ 'src.addr': peer, reason }, 'socks5: bad request');
      socket.removeListener('data', onData);
      clearTimeout(timer);
      if (reply !== undefined) socket.end(replyBytes(reply));
      else socket.destroy();
    };
    const timer = setTimeout(() => fail('handshake not completed within 10 s'), HANDSHAKE_TIMEOUT_MS);
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (buf.length > MAX_HANDSHAKE_BYTES) return fail('handshake too long');
      if (stage === 'greeting') {
        if (buf[0] !== 0x05) return fail(`not SOCKS5 (first byte 0x${(buf[0] ?? 0).toString(16)})`);
        if (buf.length < 2) return;
        const n = buf[1]!;
        if (buf.length < 2 + n) return;
        const methods = buf.subarray(2, 2 + n);
        buf = buf.subarray(2 + n);
        if (!methods.includes(0x00)) {
          socket.write(Buffer.from([0x05, 0xff]));
          return fail('client offers no acceptable authentication method (we accept "no authentication")');
        }
        socket.write(Buffer.from([0x05, 0x00]));
        stage = 'request';
      }
      const parsed = parseRequest(buf);
      if (parsed === 'incomplete') return;
      if ('error' in parsed) return fail(parsed.error, parsed.reply);
      socket.removeListener('data', onData);
      clearTimeout(timer);
      socket.pause();
      const rest = buf.subarray(parsed.length);
      if (rest.length > 0) socket.unshift(rest); // optimistic data sent before our reply
      let replied = false;
      this.onRequest({
        socket,
        target: parsed.target,
        reply: (code) => {
          if (replied || socket.destroyed) return;
          replied = true;
          if (code === SOCKS_REPLY.succeeded) socket.write(replyBytes(code));
          else socket.end(replyBytes(code));
        },
      });
    };
    socket.on('data', onData);
  }
}

type Parsed =
  'incomplete' | { error: string; reply: SocksReplyCode } | { target: SocksTarget; length: number };

/** Parses a SOCKS5 request: VER CMD RSV ATYP DST.ADDR DST.PORT. */
export function parseRequest(buf: Buffer): Parsed {
  if (buf.length < 4) return 'incomplete';
  if (buf[0] !== 0x05)
    return { error: `request version ${buf[0]} is not 5`, reply: SOCKS_REPLY.generalFailure };
  const cmd = buf[1]!;
  const atyp = buf[3]!;
  let host: string;
  let off: number;
  if (atyp === 0x01) {
    if (buf.length < 10) return 'incomplete';
    host = `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}`;
    off = 8;
  } else if (atyp === 0x04) {
    if (buf.length < 22) return 'incomplete';
    const groups: string[] = [];
    for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(4 + i * 2).toString(16));
    host = groups.join(':');
    off = 20;
  } else if (atyp === 0x03) {
    if (buf.length < 5) return 'incomplete';
    const len = buf[4]!;
    if (buf.length < 5 + len + 2) return 'incomplete';
    host = buf.toString('latin1', 5, 5 + len);
    off = 5 + len;
    if (len === 0 || !/^[A-Za-z0-9.-]+$/.test(host)) {
      return { error: `invalid domain name ${JSON.stringify(host)}`, reply: SOCKS_REPLY.hostUnreachable };
    }
  } else {
    return { error: `address type ${atyp} not supported`, reply: SOCKS_REPLY.addressTypeNotSupported };
  }
  const port = buf.readUInt16BE(off);
  if (cmd !== 0x01) {
    return { error: `command ${cmd} not supported (CONNECT only)`, reply: SOCKS_REPLY.commandNotSupported };
  }
  if (port === 0) return { error: 'port 0', reply: SOCKS_REPLY.generalFailure };
  const target: SocksTarget =
    atyp === 0x03 ? { kind: 'name', host, port } : { kind: 'ip', host: normalizeIp(host), port };
  return { target, length: off + 2 };
}

function normalizeIp(host: string): Ip {
  // Round-trip through URL to get the canonical compressed IPv6 form.
  return (net.isIPv6(host) ? new URL(`http://[${host}]/`).hostname.slice(1, -1) : host) as Ip;
}

function replyBytes(code: SocksReplyCode): Buffer {
  // BND.ADDR/BND.PORT are not meaningful here; clients ignore 0.0.0.0:0.
  return Buffer.from([0x05, code, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
}
