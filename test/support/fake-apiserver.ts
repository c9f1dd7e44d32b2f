// A fake Kubernetes API server for tests, over plain HTTP on loopback (no API server can run on
// these machines; DESIGN.md §7). It speaks the real REST API for the kinds ambit reads and writes
// (fake-apiserver-store.ts has the table), so @kubernetes/client-node talks to it unchanged:
//  - list: `{kind: XList, metadata: {resourceVersion}, items}`; built-in items carry no kind/apiVersion;
//    label selectors (=, ==, !=, exists, !exists, in, notin) and field selectors (metadata.name,
//    metadata.namespace, spec.nodeName);
//  - watch (`?watch=true`): a chunked stream of `{"type","object"}` lines; no resourceVersion or "0"
//    starts with synthetic ADDED events for what exists; resuming from a version older than the
//    bounded history gets an ERROR event carrying a 410 Expired Status, then the stream ends, as
//    the real server does; `allowWatchBookmarks` gets BOOKMARK events; `timeoutSeconds` ends it;
//    under a selector an object that stops/starts matching is sent as DELETED/ADDED;
//  - create/update/patch (merge, strategic = merge here, JSON patch)/delete with the usual Status
//    errors (404 NotFound, 409 AlreadyExists / Conflict, 422 Invalid, 410 Expired, 415);
//  - `status` subresources, ownerReferences garbage collection, namespace deletion emptying it;
//  - TokenReview against tokens the test issues (bound to a pod and node as projected tokens are).
// Test hooks: put() writes like a kubelet/controller would (status included), compact(),
// dropWatches(), stop()/start() on the same port, requests to observe what clients did.
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import type { AddressInfo, Socket } from 'node:net';
import {
  ApiError,
  FakeStore,
  RESOURCE_TYPES,
  apiVersionOf,
  jsonPatch,
  mergePatch,
  notFound,
  type Obj,
  type ResourceType,
  type StoreEvent,
} from './fake-apiserver-store.js';

export type { Obj, ResourceType };

export interface FakeApiServerOptions {
  host: string;
  port?: number;
  /** Events kept for watch resumption; older versions get 410 Gone. */
  historyLimit?: number;
  /** How often a watch that asked for bookmarks gets one. */
  bookmarkIntervalMs?: number;
  /** When set, every request must carry `authorization: Bearer <this>` (else 401). */
  adminToken?: string;
  /** API groups not served (their CRDs are not installed): 404 for everything under them. */
  unservedGroups?: string[];
}

export interface IssuedToken {
  namespace: string;
  serviceAccount: string;
  audiences: string[];
  /** A pod-bound token (projected volume): valid only while that pod exists with that uid. */
  pod?: { name: string; uid: string };
  /** Kubernetes ≥ 1.30 also binds the pod's node into the token. */
  nodeName?: string;
  expiresAt?: number;
}

export interface RequestRecord {
  method: string;
  path: string;
  query: Record<string, string>;
  status: number;
}

interface Watcher {
  rt: ResourceType;
  namespace?: string;
  matches: (o: Obj) => boolean;
  res: http.ServerResponse;
  queue: StoreEvent[] | undefined; // events buffered while the initial backlog is written
}

export class FakeApiServer {
  readonly store: FakeStore;
  readonly requests: RequestRecord[] = [];
  private server?: http.Server;
  private readonly watchers = new Set<Watcher>();
  private readonly tokens = new Map<string, IssuedToken>();
  private readonly sockets = new Set<Socket>();
  private bookmarkTimer?: NodeJS.Timeout;
  private port: number;

  constructor(private readonly opts: FakeApiServerOptions) {
    this.store = new FakeStore(opts.historyLimit ?? 1000);
    this.port = opts.port ?? 0;
    this.store.onEvent((e) => this.fanOut(e));
  }

  get url(): string {
    return `http://${this.opts.host}:${this.port}`;
  }

