// In-pod redirection rules (after Istio's in-pod iptables, cni/pkg/iptables/iptables.go), as one
// iptables-restore run per pod, inside the pod's network namespace:
//
//   nat PREROUTING → AMBIT_PRERT                    nat OUTPUT → AMBIT_OUTPUT
//     marked by the proxy (0x539/0xfff): RETURN        marked by the proxy: RETURN
//     from lo: RETURN                                   DNS (UDP and TCP 53): REDIRECT 15053
//     TCP to 15008 (HBONE): RETURN                      to lo (localhost, own IP): RETURN
//     TCP from 169.254.7.127 (probe): ACCEPT            other TCP: REDIRECT 15001
//     other TCP: REDIRECT 15006
//   mangle PREROUTING → AMBIT_PRERT                 mangle OUTPUT → AMBIT_OUTPUT
//     marked by the proxy: connmark 0x111              connmark 0x111: restore it as the mark
//   + policy routing (agent.ts): fwmark 0x111 → table 100 (local 0.0.0.0/0 dev lo)
// The mangle part and the routing let the proxy deliver to the app with the real client's
// address as the source (IP_TRANSPARENT) and still get the app's replies, as ztunnel does.
//
// Kubelet probes: the node SNATs what its own processes send to a captured pod to 169.254.7.127
// and drops anything else claiming that source (host-rules.ts), so TCP from it is the node's and
// goes to the app directly, past inbound capture, as in Istio (cni/pkg/iptables/iptables.go
// AppendInpodRules, `-t nat -A ISTIO_PRERT -s 169.254.7.127 -p tcp -m tcp -j ACCEPT`): a STRICT
// pod's readiness probe works. Istio also ACCEPTs in ISTIO_OUTPUT what the app sends *to* that
// address; we do not: nat sees only a connection's first packet, so the app's replies to a probe
// never reach that chain, and the rule would only let the app open uncaptured connections.
//
// Why iptables (not nft): operators debug ambient pods with `iptables-save` in the pod netns, as
// they do Istio's; iptables-restore applies a table atomically (all of a pod's rules or none);
// and on Debian 12 and most distributions `iptables` is the nf_tables backend anyway
// (iptables-nft), with iptables-legacy as the fallback when nf_tables is not usable. The backend
// is detected once per node proxy (detectBackend).
//
// Idempotent: applying flushes our own chains and replaces our jumps (never duplicates them), and
// a pod whose rules already read exactly as desired is left untouched (a restarted proxy reuses
// them). Removing deletes the jumps and the chains and nothing else.
import { run } from './topology.js';
import { DNS_PROXY_PORT, HBONE_PORT, INBOUND_CAPTURE_PORT, OUTBOUND_CAPTURE_PORT } from '../common/ports.js';
import { PROXY_MARK, PROXY_MARK_MASK } from './pod-sockets.js';

export const CHAIN_PREROUTING = 'AMBIT_PRERT';
export const CHAIN_OUTPUT = 'AMBIT_OUTPUT';
/** Kubelet probes arrive from this address (SNAT on the node: host-rules.ts); Istio's HOST_PROBE_SNAT_ADDRESS default. */
export const PROBE_SNAT_IP = '169.254.7.127';

export type IptablesBackend = 'iptables-nft' | 'iptables-legacy';

export interface PodRulesOptions {
  /** Redirect DNS to 15053 (only when the DNS proxy listens there). */
  dns: boolean;
}

type Table = 'nat' | 'mangle';
const TABLES: Table[] = ['nat', 'mangle'];

const MARK = `0x${PROXY_MARK.toString(16)}/0x${PROXY_MARK_MASK.toString(16)}`;
/** Connection mark of the proxy's delivery connections (Istio's 0x111): replies to a spoofed source route back to lo. */
export const DELIVERY_CONNMARK = '0x111/0xfff';
/** Policy routing for those replies: `ip rule fwmark 0x111/0xfff lookup 100`, table 100 = everything local. */
export const DELIVERY_ROUTE_TABLE = '100';
export const DELIVERY_RULE_PREF = '32764';

