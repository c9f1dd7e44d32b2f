// HTTP/1.1 `Upgrade` at the waypoint, the pure parts: which upgrades become tunnels, how a request
// that must stay HTTP is handed back to the parser, and how a non-101 answer is written down a
// socket the HTTP server no longer owns. `http1.ts` does the I/O.
//
// Envoy's meaning, which Istio's waypoint has:
// - A connection becomes a tunnel only when the upstream answers 101 (Envoy's router passes the
//   upgrade request on and the codec switches to raw bytes on the 101). Any other answer is a
//   normal response and the connection stays HTTP/1.1: every later request on it goes through
//   policy, routing and the access log again (issue 12, hole 1: before, the waypoint spliced at
//   once and a backend that ignored `Upgrade` served the next requests unchecked).
// - Only `websocket` is enabled: istiod's HTTP connection manager sets `upgrade_configs:
//   [{upgrade_type: websocket}]`; Envoy answers any other upgrade type with a local 403
//   (`upgrade_failed`, conn_manager_impl.cc: the upgrade filter chain cannot be created).
// - `Upgrade: h2c` is not an upgrade to Envoy: its HTTP/1 codec removes the h2c headers
//   ("removing unsupported h2c upgrade headers") and proxies a plain HTTP/1.1 request.
// - HTTP/1.1 CONNECT is off unless configured ("CONNECT support is off by default (Envoy will
//   send an internal 403 in response to CONNECT requests)", Envoy docs, HTTP upgrades).
// Deliberate difference: an upgrade request that carries a body (Content-Length > 0 or any
// Transfer-Encoding) is not upgraded but proxied as a plain request, so the HTTP parser frames
// the body and what follows it; no WebSocket client sends one.
import http from 'node:http';

export type UpgradeKind = 'websocket' | 'h2c' | 'other';

/** What kind of upgrade a request asks for (the `Upgrade` header, case-insensitive). */
export function upgradeKind(headers: http.IncomingHttpHeaders): UpgradeKind {
  const up = String(headers.upgrade ?? '')
    .trim()
    .toLowerCase();
  if (up === 'websocket') return 'websocket';
  if (up === 'h2c') return 'h2c';
  return 'other';
}

/** True when the request carries a body the HTTP parser must frame. */
export function hasBody(headers: http.IncomingHttpHeaders): boolean {
  if (headers['transfer-encoding'] !== undefined) return true;
  const len = headers['content-length'];
  return len !== undefined && Number(len) !== 0;
}

/** The client asked to close after this exchange (HTTP/1.0 without keep-alive, or `Connection: close`). */
export function wantsClose(req: Pick<http.IncomingMessage, 'httpVersion' | 'headers'>): boolean {
  const tokens = connectionTokens(req.headers.connection);
  if (tokens.includes('close')) return true;
  return req.httpVersion === '1.0' && !tokens.includes('keep-alive');
}

/**
 * The request head again, without the upgrade: `Upgrade`, `HTTP2-Settings` and their
 * `Connection` tokens removed, everything else as received (Node already validated it). Put
 * back in front of the socket's bytes, the HTTP server parses it as an ordinary request.
 */
export function plainRequestHead(
  req: Pick<http.IncomingMessage, 'method' | 'url' | 'httpVersion' | 'rawHeaders'>,
): Buffer {
  let text = `${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/${req.httpVersion}\r\n`;
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (lower === 'upgrade' || lower === 'http2-settings') continue;
    let value = raw[i + 1]!;
    if (lower === 'connection') {
      value = connectionTokens(value)
        .filter((t) => t !== 'upgrade' && t !== 'http2-settings')
        .join(', ');
      if (!value) continue;
    }
    text += `${name}: ${value}\r\n`;
  }
  return Buffer.from(`${text}\r\n`, 'latin1');
}

/** How the body of a relayed answer is framed on the downstream socket. */
export type BodyFraming = 'none' | 'length' | 'chunked';

/** A response head for a socket outside the HTTP server, and how its body must be framed. */
export function responseHead(
  status: number,
  headers: http.OutgoingHttpHeaders,
  requestMethod: string,
  close: boolean,
): { head: Buffer; framing: BodyFraming } {
  const noBody =
    requestMethod === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200);
  const framing: BodyFraming = noBody
    ? 'none'
    : headers['content-length'] !== undefined
      ? 'length'
      : 'chunked';
  let text = `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\n`;
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || k === 'transfer-encoding' || k === 'connection') continue;
    for (const one of Array.isArray(v) ? v : [v]) text += `${k}: ${String(one)}\r\n`;
  }
  if (framing === 'chunked') text += 'transfer-encoding: chunked\r\n';
  if (close) text += 'connection: close\r\n';
  return { head: Buffer.from(`${text}\r\n`, 'latin1'), framing };
}

/** A local answer (denial, failure) on a socket outside the HTTP server; the connection closes. */
export function localAnswer(status: number, headers: Record<string, string>, body: string): string {
  const lines = Object.entries(headers)
    .filter(([k]) => k.toLowerCase() !== 'content-length' && k.toLowerCase() !== 'connection')
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  return `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\n${lines}content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}

function connectionTokens(v: string | string[] | undefined): string[] {
  return (Array.isArray(v) ? v.join(',') : (v ?? ''))
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter(Boolean);
}
