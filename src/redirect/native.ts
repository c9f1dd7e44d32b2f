// The TypeScript face of the native socket helpers (src/redirect/native/ambit-native.c): sockets
// opened inside another network namespace and handed to Node as ready objects (net.Server,
// dgram.Socket, net.Socket), plus SO_ORIGINAL_DST and SO_MARK on Node sockets. The addon is built
// at install time when a C compiler is there; without it nothing here crashes: `nativeStatus()`
// says what is missing, and every helper throws a NativeError with code NATIVE_UNAVAILABLE.
import dgram from 'node:dgram';
import { closeSync, existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The addon's exports, as ambit-native.c defines them. */
export interface NativeAddon {
  listenInNetns(nsPath: string | null, host: string, port: number, opts: NativeSocketOptions): number;
  udpSocketInNetns(nsPath: string | null, host: string, port: number, opts: NativeSocketOptions): number;
  connectSocketInNetns(nsPath: string | null, opts: NativeConnectOptions): number;
  originalDst(fd: number): OriginalDst;
  setMark(fd: number, mark: number): void;
  getMark(fd: number): number;
}

export interface NativeSocketOptions {
  /** IP_TRANSPARENT / IPV6_TRANSPARENT (CAP_NET_ADMIN): accept or bind non-local addresses. */
  transparent?: boolean;
  reuseaddr?: boolean;
  /** SO_REUSEPORT: an old and a new proxy may share the port during a restart. */
  reuseport?: boolean;
  /** SO_MARK (CAP_NET_ADMIN) on the socket itself; accepted sockets do not inherit it. */
  mark?: number;
  /** listen() backlog for TCP; default 511 as in Node. */
  backlog?: number;
}

export interface NativeConnectOptions {
  family?: 4 | 6;
  mark?: number;
  transparent?: boolean;
  bindHost?: string;
  bindPort?: number;
}

export interface OriginalDst {
  ip: string;
  port: number;
  family: 4 | 6;
}

export type NativeStatus = { ok: true } | { ok: false; reason: string };

export type NativeErrorCode = 'NATIVE_UNAVAILABLE' | 'NATIVE_NO_FD' | 'NATIVE_BAD_ADDRESS';

/** Errors of this module; syscall failures from the addon are Node-style system errors instead (code "EPERM", errno, syscall). */
export class NativeError extends Error {
  readonly code: NativeErrorCode;
  constructor(code: NativeErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = 'NativeError';
  }
}

const ADDON_FILE = path.join('build', 'Release', 'ambit_native.node');

/**
 * Loads the addon from `dir` (the folder holding binding.gyp). Never throws: a missing addon gives
 * the reason the install-time build recorded (build/status.json), else the load error.
 */
export function loadNativeAddon(dir: string): { addon: NativeAddon } | { addon?: undefined; reason: string } {
  if (process.platform !== 'linux')
    return { reason: `native socket helpers are Linux only (this is ${process.platform})` };
  const file = path.join(dir, ADDON_FILE);
  if (!existsSync(file)) {
    const recorded = readBuildStatus(dir);
    return {
      reason: `addon not built: ${recorded ?? `${file} is missing`} (build it with: node scripts/build-native.mjs)`,
    };
  }
  try {
    const addon = createRequire(import.meta.url)(file) as NativeAddon;
    for (const fn of [
      'listenInNetns',
      'udpSocketInNetns',
      'connectSocketInNetns',
      'originalDst',
      'setMark',
    ] as const)
      if (typeof addon[fn] !== 'function')
        return { reason: `addon ${file} does not export ${fn}: rebuild it` };
    return { addon };
  } catch (err) {
    return { reason: `addon ${file} failed to load: ${err instanceof Error ? err.message : String(err)}` };
  }
}

function readBuildStatus(dir: string): string | undefined {
  try {
    const s = JSON.parse(readFileSync(path.join(dir, 'build', 'status.json'), 'utf8')) as unknown;
    if (s && typeof s === 'object' && 'reason' in s && typeof s.reason === 'string' && s.reason)
      return s.reason;
  } catch {
    // no record: the build never ran here
  }
  return undefined;
}

/**
 * The folder holding binding.gyp and build/: AMBIT_NATIVE_DIR when set (an addon built elsewhere,
 * e.g. in an image), else src/redirect/native seen from src (tests) or from dist/redirect (built).
 */
function addonDir(): string {
  if (process.env.AMBIT_NATIVE_DIR) return process.env.AMBIT_NATIVE_DIR;
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.join(here, 'native'), path.resolve(here, '..', '..', 'src', 'redirect', 'native')];
  return candidates.find((d) => existsSync(path.join(d, 'binding.gyp'))) ?? candidates[0]!;
}

let loaded: ReturnType<typeof loadNativeAddon> | undefined;

function load(): ReturnType<typeof loadNativeAddon> {
  loaded ??= loadNativeAddon(addonDir());
  return loaded;
}

