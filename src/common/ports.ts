// Every fixed port of the mesh, once. Istio's numbers, so operators' habits carry over (Istio's
// "Ports used by Istio" page, istio.io/latest/docs/ops/deployment/application-requirements/;
// ztunnel's ARCHITECTURE.md port table and src/config.rs). Lowest layer (src/common) because every
// layer needs some of them: the control plane publishes HBONE_PORT in waypoint addresses, the
// node agent redirects to the capture ports, telemetry serves the admin and metrics ports, the
// CLI dials them. Nothing else in src/ writes a 150xx number (test/unit/architecture.test.ts).

/** Node proxy admin: config dump, certificates, workloads, log level (node IP or 127.0.0.1). */
export const ADMIN_PORT = 15000;
/** Outbound capture in each pod's namespace (iptables REDIRECT, SO_ORIGINAL_DST). */
export const OUTBOUND_CAPTURE_PORT = 15001;
/** Inbound plaintext capture in each pod's namespace (allowed only under PERMISSIVE/DISABLE). */
export const INBOUND_CAPTURE_PORT = 15006;
/** HBONE: mTLS, ALPN h2, HTTP/2 CONNECT, on every captured pod's IP and every waypoint. */
export const HBONE_PORT = 15008;
/** Control plane gRPC over TLS: Delta xDS and the CA (istiod's 15012). */
export const CONTROL_PLANE_PORT = 15012;
/** Control plane metrics, debug endpoints and the dashboard (istiod's 15014). */
export const CONTROL_PLANE_DEBUG_PORT = 15014;
/** Prometheus metrics of a node proxy or waypoint (Istio's merged-metrics port). */
export const METRICS_PORT = 15020;
/** Readiness `GET /healthz/ready` of a node proxy or waypoint. */
export const READINESS_PORT = 15021;
/** DNS proxy, UDP and TCP, in each pod's namespace (netns/Kubernetes mode). */
export const DNS_PROXY_PORT = 15053;
/** SOCKS5 explicit capture (local mode: on each pod's IP). */
export const SOCKS5_PORT = 15080;
/** Envoy's Prometheus stats port. ambit serves nothing there; it is reserved as in Istio (see MESH_PORTS). */
export const ENVOY_PROMETHEUS_PORT = 15090;

/**
 * Every port a mesh proxy listens on (ztunnel's `illegal_ports`, config.rs: "internal ports that
 * clients are not authorized to send to"): admin, outbound capture, inbound plaintext, HBONE,
 * metrics, readiness, DNS, SOCKS5, and Envoy's Prometheus port. A tunnel to one of them would
 * reach the proxy itself, which then acts with the pod's identity (a CONNECT to a pod's :15080
 * turns into traffic *from* that pod), so none is ever a CONNECT target, whoever asks.
 */
export const MESH_PORTS: ReadonlySet<number> = new Set([
  ADMIN_PORT,
  OUTBOUND_CAPTURE_PORT,
  INBOUND_CAPTURE_PORT,
  HBONE_PORT,
  METRICS_PORT,
  READINESS_PORT,
  DNS_PROXY_PORT,
  SOCKS5_PORT,
  ENVOY_PROMETHEUS_PORT,
]);

/** Ports that may never be a tunnel's destination: all mesh ports (see MESH_PORTS). */
export const FORBIDDEN_TARGET_PORTS: ReadonlySet<number> = MESH_PORTS;

/** Ports that loop straight back into a proxy wherever they are dialled (any address). */
export const LOOP_PORTS: ReadonlySet<number> = new Set([
  OUTBOUND_CAPTURE_PORT,
  INBOUND_CAPTURE_PORT,
  HBONE_PORT,
]);

/** "127.0.0.1:15012": the control plane's address when none is given (local mode, one machine). */
export const DEFAULT_CONTROL_PLANE_ADDR = `127.0.0.1:${CONTROL_PLANE_PORT}`;
/** "127.0.0.1:15014": where `ambit ctl` and `ambit dashboard` look for the control plane's debug port. */
export const DEFAULT_CONTROL_PLANE_DEBUG_ADDR = `127.0.0.1:${CONTROL_PLANE_DEBUG_PORT}`;