  /** A kubeconfig for this server; `skipTLSVerify` because client-node refuses http: without it. */
  kubeconfig(token = this.opts.adminToken ?? 'admin'): string {
    return [
      'apiVersion: v1',
      'kind: Config',
      'clusters: [{name: fake, cluster: {server: "' + this.url + '", insecure-skip-tls-verify: true}}]',
      'users: [{name: admin, user: {token: "' + token + '"}}]',
      'contexts: [{name: fake, context: {cluster: fake, user: admin}}]',
      'current-context: fake',
      '',
    ].join('\n');
  }

  async start(): Promise<this> {
    const server = http.createServer((req, res) => this.handle(req, res));
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, this.opts.host, () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
    this.bookmarkTimer = setInterval(() => this.bookmark(), this.opts.bookmarkIntervalMs ?? 1000);
    this.bookmarkTimer.unref();
    return this;
  }

  /** Stops listening and cuts every connection (the API server is down); start() again reuses the port. */
  async stop(): Promise<void> {
    clearInterval(this.bookmarkTimer);
    this.dropWatches();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server = undefined;
  }

  /** Cuts every watch stream abruptly (a load balancer or API server restart). */
  dropWatches(): void {
    for (const w of this.watchers) w.res.socket?.destroy();
    this.watchers.clear();
  }

  /** Sends a BOOKMARK with the current resourceVersion to every watch that asked for them. */
  bookmark(): void {
    for (const w of this.watchers) {
      if (!w.res.req.url?.includes('allowWatchBookmarks=true') || w.queue) continue;
      const obj = {
        kind: w.rt.kind,
        apiVersion: apiVersionOf(w.rt),
        metadata: { resourceVersion: String(this.store.rv) },
      };
      w.res.write(JSON.stringify({ type: 'BOOKMARK', object: obj }) + '\n');
    }
  }

  compact(): void {
    this.store.compact();
  }

  /** Issues a service-account token the TokenReview endpoint will accept. */
  issueToken(t: IssuedToken): string {
    const token = 'tok-' + randomBytes(16).toString('hex');
    this.tokens.set(token, t);
    return token;
  }

  type(kind: string, apiVersion?: string): ResourceType {
    const rt = RESOURCE_TYPES.find((r) => r.kind === kind && (!apiVersion || apiVersionOf(r) === apiVersion));
    if (!rt) throw new Error(`fake API server: unknown kind ${kind}`);
    return rt;
  }

  /**
   * Creates or replaces an object directly, status included, as the scheduler, the kubelet and
   * controllers do; emits the watch events. Namespaces of namespaced objects are created as needed.
   */
  put(obj: Obj): Obj {
    const rt = this.type(obj.kind!, obj.apiVersion);
    const ns = rt.namespaced ? (obj.metadata.namespace ?? 'default') : undefined;
    if (ns && !this.store.get(this.type('Namespace'), undefined, ns)) {
      this.store.create(this.type('Namespace'), undefined, { metadata: { name: ns } });
    }
    const cur = this.store.get(rt, ns, obj.metadata.name!);
    const written = cur
      ? this.store.update(rt, ns, obj.metadata.name!, {
          ...obj,
          metadata: { ...obj.metadata, resourceVersion: undefined },
        })
      : this.store.create(rt, ns, obj);
    if (rt.status && obj.status !== undefined) {
      return this.store.update(rt, ns, obj.metadata.name!, { ...written, status: obj.status }, 'status');
    }
    return written;
  }

  get(kind: string, namespace: string | undefined, name: string): Obj | undefined {
    const rt = this.type(kind);
    return this.store.get(rt, rt.namespaced ? namespace : undefined, name);
  }

  list(kind: string, namespace?: string): Obj[] {
    return this.store.list(this.type(kind), namespace);
  }

  remove(kind: string, namespace: string | undefined, name: string): void {
    const rt = this.type(kind);
    this.store.delete(rt, rt.namespaced ? namespace : undefined, name);
  }

  watchCount(): number {
    return this.watchers.size;
  }

