// The node proxy's L4 metrics, with Istio's names and standard labels so existing dashboards and
// alerts work unchanged (after ztunnel's src/proxy/metrics.rs): connections opened and closed,
// bytes received (client → server, "during request") and sent (server → client, "during
// response") for both reporters. Labels are bounded: workload, namespace, principal, service,
// app/version — never ports, addresses or anything per connection. Missing values are "unknown".
//
// Bytes are exact and cost nothing on the data path: an open connection only registers a function
// that reads its sockets' byte counts; each scrape adds what moved since the last one (so a
// long-lived connection shows up while it is open, as ztunnel's per-read counters do), and the
// connection's end adds the rest.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Service, Workload } from '../xds/resources.js';

/** `waypoint`: Istio's reporter for a waypoint's own metrics (TCP as well as requests). */
export type Reporter = 'source' | 'destination' | 'waypoint';
/**
 * ztunnel's response flags: "-" when nothing went wrong. Plus Envoy's UC (upstream connection
 * termination) and DC (downstream connection termination) for a connection cut mid-transfer
 * (proxy/splice.ts), which ztunnel only reports as an error without a flag; and Envoy's RBAC for
 * the waypoint's TCP-path policy denial (waypoint/policy/authz-tcp.ts, Envoy's network RBAC filter).
 */
export type ResponseFlag = '-' | 'DENY' | 'CONNECT' | 'TLS_FAILURE' | 'IDENTITY_ERROR' | 'UC' | 'DC' | 'RBAC';
/** ztunnel reports mutual_tls for HBONE and unknown otherwise (it has no "none"). */
export type SecurityPolicy = 'mutual_tls' | 'unknown';

export const UNKNOWN = 'unknown';

/** The reporter and the source labels, first in Istio's TCP and request label sets alike. */
export const SOURCE_LABELS = [
  'reporter',
  'source_workload',
  'source_canonical_service',
  'source_canonical_revision',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_cluster',
] as const;

/** Istio's standard TCP label set, in ztunnel's order. */
export const TCP_LABELS = [
  ...SOURCE_LABELS,
  'destination_service',
  'destination_service_namespace',
  'destination_service_name',
  'destination_workload',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_cluster',
  'request_protocol',
  'response_flags',
  'connection_security_policy',
] as const;

export type TcpLabelName = (typeof TCP_LABELS)[number];
export type TcpLabels = Record<TcpLabelName, string>;

/** What the labels of one side of a connection or request are made from. */
export type PeerWorkload = Partial<
  Pick<Workload, 'workloadName' | 'name' | 'namespace' | 'canonicalName' | 'canonicalRevision' | 'clusterId'>
>;

/** What is known about a connection when it opens; turned into labels by `tcpLabels`. */
export interface ConnectionOpen {
  reporter: Reporter;
  source?: PeerWorkload;
  /** Only a verified identity (mTLS peer, or our own certificate at the source). */
  sourcePrincipal?: string;
  destination?: PeerWorkload;
  destinationPrincipal?: string;
  destinationService?: Pick<Service, 'hostname' | 'name' | 'namespace'>;
  securityPolicy: SecurityPolicy;
}

const orUnknown = (v: string | undefined) => (v ? v : UNKNOWN);

export function tcpLabels(c: ConnectionOpen): TcpLabels {
  const s = c.source;
  const d = c.destination;
  return {
    reporter: c.reporter,
    ...peerLabels('source', s, c.sourcePrincipal),
    destination_service: orUnknown(c.destinationService?.hostname),
    destination_service_namespace: orUnknown(c.destinationService?.namespace),
    destination_service_name: orUnknown(c.destinationService?.name),
    ...peerLabels('destination', d, c.destinationPrincipal),
    request_protocol: 'tcp',
    response_flags: '-',
    connection_security_policy: c.securityPolicy,
  };
}

type PeerLabelName<P extends string> =
  `${P}_${'workload' | 'canonical_service' | 'canonical_revision' | 'workload_namespace' | 'principal' | 'app' | 'version' | 'cluster'}`;

/** One side's workload labels, in Istio's order (the same in TCP and request metrics). */
export function peerLabels<P extends 'source' | 'destination'>(
  side: P,
  w: PeerWorkload | undefined,
  principal: string | undefined,
): Record<PeerLabelName<P>, string> {
  return {
    [`${side}_workload`]: orUnknown(w?.workloadName || w?.name),
    [`${side}_canonical_service`]: orUnknown(w?.canonicalName),
    [`${side}_canonical_revision`]: orUnknown(w?.canonicalRevision),
    [`${side}_workload_namespace`]: orUnknown(w?.namespace),
    [`${side}_principal`]: orUnknown(principal),
    // Istio fills app/version from the canonical name and revision (the `app` and `version` labels).
    [`${side}_app`]: orUnknown(w?.canonicalName),
    [`${side}_version`]: orUnknown(w?.canonicalRevision),
    [`${side}_cluster`]: orUnknown(w?.clusterId),
  } as Record<PeerLabelName<P>, string>;
}

