import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { ControlPlaneMetrics, shortTypeName } from '../../../src/telemetry/controlplane-metrics.js';
import {
  parseNodeId,
  syncz,
  type ControlPlaneDebugSource,
} from '../../../src/telemetry/controlplane-debug.js';
import { parsePromText } from '../../../src/telemetry/prom-text.js';

const ADDR = 'type.googleapis.com/istio.workload.Address';
const AUTHZ = 'type.googleapis.com/istio.security.Authorization';

describe('control plane metrics', () => {
  it("uses istiod's names: pushes by type, convergence, connected proxies, CSRs, root expiry", async () => {
    const reg = new Registry();
    const rootNotAfter = new Date(Date.now() + 10 * 365 * 86400_000);
    const m = new ControlPlaneMetrics(reg, {
      connectedProxies: () => 3,
      rootCertNotAfter: () => rootNotAfter,
    });
    m.pushed(ADDR, 1000, 900, 1010);
    m.pushed(AUTHZ, 1000, undefined, 1001);
    m.csrReceived();
    m.csrReceived();
    m.certIssued();
    m.csrRefused('permission_denied');
    const s = parsePromText(await reg.metrics());
    const v = (name: string, labels: Record<string, string> = {}) =>
      s.find((x) => x.name === name && Object.entries(labels).every(([k, y]) => x.labels[k] === y))?.value;
    expect(v('pilot_xds')).toBe(3);
    expect(v('pilot_xds_pushes', { type: 'wds' })).toBe(1);
    expect(v('pilot_xds_pushes', { type: 'wads' })).toBe(1);
    expect(v('pilot_proxy_convergence_time_count')).toBe(1);
    expect(v('pilot_proxy_convergence_time_sum')).toBeCloseTo(0.11);
    expect(v('citadel_server_csr_count')).toBe(2);
    expect(v('citadel_server_success_cert_issuance_count')).toBe(1);
    expect(v('ambit_ca_csr_refused_total', { reason: 'permission_denied' })).toBe(1);
    expect(v('citadel_server_root_cert_expiry_timestamp')).toBe(Math.floor(rootNotAfter.getTime() / 1000));
    expect(shortTypeName(ADDR)).toBe('wds');
  });
});

describe('syncz', () => {
  const source = (
    types: { lastSentNonce: string; lastAckedNonce: string; lastNack?: string }[],
  ): ControlPlaneDebugSource => ({
    index: () => undefined,
    rootCertPem: () => undefined,
    connections: () => [
      {
        nodeId: 'ambit~127.0.1.1~node-1~cluster.local',
        nodeName: 'node-1',
        connectedAt: new Date(0),
        types: types.map((t, i) => ({ typeUrl: i === 0 ? ADDR : AUTHZ, resourceCount: 4, ...t })),
      },
    ],
  });

  it.each([
    [
      [
        { lastSentNonce: 'a', lastAckedNonce: 'a' },
        { lastSentNonce: 'b', lastAckedNonce: 'b' },
      ],
      'SYNCED',
    ],
    [
      [
        { lastSentNonce: 'c', lastAckedNonce: 'a' },
        { lastSentNonce: 'b', lastAckedNonce: 'b' },
      ],
      'STALE',
    ],
    [
      [
        { lastSentNonce: 'c', lastAckedNonce: 'a', lastNack: 'bad' },
        { lastSentNonce: 'b', lastAckedNonce: 'b' },
      ],
      'NACKED',
    ],
  ] as const)('compares nonce sent and acked per type (%#)', (types, status) => {
    const [e] = syncz(source([...types]));
    expect(e).toMatchObject({ proxy: 'node-1', kind: 'node', ip: '127.0.1.1', status });
  });

  it('reads the proxy kind and IP from Istio-style node ids', () => {
    expect(parseNodeId('waypoint~127.0.200.1~wp.demo~cluster.local')).toEqual({
      kind: 'waypoint',
      ip: '127.0.200.1',
    });
    expect(parseNodeId('ambit-explain~0.0.0.0~x~explain').ip).toBeUndefined();
  });
});
