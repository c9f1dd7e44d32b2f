import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { ProxyState } from '../../../src/proxy/state.js';
import { newExchange, recordExchange, type RequestRecord } from '../../../src/waypoint/request-record.js';
import { toL7Request } from '../../../src/waypoint/http/http-request.js';
import type { TunnelContext } from '../../../src/waypoint/tunnel-context.js';
import type { Ip, SocketAddr } from '../../../src/common/addr.js';
import { testWorkload } from '../../support/workloads.js';

const workload = (name: string, ip: string, sa: string) => testWorkload(name, ip, { serviceAccount: sa });

function setup(): { state: ProxyState; lines: Record<string, unknown>[]; log: ReturnType<typeof pino> } {
  const state = new ProxyState();
  state.applyAddresses(
    new Map([['c//Pod/demo/sleep', { workload: workload('sleep', '10.0.0.7', 'sleep') }]]),
    [],
  );
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      cb();
    },
  });
  return { state, lines, log: pino(sink) };
}

const ctx: TunnelContext = {
  target: { host: '10.96.0.1' as Ip, port: 8080 },
  peerIdentity: 'spiffe://cluster.local/ns/demo/sa/sleep',
  srcIp: '10.0.0.7',
};

describe('the request record (telemetry seam)', () => {
  it('is written once per request, as a log line and a typed record', () => {
    const { state, lines, log } = setup();
    const got: RequestRecord[] = [];
    const l7 = toL7Request(
      'POST',
      '/pkg.Svc/Call?x=1',
      { 'content-type': 'application/grpc' },
      ctx,
      'grpc:8080',
    );
    const x = newExchange(l7, ctx, 'grpc');
    const echo = workload('echo-v1', '10.0.0.11', 'echo');
    x.route = 'VirtualService/demo/grpc';
    x.service = 'grpc.demo.svc.cluster.local';
    x.endpoint = {
      id: '10.0.0.11:9000',
      active: 0,
      workload: echo,
      authority: '10.0.0.11:9000' as SocketAddr,
    };
    x.attempts = 2;
    x.retryStop = 'success';
    x.grpcStatus = 14;
    x.requestBytes = 12;
    x.responseBytes = 0;
    recordExchange(x, 200, log, state, (r) => got.push(r));
    recordExchange(x, 200, log, state, (r) => got.push(r));
    expect(got).toHaveLength(1);
    expect(got[0]).toMatchObject({
      protocol: 'grpc',
      method: 'POST',
      path: '/pkg.Svc/Call',
      authority: 'grpc:8080',
      source: { identity: ctx.peerIdentity, ip: '10.0.0.7', workload: 'sleep', namespace: 'demo' },
      destination: {
        addr: '10.96.0.1:8080',
        service: 'grpc.demo.svc.cluster.local',
        workload: 'echo-v1',
        namespace: 'demo',
        identity: 'spiffe://cluster.local/ns/demo/sa/echo',
      },
      route: 'VirtualService/demo/grpc',
      status: 200,
      grpcStatus: 14,
      attempts: 2,
      requestBytes: 12,
      responseBytes: 0,
    });
    expect(got[0]!.durationMs).toBeGreaterThanOrEqual(0);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      msg: 'request complete',
      status: 200,
      grpc_status: 14,
      attempts: 2,
      'upstream.workload': 'demo/echo-v1',
    });
    expect(lines[0]!['retry.stop']).toBeUndefined();
  });

  it('survives a callback that throws, and works without one', () => {
    const { state, lines, log } = setup();
    const x = newExchange(toL7Request('GET', '/', {}, ctx, 'web'), ctx, 'http1');
    x.reason = 'denied by demo/p: no rule matched';
    recordExchange(x, 403, log, state, () => {
      throw new Error('metrics broke');
    });
    recordExchange(newExchange(x.l7, ctx, 'http1'), 200, log, state, undefined);
    expect(lines.map((l) => l.msg)).toEqual([
      'request complete',
      'onRequest callback threw',
      'request complete',
    ]);
  });
});
