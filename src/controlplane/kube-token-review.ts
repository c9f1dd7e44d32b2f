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
// Reviews are cached by SHA-256 of the token: a success for a short time (30 s, never past the
// token's own `exp`), since a node asks for many certificates at once after a restart; a refusal
// for 5 s (negative cache), so a flood of bad tokens is not a flood of TokenReviews. Both caches are
// bounded (oldest evicted), concurrent reviews of one token share one request, and at most
// MAX_INFLIGHT distinct reviews run at once (beyond that a caller is refused: fail closed).
// istiod caches successes the same way (security/pkg/server/ca/authenticate/kubeauth, its
// token-review cache); the negative cache is ours (issue 12).
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
  /** How long a refused token stays refused without a new review (default 5 s). */
  negativeCacheMs?: number;
  logger: Logger;
}

const MAX_CACHED = 10_000;
const MAX_INFLIGHT = 64;

/** A definitive answer that the token is not acceptable (cached), as opposed to an API failure (not cached). */
class Refused extends Error {}

interface ReviewStatus {
  authenticated?: boolean;
  error?: string;
  user?: { username?: string; extra?: Record<string, string[]> };
  audiences?: string[];
}

export class TokenReviewAuthenticator {
  private readonly cache = new Map<string, { caller: string; until: number }>();
  private readonly refused = new Map<string, { reason: string; until: number }>();
  private readonly inflight = new Map<string, Promise<string | undefined>>();
  private readonly audience: string;
  private readonly cacheMs: number;
  private readonly negativeCacheMs: number;
  /** TokenReviews sent (for tests and metrics). */
  reviews = 0;

  constructor(private readonly opts: TokenReviewAuthenticatorOptions) {
    this.audience = opts.audience ?? CA_TOKEN_AUDIENCE;
    this.cacheMs = opts.cacheMs ?? 30_000;
    this.negativeCacheMs = opts.negativeCacheMs ?? 5_000;
  }

  /** The caller (a node name, or `serviceaccount:ns/sa` for a workload), or undefined (refused). */
  async authenticate(md: Metadata): Promise<string | undefined> {
    const token = bearerToken(md);
    if (!token) return undefined;
    const digest = createHash('sha256').update(token).digest('hex');
    const now = Date.now();
    const hit = this.cache.get(digest);
    if (hit && hit.until > now) return hit.caller;
    const no = this.refused.get(digest);
    if (no && no.until > now) return undefined; // logged when it was first refused
    const pending = this.inflight.get(digest);
    if (pending) return pending;
    if (this.inflight.size >= MAX_INFLIGHT) {
      this.opts.logger.warn(
        { reason: `${MAX_INFLIGHT} token reviews already in flight` },
        'node authentication refused',
      );
      return undefined;
    }
    const p = this.reviewOnce(token, digest).finally(() => this.inflight.delete(digest));
    this.inflight.set(digest, p);
    return p;
  }

  private async reviewOnce(token: string, digest: string): Promise<string | undefined> {
    try {
      this.reviews++;
      const caller = await this.review(token);
      // Never past the token's own expiry (its payload is read only to shorten the cache).
      const until = Math.min(Date.now() + this.cacheMs, tokenExpiryMs(token) ?? Infinity);
      remember(this.cache, digest, { caller, until });
      return caller;
    } catch (err) {
      const reason = errorMessage(err);
      if (err instanceof Refused)
        remember(this.refused, digest, { reason, until: Date.now() + this.negativeCacheMs });
      this.opts.logger.warn({ reason }, 'node authentication refused');
      return undefined;
    }
  }

  private async review(token: string): Promise<string> {
    const res = await this.opts.client.create<{ status?: ReviewStatus }>(TOKEN_REVIEW, undefined, {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenReview',
      spec: { token, audiences: [this.audience] },
    });
    const status = res.status ?? {};
    if (!status.authenticated)
      throw new Refused(`TokenReview: not authenticated (${status.error ?? 'no reason given'})`);
    if (!(status.audiences ?? []).includes(this.audience)) {
      throw new Refused(`TokenReview: token is not for audience ${this.audience}`);
    }
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(status.user?.username ?? '');
    if (!m)
      throw new Refused(`TokenReview: ${status.user?.username ?? '(no user)'} is not a service account`);
    const [, namespace, sa] = m as unknown as [string, string, string];
    const extra = status.user?.extra ?? {};
    const podName = single(extra[EXTRA_POD_NAME]);
    const podUid = single(extra[EXTRA_POD_UID]);
    if (!podName || !podUid) {
      throw new Refused(
        `TokenReview: the token of ${namespace}/${sa} is not bound to a pod (use a projected service account token)`,
      );
    }
    const pod = await this.pod(namespace, podName);
    if (!pod || pod.uid !== podUid)
      throw new Refused(`pod ${namespace}/${podName} (${podUid}) no longer exists`);
    if ((pod.serviceAccountName ?? 'default') !== sa) {
      throw new Refused(`pod ${namespace}/${podName} runs as ${pod.serviceAccountName}, not ${sa}`);
    }
    if (!this.opts.trustedNodeAccounts.includes(`${namespace}/${sa}`))
      return `${WORKLOAD_CALLER}${namespace}/${sa}`;
    const boundNode = single(extra[EXTRA_NODE_NAME]);
    if (boundNode && pod.nodeName && boundNode !== pod.nodeName) {
      throw new Refused(
        `token bound to node ${boundNode} but pod ${namespace}/${podName} is on ${pod.nodeName}`,
      );
    }
    const node = boundNode ?? pod.nodeName;
    if (!node) throw new Refused(`pod ${namespace}/${podName} is not scheduled on a node`);
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

/** Adds an entry, evicting the oldest when full (Maps iterate in insertion order). */
function remember<V>(m: Map<string, V>, key: string, value: V): void {
  m.delete(key);
  if (m.size >= MAX_CACHED) m.delete(m.keys().next().value!);
  m.set(key, value);
}

/** The `exp` of a JWT in ms, unverified (the TokenReview verified it); undefined if absent. */
function tokenExpiryMs(token: string): number | undefined {
  try {
    const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as {
      exp?: unknown;
    };
    return typeof payload.exp === 'number' ? payload.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

function single(v: string[] | undefined): string | undefined {
  return v && v.length === 1 && v[0] ? v[0] : undefined;
}

function bearerToken(md: Metadata): string | undefined {
  const values = md.get('authorization');
  if (values.length !== 1 || typeof values[0] !== 'string') return undefined;
  return /^Bearer\s+(\S+)\s*$/i.exec(values[0])?.[1];
}
