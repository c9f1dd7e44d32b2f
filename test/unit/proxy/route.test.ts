import { describe, expect, it } from 'vitest';
import { ProxyState } from '../../../src/proxy/state.js';
import { buildRoute, resolveServiceName, roundRobin, type EndpointPicker } from '../../../src/proxy/route.js';
import type { Address, Service, Workload } from '../../../src/xds/resources.js';
import type { Ip } from '../../../src/common/addr.js';
import { ECHO_PORTS, testWorkload } from '../../support/workloads.js';

/** A pod behind `echo` (port 80 → 8080), serviceAccount echo. */
function workload(name: string, ip: string, over: Partial<Workload> = {}): Workload {
  return testWorkload(name, ip, { serviceAccount: 'echo', services: ECHO_PORTS, ...over });
}

const echoSvc: Service = {
  name: 'echo',
  namespace: 'demo',
  hostname: 'echo.demo.svc.cluster.local',
  addresses: [{ network: '', address: '127.0.100.1' as Ip }],
  ports: [{ servicePort: 80, targetPort: 8080 }],
  subjectAltNames: [],
};

function stateWith(...ws: Workload[]): ProxyState {
  const s = new ProxyState();
  const m = new Map<string, Address>([['demo/echo.demo.svc.cluster.local', { service: echoSvc }]]);
  for (const w of ws) m.set(w.uid, { workload: w });
  s.applyAddresses(m, []);
  return s;
}

const first: EndpointPicker = (_s, c) => c[0]!;
const target = (host: string, port: number) => ({ host: host as Ip, port });

describe('buildRoute', () => {
  it('sends a service VIP to a healthy endpoint over HBONE with its identity expected', () => {
    const r = buildRoute(target('127.0.100.1', 80), stateWith(workload('echo-v1', '127.0.10.2')), first);
    expect(r).toMatchObject({
      kind: 'hbone',
      hboneAddr: { host: '127.0.10.2', port: 15008 },
      authority: '127.0.10.2:8080',
      expectedIdentity: 'spiffe://cluster.local/ns/demo/sa/echo',
    });
  });

  it('skips unhealthy endpoints', () => {
    const s = stateWith(workload('a', '127.0.10.2', { status: 'UNHEALTHY' }), workload('b', '127.0.10.3'));
    const r = buildRoute(target('127.0.100.1', 80), s, first);
    expect(r).toMatchObject({ kind: 'hbone', authority: '127.0.10.3:8080' });
  });

  it('rejects a service with no healthy endpoint', () => {
    const r = buildRoute(
      target('127.0.100.1', 80),
      stateWith(workload('a', '127.0.10.2', { status: 'UNHEALTHY' })),
      first,
    );
    expect(r).toMatchObject({ kind: 'reject', code: 'ROUTE_NO_ENDPOINT' });
  });

  it('rejects a service port the service does not declare', () => {
    const r = buildRoute(target('127.0.100.1', 81), stateWith(workload('a', '127.0.10.2')), first);
    expect(r).toMatchObject({ kind: 'reject', code: 'ROUTE_NO_ENDPOINT' });
  });

  it('uses the per-pod target port when the workload carries one (named ports)', () => {
    const w = workload('a', '127.0.10.2', {
      services: { 'demo/echo.demo.svc.cluster.local': [{ servicePort: 80, targetPort: 9090 }] },
    });
    expect(buildRoute(target('127.0.100.1', 80), stateWith(w), first)).toMatchObject({
      authority: '127.0.10.2:9090',
    });
  });

  it('tunnels a pod IP in the mesh directly to that pod on the same port', () => {
    const r = buildRoute(target('127.0.10.2', 9000), stateWith(workload('a', '127.0.10.2')), first);
    expect(r).toMatchObject({
      kind: 'hbone',
      authority: '127.0.10.2:9000',
      hboneAddr: { host: '127.0.10.2', port: 15008 },
    });
  });

  it('passes a workload outside the mesh through as plain TCP', () => {
    const r = buildRoute(
      target('127.0.10.4', 8080),
      stateWith(workload('plain', '127.0.10.4', { tunnelProtocol: 'NONE' })),
      first,
    );
    expect(r).toMatchObject({ kind: 'passthrough', addr: { host: '127.0.10.4', port: 8080 } });
  });

  it('passes an unknown IP through', () => {
    expect(buildRoute(target('127.9.9.9', 80), stateWith(), first)).toEqual({
      kind: 'passthrough',
      addr: target('127.9.9.9', 80),
    });
  });

  it.each([15001, 15006, 15008])('refuses proxy port %d as a destination', (port) => {
    expect(
      buildRoute(target('127.0.10.2', port), stateWith(workload('a', '127.0.10.2')), first),
    ).toMatchObject({ kind: 'reject' });
  });

  // Issue 12 item 6: no mesh port is a destination on any address the mesh knows or on loopback
  // (ztunnel outbound.rs: loopback + illegal_ports → SelfCall); outside addresses keep them.
  it.each([
    ['a pod IP', '10.0.0.2', 15080, 'reject'],
    ['a pod IP', '10.0.0.2', 15000, 'reject'],
    ['a pod IP', '10.0.0.2', 15090, 'reject'],
    ['the service VIP', '127.0.100.1', 15021, 'reject'],
    ['loopback', '127.0.0.1', 15000, 'reject'],
    ['an unknown loopback address', '127.9.9.9', 15020, 'reject'],
    ['an outside address', '192.0.2.7', 15000, 'passthrough'],
    ['an outside address, a loop port', '192.0.2.7', 15008, 'reject'],
    ['an outside address, an app port', '192.0.2.7', 8080, 'passthrough'],
  ])('%s %s:%d → %s', (_what, host, port, kind) => {
    const r = buildRoute(target(host, port), stateWith(workload('a', '10.0.0.2')), first);
    expect(r.kind).toBe(kind);
    if (r.kind === 'reject') expect(r.code).toBe('ROUTE_FORBIDDEN_PORT');
  });

  it('round robin alternates between endpoints', () => {
    const s = stateWith(workload('a', '127.0.10.2'), workload('b', '127.0.10.3'));
    const rr = roundRobin();
    const picks = [1, 2, 3, 4].map(() => {
      const r = buildRoute(target('127.0.100.1', 80), s, rr);
      return r.kind === 'hbone' ? r.endpoint.name : r.kind;
    });
    expect(picks).toEqual(['a', 'b', 'a', 'b']);
  });
});

describe('resolveServiceName', () => {
  const s = stateWith();
  it.each([
    ['echo.demo.svc.cluster.local', 'demo'],
    ['echo.demo.svc', 'other'],
    ['echo.demo', 'other'],
    ['echo', 'demo'],
    ['ECHO.Demo', 'other'],
    ['echo.demo.svc.cluster.local.', 'other'],
  ])('resolves %s from namespace %s', (name, ns) => {
    expect(resolveServiceName(name, ns, s)?.hostname).toBe('echo.demo.svc.cluster.local');
  });

  it.each([
    ['echo', 'other'],
    ['nope.demo', 'demo'],
    ['echo.other', 'demo'],
  ])('does not resolve %s from namespace %s', (name, ns) => {
    expect(resolveServiceName(name, ns, s)).toBeUndefined();
  });
});
