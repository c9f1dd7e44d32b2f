// Kubernetes node authentication for the CA and xDS (DESIGN.md §3 "Node authentication";
// istiod's security/pkg/server/ca/authenticate/kubeauth and node_auth.go). A caller presents a
// projected service-account token (audience `istio-ca`, as ztunnel's chart mounts it) as
// `authorization: Bearer <token>`; the API server's TokenReview says whose it is:
//  - a trusted node account (default ambit-system/ambit-node) is a node proxy: its node is the
//    `authentication.kubernetes.io/node-name` the API server bound into the token (Kubernetes
//    ≥ 1.30), else the node of the pod the token is bound to (pod-name + pod-uid, checked against
//    the pod as the API server has it now). It may then sign for the pods scheduled on that node;
//  - any other service account (a waypoint pod) may only obtain its own identity;
//  - a token not bound to a pod (a legacy Secret token) is refused: it survives its pod and
//    could be replayed from anywhere.
// Successful reviews are cached for a short time (by SHA-256 of the token), since a node asks
// for many certificates at once after a restart.
import { createHash } from 'node:crypto';
import type { Metadata } from '@grpc/grpc-js';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { KubeClient, RawObject } from '../config/kube-client.js';
import { POD, TOKEN_REVIEW } from '../config/kube-resources.js';

/** Istio's CA token audience (ztunnel mounts `istio-token` with this audience). */
export const CA_TOKEN_AUDIENCE = 'istio-ca';
/** Caller name prefix for a workload (non-node) caller: node names can never contain ':' or '/'. */
const WORKLOAD_CALLER = 'serviceaccount:';

const EXTRA_NODE_NAME = 'authentication.kubernetes.io/node-name';
const EXTRA_POD_NAME = 'authentication.kubernetes.io/pod-name';
const EXTRA_POD_UID = 'authentication.kubernetes.io/pod-uid';

/** What the authenticator needs to know about a pod. */
export interface PodFacts {
  uid?: string;
  nodeName?: string;
  serviceAccountName?: string;
}

export interface TokenReviewAuthenticatorOptions {
  client: KubeClient;
  /** "namespace/serviceaccount" of node proxies. */
  trustedNodeAccounts: readonly string[];
  audience?: string;
  /** The pod as the informer cache has it; when absent, it is read from the API server. */
  lookupPod?(namespace: string, name: string): PodFacts | undefined;
  cacheMs?: number;
  logger: Logger;
}

interface ReviewStatus {
  authenticated?: boolean;
  error?: string;
  user?: { username?: string; extra?: Record<string, string[]> };
  audiences?: string[];
}

export class TokenReviewAuthenticator {
  private readonly cache = new Map<string, { caller: string; until: number }>();
  private readonly audience: string;
  private readonly cacheMs: number;

  constructor(private readonly opts: TokenReviewAuthenticatorOptions) {
    this.audience = opts.audience ?? CA_TOKEN_AUDIENCE;
    this.cacheMs = opts.cacheMs ?? 30_000;
  }

  /** The caller (a node name, or `serviceaccount:ns/sa` for a workload), or undefined (refused). */
  async authenticate(md: Metadata): Promise<string | undefined> {
    const token = bearerToken(md);
    if (!token) return undefined;
    const digest = createHash('sha256').update(token).digest('hex');
    const hit = this.cache.get(digest);
    if (hit && hit.until > Date.now()) return hit.caller;
    let caller: string;
    try {
      caller = await this.review(token);
    } catch (err) {
      this.opts.logger.warn({ reason: errorMessage(err) }, 'node authentication refused');
      return undefined;
    }
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(digest, { caller, until: Date.now() + this.cacheMs });
    return caller;
  }

  private async review(token: string): Promise<string> {
    const res = await this.opts.client.create<{ status?: ReviewStatus }>(TOKEN_REVIEW, undefined, {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenReview',
      spec: { token, audiences: [this.audience] },
    });
    const status = res.status ?? {};
    if (!status.authenticated)
      throw new Error(`TokenReview: not authenticated (${status.error ?? 'no reason given'})`);
    if (!(status.audiences ?? []).includes(this.audience)) {
      throw new Error(`TokenReview: token is not for audience ${this.audience}`);
    }
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(status.user?.username ?? '');
    if (!m) throw new Error(`TokenReview: ${status.user?.username ?? '(no user)'} is not a service account`);
    const [, namespace, sa] = m as unknown as [string, string, string];
    const extra = status.user?.extra ?? {};
    const podName = single(extra[EXTRA_POD_NAME]);
    const podUid = single(extra[EXTRA_POD_UID]);
    if (!podName || !podUid) {
      throw new Error(
        `TokenReview: the token of ${namespace}/${sa} is not bound to a pod (use a projected service account token)`,
      );
    }
    const pod = await this.pod(namespace, podName);
    if (!pod || pod.uid !== podUid)
      throw new Error(`pod ${namespace}/${podName} (${podUid}) no longer exists`);
    if ((pod.serviceAccountName ?? 'default') !== sa) {
      throw new Error(`pod ${namespace}/${podName} runs as ${pod.serviceAccountName}, not ${sa}`);
    }
    if (!this.opts.trustedNodeAccounts.includes(`${namespace}/${sa}`))
      return `${WORKLOAD_CALLER}${namespace}/${sa}`;
    const boundNode = single(extra[EXTRA_NODE_NAME]);
    if (boundNode && pod.nodeName && boundNode !== pod.nodeName) {
      throw new Error(
        `token bound to node ${boundNode} but pod ${namespace}/${podName} is on ${pod.nodeName}`,
      );
    }
    const node = boundNode ?? pod.nodeName;
    if (!node) throw new Error(`pod ${namespace}/${podName} is not scheduled on a node`);
    return node;
  }

  private async pod(namespace: string, name: string): Promise<PodFacts | undefined> {
    const cached = this.opts.lookupPod?.(namespace, name);
    if (cached) return cached;
    const raw = await this.opts.client.get<RawObject>(POD, namespace, name);
    if (!raw) return undefined;
    const spec = (raw.spec ?? {}) as { nodeName?: string; serviceAccountName?: string };
    return { uid: raw.metadata.uid, nodeName: spec.nodeName, serviceAccountName: spec.serviceAccountName };
  }
}

/**
 * The identities a caller may obtain: a node's pods' (from the index), or a workload caller's
 * own `spiffe://<td>/ns/<ns>/sa/<sa>`.
 */
export function identitiesForCaller(
  caller: string,
  trustDomain: string,
  identitiesOnNode: (node: string) => ReadonlySet<string>,
): ReadonlySet<string> {
  if (!caller.startsWith(WORKLOAD_CALLER)) return identitiesOnNode(caller);
  const [namespace, sa] = caller.slice(WORKLOAD_CALLER.length).split('/');
  return new Set([`spiffe://${trustDomain}/ns/${namespace}/sa/${sa}`]);
}

function single(v: string[] | undefined): string | undefined {
  return v && v.length === 1 && v[0] ? v[0] : undefined;
}

function bearerToken(md: Metadata): string | undefined {
  const values = md.get('authorization');
  if (values.length !== 1 || typeof values[0] !== 'string') return undefined;
  return /^Bearer\s+(\S+)\s*$/i.exec(values[0])?.[1];
}
