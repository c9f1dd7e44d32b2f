// `ambit echo`: a small HTTP/1.1 echo server for examples and tests. Answers every request with
// JSON naming the pod that served it, the method, path, the headers it received and the peer.
import http from 'node:http';

export interface EchoOptions {
  host: string;
  port: number;
  pod: string;
}

export function startEcho(opts: EchoOptions): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.stringify(
        {
          pod: opts.pod,
          method: req.method,
          path: req.url,
          remote: `${req.socket.remoteAddress}:${req.socket.remotePort}`,
          headers: req.headers,
          bodyBytes: chunks.reduce((n, c) => n + c.length, 0),
        },
        null,
        2,
      );
      res.writeHead(200, { 'content-type': 'application/json', 'x-served-by': opts.pod });
      res.end(body + '\n');
    });
  });
  server.keepAliveTimeout = 60_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve(server));
  });
}
