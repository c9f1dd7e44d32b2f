// The Delta ADS server (Envoy's incremental xDS protocol) over the ambient index. Each stream holds,
// per type URL, a subscription and what the client is known to hold (name → version); an index
// update only marks names to re-examine, and one write at a time per stream turns the marks into a
// response from the index's current state, so changes that pile up behind a slow client coalesce
// instead of queueing (after istiod's pilot/pkg/xds/delta.go and workload.go).
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../common/log.js';
import { errorMessage } from '../common/errors.js';
import {
  stringsFromStruct,
  type AnyMsg,
  type DeltaRequestMsg,
  type DeltaResponseMsg,
  type ResourceMsg,
} from '../xds/proto.js';
import type { AmbientIndex, IndexUpdate } from './ambient-index.js';

/**
 * The largest request the control plane's gRPC server (xDS and CA) reads; grpc-js answers a larger
 * one with RESOURCE_EXHAUSTED before it is decoded. The largest legitimate request is a reconnecting
 * client's initial_resource_versions: ~60 bytes per name, so 16 MiB is ~250 000 names, past the
 * name cap below for any mesh ambit is measured on (10 000 pods + 1 000 services ≈ 0.7 MiB).
 * (grpc's default is 4 MiB; istiod raises it for the same reason.)
 */
export const MAX_REQUEST_BYTES = 16 * 1024 * 1024;
/** Options for the grpc.Server that hosts this service. */
export const XDS_SERVER_OPTIONS: grpc.ServerOptions = {
  'grpc.max_receive_message_length': MAX_REQUEST_BYTES,
};
/**
 * How many names a stream may hold per type beyond what the index has of that type: explicit
 * subscriptions and initial_resource_versions the index does not know. A client can legitimately
 * hold at most everything that exists plus what was removed while it was away, so the cap follows
 * the mesh and only bounds what a caller can make up (each name costs ~100 bytes of server memory:
 * 10 000 → ~1 MB per stream and type). A request naming more than that, or a stream that would hold
 * more, is closed with RESOURCE_EXHAUSTED.
 */
export const DEFAULT_MAX_EXTRA_NAMES = 10_000;

/** A request over a limit: the stream is closed with RESOURCE_EXHAUSTED. */
class XdsLimitError extends Error {}

export interface XdsTypeStatus {
  typeUrl: string;
  lastSentNonce: string;
  lastAckedNonce: string;
  lastNack?: string;
  /** Resources the client holds as far as the server knows. */
  resourceCount: number;
}

export interface XdsConnectionInfo {
  nodeId: string;
  nodeName: string;
  connectedAt: Date;
  types: XdsTypeStatus[];
}

export interface DeltaXdsServerOptions {
  index: AmbientIndex;
  logger: Logger;
  /** Node name for the caller's credentials, or undefined to refuse with UNAUTHENTICATED. */
  authenticate?(md: grpc.Metadata): string | undefined | Promise<string | undefined>;
  /** Telemetry hook: one response written (`changedAt`: when its first change reached the stream). */
  onPush?(typeUrl: string, startedAt: number, changedAt: number | undefined): void;
  /** Names a stream may hold per type beyond the index's count of that type (DEFAULT_MAX_EXTRA_NAMES). */
  maxExtraNames?: number;
}

type AdsCall = grpc.ServerDuplexStream<DeltaRequestMsg, DeltaResponseMsg>;

interface Subscription {
  typeUrl: string;
  wildcard: boolean;
  names: Set<string>;
  /** What the client holds: seeded from initial_resource_versions, then what we sent. */
  held: Map<string, string>;
  /** Names to re-examine at the next write; a set, so repeated changes coalesce. */
  pending: Set<string>;
  /** The first request of a subscription is always answered, even with nothing (readiness). */
  mustRespond: boolean;
  status: XdsTypeStatus;
  /** When the oldest change not yet pushed arrived (push latency). */
  changedAt?: number;
}

export class DeltaXdsServer {
  private readonly index: AmbientIndex;
  private readonly log: Logger;
  private readonly authenticate: DeltaXdsServerOptions['authenticate'];
  /** @internal */
  readonly onPush: DeltaXdsServerOptions['onPush'];
  /** @internal */
  readonly maxExtraNames: number;
  private readonly streams = new Set<AdsStream>();
  private nonceSeq = 0;
  private readonly onUpdate = (u: IndexUpdate) => {
    for (const s of this.streams) s.onIndexUpdate(u);
  };

  constructor(opts: DeltaXdsServerOptions) {
    this.index = opts.index;
    this.log = opts.logger;
    this.authenticate = opts.authenticate;
    this.onPush = opts.onPush;
    this.maxExtraNames = opts.maxExtraNames ?? DEFAULT_MAX_EXTRA_NAMES;
    this.index.on('update', this.onUpdate);
  }

  handlers(): grpc.UntypedServiceImplementation {
    return { DeltaAggregatedResources: (call: AdsCall) => void this.serve(call) };
  }

  connections(): XdsConnectionInfo[] {
    return [...this.streams].map((s) => s.info());
  }

