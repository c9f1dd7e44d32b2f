// The per-request pipeline both HTTP/1.1 (`http1.ts`) and HTTP/2 / gRPC (`http2.ts`) run, in
// this order: path normalization (meshConfig.pathNormalization; the normalized path is the one
// policy and routing match and the one forwarded; 400/404 for a path Envoy refuses) → JWT (401)
// → CUSTOM (ext_authz, `ext-authz.ts`: the provider's status) → L7 authorization (DENY then
// ALLOW, 403 `RBAC: access denied`; Istio's precedence: CUSTOM, DENY, ALLOW) → routing (direct
// response, redirect, 404, or a weighted backend) → fault → rate limit (429) → mirrors → tries
// with retries, budget and timeouts, each: outlier filter → balancer → send (the protocol's own
// pool and its limit) → outlier record → one record (`request-record.ts`). Failures become
// answers in one place (`toFailure` / `failureOf`, Envoy's statuses and bodies), each with a
// reason in the record.
import type { Logger } from '../common/log.js';
import { errorMessage, isAmbitError } from '../common/errors.js';
import { formatSocketAddr } from '../common/addr.js';
import type { Duplex } from 'node:stream';
import type { HttpProxyDeps } from './http-types.js';
import type { TunnelContext } from './tunnel-context.js';
import type { ForwardAction, L7Request, WeightedBackend } from './routing/types.js';
import { DEFAULT_PATH_NORMALIZATION, normalizeRequestPath, pickWeighted } from './http-request.js';
import { serviceDial, type CustomDecision, type ProviderDial } from './ext-authz.js';
import { Upstreams, type Destination, type UpstreamEndpoint } from './upstream.js';
import { runWithRetries, type AttemptResult, type RetryResult, type RetryStop } from './resilience/retry.js';
import type { RetryPolicy, UpstreamError } from './resilience/types.js';
import { decideFault, FAULT_ABORT_BODY } from './resilience/fault.js';
import { RATE_LIMITED_BODY, rateLimitHeaders } from './resilience/rate-limit.js';
import { failureAnswer } from './resilience/failure-answer.js';
import { shadowAuthority, shouldMirror } from './resilience/mirror.js';
import type { ConnectionPoolLimiter } from './resilience/pool.js';
import type { LbContext } from './resilience/lb.js';
import { recordExchange, type Exchange } from './request-record.js';

export const RBAC_DENIED = 'RBAC: access denied';

/** A request body up to this size is kept for retries (Envoy's default per-connection buffer limit). */
export const RETRY_BUFFER_BYTES = 1024 * 1024;

/** Why a request was answered by the waypoint itself. */
export class HttpFailure extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    readonly body = reason,
    readonly headers: Record<string, string> = {},
  ) {
    super(reason);
  }
}

/** What the proxy decided before the first upstream try. */
export interface Plan {
  action: ForwardAction;
  backend?: WeightedBackend;
  destination?: Destination;
  /** Pod-addressed traffic: the pod itself. */
  original?: UpstreamEndpoint;
  /** What a consistent-hash balancer hashes. */
  lb: LbContext;
}

/** Answers a request from the waypoint itself (direct response, redirect). */
export type Answer = (status: number, headers: Record<string, string>, body: string) => void;

/** Sends one try to `ep`; `limiter` is the destination's pool limits (none for pod-addressed traffic). */
export type SendTry<R> = (
  ep: UpstreamEndpoint,
  signal: AbortSignal,
  limiter: ConnectionPoolLimiter | undefined,
) => Promise<AttemptResult<R>>;

