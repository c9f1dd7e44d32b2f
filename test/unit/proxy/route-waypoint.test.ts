import { describe, expect, it } from 'vitest';
import { ProxyState } from '../../../src/proxy/state.js';
import { buildRoute, type EndpointPicker } from '../../../src/proxy/route.js';
import type { Address, GatewayAddress, Service, Workload } from '../../../src/xds/resources.js';
import type { Ip } from '../../../src/common/addr.js';
import { ECHO_PORTS, testWorkload } from '../../support/workloads.js';

const WP: GatewayAddress = { network: '', ip: '127.0.9.200' as Ip, hboneMtlsPort: 15008 };

/** A pod behind `echo` (port 80 → 8080). */
function workload(name: string, ip: string, over: Partial<Workload> = {}): Workload {
  return testWorkload(name, ip, { services: ECHO_PORTS, ...over });
}
const waypoint = workload('wp', '127.0.9.200', {
  uid: 'Kubernetes//Gateway/demo/wp',
  serviceAccount: 'wp',
  nativeTunnel: true,
  services: {},
});
const echoSvc = (wp?: GatewayAddress): Service => ({
  name: 'echo',
  namespace: 'demo',
  hostname: 'echo.demo.svc.cluster.local',
  addresses: [{ network: '', address: '127.0.100.1' as Ip }],
  ports: [{ servicePort: 80, targetPort: 8080 }],
  subjectAltNames: [],
  ...(wp ? { waypoint: wp } : {}),
});

function state(svc: Service, ...ws: Workload[]): ProxyState {
  const s = new ProxyState();
  const m = new Map<string, Address>([['demo/echo.demo.svc.cluster.local', { service: svc }]]);
  for (const w of ws) m.set(w.uid, { workload: w });
  s.applyAddresses(m, []);
  return s;
}
const first: EndpointPicker = (_s, c) => c[0]!;
const t = (host: string, port: number) => ({ host: host as Ip, port });
const sleep = workload('sleep', '127.0.9.10', { services: {} });
const echo = workload('echo', '127.0.9.11');

describe('buildRoute with waypoints', () => {
  it.each<[string, () => ProxyState, ReturnType<typeof t>, Workload | undefined, Record<string, unknown>]>([
    [
      'service VIP with a waypoint → the waypoint, authority = VIP:port, waypoint identity',
      () => state(echoSvc(WP), echo, waypoint, sleep),
      t('127.0.100.1', 80),
      sleep,
      {
        kind: 'hbone',
        hboneAddr: { host: '127.0.9.200', port: 15008 },
        authority: '127.0.100.1:80',
        expectedIdentity: 'spiffe://cluster.local/ns/demo/sa/wp',
        waypoint: 'service',
      },
    ],
    [
      'service VIP without a waypoint → the endpoint directly',
      () => state(echoSvc(), echo, waypoint, sleep),
      t('127.0.100.1', 80),
      sleep,
      {
        kind: 'hbone',
        authority: '127.0.9.11:8080',
        expectedIdentity: 'spiffe://cluster.local/ns/demo/sa/echo',
      },
    ],
    [
      'the waypoint itself sending to the service → the endpoint (no loop)',
      () => state(echoSvc(WP), echo, waypoint),
      t('127.0.100.1', 80),
      waypoint,
      {
        kind: 'hbone',
        authority: '127.0.9.11:8080',
        expectedIdentity: 'spiffe://cluster.local/ns/demo/sa/echo',
      },
    ],
    [
      'pod IP whose workload has a waypoint → the waypoint, authority = podIP:port',
      () => state(echoSvc(), workload('echo', '127.0.9.11', { waypoint: WP }), waypoint, sleep),
      t('127.0.9.11', 8080),
      sleep,
      {
        kind: 'hbone',
        hboneAddr: { host: '127.0.9.200', port: 15008 },
        authority: '127.0.9.11:8080',
        expectedIdentity: 'spiffe://cluster.local/ns/demo/sa/wp',
        waypoint: 'workload',
      },
    ],
    [
      'service endpoint whose workload has a waypoint → the waypoint, authority = endpoint IP:targetPort',
      () => state(echoSvc(), workload('echo', '127.0.9.11', { waypoint: WP }), waypoint, sleep),
      t('127.0.100.1', 80),
      sleep,
      {
        kind: 'hbone',
        hboneAddr: { host: '127.0.9.200', port: 15008 },
        authority: '127.0.9.11:8080',
        waypoint: 'workload',
      },
    ],
    [
      'the waypoint sending to a pod bound to it → the pod (no loop)',
      () => state(echoSvc(), workload('echo', '127.0.9.11', { waypoint: WP }), waypoint),
      t('127.0.9.11', 8080),
      waypoint,
      {
        kind: 'hbone',
        hboneAddr: { host: '127.0.9.11', port: 15008 },
        authority: '127.0.9.11:8080',
        expectedIdentity: 'spiffe://cluster.local/ns/demo/sa/echo',
      },
    ],
    [
      'a pod outside the mesh never goes to a waypoint',
      () =>
        state(
          echoSvc(),
          workload('echo', '127.0.9.11', { waypoint: WP, tunnelProtocol: 'NONE' }),
          waypoint,
          sleep,
        ),
      t('127.0.9.11', 8080),
      sleep,
      { kind: 'passthrough', addr: { host: '127.0.9.11', port: 8080 } },
    ],
    [
      'a waypoint that is not (yet) a known workload → reject with a reason',
      () => state(echoSvc(WP), echo, sleep),
      t('127.0.100.1', 80),
      sleep,
      { kind: 'reject', code: 'ROUTE_NO_ENDPOINT', reason: expect.stringMatching(/waypoint 127\.0\.9\.200/) },
    ],
    [
      'no source given (explain tools) still goes through the waypoint',
      () => state(echoSvc(WP), echo, waypoint),
      t('127.0.100.1', 80),
      undefined,
      { kind: 'hbone', waypoint: 'service' },
    ],
  ])('%s', (_name, mk, target, source, want) => {
    expect(buildRoute(target, mk(), first, source)).toMatchObject(want);
  });

  it('a service with a waypoint but no healthy endpoint still goes to the waypoint (it answers 503)', () => {
    const r = buildRoute(t('127.0.100.1', 80), state(echoSvc(WP), waypoint, sleep), first, sleep);
    expect(r).toMatchObject({ kind: 'hbone', waypoint: 'service' });
  });
});
