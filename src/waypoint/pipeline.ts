// The request pipeline: one request at the waypoint, start to end, for HTTP/1.1 (`http1.ts`),
// HTTP/2 and gRPC (`http2.ts`) and WebSocket upgrades (`http/h1-upgrade.ts`). It owns the
// order and calls the protocol's adapter (`http/adapter.ts`) for what is framing:
//   path normalization (meshConfig.pathNormalization; the normalized path is the one policy and
//   routing match and the one forwarded; 400/404 for a path Envoy refuses) → JWT (401) → CUSTOM
//   (ext_authz, `ext-authz.ts`: the provider's status) → L7 authorization (DENY then ALLOW, 403
//   `RBAC: access denied`; Istio's precedence: CUSTOM, DENY, ALLOW) → routing (direct response,
//   redirect, 404, or a weighted backend) → fault → rate limit (429) → [adapter.readBody] →
//   mirrors [adapter.mirror] → tries with retries, budget and timeouts, each: outlier filter →
//   balancer → [adapter.sendTry] (the protocol's own pool and its limit) → outlier record →
//   [adapter.relay] → one record (`request-record.ts`).
// Every way out records once; errors become answers in one place (`http/failure.ts`, Envoy's
// statuses and bodies) that the adapter writes in its protocol's form (`adapter.fail`).
import type { Logger } from '../common/log.js';
import { errorMessage } from '../common/errors.js';
import { formatSocketAddr } from '../common/addr.js';
import type { HttpProxyDeps } from './http/http-types.js';
import type { ForwardAction, L7Request } from './routing/types.js';
import { DEFAULT_PATH_NORMALIZATION, normalizeRequestPath, pickWeighted } from './http/http-request.js';
import { serviceDial, type CustomDecision, type ProviderDial } from './policy/ext-authz.js';
import { RBAC_DENIED_BODY } from './policy/authz-l7.js';
import { Upstreams, type UpstreamEndpoint } from './upstream/upstream.js';
import { runWithRetries, type AttemptResult, type RetryResult } from './resilience/retry.js';
import { defaultRetryPolicy } from './resilience/types.js';
import { decideFault, FAULT_ABORT_BODY } from './resilience/fault.js';
import { RATE_LIMITED_BODY, rateLimitHeaders } from './resilience/rate-limit.js';
import { shadowAuthority, shouldMirror } from './resilience/mirror.js';
import type { LbContext } from './resilience/lb.js';
import { recordExchange, type Exchange } from './request-record.js';
import type {
  DownstreamAdapter,
  LocalAnswer,
  MirrorTarget,
  Plan,
  ProtocolAdapter,
  UpgradeAdapter,
  UpstreamRequest,
} from './http/adapter.js';
import { failureOf, HttpFailure, toFailure } from './http/failure.js';

export class RequestPipeline {
  readonly upstreams: Upstreams;
  /** How CUSTOM providers are reached: their Service's endpoints, as the waypoint reaches any. */
  private readonly providerDial: ProviderDial;

  constructor(
    private readonly deps: HttpProxyDeps,
    private readonly log: Logger,
  ) {
    this.upstreams = new Upstreams(deps.state, () => deps.engine().policy, log.child({ part: 'upstream' }));
    this.providerDial = serviceDial(deps.state, (w, authority) => deps.connect(w, authority));
  }

  /**
   * One request, start to end: the decisions (`prepare`), the upstream request the protocol
   * builds, mirrors, the tries, the relay of the chosen answer, and the record. Every way out
   * (an answer from the waypoint, a failure, a client that left) records exactly once.
   */
  async serve<D, R extends UpstreamRequest, A>(
    p: ProtocolAdapter<D, R, A>,
    down: D,
    x: Exchange,
  ): Promise<void> {
    // Aborted when the client leaves: ends a CUSTOM (ext_authz) check and the tries it no longer waits for.
    const signal = p.watch(down);
    try {
      const plan = await this.prepare(x, signal);
      if (plan.kind === 'local') return this.record(x, p.answer(down, x, plan));
      // A request the client reset while we decided costs no upstream work (HTTP/2 rapid reset).
      if (p.closed(down)) {
        x.reason = 'reset by client';
        return this.record(x, 0);
      }
      const req = await p.readBody(down, x, plan);
      if (plan.action.mirror?.length) req.whenBuffered((body) => this.mirror(p, req, plan, body));
      const result = await this.forward(p, req, x, plan, signal);
      if (req.bytes !== undefined) x.requestBytes = req.bytes;
      const answer = result.outcome.response;
      if (result.stop === 'cancelled' || p.closed(down)) {
        if (answer !== undefined) p.abandon(answer); // nobody to answer: not left half-read
        x.reason = 'downstream went away';
        return this.record(x, 0);
      }
      if (answer === undefined) throw failureOf(result.outcome.error ?? 'reset', result.stop);
      this.record(x, await p.relay(down, x, plan, answer, req));
    } catch (err) {
      this.fail(p, down, x, toFailure(err));
    }
  }

