import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import {
  createRequestMetrics,
  responseFlagsOf,
  type RequestMetricsRecord,
} from '../../../src/telemetry/request-metrics.js';
import { parsePromText } from '../../../src/telemetry/prom-text.js';
import { SLEEP_TO_ECHO_LABELS } from '../../support/istio-labels.js';

const record = (over: Partial<RequestMetricsRecord> = {}): RequestMetricsRecord => ({
  protocol: 'http1',
  source: { identity: 'spiffe://cluster.local/ns/demo/sa/sleep', workload: 'sleep', namespace: 'demo' },
  destination: {
    service: 'echo.demo.svc.cluster.local',
    workload: 'echo-v1',
    namespace: 'demo',
    identity: 'spiffe://cluster.local/ns/demo/sa/echo',
  },
  status: 200,
  durationMs: 12,
  requestBytes: 100,
  responseBytes: 2048,
  ...over,
});

describe('createRequestMetrics', () => {
  it("counts each request once with Istio's labels, reporter waypoint", async () => {
    const reg = new Registry();
    const meta = (ns: string, name: string) =>
      name === 'echo-v1' ? { canonicalName: 'echo', canonicalRevision: 'v1' } : { canonicalName: name };
    const onRequest = createRequestMetrics(reg, meta);
    onRequest(record());
    onRequest(record());
    onRequest(record({ status: 503, reason: 'upstream connect error or disconnect/reset before headers' }));
    onRequest(record({ protocol: 'grpc', status: 200, grpcStatus: 14 }));
    const text = await reg.metrics();
    const total = parsePromText(text, (n) => n === 'istio_requests_total');
    const ok = total.find((s) => s.labels.response_code === '200' && s.labels.request_protocol === 'http');
    expect(ok?.value).toBe(2);
    expect(ok?.labels).toMatchObject({
      ...SLEEP_TO_ECHO_LABELS,
      reporter: 'waypoint',
      grpc_response_status: '',
    });
    expect(total.find((s) => s.labels.response_code === '503')?.labels.response_flags).toBe('UF');
    expect(total.find((s) => s.labels.request_protocol === 'grpc')?.labels.grpc_response_status).toBe('14');
    expect(total.reduce((n, s) => n + s.value, 0)).toBe(4);

    const durCount = parsePromText(text, (n) => n === 'istio_request_duration_milliseconds_count');
    expect(durCount.reduce((n, s) => n + s.value, 0)).toBe(4);
    const durSum = parsePromText(text, (n) => n === 'istio_request_duration_milliseconds_sum');
    expect(durSum.reduce((n, s) => n + s.value, 0)).toBe(48);
    const respSum = parsePromText(text, (n) => n === 'istio_response_bytes_sum');
    expect(respSum.reduce((n, s) => n + s.value, 0)).toBe(4 * 2048);
    const reqSum = parsePromText(text, (n) => n === 'istio_request_bytes_sum');
    expect(reqSum.reduce((n, s) => n + s.value, 0)).toBe(400);
  });

  it('says unknown for a source outside the mesh', async () => {
    const reg = new Registry();
    createRequestMetrics(reg)(record({ source: { identity: '' } }));
    const [s] = parsePromText(await reg.metrics(), (n) => n === 'istio_requests_total');
    expect(s?.labels.source_workload).toBe('unknown');
    expect(s?.labels.source_principal).toBe('unknown');
  });
});

describe('responseFlagsOf', () => {
  it.each([
    [200, undefined, '-'],
    [0, undefined, 'DC'],
    [0, 'downstream went away', 'DC'],
    [403, 'RBAC: access denied by policy demo/x', 'RBAC'],
    [401, 'JWT missing', 'UAEX'],
    [503, 'upstream overflow: pending request cancelled', 'UO'],
    [504, 'upstream request timeout', 'UT'],
    [503, 'no healthy upstream', 'UH'],
    [503, 'upstream connect error or disconnect/reset before headers', 'UF'],
    [429, 'local rate limited', 'RL'],
    [500, 'fault filter abort', 'FI'],
  ])('%s %s → %s', (status, reason, flag) => {
    expect(responseFlagsOf(status, reason)).toBe(flag);
  });
});
