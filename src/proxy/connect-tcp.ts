// Plain TCP as the proxies open it (node proxy: passthrough and delivery to the app; waypoint:
// endpoints outside HBONE): half-open allowed, Nagle off, a bigger socket buffer, a bounded
// connect time, optionally bound to the address the far end should see.
import type { Socket } from 'node:net';
import { AmbitError } from '../common/errors.js';
import { formatSocketAddr, type HostPort } from '../common/addr.js';
import { defaultTcpConnect, type TcpConnect } from '../common/tcp-connect.js';

/** Larger than the 16 KiB default so one read or write moves a whole TLS-record-sized burst. */
export const SOCKET_HIGH_WATER_MARK = 256 * 1024;

/** Plain TCP, bound to the source pod's IP so the far end sees who connects. */
export function connectTcp(
  addr: HostPort,
  localAddress?: string,
  connect: TcpConnect = defaultTcpConnect,
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // highWaterMark: a bigger socket buffer (net.Socket accepts it as a Duplex option).
    const s = connect({
      host: addr.host,
      port: addr.port,
      localAddress,
      allowHalfOpen: true,
      noDelay: true,
      highWaterMark: SOCKET_HIGH_WATER_MARK,
    });
    const timer = setTimeout(
      () =>
        s.destroy(
          new AmbitError('HBONE_TIMEOUT', `connect to ${formatSocketAddr(addr.host, addr.port)} timed out`),
        ),
      10_000,
    );
    s.once('connect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