  // ---- HTTP ----

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const query = Object.fromEntries(url.searchParams);
    const record: RequestRecord = { method: req.method ?? 'GET', path: url.pathname, query, status: 0 };
    this.requests.push(record);
    res.on('finish', () => (record.status = res.statusCode));
    if (this.opts.adminToken !== undefined && !this.authorized(req)) {
      return sendStatus(res, new ApiError(401, 'Unauthorized', 'Unauthorized'));
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        const body = chunks.length ? Buffer.concat(chunks).toString('utf8') : '';
        this.route(req, res, url, query, body);
      } catch (err) {
        sendStatus(res, err instanceof ApiError ? err : new ApiError(500, 'InternalError', String(err)));
      }
    });
  }

  private authorized(req: http.IncomingMessage): boolean {
    const auth = req.headers.authorization ?? '';
    return auth === `Bearer ${this.opts.adminToken}`;
  }

  private route(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    url: URL,
    query: Record<string, string>,
    body: string,
  ): void {
    const p = parsePath(url.pathname);
    const unserved = this.opts.unservedGroups ?? [];
    if (!p || ('rt' in p && unserved.includes(p.rt.group)))
      return sendStatus(
        res,
        new ApiError(404, 'NotFound', 'the server could not find the requested resource'),
      );
    if ('discovery' in p) return sendJson(res, 200, discovery(p.discovery));
    const { rt, namespace, name, subresource } = p;
    const method = req.method ?? 'GET';
    if (rt.virtual) {
      if (method !== 'POST' || name)
        throw new ApiError(405, 'MethodNotAllowed', `${rt.plural} only supports create`);
      return sendJson(res, 201, this.tokenReview(parseBody(body)));
    }
    if (subresource && (subresource !== 'status' || !rt.status)) {
      throw new ApiError(
        404,
        'NotFound',
        `the server could not find the requested resource (${subresource})`,
      );
    }
    const present = (o: Obj): Obj => ({ ...o, apiVersion: apiVersionOf(rt), kind: rt.kind });
    switch (method) {
      case 'GET': {
        if (name) {
          const o = this.store.get(rt, namespace, name);
          if (!o) throw notFound(rt, name);
          return sendJson(res, 200, present(o));
        }
        const matches = selectorMatcher(query);
        if (query.watch === 'true' || query.watch === '1')
          return this.watch(res, rt, namespace, matches, query);
        const rv = query.resourceVersion;
        if (rv && rv !== '0' && Number(rv) > this.store.rv) {
          throw new ApiError(504, 'Timeout', `Too large resource version: ${rv}, current: ${this.store.rv}`);
        }
        const items = this.store
          .list(rt, namespace)
          .filter(matches)
          .map((o) => (rt.crd ? present(o) : withoutTypeMeta(o)));
        return sendJson(res, 200, {
          kind: `${rt.kind}List`,
          apiVersion: apiVersionOf(rt),
          metadata: { resourceVersion: String(this.store.rv) },
          items,
        });
      }
      case 'POST': {
        if (name) throw new ApiError(405, 'MethodNotAllowed', 'POST on a named resource');
        return sendJson(res, 201, present(this.store.create(rt, namespace, parseBody(body) as Obj)));
      }
      case 'PUT': {
        if (!name) throw new ApiError(405, 'MethodNotAllowed', 'PUT on a collection');
        const o = this.store.update(
          rt,
          namespace,
          name,
          parseBody(body) as Obj,
          subresource as 'status' | undefined,
        );
        return sendJson(res, 200, present(o));
      }
      case 'PATCH': {
        if (!name) throw new ApiError(405, 'MethodNotAllowed', 'PATCH on a collection');
        const cur = this.store.get(rt, namespace, name);
        if (!cur) throw notFound(rt, name);
        const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
        const patch = parseBody(body);
        let next: unknown;
        if (type === 'application/merge-patch+json' || type === 'application/strategic-merge-patch+json') {
          next = mergePatch(cur, patch);
        } else if (type === 'application/json-patch+json') {
          next = jsonPatch(cur, patch);
        } else {
          throw new ApiError(
            415,
            'UnsupportedMediaType',
            `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got ${type})`,
          );
        }
        // A resourceVersion in the patch is a precondition; otherwise the patch applies to the
        // current version (the server retries internally, so it never conflicts).
        const patchedRv = (patch as { metadata?: { resourceVersion?: string } } | null)?.metadata
          ?.resourceVersion;
        const o = next as Obj;
        o.metadata = { ...o.metadata, resourceVersion: patchedRv ?? cur.metadata.resourceVersion };
        return sendJson(
          res,
          200,
          present(this.store.update(rt, namespace, name, o, subresource as 'status' | undefined)),
        );
      }
      case 'DELETE': {
        if (!name)
          throw new ApiError(405, 'MethodNotAllowed', 'deletecollection is not supported by the fake');
        const opts = (body ? parseBody(body) : {}) as {
          preconditions?: { uid?: string; resourceVersion?: string };
          propagationPolicy?: string;
        };
        if (query.propagationPolicy) opts.propagationPolicy = query.propagationPolicy;
        return sendJson(res, 200, present(this.store.delete(rt, namespace, name, opts)));
      }
      default:
        throw new ApiError(405, 'MethodNotAllowed', `method ${method} not allowed`);
    }
  }

  private watch(
    res: http.ServerResponse,
    rt: ResourceType,
    namespace: string | undefined,
    matches: (o: Obj) => boolean,
    query: Record<string, string>,
  ): void {
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const w: Watcher = { rt, namespace, matches, res, queue: [] };
    this.watchers.add(w);
    const end = () => {
      this.watchers.delete(w);
      if (!res.writableEnded) res.end();
    };
    res.on('close', () => this.watchers.delete(w));
    const timeout = Number(query.timeoutSeconds);
    if (timeout > 0) setTimeout(end, timeout * 1000).unref();
    const rv = query.resourceVersion;
    try {
      if (!rv || rv === '0') {
        for (const o of this.store.list(rt, namespace).filter(matches)) {
          writeEvent(res, rt, 'ADDED', o);
        }
      } else {
        for (const e of this.store.eventsSince(rt, Number(rv))) this.deliver(w, e, true);
      }
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      // A watch that cannot start is reported in-band, then the stream ends.
      res.write(JSON.stringify({ type: 'ERROR', object: statusBody(err) }) + '\n');
      return end();
    }
    const queued = w.queue ?? [];
    w.queue = undefined;
    for (const e of queued) this.deliver(w, e);
  }

  private fanOut(e: StoreEvent): void {
    for (const w of this.watchers) {
      if (w.queue) w.queue.push(e);
      else this.deliver(w, e);
    }
  }

  private deliver(w: Watcher, e: StoreEvent, backlog = false): void {
    if (!backlog && e.collection !== `${w.rt.group}/${w.rt.plural}`) return;
    const inScope = (o: Obj | undefined) =>
      o !== undefined && (w.namespace === undefined || o.metadata.namespace === w.namespace) && w.matches(o);
    const now = inScope(e.object);
    if (e.type === 'MODIFIED') {
      const before = inScope(e.old);
      if (now && !before) return writeEvent(w.res, w.rt, 'ADDED', e.object);
      if (!now && before) return writeEvent(w.res, w.rt, 'DELETED', e.object);
    }
    if (now) writeEvent(w.res, w.rt, e.type, e.object);
  }

  private tokenReview(review: unknown): Obj {
    const spec = ((review as { spec?: { token?: string; audiences?: string[] } }).spec ?? {}) as {
      token?: string;
      audiences?: string[];
    };
    const out = {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenReview',
      metadata: { creationTimestamp: null },
      spec,
    };
    const fail = (error: string): Obj =>
      ({ ...out, status: { authenticated: false, error } }) as unknown as Obj;
    const t = spec.token ? this.tokens.get(spec.token) : undefined;
    if (!t) return fail('[invalid bearer token, square/go-jose: error in cryptographic primitive]');
    const wanted = spec.audiences?.length ? spec.audiences : ['https://kubernetes.default.svc.cluster.local'];
    const audiences = wanted.filter((a) => t.audiences.includes(a));
    if (audiences.length === 0)
      return fail(
        '[invalid bearer token, token audiences ' +
          JSON.stringify(t.audiences) +
          ' is invalid for the target audiences ' +
          JSON.stringify(wanted) +
          ']',
      );
    if (t.expiresAt !== undefined && Date.now() > t.expiresAt)
      return fail('[invalid bearer token, square/go-jose/jwt: validation failed, token is expired (exp)]');
    const extra: Record<string, string[]> = {};
    if (t.pod) {
      const pod = this.store.get(this.type('Pod'), t.namespace, t.pod.name);
      if (!pod || pod.metadata.uid !== t.pod.uid) {
        return fail(
          `[invalid bearer token, pod "${t.pod.name}" (${t.pod.uid}) is not found or has been recreated]`,
        );
      }
      extra['authentication.kubernetes.io/pod-name'] = [t.pod.name];
      extra['authentication.kubernetes.io/pod-uid'] = [t.pod.uid];
    }
    if (t.nodeName) {
      extra['authentication.kubernetes.io/node-name'] = [t.nodeName];
      const node = this.store.get(this.type('Node'), undefined, t.nodeName);
      if (node) extra['authentication.kubernetes.io/node-uid'] = [node.metadata.uid!];
    }
    const sa = this.store.get(this.type('ServiceAccount'), t.namespace, t.serviceAccount);
    return {
      ...out,
      status: {
        authenticated: true,
        user: {
          username: `system:serviceaccount:${t.namespace}:${t.serviceAccount}`,
          uid: sa?.metadata.uid ?? '',
          groups: ['system:serviceaccounts', `system:serviceaccounts:${t.namespace}`, 'system:authenticated'],
          extra,
        },
        audiences,
      },
    } as unknown as Obj;
  }
}

