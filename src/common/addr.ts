// Branded address types (after linkerd's addrs.rs): a source can never be passed where a
// destination is expected. The brands cost nothing at run time.
import { isIP } from 'node:net';

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/** An IP literal (v4 or v6, no port). */
export type Ip = Brand<string, 'Ip'>;
/** A "host:port" or "[v6]:port" socket address string. */
export type SocketAddr = Brand<string, 'SocketAddr'>;

export interface HostPort {
  host: string;
  port: number;
}

export function asIp(s: string): Ip {
  if (!isIP(s)) throw new TypeError(`not an IP address: ${JSON.stringify(s)}`);
  return s as Ip;
}

export function isIpLiteral(s: string): s is Ip {
  return isIP(s) !== 0;
}

export function formatSocketAddr(host: string, port: number): SocketAddr {
  return (isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`) as SocketAddr;
}

/** Parses "1.2.3.4:80" or "[::1]:80". Returns undefined when malformed (no throw on bad input). */
export function parseSocketAddr(s: string): (HostPort & { host: Ip }) | undefined {
  let host: string;
  let portStr: string;
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    if (end < 0 || s[end + 1] !== ':') return undefined;
    host = s.slice(1, end);
    portStr = s.slice(end + 2);
  } else {
    const i = s.lastIndexOf(':');
    if (i <= 0) return undefined;
    host = s.slice(0, i);
    portStr = s.slice(i + 1);
    if (host.includes(':')) return undefined;
  }
  if (!/^\d{1,5}$/.test(portStr)) return undefined;
  const port = Number(portStr);
  if (port < 1 || port > 65535 || !isIP(host)) return undefined;
  return { host: host as Ip, port };
}

/** IPv4/IPv6 text → 4 or 16 raw bytes, as the workload API carries addresses. */
export function ipToBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number));
  if (isIP(ip) === 6) {
    const [head = '', tail = ''] = ip.includes('::') ? ip.split('::') : [ip, ''];
    const h = head ? head.split(':') : [];
    const t = tail ? tail.split(':') : [];
    const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
    const buf = Buffer.alloc(16);
    groups.forEach((g, i) => buf.writeUInt16BE(parseInt(g, 16), i * 2));
    return buf;
  }
  throw new TypeError(`not an IP address: ${JSON.stringify(ip)}`);
}

/** 4 or 16 raw bytes → IP text; undefined for any other length. */
export function ipFromBytes(b: Uint8Array): Ip | undefined {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}` as Ip;
  if (b.length === 16) {
    const parts: string[] = [];
    for (let i = 0; i < 16; i += 2) parts.push(((b[i]! << 8) | b[i + 1]!).toString(16));
    // Compress the longest run of zero groups, as the canonical text form does.
    let best = -1;
    let bestLen = 0;
    for (let i = 0; i < 8;) {
      if (parts[i] !== '0') {
        i++;
        continue;
      }
      let j = i;
      while (j < 8 && parts[j] === '0') j++;
      if (j - i > bestLen && j - i > 1) [best, bestLen] = [i, j - i];
      i = j;
    }
    if (best < 0) return parts.join(':') as Ip;
    return (parts.slice(0, best).join(':') + '::' + parts.slice(best + bestLen).join(':')) as Ip;
  }
  return undefined;
}
