// The echo every conformance pod runs, on its pod address and on every port its Deployment
// declares that a mesh test uses: 8080 HTTP/1.1, 7070 gRPC (h2c, Istio's echo service), 9090 TCP
// (bytes back). 8443 (TLS) is left out: no test of the mesh profile sends to it. Answers are in
// the format of echo-format.ts, from the headers exactly as they arrived (raw lines, not
// Node's merged view), so a header added twice shows as two values as in the suite's Go echo.
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { formatEcho } from './echo-format.js';
import { ECHO_METHOD_PATH, decodeMessage, encodeMessage, frame, unframe } from './grpc-wire.js';
import type { EchoPod } from './topology.js';

export const HTTP_PORT = 8080;
export const GRPC_PORT = 7070;
export const TCP_PORT = 9090;

export interface EchoServers {
  close(): Promise<void>;
}

export async function startEcho(pod: EchoPod): Promise<EchoServers> {
  const servers: net.Server[] = [];
  const version = pod.labels.version ?? '';
  if (pod.ports.includes(HTTP_PORT))
    servers.push(await listen(httpEcho(pod.name, version), pod.ip, HTTP_PORT));
  if (pod.ports.includes(GRPC_PORT))
    servers.push(await listen(grpcEcho(pod.name, version), pod.ip, GRPC_PORT));
  if (pod.ports.includes(TCP_PORT)) servers.push(await listen(tcpEcho(), pod.ip, TCP_PORT));
  return {
    close: async () => {
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}

function httpEcho(hostname: string, version: string): http.Server {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const headers: [string, string][] = [];
      for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
        const name = req.rawHeaders[i]!;
        if (name.toLowerCase() === 'host') continue; // reported as Host=, as Go's server does
        headers.push([name, req.rawHeaders[i + 1]!]);
      }
      const body = formatEcho({
        serviceVersion: version,
        servicePort: HTTP_PORT,
        host: req.headers.host ?? '',
        url: req.url ?? '',
        method: req.method ?? '',
        proto: `HTTP/${req.httpVersion}`,
        ip: req.socket.remoteAddress ?? '',
        hostname,
        headers,
      });
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 30_000;
  return server;
}

function grpcEcho(hostname: string, version: string): http2.Http2Server {
  const server = http2.createServer();
  server.on('stream', (stream, hdrs, _flags, rawHeaders: string[]) => {
    stream.on('error', () => {});
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      if (hdrs[':path'] !== ECHO_METHOD_PATH) {
        stream.respond(
          { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12' },
          { endStream: true },
        );
        return;
      }
      try {
        decodeMessage(unframe(Buffer.concat(chunks)));
      } catch (err) {
        const message = encodeURIComponent((err as Error).message);
        stream.respond(
          { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '3', 'grpc-message': message },
          { endStream: true },
        );
        return;
      }
      const headers: [string, string][] = [];
      for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
        if (!rawHeaders[i]!.startsWith(':')) headers.push([rawHeaders[i]!, rawHeaders[i + 1]!]);
      }
      const text = formatEcho({
        serviceVersion: version,
        servicePort: GRPC_PORT,
        host: String(hdrs[':authority'] ?? ''),
        url: String(hdrs[':path']),
        method: 'POST',
        proto: 'GRPC',
        ip: stream.session?.socket.remoteAddress ?? '',
        hostname,
        headers,
      });
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(frame(encodeMessage(text)));
    });
  });
  return server;
}

function tcpEcho(): net.Server {
  return net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
}

function listen<T extends net.Server>(server: T, host: string, port: number): Promise<T> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