/**
 * Our rules, each as `-t <table> ` + the line `iptables-save` prints (the comparison form).
 * nat redirects; mangle marks the proxy's delivery connections so that the app's replies to a
 * spoofed source address (the real client) are routed back to the proxy over lo.
 */
export function desiredRules(o: PodRulesOptions): string[] {
  const nat = [
    `-A PREROUTING -j ${CHAIN_PREROUTING}`,
    `-A OUTPUT -j ${CHAIN_OUTPUT}`,
    `-A ${CHAIN_PREROUTING} -m mark --mark ${MARK} -j RETURN`,
    `-A ${CHAIN_PREROUTING} -i lo -j RETURN`,
    `-A ${CHAIN_PREROUTING} -p tcp -m tcp --dport ${HBONE_PORT} -j RETURN`,
    `-A ${CHAIN_PREROUTING} -s ${PROBE_SNAT_IP}/32 -p tcp -j ACCEPT`,
    `-A ${CHAIN_PREROUTING} -p tcp -j REDIRECT --to-ports ${INBOUND_CAPTURE_PORT}`,
    `-A ${CHAIN_OUTPUT} -m mark --mark ${MARK} -j RETURN`,
    ...(o.dns
      ? [
          `-A ${CHAIN_OUTPUT} -p udp -m udp --dport 53 -j REDIRECT --to-ports ${DNS_PROXY_PORT}`,
          `-A ${CHAIN_OUTPUT} -p tcp -m tcp --dport 53 -j REDIRECT --to-ports ${DNS_PROXY_PORT}`,
        ]
      : []),
    `-A ${CHAIN_OUTPUT} -o lo -j RETURN`,
    `-A ${CHAIN_OUTPUT} -p tcp -j REDIRECT --to-ports ${OUTBOUND_CAPTURE_PORT}`,
  ];
  const mangle = [
    `-A PREROUTING -j ${CHAIN_PREROUTING}`,
    `-A OUTPUT -j ${CHAIN_OUTPUT}`,
    // The proxy's own connections reaching the pod over lo (delivery) get the connection mark…
    `-A ${CHAIN_PREROUTING} -m mark --mark ${MARK} -j CONNMARK --set-xmark ${DELIVERY_CONNMARK}`,
    // …which the app's packets of those connections carry, so policy routing sends them to lo.
    `-A ${CHAIN_OUTPUT} -m connmark --mark ${DELIVERY_CONNMARK} -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff`,
  ];
  return [...nat.map((l) => `-t nat ${l}`), ...mangle.map((l) => `-t mangle ${l}`)];
}

/** Our lines from an `iptables-save` dump (all tables), as `-t <table> <line>`. */
export function ourRules(save: string): string[] {
  const out: string[] = [];
  for (const [table, lines] of byTable(save))
    for (const l of lines)
      if (l.startsWith(`-A ${CHAIN_PREROUTING} `) || l.startsWith(`-A ${CHAIN_OUTPUT} `) || isJump(l))
        out.push(`-t ${table} ${l}`);
  return out;
}

export function hasOurChains(save: string): boolean {
  return new RegExp(`^:(${CHAIN_PREROUTING}|${CHAIN_OUTPUT}) `, 'm').test(save);
}

/**
 * The iptables-restore (--noflush) input that installs the rules, one block per table: existing
 * jumps to our chains are deleted first (so a re-apply never duplicates them), our chains are
 * declared (which flushes them), then filled, then jumped to from the top of PREROUTING and
 * OUTPUT.
 */
