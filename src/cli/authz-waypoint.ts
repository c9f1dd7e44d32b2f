// `ambit authz explain` when the destination is served by a waypoint: the stages a connection
// passes in Istio ambient, each asked of the code that enforces it (no second implementation).
//
//   1. The waypoint's own inbound. A waypoint is not a captured workload: namespace-wide and
//      root-namespace policies are not enforced there, only what the waypoint's workload names
//      (proxy/authz.ts `waypointInboundPolicies`, the gate Waypoint.serve uses; issue 13 #2).
//   2. L7 at the waypoint: only AuthorizationPolicies with targetRef(s) bind to a waypoint —
//      the Gateway itself, the Service or ServiceEntry the request is for, GatewayClass
//      istio-waypoint from the root namespace. Selector policies, and those with neither selector
//      nor targetRefs, never attach to a waypoint (istio pilot/pkg/model/policyattachment.go
//      `ShouldAttachPolicy`: "waypoints never use selector"). Evaluated as an HTTP request
//      (waypoint/policy/authz-l7.ts `evaluateL7`) or, with --tcp, as a TCP connection (authz-tcp.ts).
//   3. L4 at each destination: its node proxy applies the workload's policies (selector,
//      namespace-wide, root) to the connection the waypoint opens — so the source it sees is
//      the WAYPOINT's identity and address, not the original client's.
// The connection succeeds only if every stage allows it.
import type { KubeResource } from '../config/types.js';
import { evaluate, waypointInboundPolicies, type AuthzDecision } from '../proxy/authz.js';
import type { PolicyStore } from '../proxy/policy-store.js';
import { spiffeIdOf, type Service, type Workload } from '../xds/resources.js';
import {
  compileWaypointPolicies,
  evaluateL7,
  matchCustom,
  type L7AuthzRequest,
  type WaypointPolicySet,
} from '../waypoint/policy/authz-l7.js';
import { evaluateTcp } from '../waypoint/policy/authz-tcp.js';
import { targetCovers, type PolicyObject, type ServiceRef } from '../waypoint/policy/policy-binding.js';

/** What to ask the waypoint: an HTTP request (the default `GET /`) or a plain TCP connection. */
export interface RequestSpec {
  tcp?: boolean;
  method?: string;
  path?: string;
  /** Host / :authority as the client sends it; defaults to the destination as written in --to. */
  host?: string;
}

export interface WaypointStages {
  /** The waypoint's inbound L4 check (policies its workload names; usually none). */
  inbound: AuthzDecision;
  /** The L7 (or TCP) decision at the waypoint; undefined when the view has no config objects. */
  l7?: { allow: boolean; reason: string; policy?: string; ruleIndex?: number };
  /** CUSTOM policies whose provider would be asked first: their answer decides, not known offline. */
  custom: string[];
}

export interface WaypointContext {
  waypoint: Workload;
  policies: PolicyStore;
  /** The manifests (offline); online the waypoint's config objects are not in the view. */
  objects?: readonly KubeResource[];
  rootNamespace: string;
  source: { identity?: string; ip: string };
  /** The tunnel's target as the waypoint receives it: a service VIP or a pod IP, and its port. */
  target: { ip: string; port: number };
  service?: Service;
}

