// Waypoint request metrics with Istio's names and standard labels (reporter="waypoint", as in
// Istio ambient): istio_requests_total, istio_request_duration_milliseconds,
// istio_request_bytes, istio_response_bytes. `createRequestMetrics(registry)` returns the
// function the waypoint calls once per finished request (its `onRequest` seam). The record type
// is structural: the waypoint's own RequestRecord fits it without this module importing it.
import type { Registry } from 'prom-client';
import { SOURCE_LABELS, UNKNOWN, peerLabels } from './metrics.js';

/** What is counted of one finished request. */
export interface RequestMetricsRecord {
  /** 'http1' | 'http2' | 'grpc' */
  protocol: string;
  source: { identity?: string; workload?: string; namespace?: string };
  destination: { service?: string; workload?: string; namespace?: string; identity?: string };
  /** HTTP status sent downstream; 0 when the client left before one was sent. */
  status: number;
  grpcStatus?: number;
  durationMs: number;
  requestBytes?: number;
  responseBytes?: number;
  /** Why the waypoint answered itself or gave up; mapped to Envoy's response flags. */
  reason?: string;
}

/** Canonical name/revision of a workload, for the app/version labels (optional). */
export type WorkloadMetaLookup = (
  namespace: string,
  name: string,
) => { canonicalName?: string; canonicalRevision?: string; clusterId?: string } | undefined;

export const REQUEST_LABELS = [
  ...SOURCE_LABELS,
  'destination_workload',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_service',
  'destination_service_name',
  'destination_service_namespace',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_cluster',
  'request_protocol',
  'response_code',
  'grpc_response_status',
  'response_flags',
  'connection_security_policy',
] as const;
type RequestLabelName = (typeof REQUEST_LABELS)[number];

/** Istio's default buckets for istio_request_duration_milliseconds. */
const DURATION_BUCKETS_MS = [
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000,
  3600000,
];
/** Istio's size buckets: 1 B to 100 MB, ×10. */
const SIZE_BUCKETS = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000];

/** Envoy's short response flags, from the waypoint's reason text and status. */
export function responseFlagsOf(status: number, reason: string | undefined): string {
  const r = (reason ?? '').toLowerCase();
  if (!r) return status === 0 ? 'DC' : '-';
  if (/downstream|reset by client/.test(r)) return 'DC';
  if (/denied|rbac|not allowed|authoriz|jwt/.test(r)) return status === 401 ? 'UAEX' : 'RBAC';
  if (/rate.?limit/.test(r)) return 'RL';
  if (/overflow|pending request|circuit/.test(r)) return 'UO';
  if (/timeout|timed out/.test(r)) return 'UT';
  if (/no healthy|no endpoint|no upstream/.test(r)) return 'UH';
  if (/fault|abort/.test(r)) return 'FI';
  if (/connect|reset|refused/.test(r)) return 'UF';
  if (/no route|not found/.test(r)) return 'NR';
  return '-';
}

/** Only the looked-up fields, whatever else the lookup returned. */
function pickMeta(m: ReturnType<WorkloadMetaLookup>) {
  return {
    canonicalName: m?.canonicalName,
    canonicalRevision: m?.canonicalRevision,
    clusterId: m?.clusterId,
  };
}

/** "demo/echo.demo.svc.cluster.local" or "echo.demo.svc.cluster.local" → name and namespace. */
function serviceParts(host: string | undefined): { name: string; namespace: string } {
  if (!host) return { name: UNKNOWN, namespace: UNKNOWN };
  const h = host.includes('/') ? host.slice(host.indexOf('/') + 1) : host;
  const [name = UNKNOWN, namespace = UNKNOWN] = h.split('.');
  return { name, namespace };
}

export function requestLabels(
  r: RequestMetricsRecord,
  meta?: WorkloadMetaLookup,
): Record<RequestLabelName, string> {
  const or = (v: string | undefined) => (v ? v : UNKNOWN);
  const sm =
    r.source.workload && r.source.namespace ? meta?.(r.source.namespace, r.source.workload) : undefined;
  const dm =
    r.destination.workload && r.destination.namespace
      ? meta?.(r.destination.namespace, r.destination.workload)
      : undefined;
  const svc = serviceParts(r.destination.service);
  const host = r.destination.service?.includes('/')
    ? r.destination.service.slice(r.destination.service.indexOf('/') + 1)
    : r.destination.service;
  return {
    reporter: 'waypoint',
    ...peerLabels(
      'source',
      { workloadName: r.source.workload, namespace: r.source.namespace, ...pickMeta(sm) },
      r.source.identity,
    ),
    destination_workload: or(r.destination.workload),
    destination_workload_namespace: or(r.destination.namespace),
    destination_principal: or(r.destination.identity),
    destination_app: or(dm?.canonicalName),
    destination_version: or(dm?.canonicalRevision),
    destination_service: or(host),
    destination_service_name: svc.name,
    destination_service_namespace: svc.namespace,
    destination_canonical_service: or(dm?.canonicalName),
    destination_canonical_revision: or(dm?.canonicalRevision),
    destination_cluster: or(dm?.clusterId),
    request_protocol: r.protocol === 'grpc' ? 'grpc' : 'http',
    response_code: String(r.status),
    grpc_response_status: r.grpcStatus !== undefined ? String(r.grpcStatus) : '',
    response_flags: responseFlagsOf(r.status, r.reason),
    connection_security_policy: 'mutual_tls',
  };
}

