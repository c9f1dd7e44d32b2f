// How the data path opens a TCP connection. net.connect by default; netns mode swaps in one that
// opens the socket inside a pod's network namespace (redirect/pod-sockets.ts), so a connection
// made on behalf of a pod leaves from that pod, with the proxy's mark.
import net from 'node:net';

/** The net.connect options the data path uses. */
export interface TcpConnectOptions {
  host: string;
  port: number;
  localAddress?: string;
  allowHalfOpen?: boolean;
  noDelay?: boolean;
  highWaterMark?: number;
  /**
   * Delivery to a local app: the address the connection should appear to come from (the real
   * client). Only netns mode honours it (IP_TRANSPARENT inside the pod); others ignore it.
   */
  sourceAddress?: string;
}

/** Returns a connecting socket, like net.connect. */
export type TcpConnect = (opts: TcpConnectOptions) => net.Socket;

export const defaultTcpConnect: TcpConnect = ({ sourceAddress: _, ...opts }) =>
  net.connect(opts as net.NetConnectOpts);
