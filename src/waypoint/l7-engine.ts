// Builds the waypoint's L7 engine from the configuration objects it receives over xDS and the
// services it knows: routing (routing/, W2: HTTPRoute, GRPCRoute, VirtualService, DestinationRule),
// L7 authorization (authz-l7.ts, W4: targetRefs AuthorizationPolicy; CUSTOM through ext-authz.ts)
// and the MeshConfig object (path normalization, extension providers). Rebuilt (debounced by
// the caller) on every change; the HTTP proxy reads the current one per request, so a request
// never sees half a configuration. Without routes a request goes to the service and port it was
// addressed to (or, addressed to a pod, to that pod): Istio's default route.
import type { KubeResource } from '../config/types.js';
import type { Service } from '../xds/resources.js';
import type { ConfigObject } from '../xds/config-objects.js';
import type { L7Engine } from './http/http-types.js';
import type { TunnelContext } from './tunnel-context.js';
import {
  compileRouteTable,
  destinationPolicy,
  matchRoute,
  type L7Request,
  type RouteTable,
  type ServiceInfo,
} from './routing/index.js';
import {
  authzRequestOf,
  compileWaypointPolicies,
  evaluateL7,
  matchCustom,
  type WaypointPolicySet,
} from './policy/authz-l7.js';
import { checkMeshSettings, MESH_CONFIG_KIND, type MeshSettings } from '../config/mesh-config.js';
import { DEFAULT_PATH_NORMALIZATION } from './http/http-request.js';
import { decideCustom, type CustomDecision } from './policy/ext-authz.js';

const NO_CUSTOM: CustomDecision = {
  allow: true,
  upstreamSet: [],
  upstreamAppend: [],
  upstreamRemove: [],
  downstream: [],
  reason: 'no CUSTOM policy applies',
};
import { authenticateRequest, compileRequestAuthn, jwtRulesFor } from './policy/jwt.js';

export interface L7EngineInput {
  objects: readonly ConfigObject[];
  services: readonly Service[];
  /** This waypoint's Gateway. */
  waypoint: { namespace: string; name: string };
  /** Istio's root namespace (GatewayClass-targeted policies live there). */
  rootNamespace?: string;
}

export interface CompiledL7 {
  engine: L7Engine;
  table: RouteTable;
  policies: WaypointPolicySet;
  /** Everything compiled differently from what was written: one line each, naming the object. */
  warnings: string[];
}

/** The workload API carries no port names; appProtocol stands in for the protocol-by-name rule. */
function serviceInfoOf(s: Service): ServiceInfo {
  return {
    name: s.name,
    namespace: s.namespace,
    hostname: s.hostname,
    ports: s.ports.map((p) => ({
      port: p.servicePort,
      ...(p.appProtocol && p.appProtocol !== 'UNKNOWN' ? { appProtocol: p.appProtocol.toLowerCase() } : {}),
    })),
  };
}

export function buildL7Engine(input: L7EngineInput): CompiledL7 {
  const table = compileRouteTable(
    input.objects as unknown as KubeResource[],
    input.services.map(serviceInfoOf),
  );
  const policies = compileWaypointPolicies(
    input.objects,
    input.waypoint,
    input.rootNamespace ?? 'istio-system',
  );
  const mesh = meshSettingsOf(input.objects);
  const pathNormalization = mesh.pathNormalization ?? DEFAULT_PATH_NORMALIZATION;
  policies.pathNormalization = pathNormalization;
  const hasCustom = policies.policies.some((p) => p.action === 'CUSTOM');
  const authn = compileRequestAuthn(input.objects, input.waypoint, input.rootNamespace ?? 'istio-system');
  const warnings = [
    ...authn.warnings,
    ...[...table.warnings.values()].flat().map((w) => `${w.object}: ${w.field}: ${w.message}`),
    ...policies.warnings,
    ...mesh.warnings.map((w) => `MeshConfig: ${w}`),
  ];
  const engine: L7Engine = {
    authenticate: async (req: L7Request) => {
      const rules = jwtRulesFor(authn, req.target.service);
      if (rules.length === 0) return { ok: true, removeHeaders: [], addHeaders: {} };
      return authenticateRequest(rules, req.headers, req.query);
    },
    authorize: (
      req: L7Request,
      ctx: TunnelContext,
      principal?: { principal?: string; claims?: Record<string, unknown> },
    ) => {
      if (policies.policies.length === 0) return { allow: true, reason: 'no L7 policy applies' };
      const d = evaluateL7(policies, {
        source: { principal: ctx.peerIdentity, ip: ctx.srcIp },
        destination: { service: req.target.service, ip: req.target.ip, port: req.target.port },
        method: req.method,
        path: pathWithRawQuery(req),
        host: req.authority,
        headers: req.headers,
        ...(principal?.principal ? { requestPrincipal: principal.principal } : {}),
        ...(principal?.claims ? { requestAuthClaims: principal.claims } : {}),
      });
      return { allow: d.allow, policy: d.policy, reason: d.reason };
    },
    pathNormalization,
    custom: async (req, ctx, authn, dial, signal, protocol) => {
      if (!hasCustom) return NO_CUSTOM;
      const authzReq = authzRequestOf(req, { identity: ctx.peerIdentity, ip: ctx.srcIp }, authn);
      const match = matchCustom(policies, authzReq);
      const pathWithQuery = pathWithRawQuery(req);
      return decideCustom(
        match,
        mesh.extensionProviders,
        {
          req,
          pathWithQuery,
          protocol: protocol ?? (req.grpc ? 'HTTP/2' : 'HTTP/1.1'),
          source: { ip: ctx.srcIp, ...(ctx.peerIdentity ? { principal: ctx.peerIdentity } : {}) },
          destination: { ip: req.target.ip, port: req.target.port },
        },
        dial,
        signal,
      );
    },
    route: (req: L7Request) => matchRoute(table, req),
    policy: (service, port, subset) => destinationPolicy(table, service, port, subset),
  };
  return { engine, table, policies, warnings };
}

/**
 * The MeshConfig object among the config objects (at most one: "MeshConfig/istio-system/mesh");
 * none means Istio's defaults (no providers) with ambit's path normalization. The object was
 * checked when it was decoded (xds/config-objects.ts), so this does not throw.
 */
function meshSettingsOf(objects: readonly ConfigObject[]): MeshSettings {
  const o = objects.find((x) => x.kind === MESH_CONFIG_KIND);
  return o ? checkMeshSettings(o.spec) : { extensionProviders: [], warnings: [] };
}

/**
 * The path with the query as the client sent it (Envoy's `:path`, which the ext_authz check
 * request carries unchanged); re-serializing `req.query` would turn "%20" into "+" and "flag"
 * into "flag=". Falls back to the parsed query for requests built without a raw one.
 */
function pathWithRawQuery(req: L7Request): string {
  if (req.rawQuery !== undefined) return req.rawQuery ? `${req.path}?${req.rawQuery}` : req.path;
  return req.query.size ? `${req.path}?${req.query.toString()}` : req.path;
}
