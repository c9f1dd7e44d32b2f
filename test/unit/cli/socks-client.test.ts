// The SOCKS5 client keeps bytes that arrive in the same read as the CONNECT reply (a server-first
// app whose greeting follows the tunnel's success at once): they were emitted before the caller
// could listen, and lost (seen against ztunnel, test/interop).
import net from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { socksConnect } from '../../../src/cli/socks-client.js';

let server: net.Server | undefined;
afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

it('delivers the first bytes the server sent together with the SOCKS5 reply', async () => {
  server = net.createServer((s) => {
    let stage = 0;
    s.on('data', () => {
      // One write each: the method choice, then the CONNECT reply with the app's greeting.
      if (stage++ === 0) s.write(Buffer.from([5, 0]));
      else s.end(Buffer.concat([Buffer.from([5, 0, 0, 1, 127, 0, 0, 1, 0, 80]), Buffer.from('hello')]));
    });
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  const s = await socksConnect({ host: '127.0.0.1', port }, '10.0.0.1', 80);
  let got = '';
  s.on('data', (d: Buffer) => (got += d.toString()));
  await new Promise((r) => s.once('end', r));
  s.destroy(); // half-open (allowHalfOpen): the server's close would wait for it
  expect(got).toBe('hello');
});
