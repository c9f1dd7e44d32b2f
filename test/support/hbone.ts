// HBONE test servers' plumbing shared by the tests that run an HboneServer of their own
// (test/adversarial/hbone.test.ts, test/integration/hbone-pool.test.ts).
import net from 'node:net';
import type { InboundTunnel } from '../../src/hbone/server.js';

/**
 * What a node proxy does with an accepted tunnel, minus policy: connect to the target, answer
 * 200 once connected, pipe both ways; an app that fails resets the stream, and the stream's end
 * ends the app connection.
 */
export function forwardTunnelToApp(t: InboundTunnel): void {
  const app = net.connect(t.target.port, t.target.host, () => {
    t.stream.respond({ ':status': 200 });
    t.stream.pipe(app).pipe(t.stream);
  });
  app.on('error', () => t.stream.destroy());
  t.stream.on('close', () => app.destroy());
}