type ParsedPath =
  { discovery: string } | { rt: ResourceType; namespace?: string; name?: string; subresource?: string };

/**
 * /api/v1/..., /apis/GROUP/VERSION/..., then [namespaces/NS/]PLURAL[/NAME[/SUB]]. Namespaces are
 * themselves cluster-scoped, so /api/v1/namespaces/NAME is a namespace, not a collection.
 */
function parsePath(pathname: string): ParsedPath | undefined {
  const seg = pathname.split('/').filter(Boolean);
  let group: string;
  let version: string;
  let rest: string[];
  if (seg[0] === 'api') {
    if (seg.length <= 2) return { discovery: seg.length === 1 ? 'api' : 'v1' };
    [group, version, rest] = ['', seg[1]!, seg.slice(2)];
  } else if (seg[0] === 'apis') {
    if (seg.length <= 3) return { discovery: seg.slice(1).join('/') || 'apis' };
    [group, version, rest] = [seg[1]!, seg[2]!, seg.slice(3)];
  } else return undefined;
  const find = (plural: string) =>
    RESOURCE_TYPES.find((r) => r.group === group && r.version === version && r.plural === plural);
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1];
    rest = rest.slice(2);
    const rt = find(rest[0]!);
    if (!rt || !rt.namespaced) return undefined;
    return { rt, namespace, name: rest[1], subresource: rest[2] };
  }
  const rt = find(rest[0]!);
  if (!rt) return undefined;
  if (rt.namespaced && rest.length > 1) return undefined;
  return { rt, name: rest[1], subresource: rest[2] };
}

