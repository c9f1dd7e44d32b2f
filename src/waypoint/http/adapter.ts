// The seam between the request pipeline (`pipeline.ts`) and the HTTP protocols (`http1.ts`,
// `http2.ts`, `http/h1-upgrade.ts`): what the pipeline asks of a protocol while it carries one
// request from its head to its record, and the plan it hands over. Types (and the body buffer
// limit both protocols read), below both sides, so neither imports the other (undici splits its dispatcher the same way: one request
// core, one writer per protocol, behind one interface).
//
// The pipeline knows policy, routing, resilience and recording; an adapter knows framing
// (keep-alive, chunked, Upgrade, HTTP/2 streams, trailers, RST codes, gRPC status answers). An
// adapter is one object per protocol, its methods plain calls with the request's own handle
// (`D`), so the data path costs no allocation or promise per chunk.
import type { Duplex } from 'node:stream';
import type { Exchange } from '../request-record.js';
import type { ForwardAction, WeightedBackend } from '../routing/types.js';
import type { Destination, UpstreamEndpoint } from '../upstream/upstream.js';
import type { LbContext } from '../resilience/lb.js';
import type { ConnectionPoolLimiter } from '../resilience/pool.js';
import type { AttemptResult } from '../resilience/retry.js';
import type { HttpFailure } from './failure.js';

/** A request body up to this size is kept for retries (Envoy's default per-connection buffer limit). */
export const RETRY_BUFFER_BYTES = 1024 * 1024;

/** What the pipeline decided before the first upstream try. */
export interface Plan {
  readonly kind: 'forward';
  action: ForwardAction;
  backend?: WeightedBackend;
  destination?: Destination;
  /** Pod-addressed traffic: the pod itself. */
  original?: UpstreamEndpoint;
  /** What a consistent-hash balancer hashes. */
  lb: LbContext;
}

/** An answer from the waypoint itself (direct response, redirect), decided by routing. */
export interface LocalAnswer {
  readonly kind: 'local';
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** A mirror target chosen for this request. */
export interface MirrorTarget {
  endpoint: UpstreamEndpoint;
  limiter: ConnectionPoolLimiter;
  /** The copy's Host / :authority (`-shadow` suffix). */
  authority: string;
}

/** The upstream request an adapter built from the downstream one: head (edited) and body. */
export interface UpstreamRequest {
  /**
   * True when the body streams through once (HTTP/1.1 with a chunked or large body): one try,
   * no retry policy at all, as Envoy past its buffer limit.
   */
  readonly oneTry: boolean;
  /** Whether a retry can still send the body again (asked only when a try would be retried). */
  readonly replayable: boolean;
  /** Body bytes read from the client so far; undefined when not counted. */
  readonly bytes: number | undefined;
  /** Host / :authority as sent upstream (a mirror copy gets `<this>-shadow`). */
  readonly authority: string;
  /** Calls `cb` with the whole body once it is buffered; never when it was too large to keep. */
  whenBuffered(cb: (body: Buffer) => void): void;
}

/** What every downstream side can do: say whether the client is gone, answer from the waypoint, or fail. */
export interface DownstreamAdapter<D> {
  /** True once the client reset the request or closed the connection. */
  closed(down: D): boolean;
  /** Writes an answer from the waypoint; returns the HTTP status to record (a gRPC answer is 200). */
  answer(down: D, x: Exchange, a: LocalAnswer): number;
  /**
   * Answers a failure (text with its reason; for gRPC a trailers-only grpc-status), or, once the
   * answer's head is out, ends the request abruptly (reset / close) so the client sees a failure
   * and never a short body. Returns the HTTP status to record.
   */
  fail(down: D, x: Exchange, f: HttpFailure): number;
}

/** A protocol's side of an ordinary (non-upgrade) request, as the pipeline drives it. `A`: an upstream answer. */
export interface ProtocolAdapter<D, R extends UpstreamRequest, A> extends DownstreamAdapter<D> {
  /** A signal aborted when the client goes away before its answer is out. */
  watch(down: D): AbortSignal;
  /** The upstream head (route edits, rewrite, forwarding headers) and the body, read as the protocol allows. */
  readBody(down: D, x: Exchange, plan: Plan): Promise<R>;
  /** One try to `ep` on the protocol's pool; `limiter` is the destination's limits (none for a pod). */
  sendTry(
    req: R,
    x: Exchange,
    ep: UpstreamEndpoint,
    signal: AbortSignal,
    limiter: ConnectionPoolLimiter | undefined,
  ): Promise<AttemptResult<A>>;
  /** An answer a retry replaces: read to its end or cancelled, so its connection or stream is free. */
  discard(answer: A): Promise<void> | void;
  /** An answer nobody will read (the client went away): cancelled at once. */
  abandon(answer: A): void;
  /** Sends the chosen answer down (headers edited by the plan, body, trailers); resolves with the status to record. */
  relay(down: D, x: Exchange, plan: Plan, answer: A, req: R): Promise<number>;
  /** Sends one fire-and-forget copy of a buffered request; its answer and failure are discarded. */
  mirror(req: R, target: MirrorTarget, body: Buffer): void;
}

/** HTTP/1.1 `Upgrade` (WebSocket): one try on a tunnel of its own, then the protocol's bytes. */
export interface UpgradeAdapter<D> extends DownstreamAdapter<D> {
  /**
   * Sends the upgrade request on `tunnel` and relays the answer: a 101 splices the two sides, any
   * other answer is relayed and the connection stays HTTP. Resolves with the status to record;
   * rejects when the upstream failed before an answer (the tunnel is closed).
   */
  upgrade(down: D, x: Exchange, plan: Plan, tunnel: Duplex): Promise<number>;
}
