// The connection record (proxy/connection-record.ts) finishes exactly once, whatever the handler
// does — as ztunnel's ConnectionResult records on Drop what was never recorded
// (istio/ztunnel src/proxy/metrics.rs `impl Drop for ConnectionResult`). Real metrics (L4Metrics
// on its own registry, read back as Prometheus text) and a real pino logger; the handlers are
// the only made-up part.
import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { captureLogger } from '../../support/capture-logger.js';
import { ConnectionRecord, runRecorded } from '../../../src/proxy/connection-record.js';
import { L4Metrics } from '../../../src/telemetry/metrics.js';
import { AccessLogPolicy, parseAccessLogMode } from '../../../src/telemetry/access-log.js';
import { connectionTelemetry, DenialLog } from '../../../src/telemetry/connection-telemetry.js';
import { parsePromText } from '../../../src/telemetry/prom-text.js';
import { AmbitError } from '../../../src/common/errors.js';
import type { Reporter } from '../../../src/telemetry/metrics.js';

function harness(reporter: Reporter = 'destination', accessLog = 'full') {
  const registry = new Registry();
  const { logger, lines } = captureLogger();
  const telemetry = connectionTelemetry(
    new L4Metrics(registry),
    new AccessLogPolicy(parseAccessLogMode(accessLog)),
    new DenialLog(),
  );
  const record = new ConnectionRecord(logger, telemetry, {
    src: { addr: '127.0.232.10:40000', identity: 'spiffe://cluster.local/ns/demo/sa/sleep' },
    dst: { addr: '127.0.232.11:8080', workload: { name: 'echo', namespace: 'demo' } },
    open: {
      reporter,
      source: { name: 'sleep', namespace: 'demo' },
      sourcePrincipal: 'spiffe://cluster.local/ns/demo/sa/sleep',
      destination: { name: 'echo', namespace: 'demo' },
      securityPolicy: 'mutual_tls',
    },
  });
  const metrics = async () => parsePromText(await registry.metrics(), (n) => n.startsWith('istio_tcp_'));
  const sum = async (name: string, flag?: string) =>
    (await metrics())
      .filter((s) => s.name === name && (flag === undefined || s.labels.response_flags === flag))
      .reduce((a, s) => a + s.value, 0);
  const accessLines = () =>
    lines.filter((l) => typeof l.msg === 'string' && /^connection /.test(l.msg as string));
  return { record, lines, accessLines, sum };
}

