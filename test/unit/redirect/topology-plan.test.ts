// The netns topology plan: names within the kernel's limits, one router, nodes wired to it, pods
// wired to their node, every namespace carrying the run's prefix.
import { describe, expect, it } from 'vitest';
import { nodeNetnsName, planTopology, podNetnsName } from '../../../src/redirect/topology.js';

const input = {
  prefix: 'ambit-t5x-',
  routerIp: '10.200.0.1',
  nodes: [
    { name: 'node-1', ip: '10.200.1.1' },
    { name: 'worker', ip: '10.200.1.2' },
  ],
  endpoints: [
    { kind: 'pod' as const, namespace: 'demo', name: 'sleep', ip: '10.200.10.1', node: 'node-1' },
    { kind: 'pod' as const, namespace: 'demo', name: 'echo-v2', ip: '10.200.10.3', node: 'worker' },
  ],
  dns: { nameserver: '10.200.0.10', clusterDomain: 'cluster.local' },
};

describe('netns topology plan', () => {
  it('names namespaces with the prefix', () => {
    expect(nodeNetnsName('node-1', 'ambit-')).toBe('ambit-node-1');
    expect(nodeNetnsName('worker', 'ambit-')).toBe('ambit-node-worker');
    expect(podNetnsName('demo', 'sleep', 'ambit-')).toBe('ambit-pod-demo-sleep');
    const plan = planTopology(input);
    for (const ns of [plan.router, ...plan.nodes, ...plan.endpoints])
      expect(ns.name.startsWith('ambit-t5x-')).toBe(true);
  });

  it('keeps every link name within 15 bytes and prefixed ambit-', () => {
    const plan = planTopology(input);
    const links = [plan.router, ...plan.nodes, ...plan.endpoints]
      .flatMap((ns) => ns.commands)
      .filter((c) => c.includes('veth'))
      .flatMap((c) => [c[c.indexOf('add') + 1]!]);
    expect(links.length).toBe(4);
    for (const l of links) {
      expect(l.length).toBeLessThanOrEqual(15);
      expect(l.startsWith('ambit-')).toBe(true);
    }
  });

  it('routes a pod through its node and the router, with a default route via the node', () => {
    const plan = planTopology(input);
    const echo = plan.endpoints.find((e) => e.name === 'ambit-t5x-pod-demo-echo-v2')!;
    const cmds = echo.commands.map((c) => c.join(' '));
    expect(cmds).toContain('-n ambit-t5x-pod-demo-echo-v2 route add default via 10.200.1.2 dev eth0');
    expect(cmds).toContain('-n ambit-t5x-router route add 10.200.10.3/32 via 10.200.1.2 dev ambit-r2');
    expect(echo.resolvConf).toContain('search demo.svc.cluster.local svc.cluster.local cluster.local');
  });

  it('refuses a pod on a node that has no Node object', () => {
    expect(() => planTopology({ ...input, endpoints: [{ ...input.endpoints[0]!, node: 'node-9' }] })).toThrow(
      /node-9/,
    );
  });
});