  /**
   * An HTTP/1.1 WebSocket upgrade, start to end: the same decisions, one endpoint (no retries:
   * once the upstream has the upgrade request it may have switched protocols), a tunnel of its
   * own to it as the waypoint, then the adapter relays the answer or splices; recorded once.
   */
  async serveUpgrade<D>(p: UpgradeAdapter<D>, down: D, x: Exchange): Promise<void> {
    try {
      const plan = await this.prepare(x);
      if (plan.kind === 'local') return this.record(x, p.answer(down, x, plan));
      // As for any request: a client gone while the waypoint decided gets no upstream tunnel
      // (a WebSocket opened for nobody would stay open as long as the backend keeps it).
      if (p.closed(down)) {
        x.reason = 'reset by client';
        return this.record(x, 0);
      }
      const ep = this.pickOnce(x, plan);
      const tunnel = await this.deps.connect(ep.workload, ep.authority, x.ctx);
      if (p.closed(down)) {
        tunnel.destroy();
        x.reason = 'downstream went away';
        return this.record(x, 0);
      }
      this.record(x, await p.upgrade(down, x, plan, tunnel));
    } catch (err) {
      this.fail(p, down, x, toFailure(err));
    }
  }

  /**
   * A request the protocol refuses before any decision (an upgrade type that is not enabled,
   * HTTP/1.1 CONNECT): answered with `f` and recorded like any other.
   */
  refuse<D>(p: DownstreamAdapter<D>, down: D, x: Exchange, f: HttpFailure): void {
    this.fail(p, down, x, f);
  }

  /**
   * Everything before the first upstream try: authentication, authorization, routing, fault
   * injection, the backend (weighted) and its destination, the rate limit. Returns the answer
   * when the request is answered here (direct response, redirect); throws HttpFailure for a
   * refusal.
   */
  private async prepare(x: Exchange, signal?: AbortSignal): Promise<Plan | LocalAnswer> {
    const { l7: req, ctx } = x;
    const engine = this.deps.engine();
    const normalized = normalizeRequestPath(req.path, engine.pathNormalization ?? DEFAULT_PATH_NORMALIZATION);
    if (!normalized.ok) {
      this.log.warn(
        {
          'src.identity': ctx.peerIdentity,
          path: req.path.slice(0, 256),
          status: normalized.status,
          reason: normalized.reason,
        },
        'request refused: invalid path',
      );
      throw new HttpFailure(normalized.status, normalized.reason, http400or404Body(normalized.status));
    }
    req.path = normalized.path;
    const authn = await engine.authenticate(req);
    if (!authn.ok) {
      this.log.warn(
        {
          'src.identity': ctx.peerIdentity,
          path: req.path,
          policy: authn.policy ?? null,
          reason: authn.reason,
        },
        'request denied: invalid JWT',
      );
      throw new HttpFailure(401, authn.reason, 'Jwt verification fails');
    }
    for (const h of authn.removeHeaders) delete req.headers[h];
    for (const [k, v] of Object.entries(authn.addHeaders)) req.headers[k] = v;
    const custom = engine.custom
      ? await engine.custom(
          req,
          ctx,
          authn,
          this.providerDial,
          signal,
          x.protocol === 'http1' ? 'HTTP/1.1' : 'HTTP/2',
        )
      : undefined;
    if (custom) this.applyCustom(x, custom);
    const decided = this.decide(x, authn);
    if (decided.kind === 'local') return decided;
    let action = decided;
    if (custom?.allow && custom.downstream.length) action = withResponseHeaders(action, custom.downstream);
    x.route = action.routeName;
    const fault = decideFault(action.fault, Math.random);
    if (fault.delayMs) await new Promise((r) => setTimeout(r, fault.delayMs));
    if (fault.abortStatus)
      throw new HttpFailure(fault.abortStatus, 'fault injected (abort)', FAULT_ABORT_BODY);
    if (action.original || action.backends.length === 0) {
      const w = this.deps.state.workloadByAddress(req.target.ip);
      if (!w) throw new HttpFailure(503, `no healthy upstream: no workload at ${req.target.ip}`);
      const authority = formatSocketAddr(req.target.ip, req.target.port);
      return {
        kind: 'forward',
        action,
        original: { id: authority, active: 0, workload: w, authority },
        lb: lbContext(req, ctx.srcIp),
      };
    }
    const backend = pickWeighted(action.backends);
    if (backend.invalid) throw new HttpFailure(backend.invalid.status, backend.invalid.reason);
    const destination = this.upstreams.destination(backend);
    if ('reason' in destination) {
      // Gateway API: a backendRef to a Service that does not exist gets 500 (its share only).
      const status = destination.unknown ? (backend.unknownServiceStatus ?? 503) : 503;
      throw new HttpFailure(status, destination.reason);
    }
    // A backendRef's own request header filters apply only when that backend is chosen.
    if (backend.requestHeaders) action = { ...action, backendRequestHeaders: backend.requestHeaders };
    x.service = destination.service.hostname;
    const bucket = destination.resilience.rateLimit;
    if (bucket) {
      const d = bucket.take();
      if (!d.allowed)
        throw new HttpFailure(
          429,
          `local rate limit of ${destination.key}`,
          RATE_LIMITED_BODY,
          rateLimitHeaders(bucket.policy, d),
        );
    }
    return { kind: 'forward', action, backend, destination, lb: lbContext(req, ctx.srcIp) };
  }

