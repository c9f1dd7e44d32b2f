// The node-side kubelet probe rules (host-rules.ts): the scripts, and — as root, in a scratch
// namespace with the real iptables — that they apply, read back as written (so a restarted agent
// sees them as in place), keep the per-pod SNAT rules across a re-apply, and remove cleanly.
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  hostBaseScript,
  hostRemoveScript,
  probeSnatRule,
  probeSnatScript,
} from '../../../src/redirect/host-rules.js';
import { desiredRules } from '../../../src/redirect/iptables.js';
import { TestNetns, iptablesCommand, netnsSkipReason } from '../../support/netns.js';

describe('kubelet probe rules (pure)', () => {
  it('SNATs only what a local socket sends to the pod, and drops any arriving packet claiming the probe address', () => {
    const script = hostBaseScript('')!;
    expect(script).toContain('-A AMBIT_HOST_PRERT -s 169.254.7.127/32 -j DROP');
    expect(script).toContain('-I PREROUTING 1 -j AMBIT_HOST_PRERT');
    expect(script).toContain('-N AMBIT_POSTRT');
    expect(script).toContain('-I POSTROUTING 1 -j AMBIT_POSTRT');
    expect(probeSnatRule('10.200.170.11')).toBe(
      '-A AMBIT_POSTRT -d 10.200.170.11/32 -p tcp -m owner --socket-exists -j SNAT --to-source 169.254.7.127',
    );
  });

  it('lets TCP from the probe address past inbound capture in the pod, before the 15006 redirect (Istio AppendInpodRules)', () => {
    const r = desiredRules({ dns: true });
    const accept = r.indexOf('-t nat -A AMBIT_PRERT -s 169.254.7.127/32 -p tcp -j ACCEPT');
    expect(accept).toBeGreaterThan(-1);
    expect(accept).toBeLessThan(r.indexOf('-t nat -A AMBIT_PRERT -p tcp -j REDIRECT --to-ports 15006'));
    // Nothing lets the app send to it uncaptured (Istio's ISTIO_OUTPUT ACCEPT is left out on purpose).
    expect(r.filter((l) => l.includes('169.254.7.127'))).toHaveLength(1);
  });

  it('adds a pod address once, removes every copy, and skips IPv6', () => {
    const rule = probeSnatRule('10.0.0.7');
    const save = `*nat\n:AMBIT_POSTRT - [0:0]\n${rule}\n${rule}\nCOMMIT\n`;
    expect(probeSnatScript(save, ['10.0.0.7'], true)).toBeUndefined();
    expect(probeSnatScript(save, ['10.0.0.8', 'fd00::8'], true)).toBe(
      `*nat\n${probeSnatRule('10.0.0.8')}\nCOMMIT\n`,
    );
    expect(
      probeSnatScript(save, ['10.0.0.7'], false)!.match(/-D AMBIT_POSTRT -d 10\.0\.0\.7\/32/g),
    ).toHaveLength(2);
    expect(probeSnatScript(save, ['10.0.0.9'], false)).toBeUndefined();
  });
});

const skip = netnsSkipReason();
if (skip) console.log(`kubelet probe rules with the real iptables skipped: ${skip}`);
const ns = new TestNetns('ambit-t12h6-host');

describe.skipIf(!!skip)('kubelet probe rules with the real iptables (root)', () => {
  beforeAll(() => ns.create());
  afterAll(() => ns.delete());
  const save = () => ns.exec(`${iptablesCommand()!}-save`);
  const restore = (script: string) =>
    execFileSync('ip', ['netns', 'exec', ns.name, `${iptablesCommand()!}-restore`, '--noflush'], {
      input: script,
    });

  it('installs, reads back as in place, keeps pod rules across a re-apply, and removes cleanly', () => {
    restore(hostBaseScript(save())!);
    expect(hostBaseScript(save())).toBeUndefined(); // iptables-save prints exactly what we compare
    restore(probeSnatScript(save(), ['10.200.170.11', '10.200.170.12'], true)!);
    expect(probeSnatScript(save(), ['10.200.170.11'], true)).toBeUndefined();
    // A lost jump is put back without flushing the pods' SNAT rules.
    ns.iptables(['-t', 'nat', '-D', 'POSTROUTING', '-j', 'AMBIT_POSTRT']);
    restore(hostBaseScript(save())!);
    expect(save()).toContain(probeSnatRule('10.200.170.12'));
    expect(save().match(/-A POSTROUTING -j AMBIT_POSTRT/g)).toHaveLength(1);
    restore(probeSnatScript(save(), ['10.200.170.12'], false)!);
    expect(save()).not.toContain('10.200.170.12');
    expect(save()).toContain(probeSnatRule('10.200.170.11'));
    restore(hostRemoveScript(save())!);
    expect(save()).not.toMatch(/AMBIT_/);
    expect(hostRemoveScript(save())).toBeUndefined();
  });
});
