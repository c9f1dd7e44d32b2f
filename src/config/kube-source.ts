// KubeSource: the Kubernetes API server as a ConfigSource, with one @kubernetes/client-node
// ListWatch informer per kind, so the ambient index cannot tell it from a folder of files.
//
// List/watch rules, as client-go's reflector has them:
//  - list, then watch from the list's resourceVersion; every event and BOOKMARK moves the resume
//    point, so a dropped stream resumes where it stopped without losing or repeating anything;
//  - 410 Gone (the resume point was compacted away) → relist; what vanished in between is
//    emitted as deleted (ListWatch diffs the new list against its cache);
//  - any other failure (connection refused, 5xx, 403) → retry with jittered exponential backoff,
//    keeping every object in force: the control plane goes on serving its last index while the
//    API server is unreachable;
//  - a kind the API server does not serve (404: the Istio or Gateway API CRDs are not installed)
//    counts as empty and is retried every minute, so installing the CRDs later just works;
//  - watches ask for bookmarks and a server-side timeout; a client-side watchdog drops a stream
//    that has been silent for longer than that (a half-open connection).
// Objects are validated with the manifest schemas; an invalid one is reported with kind, namespace,
// name and field, and its last good version stays in force until it is fixed or deleted.
import { ListWatch, Watch, type KubernetesObject } from '@kubernetes/client-node';
import { errorMessage } from '../common/errors.js';
import { componentLogger, type Logger } from '../common/log.js';
import type { ConfigError } from './config-error.js';
import { sameContent } from './diff.js';
import { KubeApiError, type KubeClient, type RawObject } from './kube-client.js';
import { WATCHED_TYPES, resourcePath, type KubeResourceType } from './kube-resources.js';
import { kubeObjectLabel, validateKubeObject } from './kube-validate.js';
import { degradedEffects } from './authz-degrade.js';
import {
  objectKey,
  type ConfigChange,
  type ConfigSnapshot,
  type ConfigSource,
  type Kind,
  type KubeResource,
  type ObjectKey,
} from './types.js';

export interface KubeSourceOptions {
  client: KubeClient;
  logger?: Logger;
  /** Kinds to watch; default every kind ambit reads. */
  kinds?: readonly Kind[];
  /** Events arriving within this window are published as one change. Default 10 ms. */
  batchMs?: number;
  /** Retry backoff after an error. Default 500 ms doubling to 30 s. */
  backoff?: { initialMs: number; maxMs: number };
  /** Retry interval for a kind the API server does not serve (CRD missing). Default 60 s. */
  absentRetryMs?: number;
  /** Server-side watch timeout; default a random 5-10 min per watch, as client-go does. */
  watchTimeoutSeconds?: number;
}

type Listener = (change: ConfigChange, snapshot: ConfigSnapshot) => void;

/** How one kind's informer is doing, for logs and `ambit ctl`. */
export interface KindStatus {
  kind: Kind;
  state: 'listing' | 'synced' | 'absent' | 'retrying';
  objects: number;
  resourceVersion: string;
  lastError?: string;
}