/** A mirror target chosen for this request. */
export interface MirrorTarget {
  endpoint: UpstreamEndpoint;
  limiter: ConnectionPoolLimiter;
  /** The copy's Host / :authority (`-shadow` suffix). */
  authority: string;
}

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
   * Everything before the first upstream try: authentication, authorization, routing, fault
   * injection, the backend (weighted) and its destination, the rate limit. Returns undefined
   * when the request was answered here (direct response, redirect); throws HttpFailure for a
   * refusal.
   */
  async prepare(x: Exchange, answer: Answer, signal?: AbortSignal): Promise<Plan | undefined> {
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
    let action = this.decide(x, answer, authn);
    if (!action) return undefined;
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
    return { action, backend, destination, lb: lbContext(req, ctx.srcIp) };
  }

  /**
   * The tries: `runWithRetries` with the route's timeouts, the destination's retry budget, and
   * for each try outlier filter → balancer → `send` → outlier record. Fills the exchange's
   * attempts, retry stop and endpoint.
   */
  async forward<R>(
    x: Exchange,
    plan: Plan,
    retry: RetryPolicy | undefined,
    signal: AbortSignal,
    send: SendTry<R>,
    canRetry?: () => boolean,
  ): Promise<RetryResult<R>> {
    const result = await runWithRetries<R>(
      (n, trySignal) => this.attempt(x, plan, n, trySignal, send),
      retry,
      plan.destination?.resilience.retryBudget,
      {
        timeoutMs: plan.action.timeoutMs || undefined,
        signal,
        canRetry,
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

  /** The mirrors this request goes to (each drawn by its percentage), with an endpoint each. */
  mirrorTargets(plan: Plan, authority: string): MirrorTarget[] {
    const out: MirrorTarget[] = [];
    for (const m of plan.action.mirror ?? []) {
      if (!shouldMirror(m.percent, Math.random)) continue;
      const d = this.upstreams.destination({ ...m.backend, weight: 1 });
      if ('reason' in d) continue;
      const endpoint = d.resilience.balancer.pick(this.upstreams.inPlay(d), plan.lb);
      if (endpoint) out.push({ endpoint, limiter: d.resilience.pool, authority: shadowAuthority(authority) });
    }
    return out;
  }

  /** One endpoint for an upgrade (no retries there). */
  pickOnce(x: Exchange, plan: Plan): UpstreamEndpoint {
    const d = plan.destination;
    const ep = plan.original ?? (d && d.resilience.balancer.pick(this.upstreams.inPlay(d), plan.lb));
    if (!ep) throw new HttpFailure(503, 'no healthy upstream');
    x.endpoint = ep;
    return ep;
  }

  /** A tunnel of its own to `ep` (upgrades), as the waypoint. */
  connect(ep: UpstreamEndpoint, ctx: TunnelContext): Promise<Duplex> {
    return this.deps.connect(ep.workload, ep.authority, ctx);
  }

  record(x: Exchange, status: number): void {
    recordExchange(x, status, this.log, this.deps.state, this.deps.onRequest);
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
   * Authorization and routing. Answers the request itself (through `answer`) and returns
   * undefined for a direct response or a redirect; throws HttpFailure for denials.
   */
  private decide(
    x: Exchange,
    answer: Answer,
    authn?: { principal?: string; claims?: Record<string, unknown> },
  ): ForwardAction | undefined {
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
      throw new HttpFailure(403, `denied by ${authz.policy ?? 'policy'}: ${authz.reason}`, RBAC_DENIED);
    }
    const action = engine.route(req);
    if (action.kind === 'direct') {
      answer(action.status, action.headers ?? {}, action.body ?? '');
      if (action.status >= 400 && action.reason)
        this.log.info(
          { status: action.status, reason: action.reason, path: req.path },
          'request answered by the waypoint',
        );
      return undefined;
    }
    if (action.kind === 'redirect') {
      answer(action.status, { location: action.location }, '');
      return undefined;
    }
    return action;
  }

  /** One upstream try: pick (not ejected, balancer), send, record the outcome for outlier detection. */
  private async attempt<R>(
    x: Exchange,
    plan: Plan,
    n: number,
    signal: AbortSignal,
    send: SendTry<R>,
  ): Promise<AttemptResult<R>> {
    const d = plan.destination;
    const ep = plan.original ?? (d && d.resilience.balancer.pick(this.upstreams.inPlay(d), plan.lb));
    if (!ep) return { error: 'connect-failure' };
    x.endpoint = ep;
    const done = this.upstreams.begin(ep);
    let outcome: AttemptResult<R>;
    try {
      outcome = await send(ep, signal, d?.resilience.pool);
    } finally {
      done();
    }
    d?.resilience.outlier?.record(ep.id, outcome);
    if (n > 1)
      this.log.debug({ path: x.l7.path, 'upstream.addr': ep.authority, attempt: n }, 'retry attempt');
    return outcome;
  }
}

/** The answer when no try produced a response (Envoy's wording, resilience/failure-answer.ts). */
export function failureOf(error: UpstreamError, stop: RetryStop): HttpFailure {
  const a = failureAnswer(error);
  const why =
    stop === 'budget-exhausted'
      ? ' (retry budget exhausted)'
      : stop === 'attempts-exhausted'
        ? ' (retries exhausted)'
        : '';
  return new HttpFailure(a.status, `${a.body}${why}`, a.body, a.headers);
}

export function toFailure(err: unknown): HttpFailure {
  if (err instanceof HttpFailure) return err;
  if (isAmbitError(err)) {
    const status = err.code === 'HBONE_TIMEOUT' ? 504 : 503;
    return new HttpFailure(status, `upstream connect error: ${err.message}`);
  }
  return new HttpFailure(
    503,
    `upstream connect error or disconnect/reset before headers: ${errorMessage(err)}`,
  );
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
