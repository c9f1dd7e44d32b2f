// The waypoint's HTTP data path, for HTTP/1.1 (keep-alive, chunked, Upgrade passed through) and
// HTTP/2 prior knowledge (h2c, gRPC with trailers and streaming) inside an HBONE tunnel. Each
// request runs, in this order: JWT (401) → L7 authorization (403 `RBAC: access denied`) → routing
// (direct response, redirect, 404, or a weighted backend) → fault → rate limit (429) → header
// edits, rewrite and the x-forwarded-* / x-request-id / traceparent headers → tries with retries,
// budget and timeouts (HTTP/1.1), each: outlier filter → balancer → pool limit → HBONE *as the
// waypoint* to the endpoint (one HBONE stream per HTTP/1.1 request, one HTTP/2 session per
// endpoint) → response header edits → one access record. Failures become answers in one place
// (`toFailure` / `failureOf`, Envoy's statuses and bodies), each with a reason in the record.
import http from 'node:http';
import http2 from 'node:http2';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../common/log.js';
import { errorMessage, isAmbitError } from '../common/errors.js';
import { formatSocketAddr, type HostPort, type Ip, type SocketAddr } from '../common/addr.js';
import type { Service, Workload } from '../xds/resources.js';
import type { ProxyState } from '../node/state.js';
import type { ForwardAction, L7Request, RouteAction, WeightedBackend } from './routing/types.js';
import { socketOf } from './stream-adapter.js';
import {
  applyModifier,
  forwardHeaders,
  HOP_BY_HOP,
  pickWeighted,
  requestFields,
  rewrittenPath,
  stripHopByHop,
  toL7Request,
} from './http-request.js';
import { Upstreams, type Destination, type PolicyLookup, type UpstreamEndpoint } from './upstream.js';
import { runWithRetries, type AttemptResult, type RetryStop } from './resilience/retry.js';
import { defaultRetryPolicy, type UpstreamError } from './resilience/types.js';
import { decideFault, FAULT_ABORT_BODY } from './resilience/fault.js';
import { RATE_LIMITED_BODY, rateLimitHeaders } from './resilience/rate-limit.js';
import { failureAnswer } from './resilience/failure-answer.js';
import { shadowAuthority, shouldMirror } from './resilience/mirror.js';
import type { LbContext } from './resilience/lb.js';
import type { AuthnResult } from './jwt.js';

/** Headers over this are refused with 431 (Istio/Envoy's default limit is 60 KiB). */
export const MAX_HEADER_BYTES = 60 * 1024;
export const RBAC_DENIED = 'RBAC: access denied';

/** What the waypoint knows about one tunnel, from its CONNECT. */
export interface TunnelContext {
  /** The CONNECT :authority: a service VIP:port or a pod IP:port bound to this waypoint. */
  target: HostPort & { host: Ip };
  service?: Service;
  workload?: Workload;
  /** Verified SPIFFE id of the source (the client's node proxy presented the source pod's). */
  peerIdentity: string;
  /** Source pod IP (the HBONE connection is bound to it). */
  srcIp: string;
}

export interface L7Decision {
  allow: boolean;
  policy?: string;
  reason: string;
}

/** The L7 modules, behind functions so the proxy does not care who compiled them. */
export interface L7Engine {
  /** RequestAuthentication: validates a JWT when the request carries one (401 when invalid). */
  authenticate(req: L7Request): Promise<AuthnResult>;
  authorize(
    req: L7Request,
    ctx: TunnelContext,
    authn?: { principal?: string; claims?: Record<string, unknown> },
  ): L7Decision;
  route(req: L7Request): RouteAction;
  /** DestinationRule traffic policy of a backend (Istio's defaults when none). */
  policy: PolicyLookup;
}

export interface HttpProxyDeps {
  state: ProxyState;
  engine(): L7Engine;
  /** Opens an HBONE tunnel to `authority` on `endpoint`, as the waypoint's identity. */
  connect(endpoint: Workload, authority: SocketAddr, ctx: TunnelContext): Promise<Duplex>;
  logger: Logger;
}

