// A minimal SOCKS5 client (no auth, CONNECT), used by `ambit demo`, tests and benchmarks to
// enter the mesh as a pod in local mode.
import net from 'node:net';
import type { Socket } from 'node:net';

export class SocksError extends Error {
  constructor(
    readonly reply: number,
    message: string,
  ) {
    super(message);
  }
}

/** Connects through the SOCKS5 proxy at `proxy` to host:port (host may be a name or an IP). */
export function socksConnect(
  proxy: { host: string; port: number },
  host: string,
  port: number,
  timeoutMs = 15_000,
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: proxy.host, port: proxy.port, noDelay: true, allowHalfOpen: true });
    const timer = setTimeout(() => s.destroy(new Error('SOCKS5 handshake timed out')), timeoutMs);
    let buf = Buffer.alloc(0);
    let stage = 0;
    const fail = (err: Error) => {
      clearTimeout(timer);
      s.destroy();
      reject(err);
    };
    s.once('error', fail);
    s.once('connect', () => s.write(Buffer.from([0x05, 0x01, 0x00])));
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (stage === 0) {
        if (buf.length < 2) return;
        if (buf[1] !== 0x00) return fail(new SocksError(-1, 'SOCKS5 proxy refused the no-auth method'));
        buf = buf.subarray(2);
        stage = 1;
        const ip = net.isIPv4(host) ? 1 : net.isIPv6(host) ? 4 : 3;
        let addr: Buffer;
        if (ip === 1) addr = Buffer.from([1, ...host.split('.').map(Number)]);
        else if (ip === 3)
          addr = Buffer.concat([Buffer.from([3, Buffer.byteLength(host)]), Buffer.from(host)]);
        else {
          const b = Buffer.alloc(17);
          b[0] = 4;
          const full = new URL(`http://[${host}]/`).hostname.slice(1, -1);
          const [h = '', t = ''] = full.includes('::') ? full.split('::') : [full, ''];
          const hs = h ? h.split(':') : [];
          const ts = t ? t.split(':') : [];
          [...hs, ...Array(8 - hs.length - ts.length).fill('0'), ...ts].forEach((g, i) =>
            b.writeUInt16BE(parseInt(g, 16), 1 + i * 2),
          );
          addr = b;
        }
        const p = Buffer.alloc(2);
        p.writeUInt16BE(port);
        s.write(Buffer.concat([Buffer.from([0x05, 0x01, 0x00]), addr, p]));
      }
      if (stage === 1) {
        if (buf.length < 10) return;
        const rep = buf[1]!;
        if (rep !== 0x00)
          return fail(new SocksError(rep, `SOCKS5 reply ${rep} (${SOCKS_REPLY_TEXT[rep] ?? 'unknown'})`));
        clearTimeout(timer);
        s.off('data', onData);
        s.off('error', fail);
        const rest = buf.subarray(10);
        if (rest.length) {
          // The server's first bytes came with the reply (a server-first app behind a tunnel that
          // answers once it is up). unshift() on a flowing socket emits them at once, to nobody:
          // hold them until the caller, resumed after `await`, has attached its listeners.
          s.pause();
          s.unshift(rest);
          setImmediate(() => s.resume());
        }
        resolve(s);
      }
    };
    s.on('data', onData);
  });
}

export const SOCKS_REPLY_TEXT: Record<number, string> = {
  1: 'general failure',
  2: 'connection not allowed by ruleset',
  3: 'network unreachable',
  4: 'host unreachable',
  5: 'connection refused',
  6: 'TTL expired',
  7: 'command not supported',
  8: 'address type not supported',
};
