// The Delta xDS client used by proxies (node proxy, waypoint). It subscribes wildcard to each
// configured type, validates every resource at the edge (decode), applies the valid ones and
// NACKs the rest while keeping their last good version (after ztunnel's src/xds/client.rs and the
// grpc-js-xds NACK behaviour). State is never dropped when the control plane goes away: proxies
// keep serving the last configuration and reconnect forever, resuming with
// initial_resource_versions so the server sends only what changed meanwhile.
import { tokenOf, type TokenSource } from '../common/token.js';
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../common/log.js';
import { errorMessage } from '../common/errors.js';
import {
  adsServiceDefinition,
  structFromStrings,
  type DeltaRequestMsg,
  type DeltaResponseMsg,
} from './proto.js';

export interface XdsTypeHandler<T> {
  typeUrl: string;
  /** Converts and validates one resource; throws (with a reason) to reject it. */
  decode(name: string, bytes: Uint8Array): T;
  /** Called once per response with the valid resources and the names removed. */
  apply(upserted: Map<string, T>, removed: string[]): void;
}

/**
 * How a proxy reaches the control plane: TLS verified against the mesh root under the control
 * plane's service name, and a bearer token on every (re)connect. Shared by node proxies,
 * waypoints and `ambit authz explain --server`.
 */
export function controlPlaneConnection(
  address: string,
  rootPem: string,
  token: TokenSource,
  serverName: string,
): Pick<XdsClientOptions, 'address' | 'credentials' | 'channelOptions' | 'metadata'> {
  return {
    address,
    credentials: grpc.credentials.createSsl(Buffer.from(rootPem)),
    channelOptions: { 'grpc.ssl_target_name_override': serverName, 'grpc.default_authority': serverName },
    metadata: () => {
      const md = new grpc.Metadata();
      md.set('authorization', `Bearer ${tokenOf(token)}`);
      return md;
    },
  };
}

/** Per resource type: the last response from the control plane and how it was answered. */
export interface XdsTypeStatus {
  typeUrl: string;
  nonce: string;
  /** The control plane's system_version_info with that response. */
  systemVersion: string;
  /** false: NACKed (the last good resources stay in force). */
  acked: boolean;
  error?: string;
  at: string;
  /** Resources of this type held now. */
  resources: number;
}

export interface XdsClientOptions {
  address: string;
  credentials: grpc.ChannelCredentials;
  channelOptions?: grpc.ChannelOptions;
  /** Called at every (re)connect so a rotated token is picked up. */
  metadata?: () => grpc.Metadata;
  node: { id: string; metadata?: Record<string, string> };
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- each handler has its own T
  types: XdsTypeHandler<any>[];
  logger: Logger;
  backoff?: { initialMs: number; maxMs: number };
}

const DEFAULT_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  // A full state of 10k+ workloads exceeds grpc's 4 MiB default.
  'grpc.max_receive_message_length': -1,
  // Notice a control plane that vanished without closing the connection (host lost).
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
};
const RECONNECT_LOG_INTERVAL_MS = 30_000;
export const XDS_BACKOFF_MAX_MS = 2_000;
const INVALID_ARGUMENT = 3;

type AdsClientCall = grpc.ClientDuplexStream<DeltaRequestMsg, DeltaResponseMsg>;

export class XdsClient extends EventEmitter<{ connected: []; disconnected: [reason: string] }> {
  private readonly opts: XdsClientOptions;
  private readonly log: Logger;
  private readonly handlers = new Map<string, XdsTypeHandler<unknown>>();
  /** typeUrl → name → version of what has been applied: sent back as initial_resource_versions. */
  private readonly held = new Map<string, Map<string, string>>();
  private readonly firstApplied = new Set<string>();
  /** typeUrl → what the last response was answered with (for /config_dump and `ambit ctl`). */
  private readonly lastReply = new Map<string, XdsTypeStatus>();
  private client?: grpc.Client;
  private call?: AdsClientCall;
  private connected = false;
  private stopped = false;
  private attempt = 0;
  private retryTimer?: NodeJS.Timeout;
  private lastReconnectLog = 0;
  private suppressedLogs = 0;
  private readonly readyPromise: Promise<void>;
  private settleReady!: (err?: Error) => void;