function discovery(what: string): unknown {
  if (what === 'api') return { kind: 'APIVersions', versions: ['v1'] };
  if (what === 'apis') {
    const groups = [...new Set(RESOURCE_TYPES.filter((r) => r.group).map((r) => r.group))];
    return {
      kind: 'APIGroupList',
      apiVersion: 'v1',
      groups: groups.map((name) => {
        const versions = RESOURCE_TYPES.filter((r) => r.group === name).map((r) => r.version);
        const uniq = [...new Set(versions)].map((v) => ({ groupVersion: `${name}/${v}`, version: v }));
        return { name, versions: uniq, preferredVersion: uniq[0] };
      }),
    };
  }
  const [group, version] = what === 'v1' ? ['', 'v1'] : what.split('/');
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion: what,
    resources: RESOURCE_TYPES.filter((r) => r.group === group && r.version === version).map((r) => ({
      name: r.plural,
      singularName: r.kind.toLowerCase(),
      namespaced: r.namespaced,
      kind: r.kind,
      verbs: r.virtual ? ['create'] : ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
    })),
  };
}

// ---- selectors ----

function selectorMatcher(query: Record<string, string>): (o: Obj) => boolean {
  const label = query.labelSelector ? parseLabelSelector(query.labelSelector) : [];
  const field = query.fieldSelector ? parseFieldSelector(query.fieldSelector) : [];
  return (o) => label.every((m) => m(o.metadata.labels ?? {})) && field.every((m) => m(o));
}