  /** Stops following the index; open streams are ended by the grpc.Server's shutdown. */
  close(): void {
    this.index.off('update', this.onUpdate);
  }

  /** @internal */
  nextNonce(): string {
    return (++this.nonceSeq).toString(36);
  }

  private async serve(call: AdsCall): Promise<void> {
    const peer = call.getPeer();
    let nodeName: string | undefined;
    if (this.authenticate) {
      try {
        nodeName = await this.authenticate(call.metadata);
      } catch (err) {
        this.log.warn({ peer, err: errorMessage(err) }, 'xDS authentication failed');
      }
      if (!nodeName) {
        this.log.warn({ peer }, 'xDS client refused: not authenticated');
        call.emit('error', { code: grpc.status.UNAUTHENTICATED, details: 'xDS client not authenticated' });
        return;
      }
    }
    if (call.cancelled) return; // gone while we were authenticating: nothing to clean up later
    const stream = new AdsStream(this, this.index, call, nodeName, this.log.child({ peer }));
    this.streams.add(stream);
    stream.onClose = () => this.streams.delete(stream);
  }
}

function anyOf(typeUrl: string, value: Uint8Array): AnyMsg {
  return { typeUrl, value };
}

class AdsStream {
  nodeId = '';
  readonly connectedAt = new Date();
  onClose: () => void = () => {};
  private readonly subs = new Map<string, Subscription>();
  private identified = false;
  private writing = false;
  private flushScheduled = false;
  private closed = false;

  constructor(
    private readonly server: DeltaXdsServer,
    private readonly index: AmbientIndex,
    private readonly call: AdsCall,
    private nodeName: string | undefined,
    private log: Logger,
  ) {
    call.on('data', (req: DeltaRequestMsg) => {
      try {
        this.onRequest(req);
      } catch (err) {
        // A request we cannot make sense of, or one over a limit, ends this stream, never the server.
        const limit = err instanceof XdsLimitError;
        this.log.warn(
          { 'node.id': this.nodeId, 'node.name': this.nodeName, err: errorMessage(err) },
          limit ? 'xDS request over a limit, closing stream' : 'bad xDS request, closing stream',
        );
        this.close(errorMessage(err));
        call.emit('error', {
          code: limit ? grpc.status.RESOURCE_EXHAUSTED : grpc.status.INVALID_ARGUMENT,
          details: errorMessage(err),
        });
      }
    });
    call.on('end', () => {
      this.close('client closed the stream');
      call.end();
    });
    call.on('cancelled', () => this.close('cancelled'));
    call.on('error', (err: Error) => this.close(errorMessage(err)));
    call.on('close', () => this.close('closed'));
  }

  info(): XdsConnectionInfo {
    const types = [...this.subs.values()].map((s) => ({ ...s.status, resourceCount: s.held.size }));
    return { nodeId: this.nodeId, nodeName: this.nodeName ?? '', connectedAt: this.connectedAt, types };
  }

  onIndexUpdate(u: IndexUpdate): void {
    const sub = this.subs.get(u.typeUrl);
    if (!sub || this.closed) return;
    for (const name of u.upserted) if (sub.wildcard || sub.names.has(name)) sub.pending.add(name);
    for (const name of u.removed) if (sub.held.has(name)) sub.pending.add(name);
    if (sub.pending.size) {
      sub.changedAt ??= Date.now();
      this.scheduleFlush();
    }
  }

  private onRequest(req: DeltaRequestMsg): void {
    if (this.closed) return;
    if (!this.identified) this.identify(req);
    const typeUrl = req.typeUrl ?? '';
    if (!this.index.typeUrls().includes(typeUrl)) {
      this.log.warn(
        { 'node.id': this.nodeId, 'xds.type': typeUrl },
        'xDS request for an unknown type ignored',
      );
      return;
    }
    // Bounded before anything is stored: the request's own names, then what the stream would hold.
    const limit = this.index.resources(typeUrl).size + this.server.maxExtraNames;
    const asked =
      (req.resourceNamesSubscribe?.length ?? 0) + Object.keys(req.initialResourceVersions ?? {}).length;
    if (asked > limit)
      throw new XdsLimitError(`request names ${asked} ${typeUrl} resources; the limit is ${limit}`);
    const sub = this.subs.get(typeUrl);
    if (req.responseNonce && sub) this.recordAck(sub, req);
    if (!sub) this.subscribe(typeUrl, req);
    else this.changeSubscription(sub, req);
    if (asked === 0) return; // an ACK: nothing new held
    const s = this.subs.get(typeUrl)!;
    let holding = s.held.size;
    for (const n of s.names) if (!s.held.has(n)) holding++;
    if (holding > limit)
      throw new XdsLimitError(`stream would hold ${holding} ${typeUrl} names; the limit is ${limit}`);
  }

  private identify(req: DeltaRequestMsg): void {
    this.identified = true;
    this.nodeId = req.node?.id ?? '';
    // Without authentication the node names itself (ambit's node proxy sends NODE_NAME metadata).
    this.nodeName ??= stringsFromStruct(req.node?.metadata).NODE_NAME ?? this.nodeId;
    this.log = this.log.child({ 'node.id': this.nodeId });
    this.log.info({ 'node.name': this.nodeName }, 'xDS client connected');
  }

