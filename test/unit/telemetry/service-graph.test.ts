import { describe, expect, it } from 'vitest';
import { parsePromText } from '../../../src/telemetry/prom-text.js';
import { aggregateEdges, graphOf } from '../../../src/telemetry/service-graph.js';

const line = (name: string, labels: Record<string, string>, v: number) =>
  `${name}{${Object.entries(labels)
    .map(([k, x]) => `${k}="${x}"`)
    .join(',')}} ${v}`;
const base = {
  reporter: 'source',
  source_workload: 'sleep',
  source_workload_namespace: 'demo',
  destination_workload: 'echo-v1',
  destination_workload_namespace: 'demo',
  destination_service: 'echo.demo.svc.cluster.local',
  connection_security_policy: 'mutual_tls',
  response_flags: '-',
};

function scrape(opened: number, closedOk: number, denied: number, bytes: number) {
  return [
    '# HELP istio_tcp_connections_opened_total x',
    line('istio_tcp_connections_opened_total', base, opened),
    line('istio_tcp_connections_closed_total', base, closedOk),
    line('istio_tcp_connections_closed_total', { ...base, response_flags: 'DENY' }, denied),
    line('istio_tcp_received_bytes_total', base, bytes),
    line('istio_tcp_sent_bytes_total', base, bytes),
    // the destination reporter's copy of the same traffic is not counted twice
    line('istio_tcp_received_bytes_total', { ...base, reporter: 'destination' }, bytes),
  ].join('\n');
}

describe('parsePromText', () => {
  it('reads names, escaped label values and values', () => {
    const s = parsePromText('a_total{x="q\\"uote",y="back\\\\slash"} 3\n# c\nb 4.5\nbad{x=1} 2\n');
    expect(s).toEqual([
      { name: 'a_total', labels: { x: 'q"uote', y: 'back\\slash' }, value: 3 },
      { name: 'b', labels: {}, value: 4.5 },
    ]);
  });
});

describe('service graph', () => {
  it('turns source-reported TCP metrics into one edge with rates, error rate and mTLS', () => {
    const first = aggregateEdges(parsePromText(scrape(10, 8, 2, 1000)));
    const second = aggregateEdges(parsePromText(scrape(30, 24, 6, 5000)));
    const g = graphOf(second, first, 2);
    expect(g.nodes.map((n) => n.id)).toEqual(['demo/echo-v1', 'demo/sleep']);
    expect(g.edges).toHaveLength(1);
    const e = g.edges[0]!;
    expect(e).toMatchObject({
      source: 'demo/sleep',
      destination: 'demo/echo-v1',
      service: 'echo.demo.svc.cluster.local',
      mtls: true,
      connectionsOpened: 30,
      denied: 6,
      bytes: 10000,
      connectionsPerSecond: 10,
      bytesPerSecond: 4000,
    });
    expect(e.errorRate).toBeCloseTo(4 / 20);
  });

  it('uses L7 request counts (reporter waypoint) for request rate and 5xx error rate', () => {
    const l7 = (ok: number, bad: number) =>
      [
        line('istio_requests_total', { ...base, reporter: 'waypoint', response_code: '200' }, ok),
        line('istio_requests_total', { ...base, reporter: 'waypoint', response_code: '503' }, bad),
      ].join('\n');
    const g = graphOf(aggregateEdges(parsePromText(l7(90, 10))), aggregateEdges(parsePromText(l7(40, 0))), 5);
    expect(g.edges[0]).toMatchObject({ requestsPerSecond: 12, requests: 100 });
    expect(g.edges[0]!.errorRate).toBeCloseTo(0.1 / 0.6);
  });

  it('through a waypoint: L4 hops from whichever reporter saw them, once each, plus the L7 edge', () => {
    const wp = { destination_workload: 'waypoint', destination_workload_namespace: 'demo' };
    const text = [
      // sleep → waypoint, reported by both node proxies: counted once (source)
      line('istio_tcp_connections_opened_total', { ...base, ...wp }, 3),
      line('istio_tcp_connections_opened_total', { ...base, ...wp, reporter: 'destination' }, 3),
      // waypoint → echo-v1: the waypoint originates HBONE itself, only the destination reports it
      line(
        'istio_tcp_connections_opened_total',
        { ...base, reporter: 'destination', source_workload: 'waypoint' },
        2,
      ),
      // the requests, end to end, from the waypoint
      line('istio_requests_total', { ...base, reporter: 'waypoint', response_code: '200' }, 7),
    ].join('\n');
    const edges = [...aggregateEdges(parsePromText(text)).values()];
    const get = (src: string, dst: string) => edges.find((e) => e.source === src && e.destination === dst);
    expect(edges).toHaveLength(3);
    expect(get('demo/sleep', 'demo/waypoint')?.connectionsOpened).toBe(3);
    expect(get('demo/waypoint', 'demo/echo-v1')?.connectionsOpened).toBe(2);
    expect(get('demo/sleep', 'demo/echo-v1')?.requests).toBe(7);
  });
});
