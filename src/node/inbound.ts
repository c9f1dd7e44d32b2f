// Inbound: an HBONE CONNECT stream for a local pod, in phases (after ztunnel's inbound.rs):
// build the context → authorize (L4 policy arrives with the policy issue) → connect to the app
// → only then answer 200 → splice → record once. A refusal answers 401, an app that refuses 503.
import http2 from 'node:http2';
import type { Socket } from 'node:net';
import type { Logger } from '../common/log.js';
import { errorMessage } from '../common/errors.js';
import type { InboundTunnel } from '../hbone/server.js';
import { spiffeIdOf, type Workload } from '../xds/resources.js';
import type { ProxyState } from './state.js';
import { connectTcp } from './outbound.js';
import { splice } from './splice.js';

export class Inbound {
  private readonly log: Logger;
  constructor(
    private readonly state: ProxyState,
    logger: Logger,
  ) {
    this.log = logger.child({ direction: 'inbound' });
  }

  async handle(tunnel: InboundTunnel, pod: Workload): Promise<void> {
    const start = Date.now();
    const { stream, target, peerIdentity, peerAddr } = tunnel;
    const srcWorkload = this.state.workloadByAddress(peerAddr.host);
    const fields: Record<string, unknown> = {
      'src.addr': forwardedFor(tunnel) ?? `${peerAddr.host}:${peerAddr.port}`,
      'src.identity': peerIdentity,
      'src.workload': srcWorkload?.name,
      'src.namespace': srcWorkload?.namespace,
      'dst.addr': `${target.host}:${target.port}`,
      'dst.workload': pod.name,
      'dst.namespace': pod.namespace,
      'dst.identity': spiffeIdOf(pod),
    };
    let app: Socket;
    try {
      // In local mode every address is on loopback, so the app can see the real source IP.
      app = await connectTcp(target, isLoopback(peerAddr.host) ? peerAddr.host : undefined).catch((err) => {
        if ((err as NodeJS.ErrnoException).code === 'EADDRNOTAVAIL') return connectTcp(target);
        throw err;
      });
    } catch (err) {
      this.log.warn(
        { ...fields, status: 503, error: errorMessage(err), duration_ms: Date.now() - start },
        'connection failed: app refused',
      );
      if (!stream.destroyed) stream.respond({ ':status': 503 }, { endStream: true });
      return;
    }
    if (stream.destroyed) {
      app.destroy();
      return;
    }
    stream.respond({ ':status': 200 });
    const result = await splice(stream, app);
    this.log.info(
      {
        ...fields,
        bytes_sent: app.bytesRead,
        bytes_recv: app.bytesWritten,
        duration_ms: Date.now() - start,
        ...(result.error ? { error: result.error.message } : {}),
      },
      'connection complete',
    );
  }
}

function forwardedFor(t: InboundTunnel): string | undefined {
  const f = t.headers.forwarded;
  const m = typeof f === 'string' ? /for="?([^";,]+)"?/.exec(f) : null;
  return m?.[1];
}

function isLoopback(ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1';
}

export const INBOUND_DENY_STATUS = http2.constants.HTTP_STATUS_UNAUTHORIZED;
