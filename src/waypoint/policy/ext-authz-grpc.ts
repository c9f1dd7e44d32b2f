// The gRPC ext_authz provider (meshConfig `envoyExtAuthzGrpc`): one unary
// `envoy.service.auth.v3.Authorization/Check` call (proto/ext-authz.proto, published field
// numbers) with Envoy's semantics (ext_authz filter docs, "gRPC service"):
// - the CheckRequest carries the source and destination peers (address, SPIFFE principal) and
//   the HTTP request (id, method, every header, normalized path with query, host, scheme,
//   protocol); no body;
// - CheckResponse status code 0 (OK) allows: `ok_response.headers` set (or appended) on the
//   upstream request, `headers_to_remove` removed, `response_headers_to_add` added to the answer;
// - any other code denies with `denied_response` (status, default 403; headers; body);
// - a failed call (unreachable, non-OK grpc-status, timeout, undecodable answer) is an error.
// The call is made by hand over HTTP/2 (node:http2) rather than with @grpc/grpc-js because the
// connection must be the waypoint's own (an HBONE stream as the waypoint, or plain TCP to a
// non-mesh provider), which grpc-js cannot be handed; the framing is gRPC's (5-byte prefix,
// `te: trailers`, grpc-status in trailers or a trailers-only answer).
import http2 from 'node:http2';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import type { ExtAuthzGrpcProvider } from '../../config/mesh-config.js';
import { socketOf } from '../http/stream-adapter.js';
import type { CheckInput, CheckOutcome } from './ext-authz-check.js';

export const CHECK_METHOD_PATH = '/envoy.service.auth.v3.Authorization/Check';
const MAX_ANSWER = 64 * 1024;

const PROTO_DIR = fileURLToPath(new URL('../../../proto/', import.meta.url));
const root = new protobuf.Root();
root.resolvePath = (_origin, target) => (target.startsWith('google/') ? target : PROTO_DIR + target);
root.loadSync(['ext-authz.proto'], { keepCase: false });
root.resolveAll();
export const extAuthzPb = {
  CheckRequest: root.lookupType('envoy.service.auth.v3.CheckRequest'),
  CheckResponse: root.lookupType('envoy.service.auth.v3.CheckResponse'),
};

interface HeaderOption {
  header?: { key?: string; value?: string; rawValue?: Uint8Array };
  append?: { value?: boolean } | null;
  appendAction?: number;
}
interface CheckResponseMsg {
  status?: { code?: number; message?: string } | null;
  deniedResponse?: { status?: { code?: number } | null; headers?: HeaderOption[]; body?: string } | null;
  okResponse?: {
    headers?: HeaderOption[];
    headersToRemove?: string[];
    responseHeadersToAdd?: HeaderOption[];
  } | null;
}

/** The CheckRequest for a request (plain object, protobufjs field names). */
export function checkRequestOf(input: CheckInput): Record<string, unknown> {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(input.req.headers))
    if (v !== undefined && !k.startsWith(':')) headers[k] = Array.isArray(v) ? v.join(',') : String(v);
  headers[':method'] = input.req.method;
  headers[':path'] = input.pathWithQuery;
  headers[':authority'] = input.req.authority;
  const peer = (ip: string, port: number | undefined, principal: string | undefined) => ({
    address: { socketAddress: { address: ip, portValue: port ?? 0 } },
    ...(principal
      ? { principal: principal.startsWith('spiffe://') ? principal : `spiffe://${principal}` }
      : {}),
  });
  return {
    attributes: {
      source: peer(input.source.ip, input.source.port, input.source.principal),
      destination: peer(input.destination.ip, input.destination.port, input.destination.principal),
      request: {
        http: {
          id: input.requestId ?? String(input.req.headers['x-request-id'] ?? ''),
          method: input.req.method,
          headers,
          path: input.pathWithQuery,
          host: input.req.authority,
          scheme: 'http',
          size: -1,
          protocol: input.protocol,
        },
      },
    },
  };
}

