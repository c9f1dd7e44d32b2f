// The storage half of the fake Kubernetes API server (fake-apiserver.ts is the HTTP half): one
// global resourceVersion counter (etcd's revision), objects per resource type, a bounded event
// history so a watch can resume from an older version (410 Gone once it has been compacted away),
// optimistic concurrency, status subresources, ownerReferences and their garbage collection.
// It follows the API conventions (sig-architecture/api-conventions.md): a fake only where no real
// API server can run, so that the real client library is exercised against real semantics.
import type { OwnerReference } from '../../src/config/kube-client.js';
import { randomUUID } from 'node:crypto';

export type Obj = Record<string, unknown> & {
  apiVersion?: string;
  kind?: string;
  metadata: Meta;
};
export interface Meta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  [k: string]: unknown;
}
export type { OwnerReference };

/** One resource type, as the API server's discovery documents describe it. */
export interface ResourceType {
  group: string; // '' for the core group
  version: string;
  kind: string;
  plural: string;
  namespaced: boolean;
  /** Has a `status` subresource: status is ignored on the main resource and spec on /status. */
  status: boolean;
  /** Served as a custom resource: list items carry apiVersion and kind (built-in types' do not). */
  crd?: boolean;
  /** Create-only virtual resource (TokenReview): never stored. */
  virtual?: boolean;
}

const t = (
  group: string,
  version: string,
  kind: string,
  plural: string,
  namespaced: boolean,
  status: boolean,
  crd = false,
): ResourceType => ({ group, version, kind, plural, namespaced, status, crd });

/** The kinds of DESIGN.md §4 plus what the control plane writes (Leases, Secrets, ...). */
export const RESOURCE_TYPES: ResourceType[] = [
  t('', 'v1', 'Namespace', 'namespaces', false, true),
  t('', 'v1', 'Node', 'nodes', false, true),
  t('', 'v1', 'Pod', 'pods', true, true),
  t('', 'v1', 'Service', 'services', true, true),
  t('', 'v1', 'ServiceAccount', 'serviceaccounts', true, false),
  t('', 'v1', 'Secret', 'secrets', true, false),
  t('', 'v1', 'ConfigMap', 'configmaps', true, false),
  t('discovery.k8s.io', 'v1', 'EndpointSlice', 'endpointslices', true, false),
  t('apps', 'v1', 'Deployment', 'deployments', true, true),
  t('coordination.k8s.io', 'v1', 'Lease', 'leases', true, false),
  { ...t('authentication.k8s.io', 'v1', 'TokenReview', 'tokenreviews', false, false), virtual: true },
  // Kinds of daemonset/ (so `kubectl apply --dry-run=client` can map them), stored like any other.
  t('apps', 'v1', 'DaemonSet', 'daemonsets', true, true),
  t('policy', 'v1', 'PodDisruptionBudget', 'poddisruptionbudgets', true, true),
  t('rbac.authorization.k8s.io', 'v1', 'Role', 'roles', true, false),
  t('rbac.authorization.k8s.io', 'v1', 'RoleBinding', 'rolebindings', true, false),
  t('rbac.authorization.k8s.io', 'v1', 'ClusterRole', 'clusterroles', false, false),
  t('rbac.authorization.k8s.io', 'v1', 'ClusterRoleBinding', 'clusterrolebindings', false, false),
  t('gateway.networking.k8s.io', 'v1', 'GatewayClass', 'gatewayclasses', false, true, true),
  ...['v1', 'v1beta1'].flatMap((v) => [
    t('security.istio.io', v, 'PeerAuthentication', 'peerauthentications', true, true, true),
    t('security.istio.io', v, 'AuthorizationPolicy', 'authorizationpolicies', true, true, true),
    t('security.istio.io', v, 'RequestAuthentication', 'requestauthentications', true, true, true),
    t('networking.istio.io', v, 'VirtualService', 'virtualservices', true, true, true),
    t('networking.istio.io', v, 'DestinationRule', 'destinationrules', true, true, true),
    t('networking.istio.io', v, 'ServiceEntry', 'serviceentries', true, true, true),
    t('networking.istio.io', v, 'WorkloadEntry', 'workloadentries', true, true, true),
    t('gateway.networking.k8s.io', v, 'Gateway', 'gateways', true, true, true),
    t('gateway.networking.k8s.io', v, 'HTTPRoute', 'httproutes', true, true, true),
    t('gateway.networking.k8s.io', v, 'GRPCRoute', 'grpcroutes', true, true, true),
  ]),
];

