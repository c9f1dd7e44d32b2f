// The node agent's rule keeper (runs inside the node proxy process, ztunnel + istio-cni's role):
// installs and removes the in-pod redirection rules (iptables.ts) in a pod's network namespace,
// one pod at a time, each as a whole (all its rules or none), and says what it did. Finding the
// pods and opening their listeners is nodeproxy/capture.ts's job; this file only touches rules.
// It also keeps the node-side probe rules (host-rules.ts) in its own namespace: the base rules
// (anti-spoof drop, chains) before any pod is captured, and each captured pod's probe SNAT.
import { access } from 'node:fs/promises';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { run } from './topology.js';
import { hostBaseScript, probeSnatScript } from './host-rules.js';
import {
  applyScript,
  DELIVERY_CONNMARK,
  DELIVERY_ROUTE_TABLE,
  DELIVERY_RULE_PREF,
  desiredRules,
  detectBackend,
  Iptables,
  ourRules,
  removeScript,
  type IptablesBackend,
  type PodRulesOptions,
} from './iptables.js';

export type CaptureOutcome = 'installed' | 'reused';

/** What capture() needs beyond the rule options: the pod's addresses, for the probe SNAT. */
export interface CaptureOptions extends PodRulesOptions {
  podIps?: readonly string[];
}

export class NodeAgent {
  /** Edits of the node's own tables, one at a time (read, compute, apply must not interleave). */
  private hostQueue: Promise<unknown> = Promise.resolve();
  /** Addresses whose probe SNAT this agent added, by pod namespace path (for release). */
  private readonly snatByNetns = new Map<string, readonly string[]>();

  private constructor(
    private readonly iptables: Iptables,
    private readonly log: Logger,
  ) {}

  /**
   * Detects the iptables backend and installs the node-side probe rules; throws with what is
   * missing. Without the anti-spoof drop the pods' probe exemption would be a hole, so an agent
   * that cannot install it does not start (no pod is captured with the exemption).
   */
  static async create(logger: Logger): Promise<NodeAgent> {
    const { backend, reason } = await detectBackend();
    if (!backend) throw new Error(reason);
    const log = logger.child({ part: 'agent' });
    const agent = new NodeAgent(new Iptables(backend), log);
    try {
      await agent.host(async (ipt) => {
        const script = hostBaseScript(await ipt.saveOwn());
        if (script) await ipt.restoreOwn(script);
        log.info({ rules: script ? 'installed' : 'reused' }, 'node agent: kubelet probe rules on the node');
      });
    } catch (err) {
      throw new Error(
        `could not install the node's probe rules (SNAT to 169.254.7.127, anti-spoof drop): ${errorMessage(err)}`,
      );
    }
    log.info({ backend }, 'node agent: in-pod redirection with iptables');
    return agent;
  }

  get backend(): IptablesBackend {
    return this.iptables.backend;
  }

  /**
   * Installs the pod's redirection, or leaves it when it already reads exactly as desired (a
   * restarted proxy finds its pods set up). One iptables-restore transaction: all or nothing.
   */
  async capture(pod: string, nsPath: string, o: CaptureOptions): Promise<CaptureOutcome> {
    await access(nsPath).catch(() => {
      throw new Error(`network namespace ${nsPath} of pod ${pod} does not exist`);
    });
    const current = await this.iptables.save(nsPath);
    const want = desiredRules(o);
    let outcome: CaptureOutcome = 'installed';
    if (sameRules(ourRules(current), want) && (await hasDeliveryRoute(nsPath))) outcome = 'reused';
    else
      try {
        await addDeliveryRoute(nsPath);
        await this.iptables.restore(nsPath, applyScript(current, o));
      } catch (err) {
        throw new Error(`could not install the redirection rules of pod ${pod}: ${errorMessage(err)}`);
      }
    const ips = o.podIps ?? [];
    try {
      await this.probeSnat(ips, true);
    } catch (err) {
      throw new Error(`could not install the probe SNAT of pod ${pod} on the node: ${errorMessage(err)}`);
    }
    this.snatByNetns.set(nsPath, ips);
    if (outcome === 'reused')
      this.log.info({ pod, netns: nsPath }, 'node agent: redirection already in place; reused');
    else this.log.info({ pod, netns: nsPath, rules: want.length }, 'node agent: redirection installed');
    return outcome;
  }

