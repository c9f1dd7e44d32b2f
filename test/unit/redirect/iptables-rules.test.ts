// In-pod redirection rules as iptables-restore scripts: what is installed, that re-applying never
// duplicates a jump, and that removal leaves nothing of ours.
import { describe, expect, it } from 'vitest';
import { applyScript, desiredRules, ourRules, removeScript } from '../../../src/redirect/iptables.js';
import { sameRules } from '../../../src/redirect/agent.js';

const EMPTY = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
COMMIT
`;

/** iptables-save of a pod netns with our rules, as the tool prints it (builtin chains first, then ours by name). */
function saved(dns: boolean): string {
  const rules = desiredRules({ dns });
  const table = (t: string, builtin: string[]) => {
    const mine = rules.filter((r) => r.startsWith(`-t ${t} `)).map((r) => r.slice(`-t ${t} `.length));
    return [
      `*${t}`,
      ...builtin.map((c) => `:${c} ACCEPT [0:0]`),
      ':AMBIT_OUTPUT - [0:0]',
      ':AMBIT_PRERT - [0:0]',
      ...mine.filter((r) => !r.startsWith('-A AMBIT_')),
      ...mine.filter((r) => r.startsWith('-A AMBIT_OUTPUT')),
      ...mine.filter((r) => r.startsWith('-A AMBIT_PRERT')),
      'COMMIT',
    ];
  };
  return [
    ...table('mangle', ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING']),
    ...table('nat', ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING']),
  ].join('\n');
}

describe('in-pod redirection rules', () => {
  it('send outbound TCP to 15001, inbound TCP except 15008 to 15006, DNS to 15053, and skip marked traffic', () => {
    const r = desiredRules({ dns: true });
    expect(r).toContain('-t nat -A AMBIT_OUTPUT -p tcp -j REDIRECT --to-ports 15001');
    expect(r).toContain('-t nat -A AMBIT_PRERT -p tcp -j REDIRECT --to-ports 15006');
    expect(r).toContain('-t nat -A AMBIT_PRERT -p tcp -m tcp --dport 15008 -j RETURN');
    expect(r).toContain('-t nat -A AMBIT_OUTPUT -p udp -m udp --dport 53 -j REDIRECT --to-ports 15053');
    expect(r.indexOf('-t nat -A AMBIT_OUTPUT -m mark --mark 0x539/0xfff -j RETURN')).toBeLessThan(
      r.indexOf('-t nat -A AMBIT_OUTPUT -p tcp -j REDIRECT --to-ports 15001'),
    );
    // delivery connections: marked by the proxy → connmark → the app's replies carry the mark
    expect(r).toContain(
      '-t mangle -A AMBIT_PRERT -m mark --mark 0x539/0xfff -j CONNMARK --set-xmark 0x111/0xfff',
    );
    expect(desiredRules({ dns: false }).join('\n')).not.toContain('15053');
  });

  it('installs on an empty table with one jump from each hook, nat and mangle', () => {
    const script = applyScript(EMPTY, { dns: true });
    expect(script).toMatch(/^\*nat\n:AMBIT_PRERT - \[0:0\]\n:AMBIT_OUTPUT - \[0:0\]\n/);
    expect(script).toContain('\n*mangle\n');
    expect(script.match(/-I PREROUTING 1 -j AMBIT_PRERT/g)).toHaveLength(2);
    expect(script.match(/-I OUTPUT 1 -j AMBIT_OUTPUT/g)).toHaveLength(2);
    expect(script).not.toContain('-D ');
    expect(script.match(/COMMIT/g)).toHaveLength(2);
  });

  it('re-applying deletes the old jumps first, so they are never duplicated', () => {
    const script = applyScript(saved(true), { dns: false });
    expect(script).toContain('-D PREROUTING -j AMBIT_PRERT');
    expect(script).toContain('-D OUTPUT -j AMBIT_OUTPUT');
    expect(script.match(/-D PREROUTING -j AMBIT_PRERT/g)).toHaveLength(2); // nat and mangle
    expect(script.match(/-I PREROUTING/g)).toHaveLength(2);
  });

  it('recognises rules already in place whatever order the tool prints chains in', () => {
    expect(sameRules(ourRules(saved(true)), desiredRules({ dns: true }))).toBe(true);
    expect(sameRules(ourRules(saved(true)), desiredRules({ dns: false }))).toBe(false);
    expect(sameRules(ourRules(EMPTY), desiredRules({ dns: true }))).toBe(false);
  });

  it('removes jumps and chains, and nothing when there is nothing of ours', () => {
    const script = removeScript(saved(true))!;
    expect(script).toContain('-D PREROUTING -j AMBIT_PRERT');
    expect(script).toContain('-F AMBIT_OUTPUT');
    expect(script).toContain('-X AMBIT_PRERT');
    expect(removeScript(EMPTY)).toBeUndefined();
  });
});