/** Why a request was answered by the waypoint itself. */
class HttpFailure extends Error {
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
interface Plan {
  action: ForwardAction;
  backend?: WeightedBackend;
  destination?: Destination;
  /** Pod-addressed traffic: the pod itself. */
  original?: UpstreamEndpoint;
  /** What a consistent-hash balancer hashes. */
  lb: LbContext;
}

export class HttpProxy {
  private readonly log: Logger;
  private readonly h1: http.Server;
  private readonly h2: http2.Http2Server;
  private readonly contexts = new WeakMap<object, TunnelContext>();
  /** Set around h2.emit('connection'): the server creates the session (and emits 'session') synchronously. */
  private pendingH2?: TunnelContext;
  private readonly h2Sessions = new Map<string, Promise<http2.ClientHttp2Session>>();
  private readonly upstreams: Upstreams;

  constructor(private readonly deps: HttpProxyDeps) {
    this.log = deps.logger.child({ part: 'http' });
    this.upstreams = new Upstreams(
      deps.state,
      () => deps.engine().policy,
      this.log.child({ part: 'upstream' }),
    );
    this.h1 = http.createServer(
      { maxHeaderSize: MAX_HEADER_BYTES, requireHostHeader: false },
      (req, res) => void this.onHttp1(req, res),
    );
    this.h1.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) =>
      this.onClientError(err, socket),
    );
    this.h1.on(
      'upgrade',
      (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void this.onUpgrade(req, socket, head),
    );
    this.h2 = http2.createServer({ maxSessionMemory: 16, settings: { maxHeaderListSize: MAX_HEADER_BYTES } });
    this.h2.on('session', (session) => {
      if (this.pendingH2) this.contexts.set(session, this.pendingH2);
    });
    this.h2.on('stream', (stream, headers) => void this.onHttp2(stream, headers));
    this.h2.on('sessionError', (err) => this.log.debug({ err: err.message }, 'h2 session error'));
  }

  /** Serves HTTP/1.1 on a tunnel whose first bytes have been unshifted back. */
  serveHttp1(tunnel: Duplex, ctx: TunnelContext): void {
    const sock = socketOf(tunnel);
    this.contexts.set(sock, ctx);
    this.h1.emit('connection', sock);
  }

  /** Serves HTTP/2 (h2c prior knowledge, gRPC) on a tunnel. */
  serveHttp2(tunnel: Duplex, ctx: TunnelContext): void {
    this.pendingH2 = ctx;
    try {
      this.h2.emit('connection', socketOf(tunnel));
    } finally {
      this.pendingH2 = undefined;
    }
  }

  close(): void {
    for (const p of this.h2Sessions.values()) void p.then((s) => s.close()).catch(() => {});
    this.h2Sessions.clear();
  }

  // ---- HTTP/1.1 ----

