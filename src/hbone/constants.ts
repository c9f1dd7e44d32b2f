// HBONE protocol constants (Istio's numbers, see shared/reference/istio-ambient.md §1.2–1.3).

// The ports (HBONE_PORT, MESH_PORTS, …) are in src/common/ports.ts, with every other fixed port.

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

// HBONE server (15008) limits. ztunnel accepts inbound TLS through the tls-listener crate
// (src/hyper_util.rs `tls_server`), which bounds every handshake by its DEFAULT_HANDSHAKE_TIMEOUT
// (docs.rs/tls-listener) and the number of handshakes in flight; we bound the handshake at 10 s,
// the same as our (and ztunnel's) connect timeout. A session with no open stream is closed after
// the client pool's idle time (5 min; ztunnel's pool_unused_release_timeout plays that role on
// the client side). Streams per connection are capped by the h2 settings. We add a cap on
// concurrent connections per peer IP: a source node proxy needs a few connections per
// (identity, destination) key, so 256 leaves room for every identity a node runs while one peer
// cannot exhaust memory and descriptors (ztunnel has no per-peer cap; a deliberate addition).
export const SERVER_HANDSHAKE_TIMEOUT_MS = 10_000;
export const SERVER_IDLE_TIMEOUT_MS = POOL_IDLE_TIMEOUT_MS;
export const SERVER_MAX_SESSIONS_PER_PEER = 256;
