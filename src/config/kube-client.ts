// A small JSON client for the Kubernetes REST API on top of @kubernetes/client-node's KubeConfig:
// the KubeConfig does what is hard (kubeconfig files, in-cluster service-account credentials and
// their rotation, client certificates, exec plugins, proxies); this file only sends one request
// and turns a failure into a KubeApiError carrying the API's Status (code, reason). Watches go
// through client-node's own Watch/ListWatch (kube-source.ts); everything else comes here, so the
// config source and the control plane's writers see errors the same way.
import http from 'node:http';
import https from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';
import { resourcePath, type KubeResourceType } from './kube-resources.js';

/** A raw object as the API server returns it (not yet validated). */
export interface RawObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: OwnerReference[];
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface RawList {
  metadata?: { resourceVersion?: string };
  items: RawObject[];
}

/** A failed API call: `statusCode` is the HTTP code (0 when the server could not be reached). */
export class KubeApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'KubeApiError';
  }
  /** client-node's ListWatch looks at `.code === 410` to decide to relist. */
  get code(): number {
    return this.statusCode;
  }
}

export function isNotFound(err: unknown): boolean {
  return err instanceof KubeApiError && err.statusCode === 404;
}
export function isConflict(err: unknown): boolean {
  return err instanceof KubeApiError && err.statusCode === 409;
}

export interface KubeClientOptions {
  /** A kubeconfig file; without one, the in-cluster service account is used. */
  kubeconfig?: string;
  /** Per-request timeout (watches are not requests here). Default 10 s. */
  timeoutMs?: number;
}

export class KubeClient {
  readonly kc: KubeConfig;
  private readonly timeoutMs: number;

  constructor(kc: KubeConfig, opts: { timeoutMs?: number } = {}) {
    this.kc = kc;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  static create(opts: KubeClientOptions = {}): KubeClient {
    const kc = new KubeConfig();
    if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
    else kc.loadFromCluster();
    return new KubeClient(kc, opts);
  }

  /** The API server's URL, for logs. */
  get server(): string {
    return this.kc.getCurrentCluster()?.server ?? '(no cluster)';
  }

  async get<T = RawObject>(
    t: KubeResourceType,
    namespace: string | undefined,
    name: string,
  ): Promise<T | undefined> {
    try {
      return await this.request<T>('GET', resourcePath(t, namespace, name));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  list(
    t: KubeResourceType,
    namespace?: string,
    selectors: { labelSelector?: string; fieldSelector?: string } = {},
  ): Promise<RawList> {
    const q = new URLSearchParams();
    if (selectors.labelSelector) q.set('labelSelector', selectors.labelSelector);
    if (selectors.fieldSelector) q.set('fieldSelector', selectors.fieldSelector);
    const qs = q.toString();
    return this.request<RawList>('GET', resourcePath(t, namespace) + (qs ? `?${qs}` : ''));
  }

  create<T = RawObject>(t: KubeResourceType, namespace: string | undefined, body: unknown): Promise<T> {
    return this.request<T>('POST', resourcePath(t, namespace), body);
  }

  /** PUT: with `metadata.resourceVersion` set, fails with 409 if the object changed meanwhile. */
  replace<T = RawObject>(
    t: KubeResourceType,
    namespace: string | undefined,
    name: string,
    body: unknown,
    subresource?: 'status',
  ): Promise<T> {
    return this.request<T>('PUT', resourcePath(t, namespace, name, subresource), body);
  }

  /** RFC 7386 merge patch. */
  mergePatch<T = RawObject>(
    t: KubeResourceType,
    namespace: string | undefined,
    name: string,
    patch: unknown,
    subresource?: 'status',
  ): Promise<T> {
    return this.request<T>(
      'PATCH',
      resourcePath(t, namespace, name, subresource),
      patch,
      'application/merge-patch+json',
    );
  }

  async delete(
    t: KubeResourceType,
    namespace: string | undefined,
    name: string,
    preconditions?: { uid?: string; resourceVersion?: string },
  ): Promise<boolean> {
    try {
      const body = {
        apiVersion: 'v1',
        kind: 'DeleteOptions',
        propagationPolicy: 'Background',
        preconditions,
      };
      await this.request('DELETE', resourcePath(t, namespace, name), body);
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  async request<T>(
    method: string,
    path: string,
    body?: unknown,
    contentType = 'application/json',
  ): Promise<T> {
    const cluster = this.kc.getCurrentCluster();
    if (!cluster) throw new KubeApiError(0, 'NoCluster', 'kubeconfig has no current cluster');
    const url = new URL(cluster.server.replace(/\/$/, '') + path);
    const fetchOpts = await this.kc.applyToFetchOptions({});
    const headers: Record<string, string> = { accept: 'application/json' };
    const given = fetchOpts.headers as unknown as Headers | Record<string, string> | undefined;
    if (given && typeof (given as Headers).forEach === 'function') {
      (given as Headers).forEach((v, k) => (headers[k] = v));
    } else if (given) Object.assign(headers, given);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    if (payload) {
      headers['content-type'] = contentType;
      headers['content-length'] = String(payload.length);
    }
    const lib = url.protocol === 'http:' ? http : https;
    return new Promise<T>((resolve, reject) => {
      const req = lib.request(
        url,
        { method, headers, agent: fetchOpts.agent as http.Agent | undefined, timeout: this.timeoutMs },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (err) => reject(unreachable(method, url, err)));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              parsed = undefined;
            }
            const code = res.statusCode ?? 0;
            if (code >= 200 && code < 300) return resolve(parsed as T);
            const status = (parsed ?? {}) as { reason?: string; message?: string };
            reject(
              new KubeApiError(
                code,
                status.reason ?? http.STATUS_CODES[code] ?? 'Unknown',
                `${method} ${url.pathname}: ${code} ${status.message ?? text.slice(0, 200)}`,
              ),
            );
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      req.on('error', (err) => reject(unreachable(method, url, err)));
      req.end(payload);
    });
  }
}

function unreachable(method: string, url: URL, err: Error): KubeApiError {
  return new KubeApiError(
    0,
    'Unreachable',
    `${method} ${url.pathname}: API server ${url.host} unreachable: ${err.message}`,
  );
}