  /**
   * The tries: `runWithRetries` with the route's timeouts, the destination's retry budget, and
   * for each try outlier filter → balancer → `adapter.sendTry` → outlier record. A body that
   * streams through once gets one try and no policy (no per-try timeout either), as before
   * Envoy's buffer limit is known; a replay body stops retrying once it has passed its buffer.
   * Fills the exchange's attempts, retry stop and endpoint.
   */
  private async forward<D, R extends UpstreamRequest, A>(
    p: ProtocolAdapter<D, R, A>,
    req: R,
    x: Exchange,
    plan: Plan,
    signal: AbortSignal,
  ): Promise<RetryResult<A>> {
    const tries: Tries<A> = {};
    const result = await runWithRetries<A>(
      (n, trySignal) => this.attempt(p, req, tries, x, plan, n, trySignal),
      req.oneTry ? undefined : (plan.action.retry ?? defaultRetryPolicy()),
      plan.destination?.resilience.retryBudget,
      {
        timeoutMs: plan.action.timeoutMs || undefined,
        signal,
        canRetry: () => req.replayable,
        onRetry: ({ attempt, outcome }) =>
          this.log.debug(
            { path: x.l7.path, route: x.route, attempt, outcome: outcome.status ?? outcome.error },
            'retrying request',
          ),
      },
    );
    x.attempts = result.attempts;
    x.retryStop = result.stop;
    return result;
  }

  /**
   * Fire-and-forget copies of a buffered request (Istio's mirror): each mirror drawn by its
   * percentage, an endpoint picked by its destination's balancer, the copy sent by the adapter
   * with Host / :authority `<host>-shadow`, counted against the mirror destination's pool limits.
   */
  private mirror<R extends UpstreamRequest>(
    p: ProtocolAdapter<unknown, R, unknown>,
    req: R,
    plan: Plan,
    body: Buffer,
  ): void {
    for (const m of plan.action.mirror ?? []) {
      if (!shouldMirror(m.percent, Math.random)) continue;
      const d = this.upstreams.destination({ ...m.backend, weight: 1 });
      if ('reason' in d) continue;
      const endpoint = d.resilience.balancer.pick(this.upstreams.inPlay(d), plan.lb);
      if (!endpoint) continue;
      const target: MirrorTarget = {
        endpoint,
        limiter: d.resilience.pool,
        authority: shadowAuthority(req.authority),
      };
      p.mirror(req, target, body);
    }
  }

  /** One endpoint for an upgrade (no retries there). */
  private pickOnce(x: Exchange, plan: Plan): UpstreamEndpoint {
    const d = plan.destination;
    const ep = plan.original ?? (d && d.resilience.balancer.pick(this.upstreams.inPlay(d), plan.lb));
    if (!ep) throw new HttpFailure(503, 'no healthy upstream');
    x.endpoint = ep;
    return ep;
  }

  private record(x: Exchange, status: number): void {
    recordExchange(x, status, this.log, this.deps.state, this.deps.onRequest);
  }

  /**
   * A failure answered by the adapter in its protocol's form, its reason in the record. An
   * adapter that throws while answering (a connection already torn down) still leaves one
   * record, and never an unhandled rejection.
   */
  private fail<D>(p: DownstreamAdapter<D>, down: D, x: Exchange, f: HttpFailure): void {
    x.reason = f.reason;
    let status = f.status;
    try {
      status = p.fail(down, x, f);
    } catch (err) {
      this.log.warn(
        { status, reason: f.reason, err: errorMessage(err) },
        'could not write the failure answer',
      );
    }
    this.record(x, status);
  }