  private recordAck(sub: Subscription, req: DeltaRequestMsg): void {
    if (req.errorDetail) {
      // Not retried: the client keeps its last good version; the next change to the resource is pushed as usual.
      sub.status.lastNack = req.errorDetail.message ?? '';
      this.log.warn(
        {
          'node.name': this.nodeName,
          'xds.type': sub.typeUrl,
          'xds.nonce': req.responseNonce,
          err: sub.status.lastNack,
        },
        'xDS NACK',
      );
    } else {
      sub.status.lastAckedNonce = req.responseNonce ?? '';
      sub.status.lastNack = undefined;
    }
  }

  private subscribe(typeUrl: string, req: DeltaRequestMsg): void {
    const requested = req.resourceNamesSubscribe ?? [];
    const sub: Subscription = {
      typeUrl,
      wildcard: requested.length === 0 || requested.includes('*'),
      names: new Set(requested.filter((n) => n !== '*')),
      held: new Map(Object.entries(req.initialResourceVersions ?? {})),
      pending: new Set(),
      mustRespond: true,
      status: { typeUrl, lastSentNonce: '', lastAckedNonce: '', resourceCount: 0 },
    };
    // Everything the client holds is re-examined: same version → skipped, gone → removed_resources.
    for (const name of sub.held.keys()) sub.pending.add(name);
    for (const name of sub.wildcard ? this.index.resources(typeUrl).keys() : sub.names) sub.pending.add(name);
    this.subs.set(typeUrl, sub);
    this.scheduleFlush();
  }

  private changeSubscription(sub: Subscription, req: DeltaRequestMsg): void {
    for (const name of req.resourceNamesSubscribe ?? []) {
      if (name === '*') {
        if (!sub.wildcard) for (const n of this.index.resources(sub.typeUrl).keys()) sub.pending.add(n);
        sub.wildcard = true;
      } else {
        sub.names.add(name);
        sub.pending.add(name);
      }
    }
    for (const name of req.resourceNamesUnsubscribe ?? []) {
      // The client forgets what it unsubscribes from on its own; no removed_resources are due.
      if (name === '*') {
        sub.wildcard = false;
        for (const n of sub.held.keys()) if (!sub.names.has(n)) sub.held.delete(n);
      } else {
        sub.names.delete(name);
        if (!sub.wildcard) sub.held.delete(name);
      }
    }
    if (sub.pending.size) this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.writing || this.closed) return;
    this.flushScheduled = true;
    // setImmediate: updates made in the same tick become one response, and with many streams
    // each serialisation is its own macrotask, so sockets and CA calls are served in between.
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Writes at most one response; the write's completion (the socket took it) triggers the next. */
  private flush(): void {
    if (this.writing || this.closed) return;
    for (const sub of this.subs.values()) {
      const start = Date.now();
      const changedAt = sub.changedAt;
      sub.changedAt = undefined;
      const res = this.buildResponse(sub);
      if (!res) continue;
      this.writing = true;
      this.call.write(res, (err?: Error | null) => {
        this.writing = false;
        if (err) return this.close(errorMessage(err));
        this.server.onPush?.(sub.typeUrl, start, changedAt);
        const ms = Date.now() - start;
        if (ms > 1000) this.log.info({ 'xds.type': sub.typeUrl, 'write.ms': ms }, 'slow xDS client');
        this.scheduleFlush();
      });
      return;
    }
  }

  private buildResponse(sub: Subscription): DeltaResponseMsg | undefined {
    if (sub.pending.size === 0 && !sub.mustRespond) return undefined;
    const store = this.index.resources(sub.typeUrl);
    const resources: ResourceMsg[] = [];
    const removed: string[] = [];
    for (const name of sub.pending) {
      const r = store.get(name);
      if (r && (sub.wildcard || sub.names.has(name))) {
        if (sub.held.get(name) === r.version) continue;
        sub.held.set(name, r.version);
        resources.push({
          name,
          version: r.version,
          aliases: r.aliases,
          resource: anyOf(sub.typeUrl, r.bytes),
        });
      } else if (sub.held.delete(name)) {
        removed.push(name);
      }
      // Unknown explicitly subscribed names are ignored; they are sent if they appear later.
    }
    sub.pending.clear();
    if (resources.length === 0 && removed.length === 0 && !sub.mustRespond) return undefined;
    sub.mustRespond = false;
    const nonce = this.server.nextNonce();
    sub.status.lastSentNonce = nonce;
    this.log.debug(
      { 'xds.type': sub.typeUrl, 'xds.nonce': nonce, upserted: resources.length, removed: removed.length },
      'xDS push',
    );
    return {
      typeUrl: sub.typeUrl,
      nonce,
      systemVersionInfo: this.index.version(),
      resources,
      removedResources: removed,
    };
  }

  private close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.subs.forEach((s) => s.pending.clear());
    this.onClose();
    const seconds = Math.round((Date.now() - this.connectedAt.getTime()) / 1000);
    this.log.info({ 'node.name': this.nodeName, reason, 'duration.s': seconds }, 'xDS client disconnected');
  }
}
