// The last phases of an inbound connection, the same over HBONE (nodeproxy/inbound.ts) and in
// plaintext (nodeproxy/inbound-plaintext.ts): once it is authorized, connected to the app and
// answered, splice it to the app and finish its record exactly once — metrics always, the
// access-log line when it failed or completed connections are logged. A connection a policy
// change closed was already recorded by the gate (proxy/inbound-gate.ts); its end adds nothing.
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ConnectionRecord } from './connection-record.js';
import { splice } from './splice.js';

/** An authorized inbound connection, as its listener built it. */
export interface AllowedInbound {
  /** The peer side: the HBONE stream or the plaintext client socket. */
  downstream: Duplex;
  app: Socket;
  record: ConnectionRecord;
  /** Removes it from the gate's open set (false when a policy change already closed it). */
  untrack: () => boolean;
}

/** Splices to the app until both sides close, then records the connection once. */
export async function spliceToApp(c: AllowedInbound): Promise<void> {
  const { app, record } = c;
  // Istio's direction: received = client → server (to the app), sent = server → client.
  record.trackBytes(() => ({ received: app.bytesWritten, sent: app.bytesRead }));
  // An app reset reaches the peer as RST_STREAM(CONNECT_ERROR), a reset stream reaches the app
  // as a TCP RST (splice.ts); either is recorded with Envoy's DC / UC.
  const result = await splice(c.downstream, app);
  c.untrack();
  record.complete(result.error);
}
