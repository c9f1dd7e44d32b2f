import { describe, expect, it } from 'vitest';
import { detectProtocol, sniffProtocol, H2_PREFACE } from '../../../src/waypoint/protocol.js';
import { configObjectName, decodeConfigObject, encodeConfigObject } from '../../../src/xds/config-objects.js';
import { encodeMessage, pb } from '../../../src/xds/proto.js';
import { decodeAddress, encodeAddress, type Workload } from '../../../src/xds/resources.js';
import type { Ip } from '../../../src/common/addr.js';

const b = (s: string) => Buffer.from(s, 'latin1');

describe('protocol detection', () => {
  it.each<[string, Buffer, boolean, string | undefined]>([
    ['HTTP/1.1 request line', b('GET / HTTP/1.1\r\nHost: x\r\n'), false, 'http1'],
    ['POST', b('POST /x HTTP/1.0\r\n'), false, 'http1'],
    ['a method prefix needs more bytes', b('PO'), false, undefined],
    ['a method prefix at the deadline is TCP', b('PO'), true, 'tcp'],
    ['the whole h2 preface', Buffer.concat([H2_PREFACE, b('\0\0')]), false, 'http2'],
    ['half the h2 preface needs more bytes', H2_PREFACE.subarray(0, 10), false, undefined],
    ['half the h2 preface at the deadline is TCP', H2_PREFACE.subarray(0, 10), true, 'tcp'],
    ['binary bytes', Buffer.from([0x16, 0x03, 0x01, 0x00]), false, 'tcp'],
    ['lower-case method is not HTTP', b('get / HTTP/1.1\r\n'), false, 'tcp'],
    ['nothing at the deadline (server-first protocol)', Buffer.alloc(0), true, 'tcp'],
  ])('sniffs %s', (_n, bytes, complete, want) => {
    expect(sniffProtocol(bytes, complete)).toBe(want);
  });

  it.each<[string, Parameters<typeof detectProtocol>[0], Buffer, string | undefined]>([
    ['declared HTTP11 with h1 bytes', 'HTTP11', b('GET / HTTP/1.1\r\n'), 'http1'],
    [
      'declared HTTP11 with garbage → http1 (the parser answers 400), never TCP',
      'HTTP11',
      b('\x01\x02garbage'),
      'http1',
    ],
    ['declared HTTP11 with the h2 preface (h2c prior knowledge)', 'HTTP11', H2_PREFACE, 'http2'],
    ['declared GRPC', 'GRPC', H2_PREFACE, 'http2'],
    ['undeclared, sniffed h1', undefined, b('GET / HTTP/1.1\r\n'), 'http1'],
    ['undeclared, not HTTP → TCP', 'UNKNOWN', b('hello\n'), 'tcp'],
  ])('%s', (_n, app, bytes, want) => {
    expect(detectProtocol(app, bytes)).toBe(want);
  });
});

describe('config object codec', () => {
  const route = {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'r', namespace: 'demo' },
    spec: { parentRefs: [{ name: 'echo', kind: 'Service' }] },
  };

  it('round-trips an object', () => {
    const name = configObjectName(route);
    expect(name).toBe('HTTPRoute/demo/r');
    expect(decodeConfigObject(name, encodeConfigObject(route))).toEqual(route);
  });

  it.each<[string, object, RegExp]>([
    ['an unknown kind', { kind: 'Pod', namespace: 'demo', name: 'r', json: '{}' }, /not a waypoint kind/],
    ['bad JSON', { kind: 'HTTPRoute', namespace: 'demo', name: 'r', json: '{' }, /not valid JSON/],
    [
      'a mismatched name',
      { kind: 'HTTPRoute', namespace: 'demo', name: 'other', json: JSON.stringify(route) },
      /metadata/,
    ],
    [
      'no spec',
      {
        kind: 'HTTPRoute',
        namespace: 'demo',
        name: 'r',
        json: JSON.stringify({ ...route, spec: undefined }),
      },
      /no spec/,
    ],
  ])('rejects %s (XDS_INVALID_RESOURCE)', (_n, wire, why) => {
    expect(() => decodeConfigObject('x', encodeMessage(pb.ConfigObject, wire))).toThrow(why);
  });
});

describe('workload API waypoint fields', () => {
  const w: Workload = {
    uid: 'Kubernetes//Pod/demo/a',
    name: 'a',
    namespace: 'demo',
    addresses: ['10.0.0.1' as Ip],
    network: '',
    tunnelProtocol: 'HBONE',
    trustDomain: 'cluster.local',
    serviceAccount: 'a',
    waypoint: { network: '', ip: '10.0.0.200' as Ip, hboneMtlsPort: 15008 },
    node: 'n',
    nativeTunnel: true,
    canonicalName: 'a',
    canonicalRevision: 'latest',
    workloadName: 'a',
    services: {},
    authorizationPolicies: [],
    status: 'HEALTHY',
    clusterId: 'Kubernetes',
  };
  it('round-trips Workload.waypoint (field 8) and native_tunnel (field 14)', () => {
    expect(decodeAddress(w.uid, encodeAddress({ workload: w }))).toEqual({ workload: w });
  });
  it('rejects a waypoint given by hostname with a reason', () => {
    const bytes = encodeMessage(pb.Address, {
      service: {
        name: 's',
        namespace: 'demo',
        hostname: 's.demo.svc.cluster.local',
        waypoint: { hostname: { namespace: 'demo', hostname: 'wp' }, hboneMtlsPort: 15008 },
      },
    });
    expect(() => decodeAddress('demo/s', bytes)).toThrow(/hostname is not supported/);
  });
});
