// Readiness means listening (issue 12): after xDS has synced, /healthz/ready stays 503 while any
// local ambient pod the state names has no bound listeners. Before, it turned 200 at xDS sync,
// 40–50 ms before the pods' 15008 and 15080 existed after a restart. The restart itself is
// exercised against real processes in test/adversarial/hbone.test.ts; this pins the rule.
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { NodeProxy } from '../../../src/nodeproxy/proxy.js';
import type { Address } from '../../../src/xds/resources.js';
import { testWorkload } from '../../support/workloads.js';

function proxyWith(...pods: ReturnType<typeof testWorkload>[]): NodeProxy {
  const p = new NodeProxy({
    nodeName: 'node-1',
    nodeIp: '127.0.163.1',
    controlPlane: '127.0.163.5:15012',
    stateDir: '/nonexistent',
    logger: pino({ level: 'silent' }),
  });
  p.state.applyAddresses(new Map<string, Address>(pods.map((w) => [w.uid, { workload: w }])), []);
  // What start() sets once the first xDS response of every type is applied.
  (p as unknown as { xdsReady: boolean }).xdsReady = true;
  return p;
}

describe('node proxy readiness', () => {
  it('is 503 while a local pod in the state has no listeners yet, naming it', () => {
    const r = proxyWith(testWorkload('echo-v1', '127.0.163.11')).isReady();
    expect(r.ready).toBe(false);
    expect(r.reason).toMatch(/listeners not bound yet for demo\/echo-v1/);
  });

  it('ignores pods of other nodes, waypoints (their own HBONE) and pods outside the mesh', () => {
    const r = proxyWith(
      testWorkload('other', '127.0.163.12', { node: 'node-2' }),
      testWorkload('waypoint', '127.0.163.13', { nativeTunnel: true }),
      testWorkload('legacy', '127.0.163.14', { tunnelProtocol: 'NONE' }),
    ).isReady();
    expect(r).toEqual({ ready: true });
  });

  it('is 503 before the first xDS response, whatever the state', () => {
    const p = proxyWith();
    (p as unknown as { xdsReady: boolean }).xdsReady = false;
    expect(p.isReady()).toMatchObject({ ready: false, reason: 'waiting for the first xDS response' });
  });
});
