// Which protocol a tunnel into the waypoint carries (Istio's protocol selection): the Service port's
// appProtocol or name prefix (already folded into the workload API's app_protocol by the control
// plane), else sniffing the first bytes: an HTTP/1.x request line, or the HTTP/2 connection preface
// (h2c prior knowledge); anything else is TCP, proxied with L4 policy only. Pure.
import type { AppProtocol } from '../xds/resources.js';

export type WireProtocol = 'http1' | 'http2' | 'tcp';

/** The HTTP/2 client connection preface (RFC 9113 §3.4). */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/** How long the waypoint waits for a client's first bytes before treating an undeclared port as TCP. */
export const SNIFF_TIMEOUT_MS = 300;

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'TRACE', 'CONNECT'];

/** Protocol family declared for a port: 'http' (HTTP/1.1 or h2c), 'http2' (HTTP/2, gRPC), or undefined. */
export function declaredProtocol(app: AppProtocol | undefined): 'http' | 'http2' | undefined {
  if (app === 'HTTP11') return 'http';
  if (app === 'HTTP2' || app === 'GRPC') return 'http2';
  return undefined;
}

/**
 * Decides from the first bytes. `complete` means no more bytes will come before a decision must be
 * made (timeout or end): a prefix that could still become HTTP is then TCP.
 * Returns undefined when more bytes are needed.
 */
export function sniffProtocol(first: Buffer, complete = false): WireProtocol | undefined {
  const n = Math.min(first.length, H2_PREFACE.length);
  if (n > 0 && first.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) {
    if (first.length >= H2_PREFACE.length) return 'http2';
    return complete ? 'tcp' : undefined;
  }
  const head = first.subarray(0, 16).toString('latin1');
  for (const m of METHODS) {
    if (head.startsWith(`${m} `)) return 'http1';
    if (!complete && head.length <= m.length && m.startsWith(head)) return undefined;
  }
  return 'tcp';
}

/** The decision for a tunnel: a declared HTTP port is HTTP (h2 if the preface says so), else sniffed. */
export function detectProtocol(
  app: AppProtocol | undefined,
  first: Buffer,
  complete = false,
): WireProtocol | undefined {
  const declared = declaredProtocol(app);
  const sniffed = sniffProtocol(first, complete);
  if (!declared) return sniffed;
  if (sniffed === undefined) return undefined;
  // A declared HTTP port never falls back to TCP: bad bytes get a 400 from the HTTP parser.
  return sniffed === 'http2' ? 'http2' : 'http1';
}