export function checkGrpc(
  p: ExtAuthzGrpcProvider,
  input: CheckInput,
  stream: Duplex,
  authority: string,
  signal: AbortSignal,
): Promise<CheckOutcome> {
  const msg = extAuthzPb.CheckRequest.encode(
    extAuthzPb.CheckRequest.fromObject(checkRequestOf(input)),
  ).finish();
  const frame = Buffer.alloc(5 + msg.length);
  frame.writeUInt32BE(msg.length, 1);
  Buffer.from(msg).copy(frame, 5);
  return new Promise<CheckOutcome>((resolve) => {
    const session = http2.connect(`http://${authority}`, {
      createConnection: () => socketOf(stream, false) as unknown as Socket,
    });
    let settled = false;
    const done = (o: CheckOutcome) => {
      if (settled) return;
      settled = true;
      session.destroy();
      resolve(o);
    };
    signal.addEventListener('abort', () => done({ kind: 'error', reason: 'aborted' }), { once: true });
    session.on('error', (err) =>
      done({ kind: 'error', reason: `gRPC session to ${authority}: ${err.message}` }),
    );
    const call = session.request({
      ':method': 'POST',
      ':path': CHECK_METHOD_PATH,
      ':authority': authority,
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': `${Math.max(1, Math.ceil(p.timeoutMs))}m`,
    });
    call.on('error', (err) => done({ kind: 'error', reason: `gRPC call: ${err.message}` }));
    let headers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    let size = 0;
    call.on('response', (h) => (headers = h));
    call.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_ANSWER) return done({ kind: 'error', reason: `answer over ${MAX_ANSWER} bytes` });
      chunks.push(c);
    });
    let trailers: http2.IncomingHttpHeaders = {};
    call.on('trailers', (t) => (trailers = t));
    call.on('close', () => done(answerOf(headers, trailers, Buffer.concat(chunks))));
    call.end(frame);
  });
}

/** The gRPC answer as an outcome (pure). */
export function answerOf(
  headers: http2.IncomingHttpHeaders,
  trailers: http2.IncomingHttpHeaders,
  body: Buffer,
): CheckOutcome {
  if (Number(headers[':status'] ?? 0) !== 200)
    return { kind: 'error', reason: `HTTP status ${String(headers[':status'] ?? 'none')}` };
  const grpcStatus = trailers['grpc-status'] ?? headers['grpc-status'];
  if (grpcStatus === undefined) return { kind: 'error', reason: 'no grpc-status (call cut)' };
  if (String(grpcStatus) !== '0')
    return {
      kind: 'error',
      reason:
        `grpc-status ${String(grpcStatus)} ${decodeURIComponent(String(trailers['grpc-message'] ?? headers['grpc-message'] ?? ''))}`.trim(),
    };
  if (body.length < 5 || body[0] !== 0 || body.readUInt32BE(1) !== body.length - 5)
    return { kind: 'error', reason: 'answer is not one uncompressed gRPC message' };
  let res: CheckResponseMsg;
  try {
    res = extAuthzPb.CheckResponse.toObject(extAuthzPb.CheckResponse.decode(body.subarray(5)), {
      defaults: false,
    }) as CheckResponseMsg;
  } catch (err) {
    return { kind: 'error', reason: `undecodable CheckResponse: ${(err as Error).message}` };
  }
  const code = res.status?.code ?? 0;
  if (code === 0) {
    const ok = res.okResponse ?? {};
    const set: [string, string][] = [];
    const append: [string, string][] = [];
    for (const o of ok.headers ?? []) {
      const kv = pairOf(o);
      if (!kv) continue;
      // `append: true` (or the APPEND_IF_EXISTS_OR_ADD action when `append` is unset) appends;
      // ext_authz's OkHttpResponse defaults `append` to false: set (override).
      if (o.append?.value === true) append.push(kv);
      else set.push(kv);
    }
    return {
      kind: 'ok',
      upstreamSet: set,
      upstreamAppend: append,
      upstreamRemove: (ok.headersToRemove ?? [])
        .map((h) => h.toLowerCase())
        .filter((h) => h !== 'host' && !h.startsWith(':')),
      downstream: (ok.responseHeadersToAdd ?? []).flatMap((o) => {
        const kv = pairOf(o);
        return kv ? [kv] : [];
      }),
    };
  }
  const denied = res.deniedResponse ?? {};
  const status = denied.status?.code && denied.status.code >= 100 ? denied.status.code : 403;
  return {
    kind: 'denied',
    status,
    body: denied.body ?? '',
    headers: (denied.headers ?? []).flatMap((o) => {
      const kv = pairOf(o);
      return kv ? [kv] : [];
    }),
  };
}

/** A header option as a valid (name, value) pair; pseudo-headers, Host and invalid names dropped. */
function pairOf(o: HeaderOption): [string, string] | undefined {
  const key = o.header?.key?.toLowerCase() ?? '';
  const value =
    o.header?.value ?? (o.header?.rawValue ? Buffer.from(o.header.rawValue).toString('latin1') : '');
  if (!/^[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(key) || key === 'host') return undefined;
  if (/[\r\n\0]/.test(value)) return undefined;
  return [key, value];
}
