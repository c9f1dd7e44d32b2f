import { describe, expect, it } from 'vitest';
import { detectProtocol, sniffProtocol, H2_PREFACE, SNIFF_MAX_LINE } from '../../../src/waypoint/protocol.js';
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
    // issue 12: a slow client must not turn into TCP; what could still be HTTP goes to the parser
    ['a method prefix at the deadline is HTTP (the parser decides)', b('PO'), true, 'http1'],
    ['a request line cut short at the deadline is HTTP', b('GET /adm'), true, 'http1'],
    ['the whole h2 preface', Buffer.concat([H2_PREFACE, b('\0\0')]), false, 'http2'],
    ['half the h2 preface needs more bytes', H2_PREFACE.subarray(0, 10), false, undefined],
    [
      'half the h2 preface at the deadline is h2 (nghttp2 decides)',
      H2_PREFACE.subarray(0, 10),
      true,
      'http2',
    ],
    ['binary bytes', Buffer.from([0x16, 0x03, 0x01, 0x00]), false, 'tcp'],
    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line (llhttp: any)
    ['a leading CRLF (issue 12: "\\r\\nGET /admin")', b('\r\nGET /admin HTTP/1.1\r\n'), false, 'http1'],
    ['several leading empty lines, bare LF too', b('\n\r\n\r\nGET / HTTP/1.1\r\n'), false, 'http1'],
    ['only empty lines so far need more bytes', b('\r\n\r\n'), false, undefined],
    ['only empty lines at the deadline are HTTP', b('\r\n'), true, 'http1'],
    // any token is a method: WebDAV, custom ones (llhttp refuses unknown ones with 400)
    ['PROPFIND (issue 12)', b('PROPFIND / HTTP/1.1\r\n'), false, 'http1'],
    ['MKCOL', b('MKCOL /d HTTP/1.1\r\n'), false, 'http1'],
    ['a custom token method', b('FROBNICATE /x HTTP/1.1\r\n'), false, 'http1'],
    ['lower-case method goes to the parser (which answers 400)', b('get / HTTP/1.1\r\n'), false, 'http1'],
    ['HTTP/1.0', b('GET / HTTP/1.0\r\n'), false, 'http1'],
    ['a request line without a version (HTTP/0.9 shape)', b('GET /\r\n'), false, 'http1'],
    ['an absolute-form target', b('GET http://x/ HTTP/1.1\r\n'), false, 'http1'],
    ['waits for the version', b('GET / HT'), false, undefined],
    // not HTTP
    ['a token then a non-space', b('hello\n'), false, 'tcp'],
    ['a token, a target, then not "HTTP/" (redis inline command)', b('SET key value\r\n'), false, 'tcp'],
    ['a control byte in the target', b('GET /\x01 HTTP/1.1\r\n'), false, 'tcp'],
    ['a space first', b(' GET / HTTP/1.1\r\n'), false, 'tcp'],
    ['nothing at the deadline (server-first protocol)', Buffer.alloc(0), true, 'tcp'],
    [
      'a huge token is HTTP once past the sniff limit (bounded buffer)',
      b('A'.repeat(SNIFF_MAX_LINE + 1)),
      false,
      'http1',
    ],
    [
      'a flood of empty lines is HTTP once past the sniff limit',
      b('\r\n'.repeat(SNIFF_MAX_LINE)),
      false,
      'http1',
    ],
  ])('sniffs %s', (_n, bytes, complete, want) => {
    expect(sniffProtocol(bytes, complete)).toBe(want);
  });

  it.each([
    '\r\nGET /admin HTTP/1.1\r\nhost: web\r\n\r\n',
    'PROPFIND / HTTP/1.1\r\n\r\n',
    'GET /admin HTTP/1.0\r\n\r\n',
  ])('never calls any prefix of %j TCP, whether more bytes come or the timer fires', (text) => {
    const all = b(text);
    for (let i = 1; i <= all.length; i++) {
      expect([undefined, 'http1']).toContain(sniffProtocol(all.subarray(0, i), false));
      // "P", "PR": also a prefix of the h2 preface; either parser answers, per request
      expect(['http1', 'http2']).toContain(sniffProtocol(all.subarray(0, i), true));
    }
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
    // istiod: tcp-* → TCP, tls-*/https-* → TLS; Envoy proxies them as TCP, never sniffed
    ['declared TCP with HTTP bytes is still TCP', 'TCP', b('GET / HTTP/1.1\r\n'), 'tcp'],
    ['declared TCP before any byte (server-first) is TCP at once', 'TCP', Buffer.alloc(0), 'tcp'],
    ['declared TLS (a ClientHello) is TCP', 'TLS', Buffer.from([0x16, 0x03, 0x01]), 'tcp'],
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