describe('connection record', () => {
  it('a handler that throws after the connection was counted yields one access line and one closed metric', async () => {
    const h = harness();
    let cleaned = 0;
    await runRecorded(
      h.record,
      async () => {
        h.record.count();
        throw new Error('boom in the handler');
      },
      () => cleaned++,
    );
    expect(h.accessLines()).toHaveLength(1);
    expect(h.accessLines()[0]).toMatchObject({
      msg: 'connection failed',
      level: 40,
      error: 'boom in the handler',
      response_flags: 'CONNECT',
      'src.addr': '127.0.232.10:40000',
      'dst.workload': 'echo',
      'dst.namespace': 'demo',
    });
    expect(await h.sum('istio_tcp_connections_opened_total')).toBe(1);
    expect(await h.sum('istio_tcp_connections_closed_total', 'CONNECT')).toBe(1);
    expect(cleaned).toBe(1);
    expect(h.record.outcome).toBe('unfinished');
  });

  it('a handler that throws before counting is still counted once, opened and closed', async () => {
    const h = harness();
    await runRecorded(h.record, async () => {
      throw new AmbitError('HBONE_TLS_FAILURE', 'handshake failed');
    });
    expect(h.accessLines()).toHaveLength(1);
    expect(h.accessLines()[0]).toMatchObject({ response_flags: 'TLS_FAILURE', error: 'handshake failed' });
    expect(await h.sum('istio_tcp_connections_opened_total')).toBe(1);
    expect(await h.sum('istio_tcp_connections_closed_total', 'TLS_FAILURE')).toBe(1);
  });

  it('a handler that returns without finishing the record is recorded as an error, once', async () => {
    const h = harness();
    await runRecorded(h.record, async () => h.record.count());
    expect(h.accessLines()).toHaveLength(1);
    expect(String(h.accessLines()[0]!.error)).toMatch(/returned without recording/);
    expect(await h.sum('istio_tcp_connections_closed_total')).toBe(1);
  });

  it('finishes exactly once: a denial followed by a completion writes one line and closes once', async () => {
    const h = harness();
    await runRecorded(h.record, async () => {
      h.record.deny(
        { policy: 'demo/deny-all', ruleIndex: 0, reason: 'DENY policy matched' },
        { status: 401 },
      );
      h.record.complete();
      h.record.fail('CONNECT', 'connection failed');
    });
    expect(h.accessLines()).toHaveLength(1);
    expect(h.accessLines()[0]).toMatchObject({
      msg: 'connection denied by policy',
      policy: 'demo/deny-all',
      'policy.rule': 0,
      response_flags: 'DENY',
      status: 401,
    });
    expect(await h.sum('istio_tcp_connections_opened_total')).toBe(1);
    expect(await h.sum('istio_tcp_connections_closed_total')).toBe(1);
    expect(await h.sum('istio_tcp_connections_closed_total', 'DENY')).toBe(1);
  });

  it('a policy close is the one line; the splice ending afterwards adds nothing', async () => {
    const h = harness();
    h.record.count();
    h.record.trackBytes(() => ({ received: 5, sent: 7 }));
    h.record.closedByPolicy({ policy: 'demo/deny-late', reason: 'DENY policy matched' });
    h.record.complete(new AmbitError('DOWNSTREAM_RESET', 'reset by us'));
    expect(h.accessLines()).toHaveLength(1);
    expect(h.accessLines()[0]).toMatchObject({
      msg: 'connection closed: policy no longer allows it',
      response_flags: 'DENY',
      bytes_sent: 7,
      bytes_recv: 5,
    });
    expect(await h.sum('istio_tcp_connections_closed_total', 'DENY')).toBe(1);
    expect(await h.sum('istio_tcp_received_bytes_total')).toBe(5);
  });

  it('an HTTP tunnel handed off writes no line of its own, but a policy close of it is written', async () => {
    const h = harness('waypoint');
    h.record.handOff();
    h.record.complete();
    expect(h.accessLines()).toHaveLength(0);
    h.record.closedByPolicy({ policy: null, reason: 'no ALLOW policy matched' });
    expect(h.accessLines()).toHaveLength(1);
    expect(h.accessLines()[0]).toMatchObject({ policy: null, response_flags: 'DENY' });
    expect(await h.sum('istio_tcp_connections_opened_total')).toBe(0);
  });

  it('an error escaping the HTTP path after the hand-off is written once, not counted as TCP', async () => {
    const h = harness('waypoint');
    await runRecorded(h.record, async () => {
      h.record.handOff();
      throw new Error('http front failed');
    });
    expect(h.accessLines()).toHaveLength(1);
    expect(h.accessLines()[0]).toMatchObject({ msg: 'connection failed', error: 'http front failed' });
    expect(await h.sum('istio_tcp_connections_opened_total')).toBe(0);
  });

  it('logs bytes from its own point of view: the source reporter sent what the client sent', async () => {
    for (const [reporter, sent, recv] of [
      ['source', 100, 3],
      ['destination', 3, 100],
      ['waypoint', 3, 100],
    ] as const) {
      const h = harness(reporter);
      h.record.count();
      h.record.trackBytes(() => ({ received: 100, sent: 3 }));
      h.record.complete();
      expect(h.accessLines()[0], reporter).toMatchObject({ bytes_sent: sent, bytes_recv: recv });
    }
  });

  it('a clean completion follows the access-log mode; a broken one is always written', async () => {
    const off = harness('destination', 'off');
    off.record.count();
    off.record.complete();
    expect(off.accessLines()).toHaveLength(0);
    expect(await off.sum('istio_tcp_connections_closed_total', '-')).toBe(1);
    const broken = harness('destination', 'off');
    broken.record.count();
    broken.record.complete(new AmbitError('UPSTREAM_RESET', 'app reset'));
    expect(broken.accessLines()).toHaveLength(1);
    expect(broken.accessLines()[0]).toMatchObject({ response_flags: 'UC', level: 40 });
  });
});
