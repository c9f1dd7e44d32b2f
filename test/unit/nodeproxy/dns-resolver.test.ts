import { describe, expect, it } from 'vitest';
import { meshResolver, readResolvConf } from '../../../src/nodeproxy/dns.js';
import { ProxyState } from '../../../src/proxy/state.js';
import type { Address, Service, Workload } from '../../../src/xds/resources.js';
import type { Ip } from '../../../src/common/addr.js';
import { testWorkload } from '../../support/workloads.js';

function service(hostname: string, namespace: string, vips: string[]): Service {
  return {
    name: hostname.split('.')[0]!,
    namespace,
    hostname,
    addresses: vips.map((v) => ({ network: '', address: v as Ip })),
    ports: [{ servicePort: 80, targetPort: 8080 }],
    subjectAltNames: [],
  };
}

function pod(name: string, ip: string, svcKey: string, status: Workload['status'] = 'HEALTHY'): Workload {
  return testWorkload(name, ip, { serviceAccount: 'default', services: { [svcKey]: [] }, status });
}

const state = new ProxyState();
state.applyAddresses(
  new Map<string, Address>([
    [
      'demo/echo.demo.svc.cluster.local',
      { service: service('echo.demo.svc.cluster.local', 'demo', ['127.0.100.1']) },
    ],
    [
      'demo/dual.demo.svc.cluster.local',
      { service: service('dual.demo.svc.cluster.local', 'demo', ['127.0.100.2', 'fd00::2']) },
    ],
    [
      'web/front.web.svc.cluster.local',
      { service: service('front.web.svc.cluster.local', 'web', ['127.0.100.3']) },
    ],
    ['demo/api.example.com', { service: service('api.example.com', 'demo', ['127.0.100.4']) }],
    ['demo/*.wild.example', { service: service('*.wild.example', 'demo', ['127.0.100.5']) }],
    ['demo/novip.example.com', { service: service('novip.example.com', 'demo', []) }],
    ['demo/db.demo.svc.cluster.local', { service: service('db.demo.svc.cluster.local', 'demo', []) }],
    ['Kubernetes//Pod/demo/db-0', { workload: pod('db-0', '127.0.10.7', 'demo/db.demo.svc.cluster.local') }],
    [
      'Kubernetes//Pod/demo/db-1',
      { workload: pod('db-1', '127.0.10.8', 'demo/db.demo.svc.cluster.local', 'UNHEALTHY') },
    ],
  ]),
  [],
);
const resolve = meshResolver(state);

describe('meshResolver', () => {
  it.each([
    ['echo', 'demo'],
    ['echo.demo', 'web'],
    ['echo.demo.svc', 'web'],
    ['echo.demo.svc.cluster.local', 'web'],
    ['ECHO.Demo.svc.cluster.local.', 'web'],
  ])('answers %s from namespace %s with the VIP', (name, ns) => {
    expect(resolve(name, ns)).toEqual({ ips: ['127.0.100.1'] });
  });

  it('does not expand a short name into another namespace', () => {
    expect(resolve('echo', 'web')).toBeUndefined();
    expect(resolve('front', 'web')).toEqual({ ips: ['127.0.100.3'] });
  });

  it('answers a ServiceEntry host and wildcard hosts', () => {
    expect(resolve('api.example.com', 'web')).toEqual({ ips: ['127.0.100.4'] });
    expect(resolve('a.wild.example', 'web')).toEqual({ ips: ['127.0.100.5'] });
    expect(resolve('deep.a.wild.example', 'web')).toEqual({ ips: ['127.0.100.5'] });
    expect(resolve('wild.example', 'web')).toBeUndefined();
  });

  it('gives both families of a dual-stack service', () => {
    expect(resolve('dual', 'demo')).toEqual({ ips: ['127.0.100.2', 'fd00::2'] });
  });

  it('strips a search domain the resolver appended and answers with the canonical name', () => {
    expect(resolve('api.example.com.web.svc.cluster.local', 'web')).toEqual({
      ips: ['127.0.100.4'],
      cname: 'api.example.com',
    });
    expect(resolve('echo.demo.svc.cluster.local', 'demo')).toEqual({ ips: ['127.0.100.1'] });
    expect(resolve('echo.demo.svc.cluster.local.demo.svc.cluster.local', 'demo')).toEqual({
      ips: ['127.0.100.1'],
      cname: 'echo.demo.svc.cluster.local',
    });
  });

  it('answers a headless Kubernetes service with its healthy endpoints', () => {
    expect(resolve('db', 'demo')).toEqual({ ips: ['127.0.10.7'] });
  });

  it('leaves a host without addresses outside Kubernetes to the upstream, as ztunnel does', () => {
    expect(resolve('novip.example.com', 'demo')).toBeUndefined();
  });

  it.each(['nope', 'nope.demo.svc.cluster.local', 'example.org', 'cluster.local'])(
    'does not know %s',
    (name) => {
      expect(resolve(name, 'demo')).toBeUndefined();
    },
  );
});

describe('readResolvConf', () => {
  it('reads nameservers, skips junk and scope ids', () => {
    expect(
      readResolvConf(
        '# c\nsearch demo.svc.cluster.local\nnameserver 10.96.0.10\nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:5\n',
      ),
    ).toEqual([
      { host: '10.96.0.10', port: 53 },
      { host: 'fe80::1', port: 53 },
    ]);
  });

  it('falls back to 127.0.0.1 like glibc when there is none', () => {
    expect(readResolvConf('')).toEqual([{ host: '127.0.0.1', port: 53 }]);
  });
});