interface Hist {
  /** Per bucket, not cumulative; values above the last bound are only in the count. */
  counts: number[];
  sum: number;
}
interface RequestSeries {
  labels: Record<RequestLabelName, string>;
  requests: number;
  duration: Hist;
  requestBytes: Hist;
  responseBytes: Hist;
}

function observe(h: Hist, bounds: readonly number[], v: number): void {
  h.sum += v;
  for (let i = 0; i < bounds.length; i++) {
    if (v <= bounds[i]!) {
      h.counts[i]!++;
      return;
    }
  }
}

const newHist = (bounds: readonly number[]): Hist => ({ counts: bounds.map(() => 0), sum: 0 });

/** How a metric is handed to prom-client's registry: name, type and its values at scrape time. */
interface ExportedMetric {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  aggregator: 'sum';
  get(): Promise<{ name: string; help: string; type: string; aggregator: 'sum'; values: ExportedValue[] }>;
  reset(): void;
}
interface ExportedValue {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

function exported(
  name: string,
  help: string,
  type: ExportedMetric['type'],
  values: () => ExportedValue[],
): ExportedMetric {
  return {
    name,
    help,
    type,
    aggregator: 'sum',
    get: () => Promise.resolve({ name, help, type, aggregator: 'sum', values: values() }),
    reset() {},
  };
}

function histogramValues(
  name: string,
  bounds: readonly number[],
  series: Iterable<RequestSeries>,
  pick: (s: RequestSeries) => Hist,
): ExportedValue[] {
  const out: ExportedValue[] = [];
  for (const s of series) {
    const h = pick(s);
    let acc = 0;
    bounds.forEach((le, i) => {
      acc += h.counts[i]!;
      out.push({ metricName: `${name}_bucket`, labels: { ...s.labels, le }, value: acc });
    });
    out.push({ metricName: `${name}_bucket`, labels: { ...s.labels, le: '+Inf' }, value: s.requests });
    out.push({ metricName: `${name}_sum`, labels: s.labels, value: h.sum });
    out.push({ metricName: `${name}_count`, labels: s.labels, value: s.requests });
  }
  return out;
}

/** Workload metadata is looked up once per workload and remembered a while (labels rarely change). */
function memoized(meta: WorkloadMetaLookup | undefined, ttlMs = 30_000): WorkloadMetaLookup | undefined {
  if (!meta) return undefined;
  let cache = new Map<string, ReturnType<WorkloadMetaLookup>>();
  let since = Date.now();
  return (ns, name) => {
    if (Date.now() - since > ttlMs || cache.size > 10_000) {
      cache = new Map();
      since = Date.now();
    }
    const key = `${ns}/${name}`;
    if (!cache.has(key)) cache.set(key, meta(ns, name));
    return cache.get(key);
  };
}

/**
 * Registers the four request metrics on `registry` and returns the recorder for finished
 * requests. As for L4, a request costs a lookup by a short key and a few additions; label sets
 * and histogram lines are built only when scraped.
 */
export function createRequestMetrics(
  registry: Registry,
  meta?: WorkloadMetaLookup,
): (record: RequestMetricsRecord) => void {
  const lookup = memoized(meta);
  const series = new Map<string, RequestSeries>();
  const all = () => series.values();
  const metrics: ExportedMetric[] = [
    exported('istio_requests_total', 'Total number of requests', 'counter', () =>
      [...all()].map((s) => ({ labels: s.labels, value: s.requests })),
    ),
    exported('istio_request_duration_milliseconds', 'Duration of requests in milliseconds', 'histogram', () =>
      histogramValues('istio_request_duration_milliseconds', DURATION_BUCKETS_MS, all(), (s) => s.duration),
    ),
    exported('istio_request_bytes', 'Size of HTTP request bodies in bytes', 'histogram', () =>
      histogramValues('istio_request_bytes', SIZE_BUCKETS, all(), (s) => s.requestBytes),
    ),
    exported('istio_response_bytes', 'Size of HTTP response bodies in bytes', 'histogram', () =>
      histogramValues('istio_response_bytes', SIZE_BUCKETS, all(), (s) => s.responseBytes),
    ),
  ];
  for (const m of metrics) registry.registerMetric(m as unknown as Parameters<Registry['registerMetric']>[0]);

  return (r) => {
    const flags = r.reason || r.status === 0 ? responseFlagsOf(r.status, r.reason) : '-';
    const key = `${r.protocol}\u0001${r.source.workload ?? ''}\u0001${r.source.namespace ?? ''}\u0001${r.source.identity ?? ''}\u0001${
      r.destination.workload ?? ''
    }\u0001${r.destination.namespace ?? ''}\u0001${r.destination.identity ?? ''}\u0001${r.destination.service ?? ''}\u0001${
      r.status
    }\u0001${r.grpcStatus ?? ''}\u0001${flags}`;
    let s = series.get(key);
    if (!s) {
      s = {
        labels: { ...requestLabels(r, lookup), response_flags: flags },
        requests: 0,
        duration: newHist(DURATION_BUCKETS_MS),
        requestBytes: newHist(SIZE_BUCKETS),
        responseBytes: newHist(SIZE_BUCKETS),
      };
      series.set(key, s);
    }
    s.requests++;
    observe(s.duration, DURATION_BUCKETS_MS, r.durationMs);
    observe(s.requestBytes, SIZE_BUCKETS, r.requestBytes ?? 0);
    observe(s.responseBytes, SIZE_BUCKETS, r.responseBytes ?? 0);
  };
}