  /** A CUSTOM denial becomes the provider's answer; an allow edits the upstream request. */
  private applyCustom(x: Exchange, d: CustomDecision): void {
    const { l7: req } = x;
    if (!d.allow) {
      this.log.warn(
        {
          ...whoAsked(x),
          policy: d.policy,
          status: d.status,
          reason: d.reason,
        },
        'request denied by CUSTOM policy',
      );
      throw new HttpFailure(d.status, `denied by ${d.policy}: ${d.reason}`, d.body, d.headers);
    }
    if (d.policy)
      this.log.debug({ path: req.path, policy: d.policy, reason: d.reason }, 'CUSTOM policy allowed');
    for (const h of d.upstreamRemove) delete req.headers[h];
    for (const [k, v] of d.upstreamSet) req.headers[k] = v;
    for (const [k, v] of d.upstreamAppend) {
      const prev = req.headers[k];
      req.headers[k] = prev === undefined ? v : [...(Array.isArray(prev) ? prev : [prev]), v];
    }
  }

  /**
   * Authorization and routing: the route's action, or the waypoint's own answer for a direct
   * response or a redirect; throws HttpFailure for denials.
   */
  private decide(
    x: Exchange,
    authn?: { principal?: string; claims?: Record<string, unknown> },
  ): ForwardAction | LocalAnswer {
    const { l7: req, ctx } = x;
    const engine = this.deps.engine();
    const authz = engine.authorize(req, ctx, authn);
    if (!authz.allow) {
      this.log.warn(
        {
          ...whoAsked(x),
          policy: authz.policy ?? null,
          reason: authz.reason,
        },
        'request denied by policy',
      );
      throw new HttpFailure(403, `denied by ${authz.policy ?? 'policy'}: ${authz.reason}`, RBAC_DENIED_BODY);
    }
    const action = engine.route(req);
    if (action.kind === 'direct') {
      if (action.status >= 400 && action.reason)
        this.log.info(
          { status: action.status, reason: action.reason, path: req.path },
          'request answered by the waypoint',
        );
      return { kind: 'local', status: action.status, headers: action.headers ?? {}, body: action.body ?? '' };
    }
    if (action.kind === 'redirect')
      return { kind: 'local', status: action.status, headers: { location: action.location }, body: '' };
    return action;
  }

  /**
   * One upstream try: pick (not ejected, balancer), send, record the outcome for outlier
   * detection. The answer of the try before is discarded first: its exchange must be over before
   * this try takes a slot of the pool limit (http2MaxRequests), or a limit of 1 overflows on
   * every retry.
   */
  private async attempt<D, R extends UpstreamRequest, A>(
    p: ProtocolAdapter<D, R, A>,
    req: R,
    tries: Tries<A>,
    x: Exchange,
    plan: Plan,
    n: number,
    signal: AbortSignal,
  ): Promise<AttemptResult<A>> {
    const d = plan.destination;
    const ep = plan.original ?? (d && d.resilience.balancer.pick(this.upstreams.inPlay(d), plan.lb));
    if (!ep) return { error: 'connect-failure' };
    x.endpoint = ep;
    const done = this.upstreams.begin(ep);
    let outcome: AttemptResult<A>;
    try {
      if (tries.previous !== undefined) await p.discard(tries.previous);
      outcome = await p.sendTry(req, x, ep, signal, d?.resilience.pool);
      tries.previous = outcome.response;
    } finally {
      done();
    }
    d?.resilience.outlier?.record(ep.id, outcome);
    if (n > 1)
      this.log.debug({ path: x.l7.path, 'upstream.addr': ep.authority, attempt: n }, 'retry attempt');
    return outcome;
  }
}

/** The answer of the try before, discarded when another try starts. */
interface Tries<A> {
  previous?: A;
}

/** The log fields of a denial: who asked for what (the same for an L7 and a CUSTOM denial). */
function whoAsked(x: Exchange): Record<string, unknown> {
  const { l7: req, ctx } = x;
  return {
    'src.identity': ctx.peerIdentity,
    'src.ip': ctx.srcIp,
    method: req.method,
    path: req.path,
    authority: req.authority,
  };
}

function lbContext(req: L7Request, sourceIp: string): LbContext {
  const cookies: Record<string, string> = {};
  for (const part of String(req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) cookies[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return { headers: req.headers, sourceIp, cookies };
}

/** The route's action with headers the CUSTOM provider adds to the response (a copy: routes are shared). */
function withResponseHeaders(action: ForwardAction, add: [string, string][]): ForwardAction {
  const rh = action.responseHeaders ?? { set: [], add: [], remove: [] };
  return {
    ...action,
    responseHeaders: { ...rh, add: [...rh.add, ...add.map(([name, value]) => ({ name, value }))] },
  };
}

function http400or404Body(status: number): string {
  return status === 404 ? 'Not Found' : 'Bad Request';
}
