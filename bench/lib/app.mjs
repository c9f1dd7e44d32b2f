// Benchmark backend, in its own process: an HTTP/1.1 server with a small fixed response, and a
// TCP "source" that streams bytes to whoever connects until they hang up.
// usage: node app.mjs HOST HTTP_PORT SOURCE_PORT
import http from 'node:http';
import net from 'node:net';

const [host, httpPort, sourcePort] = process.argv.slice(2);
const body = Buffer.from('x'.repeat(64));
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-length': body.length, 'content-type': 'text/plain' });
    res.end(body);
  });
});
server.keepAliveTimeout = 120_000;
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
let ready = 0;
const done = () => ++ready === 2 && process.send?.({ type: 'ready' });
server.listen(Number(httpPort), host, done);
source.listen(Number(sourcePort), host, done);
process.on('disconnect', () => process.exit(0));