  private async onHttp1(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const start = Date.now();
    const ctx = this.contexts.get(req.socket)!;
    const l7 = toL7Request(req.method ?? 'GET', req.url ?? '/', req.headers, ctx, req.headers.host ?? '');
    const fields = requestFields(l7, ctx);
    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) abort.abort(new Error('downstream went away'));
    });
    try {
      const plan = await this.prepare(l7, ctx, fields, (status, headers, body) => {
        res.writeHead(status, headers).end(body);
      });
      if (!plan) return this.record(fields, res.statusCode, start);
      const { action } = plan;
      const headers = stripHopByHop(forwardHeaders(req.headers, l7, ctx, action, 'http'));
      const path = rewrittenPath(req.url ?? '/', action, l7.path);
      // A small body is buffered so it can be sent again on a retry; a large or unknown one
      // streams, without retries (Envoy stops retrying past its buffer limit too).
      const body = await bufferSmallBody(req);
      if (action.mirror?.length && body !== undefined)
        this.mirror(action, req.method ?? 'GET', path, headers, body, ctx);
      const retry = body === undefined ? undefined : (action.retry ?? defaultRetryPolicy());
      let previous: http.IncomingMessage | undefined;
      const result = await runWithRetries<http.IncomingMessage>(
        async (n, signal) => {
          previous?.resume(); // a retried answer is discarded
          return this.attempt(plan, ctx, fields, n, signal, async (ep) => {
            // One HBONE stream per upstream request (connection: close). Pooled keep-alive
            // upstream connections were tried and left requests hanging under load: to revisit.
            let tunnel: Duplex;
            try {
              tunnel = await this.deps.connect(ep.workload, ep.authority, ctx);
            } catch {
              return { error: 'connect-failure' };
            }
            const upReq = http.request({
              method: req.method,
              path,
              headers: { ...headers, connection: 'close' },
              createConnection: () => socketOf(tunnel) as unknown as Socket,
            });
            signal.addEventListener('abort', () => upReq.destroy(), { once: true });
            return new Promise((resolve) => {
              upReq.once('response', (r) => {
                previous = r;
                resolve({ status: r.statusCode ?? 502, response: r });
              });
              // A pooled connection the backend closed while idle: nothing was processed, so it
              // is as safe to retry as a failed connect (Node's own advice for reusedSocket).
              upReq.once('error', (err) =>
                resolve({ error: isAmbitError(err) || upReq.reusedSocket ? 'connect-failure' : 'reset' }),
              );
              if (body !== undefined) upReq.end(body);
              else req.pipe(upReq);
            });
          });
        },
        retry,
        plan.destination?.resilience.retryBudget,
        {
          timeoutMs: action.timeoutMs || undefined,
          signal: abort.signal,
          onRetry: ({ attempt, outcome }) =>
            this.log.debug(
              { ...fields, attempt, outcome: outcome.status ?? outcome.error },
              'retrying request',
            ),
        },
      );
      if (result.attempts > 1) fields.attempts = result.attempts;
      if (result.stop !== 'success') fields['retry.stop'] = result.stop;
      const upRes = result.outcome.response;
      if (!upRes) throw failureOf(result.outcome.error ?? 'reset', result.stop);
      const out = applyModifier(upRes.headers, action.responseHeaders, plan.backend?.responseHeaders);
      res.writeHead(upRes.statusCode ?? 502, stripHopByHop(out));
      await new Promise<void>((resolve) => {
        upRes.pipe(res);
        upRes.once('end', () => {
          if (Object.keys(upRes.trailers).length) res.addTrailers(upRes.trailers);
          resolve();
        });
        upRes.once('error', () => {
          res.destroy();
          resolve();
        });
      });
      this.record(fields, upRes.statusCode ?? 502, start);
    } catch (err) {
      const f = toFailure(err);
      if (!res.headersSent)
        res.writeHead(f.status, { 'content-type': 'text/plain', ...f.headers }).end(`${f.body}\n`);
      else res.destroy();
      this.record({ ...fields, reason: f.reason }, f.status, start);
    }
  }

  /**
   * Everything before the first upstream try: authorization, routing, fault injection, the
   * backend (weighted) and its destination, the rate limit. Returns undefined when the request
   * was answered here (direct response, redirect); throws HttpFailure for a refusal.
   */
  private async prepare(
    req: L7Request,
    ctx: TunnelContext,
    fields: Record<string, unknown>,
    answer: (status: number, headers: Record<string, string>, body: string) => void,
  ): Promise<Plan | undefined> {
    const authn = await this.deps.engine().authenticate(req);
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
    const action = this.decide(req, ctx, answer, authn);
    if (!action) return undefined;
    fields.route = action.routeName;
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
        lb: lbContext(req, ctx),
      };
    }
    const backend = pickWeighted(action.backends);
    if (backend.invalid) throw new HttpFailure(backend.invalid.status, backend.invalid.reason);
    const destination = this.upstreams.destination(backend);
    if ('reason' in destination) throw new HttpFailure(503, destination.reason);
    fields['upstream.service'] = destination.service.hostname;
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
    return { action, backend, destination, lb: lbContext(req, ctx) };
  }

  /** One upstream try: pick (not ejected, balancer), pool limit, tunnel as the waypoint, send. */
  private async attempt<R>(
    plan: Plan,
    ctx: TunnelContext,
    fields: Record<string, unknown>,
    n: number,
    signal: AbortSignal,
    send: (ep: UpstreamEndpoint) => Promise<AttemptResult<R>>,
  ): Promise<AttemptResult<R>> {
    const d = plan.destination;
    const ep = plan.original ?? (d && d.resilience.balancer.pick(this.upstreams.inPlay(d), plan.lb));
    if (!ep) return { error: 'connect-failure' };
    const lease = d?.resilience.pool ? await d.resilience.pool.acquire(signal) : undefined;
    if (lease && !lease.ok) {
      fields.overflow = lease.reason;
      return { error: 'overflow' };
    }
    const done = this.upstreams.begin(ep);
    fields['upstream.workload'] = `${ep.workload.namespace}/${ep.workload.name}`;
    fields['upstream.addr'] = ep.authority;
    let outcome: AttemptResult<R>;
    try {
      outcome = await send(ep);
    } finally {
      done();
      if (lease?.ok) lease.release();
    }
    d?.resilience.outlier?.record(ep.id, outcome);
    if (n > 1) this.log.debug({ ...fields, attempt: n }, 'retry attempt');
    return outcome;
  }

  /** Upgrade (WebSocket and friends): the request head is forwarded and the bytes spliced. */
  private async onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const start = Date.now();
    const ctx = this.contexts.get(req.socket)!;
    const l7 = toL7Request(req.method ?? 'GET', req.url ?? '/', req.headers, ctx, req.headers.host ?? '');
    const fields = requestFields(l7, ctx);
    try {
      const plan = await this.prepare(l7, ctx, fields, (status, headers, body) => {
        const lines = Object.entries(headers)
          .map(([k, v]) => `${k}: ${v}\r\n`)
          .join('');
        socket.end(
          `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\n${lines}connection: close\r\n\r\n${body}`,
        );
      });
      if (!plan) return this.record(fields, 0, start);
      const ep = this.pickOnce(plan, ctx, fields);
      const tunnel = await this.deps.connect(ep.workload, ep.authority, ctx);
      const headers = forwardHeaders(req.headers, l7, ctx, plan.action, 'http');
      let headText = `${req.method} ${rewrittenPath(req.url ?? '/', plan.action, l7.path)} HTTP/1.1\r\n`;
      for (const [k, v] of Object.entries(headers)) {
        for (const one of Array.isArray(v) ? v : [v]) if (one !== undefined) headText += `${k}: ${one}\r\n`;
      }
      tunnel.write(`${headText}\r\n`, 'latin1');
      if (head.length) tunnel.write(head);
      tunnel.pipe(socket).pipe(tunnel);
      socket.on('error', () => tunnel.destroy());
      tunnel.on('error', () => socket.destroy());
      this.record({ ...fields, upgrade: req.headers.upgrade }, 101, start);
    } catch (err) {
      const f = toFailure(err);
      socket.end(
        `HTTP/1.1 ${f.status} ${http.STATUS_CODES[f.status] ?? ''}\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(f.body) + 1}\r\n\r\n${f.body}\n`,
      );
      this.record({ ...fields, reason: f.reason }, f.status, start);
    }
  }

  private onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    const status =
      err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const ctx = this.contexts.get(socket);
    this.log.warn(
      {
        'src.identity': ctx?.peerIdentity,
        'dst.addr': ctx && `${ctx.target.host}:${ctx.target.port}`,
        status,
        reason: `${err.code ?? 'error'}: ${err.message}`,
      },
      'request refused: malformed HTTP',
    );
    if (socket.writable) {
      const body = `${http.STATUS_CODES[status]}: ${err.code ?? err.message}\n`;
      socket.end(
        `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
      );
    } else socket.destroy();
  }

  // ---- HTTP/2 and gRPC ----

  private async onHttp2(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): Promise<void> {
    const start = Date.now();
    stream.on('error', () => {});
    const ctx = stream.session ? this.contexts.get(stream.session) : undefined;
    if (!ctx) {
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    const l7 = toL7Request(
      String(headers[':method'] ?? 'GET'),
      String(headers[':path'] ?? '/'),
      headers,
      ctx,
      String(headers[':authority'] ?? headers.host ?? ''),
    );
    const fields = requestFields(l7, ctx);
    const grpc = l7.grpc;
    try {
      const plan = await this.prepare(l7, ctx, fields, (status, hdrs, body) => {
        if (stream.destroyed || stream.closed) return; // the client reset it meanwhile
        if (grpc) {
          // gRPC clients read the status from grpc-status; map as Envoy does.
          stream.respond(
            {
              ':status': 200,
              'content-type': 'application/grpc',
              'grpc-status': grpcStatusOf(status),
              'grpc-message': encodeURIComponent(body.trim()),
            },
            { endStream: true },
          );
        } else {
          stream.respond({ ':status': status, ...hdrs });
          stream.end(body);
        }
      });
      if (!plan) return this.record(fields, grpc ? 200 : 0, start);
      // A stream reset by the client while we decided costs no upstream work (rapid reset).
      if (stream.destroyed || stream.closed)
        return this.record({ ...fields, reason: 'reset by client' }, 0, start);
      const up = plan.action;
      const ep = this.pickOnce(plan, ctx, fields);
      const session = await this.h2Session(ep, ctx);
      const out = forwardHeaders(headers, l7, ctx, up, 'http');
      const reqHeaders: http2.OutgoingHttpHeaders = {};
      for (const [k, v] of Object.entries(out))
        if (!k.startsWith(':') && !HOP_BY_HOP.has(k)) reqHeaders[k] = v;
      reqHeaders[':method'] = l7.method;
      reqHeaders[':path'] = rewrittenPath(String(headers[':path'] ?? '/'), up, l7.path);
      reqHeaders[':authority'] = up.rewrite?.authority ?? l7.authority;
      reqHeaders[':scheme'] = 'http';
      const upStream = session.request(reqHeaders, { endStream: false });
      if (up.timeoutMs)
        upStream.setTimeout(up.timeoutMs, () => upStream.close(http2.constants.NGHTTP2_CANCEL));
      const status = await new Promise<number>((resolve, reject) => {
        let trailers: http2.IncomingHttpHeaders | undefined;
        upStream.once('error', reject);
        upStream.once('close', () => {
          if (!stream.headersSent)
            reject(new HttpFailure(503, `upstream reset before headers (code ${upStream.rstCode})`));
          else if (upStream.rstCode && upStream.rstCode !== http2.constants.NGHTTP2_NO_ERROR)
            if (!stream.destroyed) stream.close(upStream.rstCode);
        });
        upStream.on('trailers', (t) => (trailers = t));
        upStream.once('response', (resHeaders, flags) => {
          const code = Number(resHeaders[':status'] ?? 502);
          if (stream.destroyed || stream.closed) {
            upStream.close(http2.constants.NGHTTP2_CANCEL);
            return resolve(code);
          }
          const edited = applyModifier(resHeaders, up.responseHeaders, plan.backend?.responseHeaders);
          const outHeaders: http2.OutgoingHttpHeaders = { ':status': code };
          for (const [k, v] of Object.entries(edited))
            if (!k.startsWith(':') && !HOP_BY_HOP.has(k)) outHeaders[k] = v;
          const endStream = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
          if (endStream) {
            stream.respond(outHeaders, { endStream: true });
            return resolve(code);
          }
          stream.respond(outHeaders, { waitForTrailers: true });
          stream.once('wantTrailers', () => {
            const t: http2.OutgoingHttpHeaders = {};
            for (const [k, v] of Object.entries(trailers ?? {})) if (!k.startsWith(':')) t[k] = v;
            if (!stream.destroyed) stream.sendTrailers(t);
          });
          upStream.pipe(stream);
          upStream.once('end', () => resolve(code));
        });
        stream.pipe(upStream);
        stream.once('close', () => {
          if (!upStream.closed) upStream.close(http2.constants.NGHTTP2_CANCEL);
        });
      });
      this.record(fields, status, start);
    } catch (err) {
      const f = toFailure(err);
      if (!stream.headersSent && !stream.destroyed && !stream.closed) {
        if (grpc)
          stream.respond(
            {
              ':status': 200,
              'content-type': 'application/grpc',
              'grpc-status': grpcStatusOf(f.status),
              'grpc-message': encodeURIComponent(f.body),
            },
            { endStream: true },
          );
        else {
          stream.respond({ ':status': f.status, 'content-type': 'text/plain' });
          stream.end(`${f.body}\n`);
        }
      } else if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      this.record({ ...fields, reason: f.reason }, f.status, start);
    }
  }

  /** One HTTP/2 session per endpoint authority, over one HBONE tunnel; replaced when it closes. */
  private h2Session(up: UpstreamEndpoint, ctx: TunnelContext): Promise<http2.ClientHttp2Session> {
    const key = `${up.workload.uid}|${up.authority}`;
    let p = this.h2Sessions.get(key);
    if (!p) {
      p = this.deps.connect(up.workload, up.authority, ctx).then((tunnel) => {
        const session = http2.connect(`http://${up.authority}`, {
          createConnection: () => socketOf(tunnel) as unknown as Socket,
        });
        const drop = () => {
          if (this.h2Sessions.get(key) === p) this.h2Sessions.delete(key);
        };
        session.on('error', drop);
        session.once('close', drop);
        session.once('goaway', drop);
        return session;
      });
      p.catch(() => this.h2Sessions.delete(key));
      this.h2Sessions.set(key, p);
    }
    return p;
  }

  // ---- shared: authorize, route, pick ----

  /**
   * Authorization and routing. Answers the request itself (through `answer`) and returns undefined
   * for a direct response or a redirect; throws HttpFailure for denials and unusable backends.
   */
  private decide(
    req: L7Request,
    ctx: TunnelContext,
    answer: (status: number, headers: Record<string, string>, body: string) => void,
    authn?: { principal?: string; claims?: Record<string, unknown> },
  ): ForwardAction | undefined {
    const engine = this.deps.engine();
    const authz = engine.authorize(req, ctx, authn);
    if (!authz.allow) {
      this.log.warn(
        {
          'src.identity': ctx.peerIdentity,
          'src.ip': ctx.srcIp,
          method: req.method,
          path: req.path,
          authority: req.authority,
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

  /** Fire-and-forget copies (HTTP/1.1 with a buffered body); responses and failures are discarded. */
  private mirror(
    action: ForwardAction,
    method: string,
    path: string,
    headers: http.OutgoingHttpHeaders,
    body: Buffer,
    ctx: TunnelContext,
  ): void {
    for (const m of action.mirror ?? []) {
      if (!shouldMirror(m.percent, Math.random)) continue;
      const d = this.upstreams.destination({ ...m.backend, weight: 1 });
      if ('reason' in d) continue;
      const ep = d.resilience.balancer.pick(this.upstreams.inPlay(d), { sourceIp: ctx.srcIp });
      if (!ep) continue;
      const host = String(headers.host ?? ctx.target.host);
      void this.deps
        .connect(ep.workload, ep.authority, ctx)
        .then((tunnel) => {
          const copy = http.request({
            method,
            path,
            headers: { ...headers, host: shadowAuthority(host) },
            createConnection: () => socketOf(tunnel) as unknown as Socket,
          });
          copy.on('response', (r) => r.resume());
          copy.on('error', () => {});
          copy.end(body);
        })
        .catch(() => {});
    }
  }

  /** One endpoint for an HTTP/2 stream or an upgrade (no retries there). */
  private pickOnce(plan: Plan, ctx: TunnelContext, fields: Record<string, unknown>): UpstreamEndpoint {
    const d = plan.destination;
    const ep = plan.original ?? (d && d.resilience.balancer.pick(this.upstreams.inPlay(d), plan.lb));
    if (!ep) throw new HttpFailure(503, 'no healthy upstream');
    fields['upstream.workload'] = `${ep.workload.namespace}/${ep.workload.name}`;
    fields['upstream.addr'] = ep.authority;
    return ep;
  }

  private record(fields: Record<string, unknown>, status: number, start: number): void {
    this.log.info({ ...fields, status, duration_ms: Date.now() - start }, 'request complete');
  }
}

// ---- helpers ----

/** The answer when no try produced a response (Envoy's wording, resilience/failure-answer.ts). */
function failureOf(error: UpstreamError, stop: RetryStop): HttpFailure {
  const a = failureAnswer(error);
  const why =
    stop === 'budget-exhausted'
      ? ' (retry budget exhausted)'
      : stop === 'attempts-exhausted'
        ? ' (retries exhausted)'
        : '';
  return new HttpFailure(a.status, `${a.body}${why}`, a.body, a.headers);
}

/** The body of a request when it is small and its length is known (so it can be retried), else undefined. */
async function bufferSmallBody(req: http.IncomingMessage): Promise<Buffer | undefined> {
  const te = req.headers['transfer-encoding'];
  const length = req.headers['content-length'];
  if (te === undefined && length === undefined) return Buffer.alloc(0);
  if (te !== undefined || Number(length) > RETRY_BUFFER_BYTES) return undefined;
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** A request body up to this size is kept for retries (Envoy's default per-connection buffer limit). */
const RETRY_BUFFER_BYTES = 1024 * 1024;

function lbContext(req: L7Request, ctx: TunnelContext): LbContext {
  const cookies: Record<string, string> = {};
  for (const part of String(req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) cookies[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return { headers: req.headers, sourceIp: ctx.srcIp, cookies };
}

function toFailure(err: unknown): HttpFailure {
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

/** HTTP status → gRPC status, as Envoy maps them (grpc/doc/http-grpc-status-mapping.md). */
function grpcStatusOf(status: number): string {
  if (status === 400) return '13';
  if (status === 401) return '16';
  if (status === 403) return '7';
  if (status === 404) return '12';
  if (status === 429 || status === 502 || status === 503 || status === 504) return '14';
  return '2';
}
