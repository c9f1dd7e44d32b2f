// Which network namespace is a local pod's, for the node agent (capture.ts asks through
// `netnsPathOf`): by name in netns mode (`ambit up --netns` made them, `<prefix>pod-<ns>-<name>`),
// by the pod's IP on Kubernetes (config/kube-pod-netns.ts scans the runtime's bind mounts and
// /proc). A pod IP that two namespaces claim is refused with both named: the pod is not captured
// (its listeners are not opened anywhere, readiness says why, the agent retries every 2 s), so a
// pod that adds another pod's address to its own interface cannot have that pod's listeners —
// and identity — opened in its namespace. Never the first match.
import { discoverPodNetns, type PodNetns } from '../config/kube-pod-netns.js';

export type PodNetnsErrorCode = 'POD_NETNS_NOT_FOUND' | 'POD_NETNS_AMBIGUOUS';

export class PodNetnsError extends Error {
  readonly code: PodNetnsErrorCode;
  constructor(code: PodNetnsErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = 'PodNetnsError';
  }
}

export interface PodRef {
  namespace: string;
  name: string;
  addresses: readonly string[];
}

/** `netnsPathOf` for `ambit node --capture netns`: by name when a prefix is given, else by IP. */
export function podNetnsLookup(
  prefix: string | undefined,
  discover: typeof discoverPodNetns = discoverPodNetns,
): (pod: PodRef) => Promise<string> {
  return async (pod) => {
    if (prefix !== undefined) return `/run/netns/${prefix}pod-${pod.namespace}-${pod.name}`;
    return (await podNetnsByIp(pod, discover)).path;
  };
}

/** The one namespace holding the pod's first address; throws PodNetnsError when none or several do. */
export async function podNetnsByIp(
  pod: PodRef,
  discover: typeof discoverPodNetns = discoverPodNetns,
): Promise<PodNetns> {
  const ip = pod.addresses[0] ?? '';
  const { found, conflicts } = await discover([ip]);
  const claimants = conflicts.get(ip) ?? [...conflicts.values()][0];
  if (claimants)
    throw new PodNetnsError(
      'POD_NETNS_AMBIGUOUS',
      `pod ${pod.namespace}/${pod.name}'s address ${ip} is a local address in ${claimants.length} network namespaces ` +
        `(${claimants.map(describe).join(', ')}); not capturing it: another pod may have taken its address`,
    );
  const one = found.get(ip) ?? [...found.values()][0];
  if (!one)
    throw new PodNetnsError(
      'POD_NETNS_NOT_FOUND',
      `no network namespace on this node has pod ${pod.namespace}/${pod.name}'s address ${ip}`,
    );
  return one;
}

function describe(n: PodNetns): string {
  return n.pid !== undefined ? `${n.path} (pid ${n.pid})` : n.path;
}