export class KubeSource implements ConfigSource {
  private readonly log: Logger;
  private readonly client: KubeClient;
  private readonly informers: KindInformer[] = [];
  /** The validated objects in force (last good versions included). */
  private readonly objects = new Map<ObjectKey, KubeResource>();
  private readonly invalid = new Map<ObjectKey, ConfigError[]>();
  private readonly dirty = new Set<ObjectKey>();
  private snap: ConfigSnapshot = { objects: new Map() };
  private readonly listeners: Listener[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private state: 'new' | 'syncing' | 'running' | 'stopped' = 'new';
  private readonly batchMs: number;
  private synced?: () => void;

  constructor(private readonly opts: KubeSourceOptions) {
    this.client = opts.client;
    this.log = opts.logger ?? componentLogger('config', { 'config.source': 'kubernetes' });
    this.batchMs = opts.batchMs ?? 10;
  }

  /** Lists every kind and starts watching; resolves once each kind has been listed (or found absent). */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error('KubeSource.start() called twice');
    this.state = 'syncing';
    this.log.info({ server: this.client.server }, 'listing config from the Kubernetes API server');
    const kinds = this.opts.kinds ?? (Object.keys(WATCHED_TYPES) as Kind[]);
    const allSynced = new Promise<void>((resolve) => (this.synced = resolve));
    for (const kind of kinds) {
      this.informers.push(
        new KindInformer(WATCHED_TYPES[kind] as KubeResourceType & { kind: Kind }, this.client, this.opts, {
          log: this.log.child({ kind }),
          upsert: (raw) => this.upsert(kind, raw),
          remove: (raw) => this.remove(kind, raw),
          synced: () => this.checkSynced(),
        }),
      );
    }
    for (const i of this.informers) i.start();
    await allSynced;
    if (this.state !== 'syncing') return; // stopped while syncing
    this.state = 'running';
    this.flush();
    this.log.info(
      {
        objects: this.snap.objects.size,
        invalid: this.invalid.size,
        kinds: this.status().map((s) => `${s.kind}:${s.state}`),
      },
      'config loaded from the Kubernetes API server',
    );
  }

  snapshot(): ConfigSnapshot {
    return this.snap;
  }

  /** Listeners added before start() also hear the first load, as a change from nothing. */
  onChange(listener: Listener): void {
    this.listeners.push(listener);
  }

  /** Objects that failed validation (their last good version, if any, stays in force). */
  errors(): readonly ConfigError[] {
    return [...this.invalid.values()].flat();
  }

  warnings(): readonly ConfigError[] {
    return [];
  }

  status(): KindStatus[] {
    return this.informers.map((i) => i.status());
  }

  async stop(): Promise<void> {
    this.state = 'stopped';
    clearTimeout(this.flushTimer);
    this.synced?.();
    await Promise.all(this.informers.map((i) => i.stop()));
  }

  private upsert(kind: Kind, raw: RawObject): void {
    const t = WATCHED_TYPES[kind] as KubeResourceType & { kind: Kind };
    const key = objectKey({
      kind,
      metadata: { name: raw.metadata.name, namespace: t.namespaced ? raw.metadata.namespace : undefined },
    });
    const v = validateKubeObject(t, raw);
    if (v.ok) {
      if (this.invalid.delete(key))
        this.log.info(
          { object: key },
          `fixed: ${kubeObjectLabel(kind, raw.metadata.namespace, raw.metadata.name)}`,
        );
      this.objects.set(key, v.object);
    } else {
      const held = this.objects.get(key);
      // A held degraded stand-in is no last good version: the newer stand-in replaces it.
      const kept = held !== undefined && !(held.kind === 'AuthorizationPolicy' && degradedEffects(held));
      const text = v.errors.map(String);
      const before = this.invalid.get(key)?.map(String);
      this.invalid.set(key, v.errors);
      if (!kept && v.degraded) this.objects.set(key, v.degraded.object);
      if (!before || !sameContent(before, text)) {
        for (const line of text) this.log.warn({ object: key, code: 'CONFIG_INVALID' }, line);
        if (kept) this.log.warn({ object: key }, 'invalid object; its last good version stays in force');
        else if (v.degraded)
          this.log.warn(
            { object: key, code: 'CONFIG_POLICY_DEGRADED' },
            `invalid policy in force degraded (fail closed): ${v.degraded.effects.join('; ')}`,
          );
        else this.log.warn({ object: key }, 'invalid object skipped');
      }
    }
    this.markDirty(key);
  }

  private remove(kind: Kind, raw: RawObject): void {
    const t = WATCHED_TYPES[kind];
    const key = objectKey({
      kind,
      metadata: { name: raw.metadata.name, namespace: t.namespaced ? raw.metadata.namespace : undefined },
    });
    this.objects.delete(key);
    this.invalid.delete(key);
    this.markDirty(key);
  }