function parseLabelSelector(s: string): ((labels: Record<string, string>) => boolean)[] {
  const out: ((labels: Record<string, string>) => boolean)[] = [];
  // Split on commas outside parentheses ("env in (a,b),tier").
  for (const term of s
    .split(/,(?![^(]*\))/)
    .map((x) => x.trim())
    .filter(Boolean)) {
    let m: RegExpExecArray | null;
    if ((m = /^([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(term))) {
      const [, key, op, list] = m;
      const values = list!.split(',').map((v) => v.trim());
      out.push((l) => (op === 'in' ? values.includes(l[key!] ?? '\0') : !values.includes(l[key!] ?? '\0')));
    } else if ((m = /^([^\s!=]+)\s*(!=|==|=)\s*(\S*)$/.exec(term))) {
      const [, key, op, value] = m;
      out.push((l) => (op === '!=' ? l[key!] !== value : l[key!] === value));
    } else if ((m = /^!([^\s!=]+)$/.exec(term))) {
      const key = m[1]!;
      out.push((l) => !(key in l));
    } else if (/^[^\s!=]+$/.test(term)) {
      out.push((l) => term in l);
    } else {
      throw new ApiError(400, 'BadRequest', `unable to parse requirement: ${term}`);
    }
  }
  return out;
}

const FIELDS: Record<string, (o: Obj) => string | undefined> = {
  'metadata.name': (o) => o.metadata.name,
  'metadata.namespace': (o) => o.metadata.namespace,
  'spec.nodeName': (o) => (o.spec as { nodeName?: string } | undefined)?.nodeName ?? '',
};

function parseFieldSelector(s: string): ((o: Obj) => boolean)[] {
  return s.split(',').map((term) => {
    const m = /^([^!=]+)(!=|==|=)(.*)$/.exec(term.trim());
    const get = m ? FIELDS[m[1]!] : undefined;
    if (!m || !get) throw new ApiError(400, 'BadRequest', `field label not supported: ${term}`);
    return (o: Obj) => (m[2] === '!=' ? get(o) !== m[3] : get(o) === m[3]);
  });
}

// ---- wire helpers ----

function writeEvent(res: http.ServerResponse, rt: ResourceType, type: string, o: Obj): void {
  if (res.writableEnded) return;
  res.write(JSON.stringify({ type, object: { ...o, apiVersion: apiVersionOf(rt), kind: rt.kind } }) + '\n');
}

function withoutTypeMeta(o: Obj): Obj {
  const { apiVersion: _a, kind: _k, ...rest } = o;
  return rest as Obj;
}

function parseBody(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    throw new ApiError(400, 'BadRequest', 'the request body is not valid JSON');
  }
}

function statusBody(err: ApiError): Record<string, unknown> {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: err.message,
    reason: err.reason,
    ...(err.details ? { details: err.details } : {}),
    code: err.code,
  };
}

function sendStatus(res: http.ServerResponse, err: ApiError): void {
  sendJson(res, err.code, statusBody(err));
}

function sendJson(res: http.ServerResponse, code: number, body: unknown): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
