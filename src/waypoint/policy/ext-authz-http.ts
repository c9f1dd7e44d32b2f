// The HTTP ext_authz provider (meshConfig `envoyExtAuthzHttp`), with Envoy's HTTP authorization
// service semantics (ext_authz filter docs, "HTTP service"; extensions/filters/http/ext_authz):
// - the check is an HTTP/1.1 request with the client's method to `pathPrefix + path` (the
//   normalized path with its query, as forwarded), no body (`content-length: 0`), carrying Host,
//   Authorization and the headers named in `includeRequestHeadersInCheck`, plus
//   `includeAdditionalHeadersInCheck`;
// - 200 allows: the answer's headers named in `headersToUpstreamOnAllow` are set on the upstream
//   request, those listed in its `x-envoy-auth-headers-to-remove` removed from it, and those in
//   `headersToDownstreamOnAllow` added to the response;
// - any other status denies with that status, the answer's body and its headers (those named in
//   `headersToDownstreamOnDeny`, with WWW-Authenticate and Location as Envoy adds them; all but
//   hop-by-hop and Host when none is named);
// - no answer (connect failure, reset, timeout) is an error for ext-authz.ts.
// Header lists accept Istio's "x-*" prefix and "*-id" suffix forms.
import http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ExtAuthzHttpProvider } from '../../config/mesh-config.js';
import { socketOf } from '../http/stream-adapter.js';
import type { CheckInput, CheckOutcome } from './ext-authz-check.js';

/** An authorization answer larger than this is an error (Envoy buffers it whole too). */
export const EXT_AUTHZ_MAX_BODY = 64 * 1024;

const ALWAYS_SENT = ['authorization'];
const NOT_TO_CLIENT = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'proxy-connection',
]);

export function checkHttp(
  p: ExtAuthzHttpProvider,
  input: CheckInput,
  stream: Duplex,
  authority: string,
  signal: AbortSignal,
): Promise<CheckOutcome> {
  const headers = checkHeaders(p, input);
  return new Promise<CheckOutcome>((resolve) => {
    const req = http.request({
      method: input.req.method,
      path: p.pathPrefix + input.pathWithQuery,
      headers,
      setHost: false,
      createConnection: () => socketOf(stream, false) as unknown as Socket,
    });
    const fail = (reason: string) => {
      req.destroy();
      resolve({ kind: 'error', reason });
    };
    signal.addEventListener('abort', () => fail('aborted'), { once: true });
    req.once('error', (err) => fail(`no answer from ${authority}: ${err.message}`));
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > EXT_AUTHZ_MAX_BODY) return fail(`answer body over ${EXT_AUTHZ_MAX_BODY} bytes`);
        chunks.push(c);
      });
      res.once('error', (err) => fail(`answer cut: ${err.message}`));
      res.once('end', () => {
        req.destroy();
        resolve(outcomeOf(p, res.statusCode ?? 0, res.headers, Buffer.concat(chunks).toString('utf8')));
      });
    });
    req.end();
  });
}

/** The check request's headers (lower-case names). */
export function checkHeaders(p: ExtAuthzHttpProvider, input: CheckInput): Record<string, string> {
  const out: Record<string, string> = {};
  const h = input.req.headers;
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || k.startsWith(':')) continue;
    if (ALWAYS_SENT.includes(k) || listed(p.includeRequestHeadersInCheck, k))
      out[k] = Array.isArray(v) ? v.join(',') : String(v);
  }
  for (const [k, v] of Object.entries(p.includeAdditionalHeadersInCheck)) out[k] = v;
  out.host = input.req.authority;
  out['content-length'] = '0';
  return out;
}

/** The provider's answer as an outcome (pure). */
export function outcomeOf(
  p: ExtAuthzHttpProvider,
  status: number,
  headers: http.IncomingHttpHeaders,
  body: string,
): CheckOutcome {
  const pairs = (pred: (name: string) => boolean): [string, string][] =>
    Object.entries(headers).flatMap(([k, v]) =>
      v === undefined || !pred(k)
        ? []
        : [[k, Array.isArray(v) ? v.join(',') : String(v)] as [string, string]],
    );
  if (status === 200) {
    const remove = String(headers['x-envoy-auth-headers-to-remove'] ?? '')
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter((s) => s && s !== 'host' && !s.startsWith(':'));
    return {
      kind: 'ok',
      upstreamSet: pairs((k) => listed(p.headersToUpstreamOnAllow, k)),
      upstreamAppend: [],
      upstreamRemove: remove,
      downstream: pairs((k) => listed(p.headersToDownstreamOnAllow, k)),
    };
  }
  if (status < 100) return { kind: 'error', reason: `bad status ${status}` };
  const toClient = p.headersToDownstreamOnDeny.length
    ? (k: string) => listed(p.headersToDownstreamOnDeny, k) || k === 'www-authenticate' || k === 'location'
    : (k: string) => !NOT_TO_CLIENT.has(k);
  return { kind: 'denied', status, body, headers: pairs(toClient) };
}

/** Istio's header list entries: exact, "x-*" prefix, "*-id" suffix (case-insensitive names). */
export function listed(list: readonly string[], name: string): boolean {
  return list.some((e) =>
    e.endsWith('*')
      ? name.startsWith(e.slice(0, -1))
      : e.startsWith('*')
        ? name.endsWith(e.slice(1))
        : e === name,
  );
}