  private markDirty(key: ObjectKey): void {
    this.dirty.add(key);
    if (this.state !== 'running' || this.flushTimer) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.flush();
    }, this.batchMs);
  }

  private checkSynced(): void {
    if (this.state === 'syncing' && this.informers.every((i) => i.hasSynced())) this.synced?.();
  }

  /** Publishes what changed since the last flush, compared by content. */
  private flush(): void {
    const before = this.snap.objects;
    const change: ConfigChange = { upserted: [], deleted: [] };
    for (const key of this.dirty) {
      const now = this.objects.get(key);
      const old = before.get(key);
      if (now && (!old || !sameContent(old, now))) change.upserted.push(now);
      else if (!now && old) change.deleted.push({ kind: old.kind, metadata: old.metadata });
    }
    this.dirty.clear();
    if (change.upserted.length === 0 && change.deleted.length === 0) return;
    this.snap = { objects: new Map(this.objects) };
    // Debug, not info: in a cluster pod status changes all the time.
    this.log.debug(
      {
        upserted: change.upserted.slice(0, 20).map(objectKey),
        deleted: change.deleted.slice(0, 20).map(objectKey),
      },
      `config changed: ${change.upserted.length} upserted, ${change.deleted.length} deleted`,
    );
    for (const listener of this.listeners) {
      try {
        listener(change, this.snap);
      } catch (err) {
        this.log.error({ err }, 'config change listener threw');
      }
    }
  }
}

interface InformerHooks {
  log: Logger;
  upsert(raw: RawObject): void;
  remove(raw: RawObject): void;
  synced(): void;
}

/** One kind: a client-node ListWatch plus the retry policy around it. */
class KindInformer {
  private readonly lw: ListWatch<KubernetesObject>;
  private state: KindStatus['state'] = 'listing';
  private synced = false;
  private stopped = false;
  private failures = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private lastError: string | undefined;
  private readonly watch: WatchdogWatch;

  constructor(
    private readonly t: KubeResourceType & { kind: Kind },
    private readonly client: KubeClient,
    private readonly opts: KubeSourceOptions,
    private readonly hooks: InformerHooks,
  ) {
    this.watch = new WatchdogWatch(client, opts.watchTimeoutSeconds, () => this.healthy());
    const list = async () => {
      const l = await this.client.list(this.t, this.t.watchNamespace);
      for (const item of l.items) slim(item);
      this.healthy();
      return l as unknown as { metadata?: { resourceVersion?: string }; items: KubernetesObject[] };
    };
    this.lw = new ListWatch<KubernetesObject>(resourcePath(t, t.watchNamespace), this.watch, list, false);
    this.lw.on('add', (o) => this.hooks.upsert(o as RawObject));
    this.lw.on('update', (o) => this.hooks.upsert(o as RawObject));
    this.lw.on('delete', (o) => this.hooks.remove(o as RawObject));
    this.lw.on('connect', () => {
      // Called before each list and each watch; the first list completing makes the kind synced.
      if (!this.synced && this.lw.latestResourceVersion()) this.markSynced('synced');
    });
    this.lw.on('error', (err: unknown) => this.failed(err));
  }

