import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { ControlPlaneMetrics, shortTypeName } from '../../../src/telemetry/controlplane-metrics.js';
import {
  debugAccess,
  nodeInternalIp,
  parseNodeId,
  scrapeTargets,
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
    nodeAddress: (n) => (n === 'node-1' ? '127.0.1.1' : undefined),
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

describe('addresses the control plane contacts (the graph scraper SSRF, issue 12 item 7)', () => {
  const conn = (nodeId: string, nodeName: string) => ({
    nodeId,
    nodeName,
    connectedAt: new Date(0),
    types: [],
  });
  const source = (connections: ReturnType<typeof conn>[]): ControlPlaneDebugSource => ({
    index: () => undefined,
    rootCertPem: () => undefined,
    connections: () => connections,
    nodeAddress: (n) => ({ 'node-1': '127.0.1.1', 'node-2': '127.0.1.2' })[n],
    waypointAddresses: () => ['127.0.200.1'],
  });

  it('scrapes a node at its Node InternalIP, whatever IP its node id names', () => {
    const s = source([
      conn('ambit~169.254.169.254~node-1~cluster.local', 'node-1'),
      conn('ambit~127.0.1.2~node-2~cluster.local', 'node-2'),
      // a token for a node without a Node object: nothing known, nothing contacted
      conn('ambit~10.9.9.9~ghost~cluster.local', 'ghost'),
    ]);
    expect(scrapeTargets(s)).toEqual([
      { name: 'node-1', ip: '127.0.1.1', nodeAdmin: true },
      { name: 'node-2', ip: '127.0.1.2', nodeAdmin: true },
    ]);
    expect(syncz(s).find((x) => x.proxy === 'node-1')).toMatchObject({
      ip: '127.0.1.1',
      claimedIp: '169.254.169.254',
    });
    expect(syncz(s).find((x) => x.proxy === 'ghost')?.ip).toBeUndefined();
  });

  it('scrapes a waypoint only at an address the control plane assigned, and never its admin', () => {
    const s = source([
      conn('waypoint~127.0.200.1~wp.demo~cluster.local', 'node-1'),
      conn('waypoint~10.0.0.99~evil.demo~cluster.local', 'node-1'),
      conn('something~127.0.1.2~x~y', 'node-2'),
    ]);
    expect(scrapeTargets(s)).toEqual([{ name: 'node-1', ip: '127.0.200.1', nodeAdmin: false }]);
  });

  it("reads a Node's InternalIP (else its first address), never a name", () => {
    const objects = new Map<string, unknown>([
      [
        'Node/a',
        {
          status: {
            addresses: [
              { type: 'Hostname', address: 'a' },
              { type: 'InternalIP', address: '10.0.0.1' },
            ],
          },
        },
      ],
      ['Node/b', { status: { addresses: [{ type: 'ExternalIP', address: '192.0.2.1' }] } }],
      ['Node/c', { status: { addresses: [{ type: 'Hostname', address: 'evil.example' }] } }],
    ]);
    expect(nodeInternalIp(objects, 'a')).toBe('10.0.0.1');
    expect(nodeInternalIp(objects, 'b')).toBe('192.0.2.1');
    expect(nodeInternalIp(objects, 'c')).toBeUndefined();
    expect(nodeInternalIp(objects, 'missing')).toBeUndefined();
  });

  it('classes every /debug path as read; only metrics and the static page are open', () => {
    expect(['/metrics', '/stats/prometheus', '/', '/dashboard'].map(debugAccess)).toEqual([
      'open',
      'open',
      'open',
      'open',
    ]);
    expect(['/debug/graph', '/debug/syncz', '/debug/anything', '/nope'].map(debugAccess)).toEqual([
      'read',
      'read',
      'read',
      'read',
    ]);
  });
});
