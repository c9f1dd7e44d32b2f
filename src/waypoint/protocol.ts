// Which protocol a tunnel into the waypoint carries (Istio's protocol selection): the Service port's
// appProtocol or name prefix (already folded into the workload API's app_protocol by the control
// plane), else sniffing the first bytes: an HTTP/1.x request line, or the HTTP/2 connection preface
// (h2c prior knowledge); anything else is TCP, proxied under the TCP-path policy (authz-tcp.ts).
// Pure.
//
// The sniffer errs towards HTTP: whatever a real HTTP/1.1 server (Node's llhttp) would start to
// parse as a request is HTTP here, so the HTTP parser (which answers 400 to what it refuses) and
// per-request L7 policy see it. Leading empty lines are skipped (RFC 9112 §2.2 lets a server
// ignore at least one; llhttp skips any number), any token is a method (PROPFIND, MKCOL, custom
// ones: the parser decides whether it knows them), HTTP/1.0 is HTTP. Envoy's http_inspector
// also reads the whole request line before deciding. Misclassifying as TCP can never open
// anything: a TCP connection is held to every policy that targets its service, with HTTP-only
// rules read the restrictive way (authz-tcp.ts).
import type { AppProtocol } from '../xds/resources.js';

export type WireProtocol = 'http1' | 'http2' | 'tcp';

/** The HTTP/2 client connection preface (RFC 9113 §3.4). */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/**
 * How long the waypoint waits for a client's first bytes before deciding with what it has. It
 * only decides TCP when nothing that could start an HTTP request arrived (server-first
 * protocols); a slow HTTP client (one byte at a time) is still HTTP when the timer fires.
 */
export const SNIFF_TIMEOUT_MS = 300;
/** Past this many bytes, a start that still looks like HTTP is HTTP (the parser answers 431/400); bounds the sniff buffer. */
export const SNIFF_MAX_LINE = 8 * 1024;

/**
 * Protocol family declared for a port: 'http' (HTTP/1.1 or h2c), 'http2' (HTTP/2, gRPC), 'tcp'
 * (`tcp-*`, `tls-*`, `https-*`: istiod sends TCP or TLS, and Istio's waypoint proxies those ports
 * as opaque TCP without sniffing — a server-first protocol gets its greeting at once), or
 * undefined (sniffed). Declaring TCP cannot open anything: the TCP path reads every bound
 * policy with Envoy's network RBAC meaning (authz-tcp.ts).
 */
export function declaredProtocol(app: AppProtocol | undefined): 'http' | 'http2' | 'tcp' | undefined {
  if (app === 'HTTP11') return 'http';
  if (app === 'HTTP2' || app === 'GRPC') return 'http2';
  if (app === 'TCP' || app === 'TLS') return 'tcp';
  return undefined;
}

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTTP_SLASH = Buffer.from('HTTP/', 'latin1');

/** RFC 9110 §5.6.2 tchar. */
function isTchar(c: number): boolean {
  if (c >= 0x30 && c <= 0x39) return true; // DIGIT
  if ((c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)) return true; // ALPHA
  return "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c));
}

/**
 * Decides from the first bytes. `complete` means no more bytes will come before a decision must be
 * made (timeout or end): a prefix that could still become an HTTP request is then HTTP (never
 * TCP), and only a connection that sent nothing, or bytes no HTTP parser would take, is TCP.
 * Returns undefined when more bytes are needed.
 */
export function sniffProtocol(first: Buffer, complete = false): WireProtocol | undefined {
  const n = Math.min(first.length, H2_PREFACE.length);
  if (n > 0 && first.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) {
    if (first.length >= H2_PREFACE.length) return 'http2';
    return complete ? 'http2' : undefined; // a partial preface is h2 or nothing: nghttp2 decides
  }
  const line = requestLine(first);
  if (line === 'http1' || line === 'tcp') return line;
  // Still a viable HTTP/1 prefix: wait, or at the deadline hand it to the HTTP parser, unless
  // nothing at all arrived (a server-first protocol waiting for the server to speak).
  if (!complete) return undefined;
  return first.length === 0 ? 'tcp' : 'http1';
}

/** 'http1' once a request line is recognisable, 'tcp' once it cannot be one, 'more' meanwhile. */
function requestLine(b: Buffer): 'http1' | 'tcp' | 'more' {
  let i = 0;
  while (i < b.length && (b[i] === CR || b[i] === LF)) i++; // empty lines before the request
  if (i === b.length) return b.length > SNIFF_MAX_LINE ? 'http1' : 'more';
  const start = i;
  // method = token
  while (i < b.length && isTchar(b[i]!)) i++;
  if (i === b.length) return b.length > SNIFF_MAX_LINE ? 'http1' : 'more';
  if (i === start || b[i] !== SP) return 'tcp';
  i++;
  // request-target: visible characters (llhttp refuses control bytes in it)
  const targetStart = i;
  while (i < b.length && b[i]! > SP && b[i] !== 0x7f) i++;
  if (i === b.length) return b.length > SNIFF_MAX_LINE ? 'http1' : 'more';
  if (i === targetStart) return 'tcp';
  if (b[i] === CR || b[i] === LF) return 'http1'; // "GET /" alone: the parser decides (HTTP/0.9 style)
  if (b[i] !== SP) return 'tcp';
  i++;
  // HTTP-version: "HTTP/" then whatever the parser makes of it (1.0, 1.1, or a 400)
  const rest = b.subarray(i, i + HTTP_SLASH.length);
  if (!rest.equals(HTTP_SLASH.subarray(0, rest.length))) return 'tcp';
  return rest.length === HTTP_SLASH.length ? 'http1' : 'more';
}

/** The decision for a tunnel: a declared TCP/TLS port is TCP, a declared HTTP port is HTTP (h2 if the preface says so), else sniffed. */
export function detectProtocol(
  app: AppProtocol | undefined,
  first: Buffer,
  complete = false,
): WireProtocol | undefined {
  const declared = declaredProtocol(app);
  if (declared === 'tcp') return 'tcp';
  const sniffed = sniffProtocol(first, complete);
  if (!declared) return sniffed;
  if (sniffed === undefined) return undefined;
  // A declared HTTP port never falls back to TCP: bad bytes get a 400 from the HTTP parser.
  return sniffed === 'http2' ? 'http2' : 'http1';
}