  /** (Re)starts the ListWatch: it lists only when it has no resourceVersion to resume from. */
  start(): void {
    void this.lw.start().then(() => {
      if (!this.synced && !this.stopped && this.lw.latestResourceVersion()) this.markSynced('synced');
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    await this.lw.stop();
  }

  hasSynced(): boolean {
    return this.synced;
  }

  status(): KindStatus {
    return {
      kind: this.t.kind,
      state: this.state,
      objects: this.lw.list().length,
      resourceVersion: this.lw.latestResourceVersion(),
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }

  /** A list or a watch event arrived: the API server is reachable again. */
  private healthy(): void {
    if (this.failures > 0 || this.state === 'retrying' || this.state === 'absent') {
      this.hooks.log.info(
        { 'retry.failures': this.failures, resourceVersion: this.lw.latestResourceVersion() },
        `${this.t.kind}: API server reachable again`,
      );
    }
    this.failures = 0;
    this.lastError = undefined;
    if (this.synced) this.state = 'synced';
  }

  private markSynced(state: KindStatus['state']): void {
    this.state = state;
    this.synced = true;
    this.hooks.synced();
  }

  private failed(err: unknown): void {
    if (this.stopped) return; // our own abort
    this.failures++;
    const status = err instanceof KubeApiError ? err.statusCode : (err as { statusCode?: number }).statusCode;
    this.lastError = errorMessage(err);
    let delay: number;
    if (status === 404) {
      delay = this.opts.absentRetryMs ?? 60_000;
      if (this.failures === 1) {
        this.hooks.log.warn(
          { 'retry.ms': delay },
          `${this.t.apiVersion} ${this.t.kind} is not served by the API server (CRD not installed?); treating it as empty, retrying every ${Math.round(delay / 1000)} s`,
        );
      }
      if (!this.synced) this.markSynced('absent');
      else this.state = 'absent';
    } else {
      const b = this.opts.backoff ?? { initialMs: 500, maxMs: 30_000 };
      const base = Math.min(b.maxMs, b.initialMs * 2 ** Math.min(this.failures - 1, 20));
      delay = Math.round(base * (0.8 + Math.random() * 0.4));
      this.state = 'retrying';
      // Log the first failure and then every 10th, so an outage is visible without flooding.
      if (this.failures === 1 || this.failures % 10 === 0) {
        this.hooks.log.warn(
          {
            err: this.lastError,
            'retry.ms': delay,
            'retry.failures': this.failures,
            resourceVersion: this.lw.latestResourceVersion(),
          },
          `${this.t.kind}: list/watch failed; keeping the last config, retrying`,
        );
      }
      // A kind we are not allowed to read (403) must not hold the control plane's start forever.
      if (!this.synced && status === 403) this.markSynced('retrying');
    }
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (!this.stopped) this.start();
    }, delay);
  }
}

/**
 * client-node's Watch with what ListWatch does not ask for: bookmarks, a server-side timeout so
 * streams are recycled, and a watchdog that aborts a stream silent for longer than that timeout
 * plus a minute (the peer vanished without closing the connection).
 */
class WatchdogWatch extends Watch {
  constructor(
    client: KubeClient,
    private readonly timeoutSeconds: number | undefined,
    private readonly onEvent: () => void,
  ) {
    super(client.kc);
  }

  override async watch(
    path: string,
    queryParams: Record<string, unknown>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    const timeout = this.timeoutSeconds ?? 300 + Math.floor(Math.random() * 300);
    let timer: NodeJS.Timeout | undefined;
    let finished = false;
    const arm = () => {
      clearTimeout(timer);
      // Fires long after `controller` below is assigned.
      timer = setTimeout(() => controller.abort(), (timeout + 60) * 1000);
      timer.unref();
    };
    const query = { ...queryParams, allowWatchBookmarks: true, timeoutSeconds: timeout };
    const controller = await super.watch(
      path,
      query,
      (phase, obj, watchObj) => {
        arm();
        if (phase !== 'ERROR') this.onEvent();
        if (obj && typeof obj === 'object' && 'metadata' in obj) slim(obj as RawObject);
        callback(phase, obj, watchObj);
      },
      (err) => {
        finished = true;
        clearTimeout(timer);
        done(err);
      },
    );
    if (!finished) arm();
    return controller;
  }
}

/**
 * Drops what nobody here reads but every object carries, before the informer caches it (client-go's
 * transform): managedFields and kubectl's last-applied copy are often larger than the object.
 */
function slim(o: RawObject): void {
  delete o.metadata.managedFields;
  const a = o.metadata.annotations;
  if (a && 'kubectl.kubernetes.io/last-applied-configuration' in a) {
    delete a['kubectl.kubernetes.io/last-applied-configuration'];
  }
}
