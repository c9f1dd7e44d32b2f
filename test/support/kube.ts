// Helpers for tests against the fake API server: a KubeClient for it, object builders in the
// shapes the real API returns, and waiting on a ConfigSource without sleeping.
import { KubeConfig } from '@kubernetes/client-node';
import { KubeClient } from '../../src/config/kube-client.js';
import { KubeSource } from '../../src/config/kube-source.js';
import type { Logger } from '../../src/common/log.js';
import type { ConfigSnapshot, ConfigSource } from '../../src/config/types.js';
import type { FakeApiServer, Obj } from './fake-apiserver.js';

export function clientFor(api: FakeApiServer, timeoutMs = 2000): KubeClient {
  const kc = new KubeConfig();
  kc.loadFromString(api.kubeconfig());
  return new KubeClient(kc, { timeoutMs });
}

/** Resolves once `pred(snapshot)` holds (checked now and after every change); rejects after `ms`. */
/** A KubeSource on `api` with test-speed retries (50–200 ms backoff, 200 ms absent-CRD retry). */
export function fastKubeSource(api: FakeApiServer, logger: Logger): KubeSource {
  return new KubeSource({
    client: clientFor(api, 1000),
    logger,
    backoff: { initialMs: 50, maxMs: 200 },
    absentRetryMs: 200,
    watchTimeoutSeconds: 30,
  });
}

export function untilSnapshot(
  source: ConfigSource,
  pred: (s: ConfigSnapshot) => boolean,
  ms = 5000,
  what = 'condition',
): Promise<ConfigSnapshot> {
  return new Promise((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      reject(new Error(`${what} not reached within ${ms} ms`));
    }, ms);
    const check = (s: ConfigSnapshot) => {
      if (done || !pred(s)) return;
      done = true;
      clearTimeout(timer);
      resolve(s);
    };
    source.onChange((_c, s) => check(s));
    check(source.snapshot());
  });
}

/** Polls `fn` until it returns a truthy value (for state outside a ConfigSource); bounded. */
export async function eventually<T>(
  fn: () => T | Promise<T>,
  ms = 5000,
  what = 'condition',
): Promise<NonNullable<Awaited<T>>> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<Awaited<T>>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`${what} not reached within ${ms} ms${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export const ns = (
  name: string,
  labels: Record<string, string> = { 'istio.io/dataplane-mode': 'ambient' },
): Obj => ({
  apiVersion: 'v1',
  kind: 'Namespace',
  metadata: { name, labels },
});

export const node = (name: string, ip: string): Obj => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name },
  status: { addresses: [{ type: 'InternalIP', address: ip }] },
});

export function pod(
  name: string,
  namespace: string,
  nodeName: string,
  ip: string,
  opts: { labels?: Record<string, string>; sa?: string } = {},
): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels: opts.labels ?? { app: name } },
    spec: {
      nodeName,
      serviceAccountName: opts.sa ?? 'default',
      containers: [{ name: 'app', image: 'app:1' }],
    },
    status: {
      phase: 'Running',
      podIP: ip,
      podIPs: [{ ip }],
      conditions: [{ type: 'Ready', status: 'True' }],
    },
  };
}

export function service(
  name: string,
  namespace: string,
  clusterIP: string,
  selector: Record<string, string>,
  port = 80,
): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace },
    spec: {
      clusterIP,
      clusterIPs: [clusterIP],
      type: 'ClusterIP',
      selector,
      ports: [{ name: 'http', port, targetPort: 8080, protocol: 'TCP' }],
    },
  };
}

/**
 * A node proxy pod (service account ambit-node in `system`) on each node of `nodeIps`, and the
 * projected token (audience istio-ca, bound to that pod and node) each would present; by node name.
 */
export function nodeProxyTokens(
  api: FakeApiServer,
  system: string,
  nodeIps: Record<string, string>,
): Record<string, string> {
  const tokens: Record<string, string> = {};
  for (const [n, ip] of Object.entries(nodeIps)) {
    const p = api.put(pod(`ambit-node-${n}`, system, n, ip, { sa: 'ambit-node' }));
    tokens[n] = api.issueToken({
      namespace: system,
      serviceAccount: 'ambit-node',
      audiences: ['istio-ca'],
      pod: { name: p.metadata.name!, uid: p.metadata.uid! },
      nodeName: n,
    });
  }
  return tokens;
}