  /** Removes every rule and chain of ours from the pod's namespace; a vanished namespace is fine. */
  async release(pod: string, nsPath: string): Promise<void> {
    const snat = this.snatByNetns.get(nsPath);
    if (snat) {
      this.snatByNetns.delete(nsPath);
      await this.probeSnat(snat, false);
    }
    const exists = await access(nsPath).then(
      () => true,
      () => false,
    );
    if (!exists) return;
    const current = await this.iptables.save(nsPath);
    const script = removeScript(current);
    const routed = await hasDeliveryRoute(nsPath);
    if (!script && !routed) return;
    if (script) await this.iptables.restore(nsPath, script);
    if (routed) await removeDeliveryRoute(nsPath);
    this.log.info({ pod, netns: nsPath }, 'node agent: redirection removed');
  }

  /** Our rules as the pod's namespace has them now (for tests and ctl). */
  async rules(nsPath: string): Promise<string[]> {
    return ourRules(await this.iptables.save(nsPath));
  }

  private probeSnat(ips: readonly string[], on: boolean): Promise<void> {
    if (ips.length === 0) return Promise.resolve();
    return this.host(async (ipt) => {
      const script = probeSnatScript(await ipt.saveOwn(), ips, on);
      if (script) await ipt.restoreOwn(script);
    });
  }

  private host<T>(fn: (ipt: Iptables) => Promise<T>): Promise<T> {
    const next = this.hostQueue.then(() => fn(this.iptables));
    this.hostQueue = next.catch(() => undefined);
    return next;
  }
}

// Policy routing for delivery replies (see iptables.ts): rule and table 100, in the pod's netns.
const ipIn = (nsPath: string, args: string[]) => run('nsenter', [`--net=${nsPath}`, 'ip', ...args]);

async function hasDeliveryRoute(nsPath: string): Promise<boolean> {
  const rules = await ipIn(nsPath, ['rule', 'show', 'pref', DELIVERY_RULE_PREF]).catch(() => '');
  const routes = await ipIn(nsPath, ['route', 'show', 'table', DELIVERY_ROUTE_TABLE]).catch(() => '');
  return (
    rules.includes(`fwmark ${DELIVERY_CONNMARK} lookup ${DELIVERY_ROUTE_TABLE}`) &&
    routes.includes('local default dev lo')
  );
}

async function addDeliveryRoute(nsPath: string): Promise<void> {
  await ipIn(nsPath, ['route', 'replace', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', DELIVERY_ROUTE_TABLE]);
  const rules = await ipIn(nsPath, ['rule', 'show', 'pref', DELIVERY_RULE_PREF]);
  if (!rules.includes(`fwmark ${DELIVERY_CONNMARK} lookup ${DELIVERY_ROUTE_TABLE}`))
    await ipIn(nsPath, [
      'rule',
      'add',
      'fwmark',
      DELIVERY_CONNMARK,
      'pref',
      DELIVERY_RULE_PREF,
      'lookup',
      DELIVERY_ROUTE_TABLE,
    ]);
}

async function removeDeliveryRoute(nsPath: string): Promise<void> {
  await ipIn(nsPath, ['rule', 'del', 'pref', DELIVERY_RULE_PREF]).catch(() => undefined);
  await ipIn(nsPath, ['route', 'flush', 'table', DELIVERY_ROUTE_TABLE]).catch(() => undefined);
}

/** Same rules in the same order within each chain (tools print chains in different orders). */
export function sameRules(have: string[], want: string[]): boolean {
  const norm = (rules: string[]) =>
    rules
      .map((r, i) => ({ r, i, chain: r.split(' ').slice(0, 4).join(' ') })) // "-t nat -A CHAIN"
      .sort((a, b) => a.chain.localeCompare(b.chain) || a.i - b.i)
      .map((x) => x.r);
  const [h, w] = [norm(have), norm(want)];
  return h.length === w.length && h.every((l, i) => l === w[i]);
}
