// The one inbound gate (proxy/inbound-gate.ts): authorize → register → re-evaluate on change, the
// same for HBONE, plaintext and the waypoint. Real L4 decider, real records and metrics; the
// policies are plain objects as the policy store holds them.
import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { captureLogger } from '../../support/capture-logger.js';
import { InboundGate, type GateEntry } from '../../../src/proxy/inbound-gate.js';
import { ConnectionRecord } from '../../../src/proxy/connection-record.js';
import type { EvalPolicy } from '../../../src/proxy/authz.js';
import { L4Metrics } from '../../../src/telemetry/metrics.js';
import { AccessLogPolicy } from '../../../src/telemetry/access-log.js';
import { connectionTelemetry, DenialLog } from '../../../src/telemetry/connection-telemetry.js';

const SLEEP = 'spiffe://cluster.local/ns/demo/sa/sleep';

function denyPort(port: number, name = 'deny-port'): EvalPolicy {
  return {
    name,
    namespace: 'demo',
    scope: 'WORKLOAD_SELECTOR',
    action: 'DENY',
    rules: [{ clauses: [{ matches: [{ destinationPorts: [port] }] }] }],
  };
}

function setup() {
  const { logger, lines } = captureLogger();
  const denials = new DenialLog();
  const telemetry = connectionTelemetry(new L4Metrics(new Registry()), new AccessLogPolicy(), denials);
  const gate = new InboundGate(telemetry);
  let policies: EvalPolicy[] = [];
  const entry = (port: number): GateEntry => ({
    record: new ConnectionRecord(logger, telemetry, {
      src: { addr: '127.0.233.10:5000', identity: SLEEP },
      dst: { addr: `127.0.233.11:${port}`, workload: { name: 'echo', namespace: 'demo' } },
      open: { reporter: 'destination', securityPolicy: 'mutual_tls' },
    }),
    conn: { srcIdentity: SLEEP, srcIp: '127.0.233.10', dstIp: '127.0.233.11', dstPort: port },
    policies: () => policies,
    dst: { name: 'echo', namespace: 'demo' },
  });
  const lineOf = (msg: string) => lines.filter((l) => l.msg === msg);
  return { gate, entry, lineOf, denials, setPolicies: (p: EvalPolicy[]) => (policies = p) };
}

describe('inbound gate', () => {
  it('denies with one line naming the policy, counts it and keeps it for /debug/denials', () => {
    const t = setup();
    t.setPolicies([denyPort(7002)]);
    const e = t.entry(7002);
    expect(t.gate.authorize(e, { status: 401 }).allow).toBe(false);
    expect(t.lineOf('connection denied by policy')).toHaveLength(1);
    expect(t.lineOf('connection denied by policy')[0]).toMatchObject({
      policy: 'demo/deny-port',
      'src.ip': '127.0.233.10',
      'dst.port': 7002,
      status: 401,
      response_flags: 'DENY',
    });
    expect(t.gate.counters).toMatchObject({ allowed: 0, denied: 1 });
    expect(t.gate.counters.deniedByPolicy.get('demo/deny-port')).toBe(1);
    expect(t.denials.list()).toMatchObject([{ kind: 'denied', policy: 'demo/deny-port', dstPort: 7002 }]);
  });

  it('closes a registered connection when a policy change denies it, once, and keeps the others', () => {
    const t = setup();
    const [a, b] = [t.entry(7000), t.entry(7001)];
    const closed: number[] = [];
    for (const [e, port] of [
      [a, 7000],
      [b, 7001],
    ] as const) {
      expect(t.gate.authorize(e).allow).toBe(true);
      t.gate.track(e, () => closed.push(port));
    }
    t.setPolicies([denyPort(7000, 'deny-7000')]);
    t.gate.reevaluate();
    t.gate.reevaluate(); // a second change does not close or count it again
    expect(closed).toEqual([7000]);
    expect(t.gate.openCount()).toBe(1);
    expect(t.gate.counters).toMatchObject({ allowed: 2, denied: 1, closedByPolicyChange: 1 });
    expect(t.lineOf('connection closed: policy no longer allows it')).toHaveLength(1);
    expect(a.record.outcome).toBe('closed-by-policy');
    expect(b.record.finished).toBe(false);
  });

  it("re-checks an entry's own decision (the waypoint's TCP path) and fails closed when it throws", () => {
    const t = setup();
    const [a, b] = [t.entry(7000), t.entry(7001)];
    let tcpAllows = true;
    a.recheck = () => ({ allow: tcpAllows, policy: 'demo/raw-deny', reason: 'DENY policy matched' });
    b.recheck = () => {
      throw new Error('set not compiled');
    };
    const closed: string[] = [];
    t.gate.authorize(a);
    t.gate.track(a, () => closed.push('a'));
    t.gate.reevaluate();
    expect(closed).toEqual([]);
    tcpAllows = false;
    t.gate.authorize(b);
    t.gate.track(b, () => closed.push('b'));
    t.gate.reevaluate();
    expect(closed.sort()).toEqual(['a', 'b']);
    const reasons = t.lineOf('connection closed: policy no longer allows it').map((l) => l.reason);
    expect(reasons).toContain('DENY policy matched');
    expect(reasons.some((r) => /could not be evaluated: set not compiled/.test(String(r)))).toBe(true);
  });

  it('drops an entry whose record another step already finished, without closing or counting it', () => {
    const t = setup();
    const e = t.entry(7000);
    t.gate.authorize(e);
    let closes = 0;
    t.gate.track(e, () => closes++);
    e.record.fail('CONNECT', 'connection failed');
    t.setPolicies([denyPort(7000)]);
    t.gate.reevaluate();
    expect(closes).toBe(0);
    expect(t.gate.openCount()).toBe(0);
    expect(t.gate.counters.closedByPolicyChange).toBe(0);
  });

  it('untrack reports false once a policy change has closed the connection', () => {
    const t = setup();
    const e = t.entry(7000);
    t.gate.authorize(e);
    const untrack = t.gate.track(e, () => {});
    t.setPolicies([denyPort(7000)]);
    t.gate.reevaluate();
    expect(untrack()).toBe(false);
  });
});