  constructor(opts: XdsClientOptions) {
    super();
    this.opts = opts;
    this.log = opts.logger;
    for (const t of opts.types) {
      this.handlers.set(t.typeUrl, t);
      this.held.set(t.typeUrl, new Map());
    }
    this.readyPromise = new Promise<void>((resolve, reject) => {
      this.settleReady = (err) => (err ? reject(err) : resolve());
    });
    this.readyPromise.catch(() => {}); // rejection is for callers of ready(); nobody else must see it
    if (this.handlers.size === 0) this.settleReady();
  }

  start(): void {
    if (this.client || this.stopped) return;
    const { initialMs, maxMs } = this.backoff();
    const channelOptions = {
      ...DEFAULT_CHANNEL_OPTIONS,
      // The channel's own reconnect backoff (1 s → 120 s by default) would otherwise pace our retries.
      'grpc.initial_reconnect_backoff_ms': initialMs,
      'grpc.max_reconnect_backoff_ms': maxMs,
      ...this.opts.channelOptions,
    };
    this.client = new grpc.Client(this.opts.address, this.opts.credentials, channelOptions);
    this.connect();
  }

  /** Resolves once the first response of every type has been applied; rejects if stopped before. */
  ready(): Promise<void> {
    return this.readyPromise;
  }

  isConnected(): boolean {
    return this.connected;
  }

  /** The last response of each type and whether it was ACKed (what `/config_dump` shows). */
  status(): XdsTypeStatus[] {
    return [...this.lastReply.values()];
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const call = this.call;
    this.call = undefined;
    call?.cancel();
    this.client?.close();
    this.setDisconnected('client stopped');
    this.settleReady(new Error('xDS client stopped before it was ready'));
  }

  // ---- connection ----

  private connect(): void {
    const def = adsServiceDefinition.DeltaAggregatedResources!;
    const md = this.opts.metadata?.() ?? new grpc.Metadata();
    const call: AdsClientCall = this.client!.makeBidiStreamRequest(
      def.path,
      def.requestSerialize,
      def.responseDeserialize,
      md,
    );
    this.call = call;
    call.on('data', (res: DeltaResponseMsg) => {
      if (call === this.call) this.onResponse(call, res);
    });
    call.on('error', () => {}); // every end is reported once, with its status, below
    call.on('status', (s: grpc.StatusObject) =>
      this.onCallEnded(call, `${grpc.status[s.code]}: ${s.details}`),
    );
    const node = {
      id: this.opts.node.id,
      metadata: this.opts.node.metadata ? structFromStrings(this.opts.node.metadata) : undefined,
    };
    for (const typeUrl of this.handlers.keys()) {
      call.write({
        node,
        typeUrl,
        resourceNamesSubscribe: ['*'],
        initialResourceVersions: Object.fromEntries(this.held.get(typeUrl)!),
      });
    }
  }