export function applyScript(currentSave: string, o: PodRulesOptions): string {
  const current = byTable(currentSave);
  const want = desiredRules(o);
  const lines: string[] = [];
  for (const table of TABLES) {
    lines.push(`*${table}`, `:${CHAIN_PREROUTING} - [0:0]`, `:${CHAIN_OUTPUT} - [0:0]`);
    for (const jump of (current.get(table) ?? []).filter(isJump)) lines.push(jump.replace(/^-A /, '-D '));
    for (const r of want) {
      const l = r.slice(`-t ${table} `.length);
      if (r.startsWith(`-t ${table} `) && !isJump(l)) lines.push(l);
    }
    lines.push(`-I PREROUTING 1 -j ${CHAIN_PREROUTING}`, `-I OUTPUT 1 -j ${CHAIN_OUTPUT}`, 'COMMIT');
  }
  return lines.join('\n') + '\n';
}

/** The iptables-restore (--noflush) input that removes every trace of ours; undefined if none. */
export function removeScript(currentSave: string): string | undefined {
  const lines: string[] = [];
  const chains = chainsByTable(currentSave);
  for (const [table, tableLines] of byTable(currentSave)) {
    const jumps = tableLines.filter(isJump);
    const ours = [CHAIN_PREROUTING, CHAIN_OUTPUT].filter((c) => chains.get(table)?.has(c));
    if (jumps.length === 0 && ours.length === 0) continue;
    lines.push(`*${table}`);
    for (const jump of jumps) lines.push(jump.replace(/^-A /, '-D '));
    for (const c of ours) lines.push(`-F ${c}`, `-X ${c}`);
    lines.push('COMMIT');
  }
  return lines.length ? lines.join('\n') + '\n' : undefined;
}

function isJump(l: string): boolean {
  return new RegExp(
    `^-A (PREROUTING|OUTPUT|INPUT|POSTROUTING|FORWARD) .*-j (${CHAIN_PREROUTING}|${CHAIN_OUTPUT})$`,
  ).test(l);
}

/** Rule lines per table of an iptables-save dump. */
export function byTable(save: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let table: string | undefined;
  for (const raw of save.split('\n')) {
    const l = raw.trim();
    if (l.startsWith('*')) out.set((table = l.slice(1)), []);
    else if (l === 'COMMIT') table = undefined;
    else if (table && l.startsWith('-A ')) out.get(table)!.push(l);
  }
  return out;
}

export function chainsByTable(save: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  let table: string | undefined;
  for (const raw of save.split('\n')) {
    const l = raw.trim();
    if (l.startsWith('*')) out.set((table = l.slice(1)), new Set());
    else if (table && l.startsWith(':')) out.get(table)!.add(l.slice(1).split(' ')[0]!);
  }
  return out;
}

/** Runs iptables tools inside the namespace at nsPath (nsenter: works for any netns path). */
export class Iptables {
  constructor(readonly backend: IptablesBackend) {}

  save(nsPath: string): Promise<string> {
    return run('nsenter', [`--net=${nsPath}`, `${this.backend}-save`]);
  }

  restore(nsPath: string, script: string): Promise<string> {
    return run('nsenter', [`--net=${nsPath}`, `${this.backend}-restore`, '--noflush', '-w', '5'], script);
  }

  /** The same in our own namespace (the node's: host-rules.ts). */
  saveOwn(): Promise<string> {
    return run(`${this.backend}-save`, []);
  }

  restoreOwn(script: string): Promise<string> {
    return run(`${this.backend}-restore`, ['--noflush', '-w', '5'], script);
  }
}

/**
 * The backend to use: the nf_tables one when it works here, else legacy. Probed in the proxy's
 * own namespace (reading the nat table needs the same kernel support the pods' rules do).
 */
export async function detectBackend(): Promise<{ backend?: IptablesBackend; reason?: string }> {
  const errors: string[] = [];
  for (const b of ['iptables-nft', 'iptables-legacy'] as const) {
    try {
      await run(`${b}-save`, ['-t', 'nat']);
      return { backend: b };
    } catch (err) {
      errors.push(`${b}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  return { reason: `no working iptables (install the Debian package iptables): ${errors.join('; ')}` };
}
