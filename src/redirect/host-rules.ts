// Node-side rules for kubelet probes, in the node agent's own network namespace (the node's: the
// DaemonSet is hostNetwork; in netns mode the node proxy runs in its node's namespace). After
// Istio's host rules (istio/istio cni/pkg/iptables/iptables.go AppendHostRules, testdata
// hostprobe.golden) and the matching in-pod rule (AppendInpodRules: `-s 169.254.7.127 -p tcp
// -j ACCEPT` in ISTIO_PRERT):
//
//   nat POSTROUTING → AMBIT_POSTRT                    raw PREROUTING → AMBIT_HOST_PRERT
//     -d <podIP>/32 -p tcp -m owner --socket-exists     -s 169.254.7.127/32 -j DROP
//        -j SNAT --to-source 169.254.7.127  (one per captured pod)
//
// Why: a STRICT pod refuses plaintext, and a kubelet probe is plaintext from the node. Packets a
// process on the node sends to a captured pod (`--socket-exists`: made by a local socket, so not
// forwarded traffic from other pods, nodes or kube-proxy) leave with the source 169.254.7.127,
// which the pod's rules let past inbound capture (iptables.ts). Istio matches the pod IPs with an
// ipset (istio-inpod-probes); we write one rule per pod instead (no ipset tool needed; the number
// of pods on a node keeps the chain short).
//
// Spoofing: nothing but this SNAT may produce that source. The SNAT happens on the way out of the
// node, so a packet that *arrives* at the node carrying 169.254.7.127 (from a pod on this node
// through its veth, or from the network) is forged: the raw rule drops it before routing, and it
// never reaches a pod. (Istio relies on the CNI's anti-spoofing here; we do not assume one.) The
// rules stay when the proxy stops, like the pods' own, so probes keep working across a restart.
import { byTable, chainsByTable, PROBE_SNAT_IP } from './iptables.js';

export { PROBE_SNAT_IP };
export const CHAIN_HOST_POSTROUTING = 'AMBIT_POSTRT';
export const CHAIN_HOST_PREROUTING = 'AMBIT_HOST_PRERT';

const RAW_JUMP = `-A PREROUTING -j ${CHAIN_HOST_PREROUTING}`;
const NAT_JUMP = `-A POSTROUTING -j ${CHAIN_HOST_POSTROUTING}`;
const ANTI_SPOOF = `-A ${CHAIN_HOST_PREROUTING} -s ${PROBE_SNAT_IP}/32 -j DROP`;

/** The SNAT rule of one pod address, as iptables-save prints it. */
export function probeSnatRule(podIp: string): string {
  return `-A ${CHAIN_HOST_POSTROUTING} -d ${podIp}/32 -p tcp -m owner --socket-exists -j SNAT --to-source ${PROBE_SNAT_IP}`;
}

/**
 * The iptables-restore (--noflush) input that puts the base rules (chains, jumps, anti-spoof
 * drop) in place, or undefined when they already are. Existing per-pod SNAT rules are kept: the
 * nat chain is created only when missing, never re-declared (which would flush it).
 */
export function hostBaseScript(save: string): string | undefined {
  const tables = byTable(save);
  const chains = chainsByTable(save);
  const raw = tables.get('raw') ?? [];
  const nat = tables.get('nat') ?? [];
  const rawOk =
    raw.filter((l) => l === RAW_JUMP).length === 1 &&
    raw.filter((l) => l.startsWith(`-A ${CHAIN_HOST_PREROUTING} `)).join('\n') === ANTI_SPOOF;
  const natOk =
    chains.get('nat')?.has(CHAIN_HOST_POSTROUTING) && nat.filter((l) => l === NAT_JUMP).length === 1;
  if (rawOk && natOk) return undefined;
  const lines: string[] = [];
  if (!rawOk) {
    lines.push('*raw', `:${CHAIN_HOST_PREROUTING} - [0:0]`); // declaring flushes: only our drop rule
    for (const j of raw.filter((l) => l === RAW_JUMP)) lines.push(j.replace(/^-A /, '-D '));
    lines.push(ANTI_SPOOF, `-I PREROUTING 1 -j ${CHAIN_HOST_PREROUTING}`, 'COMMIT');
  }
  if (!natOk) {
    lines.push('*nat');
    if (!chains.get('nat')?.has(CHAIN_HOST_POSTROUTING)) lines.push(`-N ${CHAIN_HOST_POSTROUTING}`);
    for (const j of nat.filter((l) => l === NAT_JUMP)) lines.push(j.replace(/^-A /, '-D '));
    lines.push(`-I POSTROUTING 1 -j ${CHAIN_HOST_POSTROUTING}`, 'COMMIT');
  }
  return lines.join('\n') + '\n';
}

/** Adds (on) or removes (off) the SNAT rules of these pod addresses; undefined when nothing changes. */
export function probeSnatScript(save: string, podIps: readonly string[], on: boolean): string | undefined {
  const nat = byTable(save).get('nat') ?? [];
  const lines: string[] = [];
  for (const ip of new Set(podIps.filter(isIpv4))) {
    const rule = probeSnatRule(ip);
    const present = nat.filter((l) => l === rule).length;
    if (on && present === 0) lines.push(rule);
    if (!on) for (let i = 0; i < present; i++) lines.push(rule.replace(/^-A /, '-D '));
  }
  return lines.length ? ['*nat', ...lines, 'COMMIT'].join('\n') + '\n' : undefined;
}

/** The iptables-restore input that removes every host rule of ours (tests, `ambit down` of a node). */
export function hostRemoveScript(save: string): string | undefined {
  const tables = byTable(save);
  const chains = chainsByTable(save);
  const lines: string[] = [];
  for (const [table, jump, chain] of [
    ['raw', RAW_JUMP, CHAIN_HOST_PREROUTING],
    ['nat', NAT_JUMP, CHAIN_HOST_POSTROUTING],
  ] as const) {
    const jumps = (tables.get(table) ?? []).filter((l) => l === jump);
    const has = chains.get(table)?.has(chain);
    if (!jumps.length && !has) continue;
    lines.push(`*${table}`, ...jumps.map((j) => j.replace(/^-A /, '-D ')));
    if (has) lines.push(`-F ${chain}`, `-X ${chain}`);
    lines.push('COMMIT');
  }
  return lines.length ? lines.join('\n') + '\n' : undefined;
}

function isIpv4(ip: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(ip);
}