/** Bytes of one connection so far: received = client → server, sent = server → client (Istio's meaning). */
export interface ByteCounts {
  received: number;
  sent: number;
}

/** One label set's totals. Plain numbers: the hot path never hashes labels (see L4Metrics). */
interface Series {
  labels: TcpLabels;
  opened: number;
  closed: Map<ResponseFlag, number>;
  received: number;
  sent: number;
}

/** One open connection's share of the counters. Closed exactly once. */
export class TcpConnectionMetrics {
  private reported: ByteCounts = { received: 0, sent: 0 };
  private closed = false;
  private bytes?: () => ByteCounts;

  constructor(
    private readonly owner: L4Metrics,
    private readonly series: Series,
  ) {}

  get labels(): TcpLabels {
    return this.series.labels;
  }

  /** Where this connection's byte counts come from (its sockets), read at scrapes and at close. */
  trackBytes(bytes: () => ByteCounts): void {
    this.bytes = bytes;
    this.owner.open.add(this);
  }

  /** Adds what moved since the last report. */
  flush(): void {
    if (!this.bytes) return;
    const now = this.bytes();
    this.series.received += Math.max(0, now.received - this.reported.received);
    this.series.sent += Math.max(0, now.sent - this.reported.sent);
    this.reported = now;
  }

  close(flag: ResponseFlag = '-'): void {
    if (this.closed) return;
    this.closed = true;
    this.flush();
    this.owner.open.delete(this);
    this.bytes = undefined;
    this.series.closed.set(flag, (this.series.closed.get(flag) ?? 0) + 1);
  }
}

/**
 * The node proxy's L4 metrics in one list, registered on the proxy's own registry. Counting is
 * plain arithmetic on a series found by a short key; prom-client's counters are filled from the
 * series only when scraped (collect), so a connection costs a Map lookup, not four label hashes.
 */
export class L4Metrics {
  /** @internal connections whose bytes are read at each scrape */
  readonly open = new Set<TcpConnectionMetrics>();
  private readonly series = new Map<string, Series>();

  /** `component`: istio_build's — "ztunnel" for the node proxy, "proxy" (Envoy's) for a waypoint. */
  constructor(registry: Registry, component = 'ztunnel') {
    const labelNames = [...TCP_LABELS];
    const all = () => this.series.values();
    const flushOpen = () => {
      for (const c of this.open) c.flush();
    };
    const counter = (name: string, help: string, fill: (c: Counter<TcpLabelName>) => void) =>
      new Counter({
        name,
        help,
        labelNames,
        registers: [registry],
        collect() {
          this.reset();
          fill(this);
        },
      });
    counter('istio_tcp_connections_opened_total', 'The total number of TCP connections opened', (c) => {
      for (const s of all()) c.inc(s.labels, s.opened);
    });
    counter('istio_tcp_connections_closed_total', 'The total number of TCP connections closed', (c) => {
      for (const s of all())
        for (const [flag, n] of s.closed)
          c.inc(flag === '-' ? s.labels : { ...s.labels, response_flags: flag }, n);
    });
    counter(
      'istio_tcp_sent_bytes_total',
      'The size of total bytes sent during response in case of a TCP connection',
      (c) => {
        flushOpen();
        for (const s of all()) if (s.sent > 0) c.inc(s.labels, s.sent);
      },
    );
    counter(
      'istio_tcp_received_bytes_total',
      'The size of total bytes received during request in case of a TCP connection',
      (c) => {
        flushOpen();
        for (const s of all()) if (s.received > 0) c.inc(s.labels, s.received);
      },
    );
    new Gauge({
      name: 'istio_build',
      help: 'Istio component build info',
      labelNames: ['component', 'tag'],
      registers: [registry],
    }).set({ component, tag: 'ambit' }, 1);
  }

  /** Counts the connection as opened (flags "-") and returns its handle; call close() once it ends. */
  connectionOpened(open: ConnectionOpen): TcpConnectionMetrics {
    const key = seriesKey(open);
    let s = this.series.get(key);
    if (!s) {
      s = { labels: tcpLabels(open), opened: 0, closed: new Map(), received: 0, sent: 0 };
      this.series.set(key, s);
    }
    s.opened++;
    return new TcpConnectionMetrics(this, s);
  }
}

/** Everything the labels are made of, joined: equal keys ⇔ equal label sets. */
function seriesKey(c: ConnectionOpen): string {
  const w = (x: ConnectionOpen['source']) =>
    x
      ? `${x.workloadName || x.name}\u0001${x.namespace}\u0001${x.canonicalName}\u0001${x.canonicalRevision}\u0001${x.clusterId}`
      : '';
  const svc = c.destinationService;
  return `${c.reporter}\u0002${w(c.source)}\u0002${c.sourcePrincipal ?? ''}\u0002${w(c.destination)}\u0002${
    c.destinationPrincipal ?? ''
  }\u0002${svc ? `${svc.hostname}\u0001${svc.name}\u0001${svc.namespace}` : ''}\u0002${c.securityPolicy}`;
}
