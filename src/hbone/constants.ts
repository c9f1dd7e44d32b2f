// HBONE protocol constants (Istio's numbers, see shared/reference/istio-ambient.md §1.2–1.3).

export const HBONE_PORT = 15008;
export const SOCKS5_PORT = 15080;
export const READINESS_PORT = 15021;

/** Ports that may never be a tunnel's destination (they would loop back into a proxy). */
export const FORBIDDEN_TARGET_PORTS: ReadonlySet<number> = new Set([15001, 15006, 15008]);

export const H2_STREAM_WINDOW = 4 * 1024 * 1024;
export const H2_CONNECTION_WINDOW = 16 * 1024 * 1024;
export const H2_MAX_FRAME_SIZE = 1024 * 1024 - 1; // protocol max is 2^24-1; 1 MiB as ztunnel
export const H2_SERVER_MAX_STREAMS = 200;
export const H2_CLIENT_HEADER_LIST = 16 * 1024;
export const H2_SERVER_HEADER_LIST = 64 * 1024;

export const POOL_MAX_STREAMS_PER_CONNECTION = 100;
export const POOL_IDLE_TIMEOUT_MS = 5 * 60 * 1000;
export const PING_INTERVAL_MS = 10_000;
export const PING_TIMEOUT_MS = 20_000;
export const CONNECT_TIMEOUT_MS = 10_000;
