// Sockets of the node proxy that live inside a pod's network namespace (netns mode), built on
// the native helpers (native.ts): listening fds for 15001/15006/15008, and outgoing connections
// made from inside the pod with the proxy's mark, so the pod's own redirection rules let them
// pass (iptables.ts exempts PROXY_MARK). Kept synchronous (a connecting net.Socket, like
// net.connect) so the data path can swap it in for net.connect without changing shape.
import net from 'node:net';
import { nativeAddon } from './native.js';
import type { TcpConnect, TcpConnectOptions } from '../common/tcp-connect.js';

/** The mark on every socket the proxy opens inside a pod (Istio's 1337), under PROXY_MARK_MASK. */
export const PROXY_MARK = 0x539;
export const PROXY_MARK_MASK = 0xfff;

export type { TcpConnect, TcpConnectOptions };

/** A listening TCP fd on host:port inside the namespace at nsPath (for net.Server.listen({fd})). */
export function listenFdInNetns(nsPath: string, host: string, port: number): number {
  // SO_REUSEADDR so a restarted proxy can bind again while old connections are in TIME_WAIT.
  return nativeAddon().listenInNetns(nsPath, host, port, { reuseaddr: true, backlog: 1024 });
}

/**
 * Connects from inside the namespace at nsPath, marked. The source is the pod's own address, or
 * `spoofFrom` (IP_TRANSPARENT: the app sees the real client; its replies come back through the
 * pod's delivery routing, see iptables.ts).
 */
export function connectFromNetns(nsPath: string, opts: TcpConnectOptions, spoofFrom?: string): net.Socket {
  const family = net.isIP(opts.host);
  if (family === 0) throw new Error(`connect from ${nsPath}: not an IP literal: ${opts.host}`);
  const fd = nativeAddon().connectSocketInNetns(nsPath, {
    family: family as 4 | 6,
    mark: PROXY_MARK,
    ...(spoofFrom ? { transparent: true, bindHost: spoofFrom } : {}),
  });
  // manualStart: an unconnected socket must not start reading; Node starts once connected.
  const socket = new net.Socket({
    fd,
    manualStart: true,
    allowHalfOpen: opts.allowHalfOpen ?? false,
    highWaterMark: opts.highWaterMark,
  } as net.SocketConstructorOpts);
  socket.connect({ host: opts.host, port: opts.port, noDelay: opts.noDelay });
  return socket;
}

/**
 * A TcpConnect for a node proxy whose pods live in their own namespaces: a connection bound to
 * a local pod's IP (outbound: HBONE or passthrough as that pod) or going to a local pod's IP
 * (inbound delivery to the app) is made from inside that pod's namespace; anything else from
 * the proxy's own namespace. Delivery keeps the client's address (`sourceAddress`) when the
 * destination pod's delivery routing is in place (`canSpoof`), else it comes from the pod's own.
 */
export function podAwareConnect(
  netnsOfLocalIp: (ip: string) => string | undefined,
  canSpoof: (podIp: string) => boolean = () => false,
): TcpConnect {
  return ({ sourceAddress, ...opts }) => {
    const from = opts.localAddress ? netnsOfLocalIp(opts.localAddress) : undefined;
    if (from) return connectFromNetns(from, opts);
    const to = netnsOfLocalIp(opts.host);
    if (!to) return net.connect(opts as net.NetConnectOpts);
    const spoof =
      sourceAddress && sourceAddress !== opts.host && canSpoof(opts.host) ? sourceAddress : undefined;
    return connectFromNetns(to, opts, spoof);
  };
}
