import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { L4Metrics, tcpLabels, TCP_LABELS, type ConnectionOpen } from '../../../src/telemetry/metrics.js';
import { parsePromText } from '../../../src/telemetry/prom-text.js';
import { SLEEP_TO_ECHO_LABELS } from '../../support/istio-labels.js';

const sleep = {
  workloadName: 'sleep',
  name: 'sleep',
  namespace: 'demo',
  canonicalName: 'sleep',
  canonicalRevision: 'latest',
  clusterId: 'Kubernetes',
};
const echo = {
  ...sleep,
  workloadName: 'echo-v1',
  name: 'echo-v1',
  canonicalName: 'echo',
  canonicalRevision: 'v1',
};
const open: ConnectionOpen = {
  reporter: 'source',
  source: sleep,
  sourcePrincipal: 'spiffe://cluster.local/ns/demo/sa/sleep',
  destination: echo,
  destinationPrincipal: 'spiffe://cluster.local/ns/demo/sa/echo',
  destinationService: { hostname: 'echo.demo.svc.cluster.local', name: 'echo', namespace: 'demo' },
  securityPolicy: 'mutual_tls',
};

async function samples(reg: Registry, name: string) {
  return parsePromText(await reg.metrics(), (n) => n === name);
}

describe('tcpLabels', () => {
  it("fills Istio's standard label set, app/version from the canonical name and revision", () => {
    const l = tcpLabels(open);
    expect(Object.keys(l)).toEqual([...TCP_LABELS]);
    expect(l).toMatchObject({
      ...SLEEP_TO_ECHO_LABELS,
      reporter: 'source',
      source_version: 'latest',
      request_protocol: 'tcp',
    });
  });

  it('says unknown for what is not known (passthrough to outside the mesh)', () => {
    const l = tcpLabels({ reporter: 'source', source: sleep, securityPolicy: 'unknown' });
    expect(l.destination_workload).toBe('unknown');
    expect(l.destination_principal).toBe('unknown');
    expect(l.source_principal).toBe('unknown');
    expect(l.connection_security_policy).toBe('unknown');
  });
});

describe('L4Metrics', () => {
  it('counts bytes exactly: at each scrape what moved since the last one, the rest at close', async () => {
    const reg = new Registry();
    const m = new L4Metrics(reg);
    const bytes = { received: 0, sent: 0 };
    const c = m.connectionOpened(open);
    c.trackBytes(() => ({ ...bytes }));
    bytes.received = 1000;
    bytes.sent = 10;
    // A long-lived connection shows up while open.
    expect((await samples(reg, 'istio_tcp_received_bytes_total'))[0]?.value).toBe(1000);
    expect((await samples(reg, 'istio_tcp_sent_bytes_total'))[0]?.value).toBe(10);
    bytes.received = 1500;
    bytes.sent = 25;
    c.close('-');
    c.close('DENY'); // closed exactly once
    expect((await samples(reg, 'istio_tcp_received_bytes_total'))[0]?.value).toBe(1500);
    expect((await samples(reg, 'istio_tcp_sent_bytes_total'))[0]?.value).toBe(25);
    const closed = await samples(reg, 'istio_tcp_connections_closed_total');
    expect(closed).toHaveLength(1);
    expect(closed[0]).toMatchObject({ value: 1, labels: { response_flags: '-' } });
    expect((await samples(reg, 'istio_tcp_connections_opened_total'))[0]?.value).toBe(1);
  });

  it('closes a denied connection with its flag; opened carries "-"', async () => {
    const reg = new Registry();
    const m = new L4Metrics(reg);
    m.connectionOpened({ ...open, reporter: 'destination' }).close('DENY');
    const [closed] = await samples(reg, 'istio_tcp_connections_closed_total');
    expect(closed?.labels).toMatchObject({ reporter: 'destination', response_flags: 'DENY' });
    const [opened] = await samples(reg, 'istio_tcp_connections_opened_total');
    expect(opened?.labels.response_flags).toBe('-');
    expect(await samples(reg, 'istio_tcp_received_bytes_total')).toEqual([]);
  });

  it('keeps proxies in one process apart: one registry each', async () => {
    const a = new Registry();
    const b = new Registry();
    new L4Metrics(a).connectionOpened(open).close();
    new L4Metrics(b);
    expect((await samples(a, 'istio_tcp_connections_closed_total'))[0]?.value).toBe(1);
    expect(await samples(b, 'istio_tcp_connections_closed_total')).toEqual([]);
  });

  it('aggregates connections with the same labels into one series (bounded cardinality)', async () => {
    const reg = new Registry();
    const m = new L4Metrics(reg);
    for (let i = 0; i < 50; i++) {
      const c = m.connectionOpened(open);
      c.trackBytes(() => ({ received: 3, sent: 4 }));
      c.close();
    }
    const received = await samples(reg, 'istio_tcp_received_bytes_total');
    expect(received).toHaveLength(1);
    expect(received[0]?.value).toBe(150);
  });
});