/** Stages 1 and 2 (the waypoint), as lines of the explanation and as decisions. */
export function explainWaypoint(
  ctx: WaypointContext,
  request: RequestSpec,
): { lines: string[]; stages: WaypointStages } {
  const wp = ctx.waypoint;
  const wpId = `${wp.namespace}/${wp.name}`;
  const lines: string[] = [
    '',
    `── waypoint ${wpId}  ${wp.addresses[0] ?? '?'}  node ${wp.node || '?'} ${'─'.repeat(8)}`,
    `  served by waypoint ${wpId}: L7 policy is decided here; the destinations' node proxies then see the`,
    `  waypoint's identity ${spiffeIdOf(wp)}, not the client's`,
  ];

  // 1. The waypoint's own inbound gate (Waypoint.serve): only the policies its workload names.
  const inboundPolicies = waypointInboundPolicies(wp, ctx.policies.forWorkload(wp));
  const inbound = evaluate(inboundPolicies, {
    srcIdentity: ctx.source.identity,
    srcIp: ctx.source.ip,
    dstIp: ctx.target.ip,
    dstPort: ctx.target.port,
  });
  lines.push(
    '',
    `  1. waypoint inbound (L4)  ${inboundPolicies.length === 0 ? 'no policy targets the waypoint workload itself (namespace-wide and root policies are not enforced on a waypoint)' : `${inboundPolicies.length} policies`}`,
    `     ${inbound.allow ? '✔' : '✘'} ${inbound.reason}`,
  );

  const stages: WaypointStages = { inbound, custom: [] };
  if (!ctx.objects) {
    lines.push(
      '',
      '  2. L7 at the waypoint  not in this view: the waypoint receives its policies as config objects,',
      '     node proxies do not; run explain on the manifest folder to see this stage',
    );
    return { lines, stages };
  }

  // 2. L7: the targetRefs policies bound to this waypoint, for this service (as Waypoint compiles them).
  const set = compileWaypointPolicies(ctx.objects as unknown as PolicyObject[], wp, ctx.rootNamespace);
  const service: ServiceRef | undefined = ctx.service
    ? { namespace: ctx.service.namespace, hostname: ctx.service.hostname, name: ctx.service.name }
    : undefined;
  const bound = set.policies.filter((p) => targetCovers(p.target, service));
  lines.push(
    '',
    `  2. L7 at the waypoint  ${bound.length === 0 ? 'no AuthorizationPolicy targets this waypoint or service' : `${bound.length} bound by targetRefs`}`,
  );
  for (const p of bound) {
    const why = p.target.all ? 'targets the waypoint' : `targets ${ctx.service?.hostname ?? 'this service'}`;
    const extra = p.invalid ? `; could not be understood (${p.invalid}): denies` : '';
    lines.push(
      `     ${p.action.padEnd(6)} ${p.namespace}/${p.name}  (${why}, ${p.rules.length} rules${p.dryRun ? ', dry-run: not enforced' : ''}${extra})`,
    );
  }
  for (const w of set.warnings) lines.push(`     ! ${w}`);

  const l7 = request.tcp ? tcpStage(set, ctx, service) : httpStage(set, ctx, service, request, stages);
  stages.l7 = l7.decision;
  lines.push(`     as ${l7.asked}`, `     ${l7.decision.allow ? '✔' : '✘'} ${l7.decision.reason}`);
  if (stages.custom.length)
    lines.push(
      `     ? CUSTOM ${stages.custom.join(', ')} asks its external authorizer first; its answer decides (not known offline)`,
    );
  return { lines, stages };
}

function httpStage(
  set: WaypointPolicySet,
  ctx: WaypointContext,
  service: ServiceRef | undefined,
  request: RequestSpec,
  stages: WaypointStages,
): { asked: string; decision: NonNullable<WaypointStages['l7']> } {
  const method = (request.method ?? 'GET').toUpperCase();
  const path = request.path ?? '/';
  const host = request.host ?? `${ctx.target.ip}:${ctx.target.port}`;
  const req: L7AuthzRequest = {
    source: { ip: ctx.source.ip, ...(ctx.source.identity ? { principal: ctx.source.identity } : {}) },
    destination: { ip: ctx.target.ip, port: ctx.target.port, ...(service ? { service } : {}) },
    method,
    path,
    host,
    headers: { host },
  };
  stages.custom = matchCustom(set, req).matched.map((m) => `${m.policy} (provider ${m.provider || '?'})`);
  return {
    asked: `HTTP request ${method} ${path}, Host ${host} (--method/--path/--host ask about another; --tcp for TCP)`,
    decision: evaluateL7(set, req),
  };
}

function tcpStage(
  set: WaypointPolicySet,
  ctx: WaypointContext,
  service: ServiceRef | undefined,
): { asked: string; decision: NonNullable<WaypointStages['l7']> } {
  const d = evaluateTcp(set, {
    ...(ctx.source.identity ? { srcIdentity: ctx.source.identity } : {}),
    srcIp: ctx.source.ip,
    dstIp: ctx.target.ip,
    dstPort: ctx.target.port,
    ...(service ? { service } : {}),
  });
  return { asked: 'TCP connection (rules with HTTP-only fields read as at TCP)', decision: d };
}
