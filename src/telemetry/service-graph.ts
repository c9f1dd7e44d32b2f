// The live service graph behind the control plane's /dashboard: the control plane scrapes each
// connected proxy's nodeIP:15020/metrics (and recent denials from nodeIP:15000/debug/denials)
// when someone looks, at most every MIN_SCRAPE_INTERVAL_MS, and turns Istio's metrics into edges
// between workloads. Pull, not push: the proxies stay passive and serve the same endpoint
// Prometheus scrapes, no new protocol is needed, and nothing is spent while nobody watches.
// Rates are the difference between two scrapes divided by the time between them.
// Targets come from controlplane-debug.ts `scrapeTargets`: addresses the control plane knows
// (Node InternalIP, assigned waypoint address), never an address a client put in its node id.
import { tokenOf, type TokenSource } from '../common/token.js';
import { ADMIN_PORT, METRICS_PORT } from '../common/ports.js';
import { httpRequest } from './http-util.js';
import { parsePromText, type Sample } from './prom-text.js';
import type { DenialRecord } from './connection-telemetry.js';

export const MIN_SCRAPE_INTERVAL_MS = 2000;

export interface ScrapeTarget {
  /** Proxy name (node name, or waypoint id). */
  name: string;
  ip: string;
  /** A node proxy, whose admin endpoint has /debug/denials (waypoints have none). */
  nodeAdmin?: boolean;
}

/** Cumulative totals of one edge (source workload → destination workload). */
export interface EdgeTotals {
  source: string;
  destination: string;
  service: string;
  connectionsOpened: number;
  connectionsClosed: number;
  /** Closed with a response flag other than "-" (DENY, CONNECT, ...). */
  connectionErrors: number;
  denied: number;
  bytes: number;
  requests: number;
  requestErrors: number;
  mtls: boolean;
}

export interface GraphEdge extends EdgeTotals {
  connectionsPerSecond: number;
  bytesPerSecond: number;
  requestsPerSecond: number;
  /** Fraction of closed connections (or requests, for L7 edges) that failed, over the last interval. */
  errorRate: number;
}

export interface GraphNode {
  id: string;
  namespace: string;
  workload: string;
}

export interface Graph {
  time: string;
  intervalSeconds: number;
  nodes: GraphNode[];
  edges: GraphEdge[];
  denials: (DenialRecord & { node: string })[];
  scrapeErrors: { target: string; error: string }[];
}

const TCP_NAMES = new Set([
  'istio_tcp_connections_opened_total',
  'istio_tcp_connections_closed_total',
  'istio_tcp_sent_bytes_total',
  'istio_tcp_received_bytes_total',
  'istio_requests_total',
]);

const id = (ns: string | undefined, w: string | undefined) => `${ns || 'unknown'}/${w || 'unknown'}`;

/**
 * Edges from samples of every proxy. Each TCP edge is taken from its source reporter (which also
 * sees passthrough and connections refused before reaching the destination); an edge only a
 * destination reports (from a waypoint, or from a client outside the mesh) comes from the
 * destination reporter. L7 comes from the waypoint reporter. Nothing is counted twice.
 */
export function aggregateEdges(samples: Sample[]): Map<string, EdgeTotals> {
  const bySource = new Map<string, EdgeTotals>();
  const byDestination = new Map<string, EdgeTotals>();
  const l7 = new Map<string, EdgeTotals>();
  for (const s of samples) {
    if (!TCP_NAMES.has(s.name)) continue;
    const tcp = s.name.startsWith('istio_tcp_');
    const r = s.labels.reporter;
    if (tcp && r === 'source') addSample(bySource, s);
    else if (tcp && r === 'destination') addSample(byDestination, s);
    else if (!tcp && r === 'waypoint') addSample(l7, s);
  }
  const edges = bySource;
  for (const [key, e] of byDestination) if (!edges.has(key)) edges.set(key, e);
  for (const [key, e] of l7) {
    const l4 = edges.get(key);
    // L4 and L7 between the same workloads: one edge carrying both.
    edges.set(
      key,
      l4
        ? {
            ...l4,
            requests: e.requests,
            requestErrors: e.requestErrors,
            mtls: l4.mtls || e.mtls,
            service: e.service !== 'unknown' ? e.service : l4.service,
          }
        : e,
    );
  }
  return edges;
}

function addSample(edges: Map<string, EdgeTotals>, s: Sample): void {
  const l = s.labels;
  const source = id(l.source_workload_namespace, l.source_workload);
  const destination = id(l.destination_workload_namespace, l.destination_workload);
  const service = l.destination_service ?? 'unknown';
  const key = `${source}|${destination}`;
  let e = edges.get(key);
  if (!e) {
    e = {
      source,
      destination,
      service,
      connectionsOpened: 0,
      connectionsClosed: 0,
      connectionErrors: 0,
      denied: 0,
      bytes: 0,
      requests: 0,
      requestErrors: 0,
      mtls: false,
    };
    edges.set(key, e);
  }
  if (service !== 'unknown') e.service = service;
  if (l.connection_security_policy === 'mutual_tls') e.mtls = true;
  switch (s.name) {
    case 'istio_tcp_connections_opened_total':
      e.connectionsOpened += s.value;
      break;
    case 'istio_tcp_connections_closed_total':
      e.connectionsClosed += s.value;
      if (l.response_flags && l.response_flags !== '-') e.connectionErrors += s.value;
      if (l.response_flags === 'DENY') e.denied += s.value;
      break;
    case 'istio_tcp_sent_bytes_total':
    case 'istio_tcp_received_bytes_total':
      e.bytes += s.value;
      break;
    case 'istio_requests_total':
      e.requests += s.value;
      if (Number(l.response_code) >= 500 || l.response_code === '0') e.requestErrors += s.value;
      break;
  }
}