/** Whether the native helpers can be used here, and if not exactly what is missing. */
export function nativeStatus(): NativeStatus {
  const l = load();
  return l.addon ? { ok: true } : { ok: false, reason: l.reason };
}

/** The raw addon (fds, not Node objects); throws NATIVE_UNAVAILABLE with the reason when absent. */
export function nativeAddon(): NativeAddon {
  const l = load();
  if (!l.addon) throw new NativeError('NATIVE_UNAVAILABLE', `native socket helpers unavailable: ${l.reason}`);
  return l.addon;
}

/**
 * A TCP server listening on host:port inside the network namespace at `nsPath` (e.g.
 * /var/run/netns/NAME or /proc/PID/ns/net; null = this process's own). Accepted connections come
 * from inside that namespace; the server is otherwise an ordinary net.Server.
 */
export async function listenInNetns(
  nsPath: string | null,
  host: string,
  port: number,
  opts: NativeSocketOptions & { server?: net.ServerOpts } = {},
): Promise<net.Server> {
  const { server: serverOpts, ...sockOpts } = opts;
  const fd = nativeAddon().listenInNetns(nsPath, host, port, sockOpts);
  const server = net.createServer(serverOpts ?? {});
  // Once Node has opened the fd its handle owns it: a failing listen() closes it with the handle.
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ fd }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

/** A UDP socket bound to host:port inside the network namespace at `nsPath` (dgram adopts the fd). */
export async function udpSocketInNetns(
  nsPath: string | null,
  host: string,
  port: number,
  opts: NativeSocketOptions = {},
): Promise<dgram.Socket> {
  const family = net.isIP(host);
  if (family === 0)
    throw new NativeError('NATIVE_BAD_ADDRESS', `udpSocketInNetns: not an IP literal: ${host}`);
  const fd = nativeAddon().udpSocketInNetns(nsPath, host, port, opts);
  const socket = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind({ fd }, () => {
        socket.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    closeFdQuietly(fd);
    throw err;
  }
  return socket;
}

/**
 * A TCP connection to host:port (an IP literal) made from inside the network namespace at
 * `nsPath`, with SO_MARK / IP_TRANSPARENT / a source address applied before connect(). The socket
 * is created in C and connected by Node (libuv connects an adopted, unconnected fd like its own).
 * Resolves on 'connect'; rejects with the connect error (ECONNREFUSED, …) or after `timeoutMs`.
 */
export async function connectInNetns(
  nsPath: string | null,
  host: string,
  port: number,
  opts: Omit<NativeConnectOptions, 'family'> & { timeoutMs?: number; allowHalfOpen?: boolean } = {},
): Promise<net.Socket> {
  const family = net.isIP(host);
  if (family === 0) throw new NativeError('NATIVE_BAD_ADDRESS', `connectInNetns: not an IP literal: ${host}`);
  const { timeoutMs, allowHalfOpen, ...sockOpts } = opts;
  const fd = nativeAddon().connectSocketInNetns(nsPath, { ...sockOpts, family: family as 4 | 6 });
  let socket: net.Socket;
  try {
    // manualStart: do not start reading an unconnected socket; Node starts reading once connected.
    socket = new net.Socket({ fd, manualStart: true, allowHalfOpen } as net.SocketConstructorOpts);
  } catch (err) {
    closeFdQuietly(fd);
    throw err;
  }
  return new Promise<net.Socket>((resolve, reject) => {
    const timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            const err = Object.assign(
              new Error(`connectInNetns: connect to ${host}:${port} timed out after ${timeoutMs} ms`),
              {
                code: 'ETIMEDOUT',
              },
            );
            socket.destroy(err);
          }, timeoutMs);
    const onError = (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.once('error', onError);
    socket.connect({ host, port }, () => {
      clearTimeout(timer);
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

/** The destination a connection had before iptables REDIRECT sent it to our listener. */
export function originalDst(socket: net.Socket): OriginalDst {
  return nativeAddon().originalDst(socketFd(socket));
}

/** SO_MARK on a connected or listening Node socket (CAP_NET_ADMIN). */
export function setMark(socket: net.Socket | net.Server, mark: number): void {
  nativeAddon().setMark(socketFd(socket), mark);
}

/** SO_MARK as the kernel holds it. */
export function getMark(socket: net.Socket | net.Server): number {
  return nativeAddon().getMark(socketFd(socket));
}

/** The OS file descriptor under a Node socket or server (libuv exposes it as `_handle.fd` on Unix). */
export function socketFd(socket: net.Socket | net.Server): number {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  if (typeof fd !== 'number' || fd < 0)
    throw new NativeError(
      'NATIVE_NO_FD',
      'socket has no file descriptor (not connected yet, or already closed)',
    );
  return fd;
}

function closeFdQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed by the handle that took it
  }
}
