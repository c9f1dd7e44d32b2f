// The request pipeline against a scripted protocol adapter (test/support/fake-protocol-adapter.ts):
// the order in which it calls a protocol, that every way out records exactly once, and the
// cases where it must not touch the upstream. The engine is the real one (buildL7Engine, no
// objects: pod-addressed traffic forwarded to the pod, Istio's default retry policy: 503 and
// connect-failure retried twice); the protocols themselves are tested through real meshes in
// test/integration/waypoint*.test.ts and test/adversarial/waypoint-*.test.ts.
import { describe, expect, it } from 'vitest';
import { ProxyState } from '../../../src/proxy/state.js';
import { RequestPipeline } from '../../../src/waypoint/pipeline.js';
import { buildL7Engine } from '../../../src/waypoint/l7-engine.js';
import { toL7Request } from '../../../src/waypoint/http/http-request.js';
import { newExchange, type RequestRecord } from '../../../src/waypoint/request-record.js';
import type { L7Engine } from '../../../src/waypoint/http/http-types.js';
import type { TunnelContext } from '../../../src/waypoint/tunnel-context.js';
import type { Ip } from '../../../src/common/addr.js';
import { captureLogger } from '../../support/capture-logger.js';
import { testWorkload } from '../../support/workloads.js';
import { FakeProtocolAdapter, type FakeScript } from '../../support/fake-protocol-adapter.js';

const ctx: TunnelContext = {
  target: { host: '10.0.0.11' as Ip, port: 8080 },
  peerIdentity: 'spiffe://cluster.local/ns/demo/sa/sleep',
  srcIp: '10.0.0.7',
};

async function serve(
  script: FakeScript,
  edit?: (e: L7Engine) => L7Engine,
): Promise<{ calls: string[]; records: RequestRecord[]; lines: Record<string, unknown>[] }> {
  const state = new ProxyState();
  state.applyAddresses(new Map([['c//Pod/demo/echo', { workload: testWorkload('echo', '10.0.0.11') }]]), []);
  const built = buildL7Engine({
    objects: [],
    services: [],
    waypoint: { namespace: 'demo', name: 'waypoint' },
  });
  const engine = edit ? edit(built.engine) : built.engine;
  const records: RequestRecord[] = [];
  const { logger, lines } = captureLogger();
  const pipeline = new RequestPipeline(
    {
      state,
      engine: () => engine,
      connect: () => Promise.reject(new Error('the fake adapter opens no tunnels')),
      onRequest: (r) => records.push(r),
      logger,
    },
    logger,
  );
  const adapter = new FakeProtocolAdapter(script);
  const x = newExchange(toL7Request('GET', '/x', {}, ctx, 'echo:8080'), ctx, 'http1');
  await pipeline.serve(adapter, {}, x);
  return { calls: adapter.calls, records, lines };
}

describe('the request pipeline drives a protocol adapter', () => {
  it('reads the body, tries, relays the answer, and records once', async () => {
    const { calls, records } = await serve({ tries: [{ name: 'a1', status: 200 }] });
    expect(calls).toEqual(['watch', 'readBody', 'sendTry a1', 'relay a1']);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ status: 200, attempts: 1 });
  });

  it('discards a retried answer before sending the next try, and relays the last', async () => {
    const { calls, records } = await serve({
      tries: [
        { name: 'a1', status: 503 },
        { name: 'a2', status: 200 },
      ],
    });
    expect(calls).toEqual(['watch', 'readBody', 'sendTry a1', 'discard a1', 'sendTry a2', 'relay a2']);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ status: 200, attempts: 2 });
  });

  it('gives a body that streams through once a single try (no retry policy)', async () => {
    const { calls, records } = await serve({ oneTry: true, tries: [{ name: 'a1', status: 503 }] });
    expect(calls).toEqual(['watch', 'readBody', 'sendTry a1', 'relay a1']);
    expect(records[0]).toMatchObject({ status: 503, attempts: 1 });
  });

  it('answers tries without a response through adapter.fail, with Envoy’s reason, once', async () => {
    const { calls, records } = await serve({
      tries: ['connect-failure', 'connect-failure', 'connect-failure'],
    });
    expect(calls.slice(-1)).toEqual(['fail 503']);
    expect(calls.filter((c) => c.startsWith('sendTry'))).toHaveLength(3);
    expect(records).toHaveLength(1);
    expect(records[0]?.status).toBe(503);
    expect(records[0]?.reason).toMatch(/retries exhausted/);
  });

  it('costs no upstream work when the client left while the waypoint decided (rapid reset)', async () => {
    const { calls, records } = await serve({ leaveAt: 'decided', tries: [{ name: 'a1', status: 200 }] });
    expect(calls).toEqual(['watch']);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ status: 0, reason: 'reset by client' });
  });

  it('abandons an answer nobody will read when the client left during the tries', async () => {
    const { calls, records } = await serve({ leaveAt: 'tries', tries: [{ name: 'a1', status: 200 }] });
    expect(calls).toEqual(['watch', 'readBody', 'sendTry a1', 'abandon a1']);
    expect(records[0]).toMatchObject({ status: 0, reason: 'downstream went away' });
  });

  it('writes a redirect through adapter.answer without reading the body or trying', async () => {
    const { calls, records } = await serve({ tries: [] }, (e) => ({
      ...e,
      route: () => ({ kind: 'redirect', status: 301, location: 'http://echo/y' }),
    }));
    expect(calls).toEqual(['watch', 'answer 301']);
    expect(records[0]).toMatchObject({ status: 301 });
  });

  it('still records once, and logs, when the adapter throws while answering a failure', async () => {
    const { calls, records, lines } = await serve({
      failThrows: true,
      tries: ['connect-failure', 'connect-failure', 'connect-failure'],
    });
    expect(calls.slice(-1)).toEqual(['fail 503']);
    expect(records).toHaveLength(1);
    expect(records[0]?.status).toBe(503);
    expect(lines.some((l) => l.msg === 'could not write the failure answer')).toBe(true);
  });

  it('answers a denial through adapter.fail before any body is read (403)', async () => {
    const { calls, records } = await serve({ tries: [] }, (e) => ({
      ...e,
      authorize: () => ({ allow: false, policy: 'demo/deny-all', reason: 'matched DENY' }),
    }));
    expect(calls).toEqual(['watch', 'fail 403']);
    expect(records[0]).toMatchObject({ status: 403 });
  });
});
