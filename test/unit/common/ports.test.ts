// The mesh's fixed ports (src/common/ports.ts): Istio's numbers (istio.io "Ports used by Istio";
// ztunnel's config.rs listeners), and the invariant that keeps a tunnel from reaching a proxy:
// every port a proxy listens on is in MESH_PORTS (ztunnel's `illegal_ports`: "internal ports
// that clients are not authorized to send to"), so a port added to ports.ts for a proxy listener
// and forgotten there fails here.
import { describe, expect, it } from 'vitest';
import * as ports from '../../../src/common/ports.js';

/** Ports served by the control plane, not by a proxy: a tunnel to them is an ordinary destination. */
const CONTROL_PLANE_PORTS = new Set([ports.CONTROL_PLANE_PORT, ports.CONTROL_PLANE_DEBUG_PORT]);

describe('common/ports', () => {
  it.each([
    ['ADMIN_PORT', 15000],
    ['OUTBOUND_CAPTURE_PORT', 15001],
    ['INBOUND_CAPTURE_PORT', 15006],
    ['HBONE_PORT', 15008],
    ['CONTROL_PLANE_PORT', 15012],
    ['CONTROL_PLANE_DEBUG_PORT', 15014],
    ['METRICS_PORT', 15020],
    ['READINESS_PORT', 15021],
    ['DNS_PROXY_PORT', 15053],
    ['SOCKS5_PORT', 15080],
    ['ENVOY_PROMETHEUS_PORT', 15090],
  ])('%s is Istio’s %i', (name, value) => {
    expect((ports as Record<string, unknown>)[name]).toBe(value);
  });

  it('puts every proxy port in MESH_PORTS, and nothing else', () => {
    const proxyPorts = Object.entries(ports)
      .filter(([name, v]) => name.endsWith('_PORT') && typeof v === 'number')
      .map(([, v]) => v as number)
      .filter((p) => !CONTROL_PLANE_PORTS.has(p));
    expect([...ports.MESH_PORTS].sort()).toEqual([...new Set(proxyPorts)].sort());
    expect(ports.FORBIDDEN_TARGET_PORTS).toBe(ports.MESH_PORTS);
  });

  it('loops only through proxy ports', () => {
    for (const p of ports.LOOP_PORTS) expect(ports.MESH_PORTS.has(p)).toBe(true);
  });

  it('builds the default control plane addresses from the ports', () => {
    expect(ports.DEFAULT_CONTROL_PLANE_ADDR).toBe('127.0.0.1:15012');
    expect(ports.DEFAULT_CONTROL_PLANE_DEBUG_ADDR).toBe('127.0.0.1:15014');
  });
});
