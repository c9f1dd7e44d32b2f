// The conformance client: sends one MeshRequest from a pod into the mesh (that pod's SOCKS5
// listener, names resolved by the mesh, as `ambit exec` does) and returns what the suite's mesh
// client reports: the status, the response headers and the echo's answer parsed (echo-format.ts).
// HTTP/1.1 through a keep-alive agent per pod; gRPC as one HTTP/2 session per pod and authority.
import http from 'node:http';
import http2 from 'node:http2';
import { socksConnect } from '../../src/cli/socks-client.js';
import { SocksAgent } from '../support/mesh-http.js';
import type { MeshRequest } from './case-types.js';
import { parseEcho, type ParsedEcho } from './echo-format.js';
import { ECHO_METHOD_PATH, decodeMessage, encodeMessage, frame, unframe } from './grpc-wire.js';

const REQUEST_TIMEOUT_MS = 5_000;

export interface ClientAnswer {
  /** HTTP status; for gRPC 200 when grpc-status is 0, else the HTTP status or 500 + grpc-status. */
  status: number;
  grpcStatus?: string;
  /** Lower-case names. */
  responseHeaders: Record<string, string | string[] | undefined>;
  echo: ParsedEcho;
  body: string;
}

export class MeshClient {
  private readonly agent: SocksAgent;
  private readonly sessions = new Map<string, Promise<http2.ClientHttp2Session>>();

  constructor(readonly fromIp: string) {
    this.agent = new SocksAgent(fromIp, { keepAlive: true, maxSockets: 16 });
  }

  send(req: MeshRequest): Promise<ClientAnswer> {
    return req.protocol === 'grpc' ? this.grpc(req) : this.http(req);
  }

  close(): void {
    this.agent.destroy();
    for (const s of this.sessions.values())
      void s.then(
        (x) => x.destroy(),
        () => {},
      );
    this.sessions.clear();
  }

  private http(r: MeshRequest): Promise<ClientAnswer> {
    const { host, port } = splitHost(r.host ?? 'echo', 80);
    return new Promise((resolve, reject) => {
      const req = http.request(
        { host, port, path: r.path || '/', method: r.method ?? 'GET', headers: r.headers, agent: this.agent },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              responseHeaders: res.headers,
              echo: parseEcho(body),
              body,
            }),
          );
          res.on('error', reject);
        },
      );
      req.setTimeout(REQUEST_TIMEOUT_MS, () =>
        req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)),
      );
      req.on('error', reject);
      req.end();
    });
  }

  private async grpc(r: MeshRequest): Promise<ClientAnswer> {
    const authority = r.host ?? 'echo:7070';
    const session = await this.session(authority);
    return new Promise((resolve, reject) => {
      const stream = session.request({
        ':method': 'POST',
        ':path': ECHO_METHOD_PATH,
        'content-type': 'application/grpc',
        te: 'trailers',
        ...r.headers,
      });
      const timer = setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), REQUEST_TIMEOUT_MS);
      let status = 0;
      let headers: Record<string, string | string[] | undefined> = {};
      let grpcStatus: string | undefined;
      const chunks: Buffer[] = [];
      stream.on('response', (h) => {
        status = Number(h[':status']);
        headers = { ...h };
        if (h['grpc-status'] !== undefined) grpcStatus = String(h['grpc-status']); // trailers-only answer
      });
      stream.on('trailers', (t) => {
        if (t['grpc-status'] !== undefined) grpcStatus = String(t['grpc-status']);
      });
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      stream.on('close', () => {
        clearTimeout(timer);
        if (status === 0)
          return reject(new Error(`gRPC stream closed without an answer (code ${stream.rstCode})`));
        let text = '';
        try {
          if (chunks.length) text = decodeMessage(unframe(Buffer.concat(chunks)));
        } catch (e) {
          return reject(e as Error);
        }
        const code = status === 200 && grpcStatus === '0' ? 200 : status === 200 ? 500 : status;
        resolve({ status: code, grpcStatus, responseHeaders: headers, echo: parseEcho(text), body: text });
      });
      stream.end(frame(encodeMessage('conformance')));
    });
  }

  private session(authority: string): Promise<http2.ClientHttp2Session> {
    const cached = this.sessions.get(authority);
    if (cached) return cached;
    const { host, port } = splitHost(authority, 80);
    const p = socksConnect({ host: this.fromIp, port: 15080 }, host, port).then((sock) => {
      const s = http2.connect(`http://${authority}`, { createConnection: () => sock });
      const drop = () => {
        if (this.sessions.get(authority) === p) this.sessions.delete(authority);
      };
      s.on('error', drop);
      s.on('close', drop);
      s.on('goaway', drop);
      return s;
    });
    p.catch(() => this.sessions.delete(authority));
    this.sessions.set(authority, p);
    return p;
  }
}

/** "name" / "name:port" / "a.b.c.d:port" -> parts; `defaultPort` when none is written. */
export function splitHost(hostPort: string, defaultPort: number): { host: string; port: number } {
  const i = hostPort.lastIndexOf(':');
  if (i < 0) return { host: hostPort, port: defaultPort };
  return { host: hostPort.slice(0, i), port: Number(hostPort.slice(i + 1)) };
}