export function apiVersionOf(rt: ResourceType): string {
  return rt.group ? `${rt.group}/${rt.version}` : rt.version;
}

/** Objects of one group/kind are one collection, whatever version they are read at. */
function collectionKey(rt: ResourceType): string {
  return `${rt.group}/${rt.plural}`;
}

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';
export interface StoreEvent {
  rv: number;
  collection: string;
  type: EventType;
  object: Obj;
  /** For MODIFIED: the object before, so a filtered watch can turn it into ADDED/DELETED. */
  old?: Obj;
}

/** An API error, answered as a `Status` object with this HTTP code and reason. */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

const clone = <T>(v: T): T => structuredClone(v);

export class FakeStore {
  /** etcd's revision: every write takes the next number, across all types. */
  rv = 1000;
  private readonly collections = new Map<string, Map<string, Obj>>();
  private history: StoreEvent[] = [];
  /** The oldest resourceVersion a watch may resume from (anything older is 410 Gone). */
  private compactedRv = 1000;
  private readonly listeners = new Set<(e: StoreEvent) => void>();

  constructor(private readonly historyLimit = 1000) {}

  onEvent(listener: (e: StoreEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  list(rt: ResourceType, namespace?: string): Obj[] {
    const all = [...(this.collections.get(collectionKey(rt))?.values() ?? [])];
    return all.filter((o) => namespace === undefined || o.metadata.namespace === namespace).map(clone);
  }

  get(rt: ResourceType, namespace: string | undefined, name: string): Obj | undefined {
    const o = this.collections.get(collectionKey(rt))?.get(storeKey(namespace, name));
    return o ? clone(o) : undefined;
  }

  /** Events after `rv` for a collection; throws 410 when they have been compacted away. */
  eventsSince(rt: ResourceType, rv: number): StoreEvent[] {
    if (rv < this.compactedRv) {
      throw new ApiError(410, 'Expired', `too old resource version: ${rv} (${this.compactedRv})`);
    }
    const key = collectionKey(rt);
    return this.history.filter((e) => e.rv > rv && e.collection === key);
  }

  /** Forgets all history, as an etcd compaction does: every watch resume before now gets 410. */
  compact(): void {
    this.history = [];
    this.compactedRv = this.rv;
  }

  create(rt: ResourceType, namespace: string | undefined, body: Obj): Obj {
    this.checkKind(rt, body);
    const meta = body.metadata ?? {};
    let name = meta.name;
    if (!name && meta.generateName) name = meta.generateName + randomUUID().slice(0, 5);
    if (!name) throw invalid(rt, '', 'metadata.name: Required value: name or generateName is required');
    if (rt.namespaced) {
      if (meta.namespace && meta.namespace !== namespace) {
        throw new ApiError(
          400,
          'BadRequest',
          'the namespace of the provided object does not match the namespace sent on the request',
        );
      }
      if (!this.get(NAMESPACE, undefined, namespace!)) {
        throw new ApiError(404, 'NotFound', `namespaces "${namespace}" not found`, {
          name: namespace,
          kind: 'namespaces',
        });
      }
    }
    const coll = this.collection(rt);
    const key = storeKey(rt.namespaced ? namespace : undefined, name);
    if (coll.has(key)) {
      throw new ApiError(409, 'AlreadyExists', `${rt.plural}${groupSuffix(rt)} "${name}" already exists`, {
        name,
        group: rt.group,
        kind: rt.plural,
      });
    }
    const obj = clone(body);
    obj.apiVersion = apiVersionOf(rt);
    obj.kind = rt.kind;
    // A create cannot set the status of a kind that has a status subresource (the kubelet and
    // controllers write it through /status).
    if (rt.status) delete obj.status;
    obj.metadata = {
      ...stripServerFields(meta),
      name,
      ...(rt.namespaced ? { namespace } : {}),
      uid: randomUUID(),
      creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      generation: 1,
    };
    delete obj.metadata.generateName;
    if (rt.kind === 'Service') this.allocateClusterIP(obj);
    return this.write(rt, coll, key, obj, 'ADDED');
  }

  /**
   * PUT: replaces the object. A resourceVersion in the body is a precondition (409 Conflict on
   * mismatch); without one the update is unconditional. `subresource === 'status'` changes only
   * status; otherwise status is kept as it was for kinds that have a status subresource.
   */
  update(
    rt: ResourceType,
    namespace: string | undefined,
    name: string,
    body: Obj,
    subresource?: 'status',
  ): Obj {
    this.checkKind(rt, body);
    const coll = this.collection(rt);
    const key = storeKey(rt.namespaced ? namespace : undefined, name);
    const cur = coll.get(key);
    if (!cur) throw notFound(rt, name);
    const meta = body.metadata ?? {};
    if (meta.name !== undefined && meta.name !== name) {
      throw new ApiError(400, 'BadRequest', 'the name of the object does not match the name on the URL');
    }
    if (meta.resourceVersion !== undefined && meta.resourceVersion !== cur.metadata.resourceVersion) {
      throw conflict(rt, name);
    }
    if (meta.uid !== undefined && meta.uid !== cur.metadata.uid) {
      throw new ApiError(
        409,
        'Conflict',
        `Precondition failed: UID in precondition: ${meta.uid}, UID in object meta: ${cur.metadata.uid}`,
      );
    }
    let next: Obj;
    if (subresource === 'status') {
      next = clone(cur);
      if (body.status === undefined) delete next.status;
      else next.status = clone(body.status);
    } else {
      next = clone(body);
      next.apiVersion = apiVersionOf(rt);
      next.kind = rt.kind;
      if (rt.status) {
        if (cur.status === undefined) delete next.status;
        else next.status = clone(cur.status);
      }
      next.metadata = {
        ...stripServerFields(meta),
        name,
        ...(rt.namespaced ? { namespace } : {}),
        uid: cur.metadata.uid,
        creationTimestamp: cur.metadata.creationTimestamp,
        generation: cur.metadata.generation,
      };
      // metadata.generation counts changes of the desired state (spec), not of metadata or status.
      if (JSON.stringify(specOf(next)) !== JSON.stringify(specOf(cur))) {
        next.metadata.generation = (cur.metadata.generation ?? 1) + 1;
      }
    }
    // An update that changes nothing is a no-op: no new resourceVersion, no watch event.
    const { resourceVersion: _rv, ...curMeta } = cur.metadata;
    const { resourceVersion: _nrv, ...nextMeta } = next.metadata;
    if (JSON.stringify({ ...cur, metadata: curMeta }) === JSON.stringify({ ...next, metadata: nextMeta })) {
      return clone(cur);
    }
    return this.write(rt, coll, key, next, 'MODIFIED', cur);
  }

  private nextClusterIP = 1;
  /** The Service IP allocator: a ClusterIP Service created without an address gets one from 10.96.0.0/16. */
  private allocateClusterIP(obj: Obj): void {
    const spec = (obj.spec ??= {}) as { type?: string; clusterIP?: string; clusterIPs?: string[] };
    if (spec.type === 'ExternalName' || spec.clusterIP === 'None') return;
    if (!spec.clusterIP) {
      const n = this.nextClusterIP++;
      spec.clusterIP = `10.96.${Math.floor(n / 256)}.${n % 256}`;
    }
    spec.clusterIPs = [spec.clusterIP];
    spec.type ??= 'ClusterIP';
  }

  /** Deletes the object; preconditions as in DeleteOptions; dependents are garbage-collected. */
  delete(
    rt: ResourceType,
    namespace: string | undefined,
    name: string,
    opts: { preconditions?: { uid?: string; resourceVersion?: string }; propagationPolicy?: string } = {},
  ): Obj {
    const coll = this.collection(rt);
    const key = storeKey(rt.namespaced ? namespace : undefined, name);
    const cur = coll.get(key);
    if (!cur) throw notFound(rt, name);
    const pre = opts.preconditions ?? {};
    if (pre.uid !== undefined && pre.uid !== cur.metadata.uid) {
      throw new ApiError(
        409,
        'Conflict',
        `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${cur.metadata.uid}`,
      );
    }
    if (pre.resourceVersion !== undefined && pre.resourceVersion !== cur.metadata.resourceVersion) {
      throw conflict(rt, name);
    }
    coll.delete(key);
    this.rv++;
    const gone = clone(cur);
    gone.metadata.resourceVersion = String(this.rv);
    this.emit({ rv: this.rv, collection: collectionKey(rt), type: 'DELETED', object: gone });
    if (rt.kind === 'Namespace') {
      // The namespace controller empties a deleted namespace.
      for (const other of RESOURCE_TYPES) {
        if (!other.namespaced || other.virtual) continue;
        for (const o of this.list(other, name)) this.delete(other, name, o.metadata.name!);
      }
    }
    if (opts.propagationPolicy !== 'Orphan') this.collectGarbage(cur.metadata.uid!);
    return gone;
  }

  /** The garbage collector: deletes every object whose ownerReferences name only deleted owners. */
  private collectGarbage(ownerUid: string): void {
    const live = new Set<string>();
    for (const coll of this.collections.values()) for (const o of coll.values()) live.add(o.metadata.uid!);
    for (const rt of RESOURCE_TYPES) {
      if (rt.virtual || !this.collections.has(collectionKey(rt))) continue;
      for (const o of this.list(rt)) {
        const refs = o.metadata.ownerReferences ?? [];
        if (!refs.some((r) => r.uid === ownerUid)) continue;
        if (refs.some((r) => live.has(r.uid))) continue; // another owner keeps it alive
        if (this.get(rt, o.metadata.namespace, o.metadata.name!))
          this.delete(rt, o.metadata.namespace, o.metadata.name!);
      }
    }
  }

  private write(
    rt: ResourceType,
    coll: Map<string, Obj>,
    key: string,
    obj: Obj,
    type: EventType,
    old?: Obj,
  ): Obj {
    this.rv++;
    obj.metadata.resourceVersion = String(this.rv);
    coll.set(key, obj);
    this.emit({
      rv: this.rv,
      collection: collectionKey(rt),
      type,
      object: clone(obj),
      old: old && clone(old),
    });
    return clone(obj);
  }

  private emit(e: StoreEvent): void {
    this.history.push(e);
    if (this.history.length > this.historyLimit) {
      const dropped = this.history.splice(0, this.history.length - this.historyLimit);
      this.compactedRv = dropped[dropped.length - 1]!.rv;
    }
    for (const l of this.listeners) l(e);
  }

  private collection(rt: ResourceType): Map<string, Obj> {
    const key = collectionKey(rt);
    let coll = this.collections.get(key);
    if (!coll) this.collections.set(key, (coll = new Map()));
    return coll;
  }

  private checkKind(rt: ResourceType, body: Obj): void {
    if (typeof body !== 'object' || body === null || typeof body.metadata !== 'object') {
      throw new ApiError(400, 'BadRequest', 'the body must be an object with metadata');
    }
    if (body.kind !== undefined && body.kind !== rt.kind) {
      throw new ApiError(
        400,
        'BadRequest',
        `the kind ${body.kind} does not match the resource ${rt.plural} (${rt.kind})`,
      );
    }
    if (body.apiVersion !== undefined && body.apiVersion.split('/')[0] !== apiVersionOf(rt).split('/')[0]) {
      throw new ApiError(
        400,
        'BadRequest',
        `the API version ${body.apiVersion} does not match ${apiVersionOf(rt)}`,
      );
    }
  }
}

export const NAMESPACE = RESOURCE_TYPES[0]!;

function storeKey(namespace: string | undefined, name: string): string {
  return namespace ? `${namespace}/${name}` : name;
}

function specOf(o: Obj): unknown {
  const { metadata: _m, status: _s, apiVersion: _a, kind: _k, ...rest } = o;
  return rest;
}

/** Fields only the server sets: a client's values are ignored. */
function stripServerFields(meta: Meta): Meta {
  const { uid: _u, resourceVersion: _r, generation: _g, creationTimestamp: _c, ...rest } = meta;
  return clone(rest);
}

function groupSuffix(rt: ResourceType): string {
  return rt.group ? `.${rt.group}` : '';
}

export function notFound(rt: ResourceType, name: string): ApiError {
  return new ApiError(404, 'NotFound', `${rt.plural}${groupSuffix(rt)} "${name}" not found`, {
    name,
    group: rt.group,
    kind: rt.plural,
  });
}

function conflict(rt: ResourceType, name: string): ApiError {
  return new ApiError(
    409,
    'Conflict',
    `Operation cannot be fulfilled on ${rt.plural}${groupSuffix(rt)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    { name, group: rt.group, kind: rt.plural },
  );
}

function invalid(rt: ResourceType, name: string, message: string): ApiError {
  return new ApiError(422, 'Invalid', `${rt.kind} "${name}" is invalid: ${message}`, { name, kind: rt.kind });
}

/** RFC 7386 JSON merge patch (what `application/merge-patch+json` means). */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return clone(patch);
  const out: Record<string, unknown> =
    typeof target === 'object' && target !== null && !Array.isArray(target)
      ? clone(target as Record<string, unknown>)
      : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** RFC 6902 JSON patch: add, remove, replace, test (what `application/json-patch+json` means). */
export function jsonPatch(target: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw new ApiError(400, 'BadRequest', 'a JSON patch must be a list of operations');
  let doc = clone(target);
  for (const op of ops as { op: string; path: string; value?: unknown }[]) {
    const parts = op.path
      .split('/')
      .slice(1)
      .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    const last = parts.pop();
    if (last === undefined) {
      if (op.op === 'replace' || op.op === 'add') doc = clone(op.value);
      continue;
    }
    let parent = doc as Record<string, unknown>;
    for (const p of parts) {
      const next = (parent as Record<string, unknown>)[p];
      if (typeof next !== 'object' || next === null) {
        throw new ApiError(422, 'Invalid', `the path ${op.path} does not exist`);
      }
      parent = next as Record<string, unknown>;
    }
    const isList = Array.isArray(parent);
    const index = isList ? (last === '-' ? (parent as unknown as unknown[]).length : Number(last)) : -1;
    switch (op.op) {
      case 'add':
        if (isList) (parent as unknown as unknown[]).splice(index, 0, clone(op.value));
        else parent[last] = clone(op.value);
        break;
      case 'replace':
      case 'remove':
        if (isList ? index >= (parent as unknown as unknown[]).length : !(last in parent)) {
          throw new ApiError(422, 'Invalid', `the path ${op.path} does not exist`);
        }
        if (op.op === 'remove') {
          if (isList) (parent as unknown as unknown[]).splice(index, 1);
          else delete parent[last];
        } else if (isList) (parent as unknown as unknown[])[index] = clone(op.value);
        else parent[last] = clone(op.value);
        break;
      case 'test':
        if (
          JSON.stringify(isList ? (parent as unknown as unknown[])[index] : parent[last]) !==
          JSON.stringify(op.value)
        ) {
          throw new ApiError(422, 'Invalid', `test operation at ${op.path} failed`);
        }
        break;
      default:
        throw new ApiError(400, 'BadRequest', `unsupported JSON patch operation ${JSON.stringify(op.op)}`);
    }
  }
  return doc;
}
