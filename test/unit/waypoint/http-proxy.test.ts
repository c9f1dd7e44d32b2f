import { describe, expect, it } from 'vitest';
import {
  applyModifier,
  forwardHeaders,
  pickWeighted,
  rewrittenPath,
  toL7Request,
} from '../../../src/waypoint/http/http-request.js';
import type { TunnelContext } from '../../../src/waypoint/tunnel-context.js';
import type { ForwardAction, WeightedBackend } from '../../../src/waypoint/routing/types.js';
import type { Ip } from '../../../src/common/addr.js';

const NONE = { set: [], add: [], remove: [] };
const action = (over: Partial<ForwardAction> = {}): ForwardAction => ({
  kind: 'forward',
  backends: [],
  requestHeaders: NONE,
  responseHeaders: NONE,
  routeName: 'r',
  ...over,
});
const ctx: TunnelContext = {
  target: { host: '10.96.0.1' as Ip, port: 80 },
  peerIdentity: 'spiffe://cluster.local/ns/demo/sa/sleep',
  srcIp: '10.0.0.7',
};

describe('waypoint HTTP helpers', () => {
  it('picks backends in proportion to their weights', () => {
    const b = (w: number, name: string): WeightedBackend => ({
      service: { namespace: 'demo', hostname: name },
      port: 80,
      weight: w,
    });
    const backends = [b(90, 'v1'), b(10, 'v2')];
    expect(pickWeighted(backends, () => 0).service.hostname).toBe('v1');
    expect(pickWeighted(backends, () => 0.899).service.hostname).toBe('v1');
    expect(pickWeighted(backends, () => 0.9).service.hostname).toBe('v2');
    expect(pickWeighted(backends, () => 0.999999).service.hostname).toBe('v2');
  });

  it.each<[string, ForwardAction['rewrite'], string, string]>([
    ['no rewrite keeps path and query', undefined, '/a/b?x=1', '/a/b?x=1'],
    ['full path', { path: '/new' }, '/a/b?x=1', '/new?x=1'],
    ['prefix', { pathPrefix: { from: '/a', to: '/z' } }, '/a/b?x=1', '/z/b?x=1'],
    // Envoy prefix_rewrite replaces exactly the matched characters: "/a" → "/" on "/a/b" is
    // "//b" (route_components.proto prefix_rewrite; issue 13 divergence 5).
    ['prefix to root keeps the rest as is', { pathPrefix: { from: '/a', to: '/' } }, '/a/b', '//b'],
    ['prefix with its slash to root', { pathPrefix: { from: '/a/', to: '/' } }, '/a/b', '/b'],
    ['whole prefix to root', { pathPrefix: { from: '/a', to: '/' } }, '/a', '/'],
  ])('rewrites: %s', (_n, rewrite, url, want) => {
    const q = url.indexOf('?');
    expect(rewrittenPath(url, action({ rewrite }), q < 0 ? url : url.slice(0, q))).toBe(want);
  });

  it('applies set, then add, then remove; route first, then backend', () => {
    const out = applyModifier(
      { a: '1', b: '2', c: '3' },
      { set: [{ name: 'a', value: 'x' }], add: [{ name: 'b', value: 'y' }], remove: ['c'] },
      { set: [{ name: 'd', value: '4' }], add: [], remove: ['a'] },
    );
    expect(out).toEqual({ b: ['2', 'y'], d: '4' });
  });

  it("applies the chosen backend's request header edits after the route's (backendRef filters)", () => {
    const req = toL7Request('GET', '/p', { host: 'web' }, ctx, 'web');
    const route = { set: [{ name: 'x-a', value: 'route' }], add: [], remove: [] };
    const h = forwardHeaders(
      { host: 'web' },
      req,
      ctx,
      action({
        requestHeaders: route,
        backendRequestHeaders: { set: [{ name: 'x-b', value: 'backend' }], add: [], remove: ['x-a'] },
      }),
      'http',
    );
    expect(h['x-b']).toBe('backend');
    expect(h['x-a']).toBeUndefined();
    expect(forwardHeaders({ host: 'web' }, req, ctx, action({ requestHeaders: route }), 'http')['x-a']).toBe(
      'route',
    );
  });

  it('adds x-forwarded-*, x-request-id and traceparent only when absent', () => {
    const req = toL7Request('GET', '/p?q=1', { host: 'web' }, ctx, 'web');
    const h = forwardHeaders({ host: 'web' }, req, ctx, action(), 'http');
    expect(h['x-forwarded-for']).toBe('10.0.0.7');
    expect(h['x-forwarded-proto']).toBe('http');
    expect(h['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(h.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    const kept = forwardHeaders(
      { host: 'web', 'x-forwarded-for': '1.2.3.4', 'x-request-id': 'abc', traceparent: 'tp' },
      req,
      ctx,
      action(),
      'http',
    );
    expect(kept).toMatchObject({
      'x-forwarded-for': '1.2.3.4, 10.0.0.7',
      'x-request-id': 'abc',
      traceparent: 'tp',
    });
    expect(forwardHeaders({ 'x-b3-traceid': 'b3' }, req, ctx, action(), 'http').traceparent).toBeUndefined();
  });

  it('builds the L7 request: path without query, target service, gRPC by content type', () => {
    const r = toL7Request(
      'POST',
      '/pkg.Svc/M?x=1',
      { 'content-type': 'application/grpc+proto' },
      {
        ...ctx,
        service: {
          name: 'web',
          namespace: 'demo',
          hostname: 'web.demo.svc.cluster.local',
          addresses: [],
          ports: [],
          subjectAltNames: [],
        },
      },
      'web:80',
    );
    expect(r).toMatchObject({
      method: 'POST',
      path: '/pkg.Svc/M',
      grpc: true,
      target: { ip: '10.96.0.1', port: 80, service: { name: 'web' } },
    });
    expect(r.query.get('x')).toBe('1');
  });
});
