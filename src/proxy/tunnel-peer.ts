// Who is on the other end of an accepted HBONE tunnel, read once for every inbound listener
// (node proxy inbound, waypoint): the source IP the authorization sees (the TCP peer, an
// IPv4-mapped IPv6 address unmapped) and the `forwarded: for=` address the source proxy claims,
// which only the access log shows (never authorization: it is the client's word).
import type { InboundTunnel } from '../hbone/server.js';

/** The TCP peer's address as authorization and metrics use it. */
export function tunnelSourceIp(t: InboundTunnel): string {
  return unmapV4(t.peerAddr.host);
}

/** `src.addr` for the access line: the `forwarded` client address if given, else the TCP peer. */
export function tunnelSourceAddr(t: InboundTunnel): string {
  return forwardedFor(t) ?? `${t.peerAddr.host}:${t.peerAddr.port}`;
}

function forwardedFor(t: InboundTunnel): string | undefined {
  const f = t.headers.forwarded;
  const m = typeof f === 'string' ? /for="?([^";,]+)"?/.exec(f) : null;
  return m?.[1];
}

/** "::ffff:10.0.0.1" → "10.0.0.1": a dual-stack listener reports IPv4 peers mapped. */
export function unmapV4(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}