/** Rates between two aggregations `seconds` apart (totals alone when there is no previous one). */
export function graphOf(
  current: Map<string, EdgeTotals>,
  previous: Map<string, EdgeTotals> | undefined,
  seconds: number,
): { nodes: GraphNode[]; edges: GraphEdge[] } {
  const nodes = new Map<string, GraphNode>();
  const edges: GraphEdge[] = [];
  for (const [key, e] of current) {
    const p = previous?.get(key);
    const d = (a: number, b: number | undefined) => Math.max(0, a - (b ?? 0));
    const per = (x: number) => (p && seconds > 0 ? x / seconds : 0);
    const closed = p ? d(e.connectionsClosed, p.connectionsClosed) : e.connectionsClosed;
    const errors = p ? d(e.connectionErrors, p.connectionErrors) : e.connectionErrors;
    const reqs = p ? d(e.requests, p.requests) : e.requests;
    const reqErrors = p ? d(e.requestErrors, p.requestErrors) : e.requestErrors;
    const errorRate = e.requests > 0 ? (reqs > 0 ? reqErrors / reqs : 0) : closed > 0 ? errors / closed : 0;
    edges.push({
      ...e,
      connectionsPerSecond: per(d(e.connectionsOpened, p?.connectionsOpened)),
      bytesPerSecond: per(d(e.bytes, p?.bytes)),
      requestsPerSecond: per(reqs),
      errorRate,
    });
    for (const n of [e.source, e.destination]) {
      const [namespace = 'unknown', workload = 'unknown'] = n.split('/');
      nodes.set(n, { id: n, namespace, workload });
    }
  }
  edges.sort((a, b) => `${a.source}|${a.destination}`.localeCompare(`${b.source}|${b.destination}`));
  return { nodes: [...nodes.values()].sort((a, b) => a.id.localeCompare(b.id)), edges };
}

export class ServiceGraph {
  private previous?: { at: number; edges: Map<string, EdgeTotals> };
  private last?: { at: number; graph: Graph };
  private inflight?: Promise<Graph>;

  constructor(
    private readonly targets: () => ScrapeTarget[],
    private readonly ports = { metrics: METRICS_PORT, admin: ADMIN_PORT },
    /** Admin token for nodes' /debug/denials; without one the graph shows no denials. */
    private readonly adminToken?: TokenSource,
  ) {}

  /** The graph, scraping again when the last scrape is older than MIN_SCRAPE_INTERVAL_MS. */
  snapshot(): Promise<Graph> {
    if (this.last && Date.now() - this.last.at < MIN_SCRAPE_INTERVAL_MS)
      return Promise.resolve(this.last.graph);
    this.inflight ??= this.scrape().finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  private async scrape(): Promise<Graph> {
    const at = Date.now();
    const samples: Sample[] = [];
    const denials: Graph['denials'] = [];
    const scrapeErrors: Graph['scrapeErrors'] = [];
    await Promise.all(
      this.targets().map(async (t) => {
        try {
          const r = await httpRequest(`http://${t.ip}:${this.ports.metrics}/metrics`, { timeoutMs: 2000 });
          if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`);
          samples.push(...parsePromText(r.body, (n) => TCP_NAMES.has(n)));
        } catch (err) {
          scrapeErrors.push({ target: t.name, error: (err as Error).message });
        }
        if (!t.nodeAdmin || this.adminToken === undefined) return;
        try {
          const r = await httpRequest(`http://${t.ip}:${this.ports.admin}/debug/denials`, {
            timeoutMs: 2000,
            headers: { authorization: `Bearer ${tokenOf(this.adminToken)}` },
          });
          if (r.status !== 200) throw new Error(`/debug/denials answered ${r.status}`);
          const d = JSON.parse(r.body) as { denials: DenialRecord[] };
          denials.push(...d.denials.map((x) => ({ ...x, node: t.name })));
        } catch (err) {
          scrapeErrors.push({ target: `${t.name} denials`, error: (err as Error).message });
        }
      }),
    );
    const edges = aggregateEdges(samples);
    const prev = this.previous;
    const seconds = prev ? (at - prev.at) / 1000 : 0;
    const g = graphOf(edges, prev?.edges, seconds);
    this.previous = { at, edges };
    denials.sort((a, b) => a.time.localeCompare(b.time));
    const graph: Graph = {
      time: new Date(at).toISOString(),
      intervalSeconds: seconds,
      ...g,
      denials: denials.slice(-50),
      scrapeErrors,
    };
    this.last = { at, graph };
    return graph;
  }
}
