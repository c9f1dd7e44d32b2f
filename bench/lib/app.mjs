// Benchmark backend, in its own process:
//  - HTTP/1.1 server answering every request with a fixed 64-byte body (keep-alive);
//  - TCP "source" that streams bytes to whoever connects until they hang up;
//  - TCP "hold" that accepts connections and keeps them open, idle (for idle-tunnel memory);
//  - h2c server (HTTP/2 with prior knowledge) answering every request with the same body.
// usage: node app.mjs HOST HTTP_PORT SOURCE_PORT [HOLD_PORT [H2C_PORT]]
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';

const [host, httpPort, sourcePort, holdPort, h2cPort] = process.argv.slice(2);
const body = Buffer.from('x'.repeat(64));
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-length': body.length, 'content-type': 'text/plain' });
    res.end(body);
  });
});
server.keepAliveTimeout = 120_000;
server.headersTimeout = 0;
server.requestTimeout = 0;
const chunk = Buffer.alloc(256 * 1024, 7);
const source = net.createServer((s) => {
  s.setNoDelay(true);
  s.on('error', () => {});
  const pump = () => {
    while (!s.destroyed && s.write(chunk));
  };
  s.on('drain', pump);
  pump();
});
const hold = net.createServer((s) => s.on('error', () => {}));
const h2c = http2.createServer({ settings: { maxConcurrentStreams: 1000 } });
h2c.on('stream', (stream) => {
  stream.on('error', () => {});
  stream.resume();
  stream.respond({ ':status': 200, 'content-length': body.length, 'content-type': 'text/plain' });
  stream.end(body);
});
h2c.on('sessionError', () => {});
const servers = [
  [server, httpPort],
  [source, sourcePort],
  ...(holdPort ? [[hold, holdPort]] : []),
  ...(h2cPort ? [[h2c, h2cPort]] : []),
];
let ready = 0;
for (const [srv, port] of servers) {
  srv.maxConnections = 100_000;
  srv.listen(
    { port: Number(port), host, backlog: 4096 },
    () => ++ready === servers.length && process.send?.({ type: 'ready' }),
  );
}
process.on('disconnect', () => process.exit(0));