  private onCallEnded(call: AdsClientCall, reason: string): void {
    if (call !== this.call) return;
    this.call = undefined;
    this.setDisconnected(reason);
    if (this.stopped) return;
    // Full jitter over [delay/2, delay]: many proxies losing one control plane must not return in lockstep.
    const { initialMs, maxMs } = this.backoff();
    const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(this.attempt, 30));
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    this.attempt++;
    this.logReconnect(reason, delay);
    this.retryTimer = setTimeout(() => {
      if (!this.stopped) this.connect();
    }, delay);
  }

  /**
   * Reconnect pacing: 100 ms doubling to a 2 s cap, each wait drawn from [cap/2, cap]. The cap
   * used to be 15 s, and after a 30 s outage proxies came back 11–15 s after the control plane
   * did; with 2 s config flows again within ~2 s, and the jitter keeps a fleet from reconnecting
   * in lockstep (a 1 000-node fleet costs the control plane ~700 attempts/s while it is down,
   * each a TCP connect that fails fast).
   */
  private backoff(): { initialMs: number; maxMs: number } {
    return this.opts.backoff ?? { initialMs: 100, maxMs: XDS_BACKOFF_MAX_MS };
  }

  private logReconnect(reason: string, delayMs: number): void {
    const now = Date.now();
    if (this.attempt > 1 && now - this.lastReconnectLog < RECONNECT_LOG_INTERVAL_MS) {
      this.suppressedLogs++;
      return;
    }
    const fields = { address: this.opts.address, attempt: this.attempt, 'delay.ms': delayMs, reason };
    this.log.warn({ ...fields, 'attempts.unlogged': this.suppressedLogs }, 'xDS stream down, reconnecting');
    this.lastReconnectLog = now;
    this.suppressedLogs = 0;
  }

  private setDisconnected(reason: string): void {
    if (!this.connected) return;
    this.connected = false;
    this.emit('disconnected', reason);
  }

  // ---- responses ----

  private onResponse(call: AdsClientCall, res: DeltaResponseMsg): void {
    if (!this.connected) {
      this.connected = true;
      this.attempt = 0;
      this.log.info({ address: this.opts.address }, 'xDS stream connected');
      this.emit('connected');
    }
    const typeUrl = res.typeUrl ?? '';
    const handler = this.handlers.get(typeUrl);
    if (!handler) {
      this.log.warn({ 'xds.type': typeUrl }, 'xDS response for a type not subscribed, ignored');
      return;
    }
    const errors = this.applyResponse(typeUrl, handler, res);
    const ack: DeltaRequestMsg = { typeUrl, responseNonce: res.nonce ?? '' };
    if (errors.length > 0) {
      const message = errors.join('; ');
      ack.errorDetail = { code: INVALID_ARGUMENT, message };
      this.log.warn(
        { 'xds.type': typeUrl, 'xds.nonce': res.nonce, err: message },
        'xDS NACK: kept last good config',
      );
    }
    call.write(ack);
    this.lastReply.set(typeUrl, {
      typeUrl,
      nonce: res.nonce ?? '',
      systemVersion: res.systemVersionInfo ?? '',
      acked: errors.length === 0,
      ...(errors.length ? { error: errors.join('; ') } : {}),
      at: new Date().toISOString(),
      resources: this.held.get(typeUrl)?.size ?? 0,
    });
    if (!this.firstApplied.has(typeUrl)) {
      this.firstApplied.add(typeUrl);
      if (this.firstApplied.size === this.handlers.size) this.settleReady();
    }
  }

  /** Decodes, applies what is valid, and returns one reason per rejected resource. */
  private applyResponse(typeUrl: string, handler: XdsTypeHandler<unknown>, res: DeltaResponseMsg): string[] {
    const held = this.held.get(typeUrl)!;
    const errors: string[] = [];
    const upserted = new Map<string, unknown>();
    const versions = new Map<string, string>();
    for (const r of res.resources ?? []) {
      const name = r.name ?? '';
      try {
        if (!name) throw new Error('a resource without a name');
        const anyType = r.resource?.typeUrl;
        if (anyType && anyType !== typeUrl) throw new Error(`carries ${anyType} in a ${typeUrl} response`);
        upserted.set(name, handler.decode(name, r.resource?.value ?? new Uint8Array()));
        versions.set(name, r.version ?? '');
      } catch (err) {
        const msg = errorMessage(err);
        // decode errors usually name the resource already (resources.ts does); don't say it twice.
        errors.push(!name || msg.includes(JSON.stringify(name)) ? msg : `${JSON.stringify(name)}: ${msg}`);
      }
    }
    const removed = (res.removedResources ?? []).filter((n) => held.has(n));
    if (upserted.size === 0 && removed.length === 0) return errors;
    try {
      handler.apply(upserted, removed);
    } catch (err) {
      // Our own bug rather than bad config: report it to the control plane and keep the versions we had.
      this.log.error({ 'xds.type': typeUrl, err: errorMessage(err) }, 'applying xDS resources failed');
      return [...errors, `apply failed: ${errorMessage(err)}`];
    }
    for (const [name, version] of versions) held.set(name, version);
    for (const name of removed) held.delete(name);
    return errors;
  }
}
