// The last phases of an inbound connection, the same over HBONE (inbound.ts) and in plaintext
// (inbound-plaintext.ts): once it is authorized, connected to the app and answered, splice it to
// the app and record it exactly once — metrics always, the access-log line when it failed, was
// closed by a policy change, or completed connections are logged.
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../common/log.js';
import {
  responseFlagFor,
  type ConnectionResult,
  type ConnectionTelemetry,
} from '../telemetry/connection-telemetry.js';
import type { AuthzDecision } from './authz.js';
import { splice } from './splice.js';

/** An authorized inbound connection, as its listener built it. */
export interface AllowedInbound {
  /** The peer side: the HBONE stream or the plaintext client socket. */
  downstream: Duplex;
  app: Socket;
  record: ConnectionResult;
  decision: AuthzDecision;
  /** The access-log fields of the connection's context. */
  fields: Record<string, unknown>;
  /** When the connection was accepted (ms). */
  start: number;
  /**
   * Removes it from the listener's open set; false when a policy change already did (and closed
   * it), so it is recorded as denied.
   */
  untrack: () => boolean;
}

/** Splices to the app until both sides close, then records the connection once. */
export async function spliceToApp(
  c: AllowedInbound,
  log: Logger,
  telemetry: ConnectionTelemetry,
): Promise<void> {
  const { app, record, fields } = c;
  // Istio's direction: received = client → server (to the app), sent = server → client.
  record.trackBytes(() => ({ received: app.bytesWritten, sent: app.bytesRead }));
  // An app reset reaches the peer as RST_STREAM(CONNECT_ERROR), a reset stream reaches the app
  // as a TCP RST (splice.ts); either is recorded with Envoy's DC / UC.
  const result = await splice(c.downstream, app);
  const closedByPolicy = !c.untrack();
  const flag = closedByPolicy ? 'DENY' : result.error ? responseFlagFor(result.error) : '-';
  record.close(flag);
  if (!result.error && !closedByPolicy && !telemetry.logComplete()) return;
  log[result.error && !closedByPolicy ? 'warn' : 'info'](
    {
      ...fields,
      'authz.decision': 'allow',
      'authz.policy': c.decision.policy ?? null,
      response_flags: flag,
      bytes_sent: app.bytesRead,
      bytes_recv: app.bytesWritten,
      duration_ms: Date.now() - c.start,
      ...(result.error ? { error: result.error.message } : {}),
    },
    'connection complete',
  );
}
