// CUSTOM AuthorizationPolicy at the waypoint: Envoy's ext_authz filter as istiod configures it.
// For a request, the CUSTOM policies whose rules match (authz-l7.ts `matchCustom`) name their
// provider (meshConfig.extensionProviders, config/mesh-config.ts); the provider is asked
// (ext-authz-http.ts or ext-authz-grpc.ts) and its answer applied:
// - allow: headers for the upstream request (set / removed) and for the response;
// - deny: its status, body and headers go to the client;
// - error (unreachable, timeout, malformed answer): `failOpen` ? allow : `statusOnError` (403).
// Fail closed where istiod does (pilot/pkg/security/authz/builder/builder.go,
// getBadCustomDenyRules): a provider that is missing from the MeshConfig, invalid, or whose
// service does not resolve denies what the policy's rules match (403 `RBAC: access denied`),
// whatever failOpen says; so do several different providers for one request (istiod needs
// PILOT_ENABLE_MULTIPLE_CUSTOM_AUTHZ_PROVIDERS for that, off by default).
import type { Duplex } from 'node:stream';
import { formatSocketAddr, type SocketAddr } from '../../common/addr.js';
import type { Service, Workload } from '../../xds/resources.js';
import type { ExtAuthzProvider } from '../../config/mesh-config.js';
import { RBAC_DENIED_BODY, type CustomMatch } from './authz-l7-types.js';
import type { CheckInput, CheckOutcome } from './ext-authz-check.js';
import { checkHttp } from './ext-authz-http.js';
import { checkGrpc } from './ext-authz-grpc.js';

// The provider exchange's types live in ext-authz-check.ts, below the two clients that use them
// (they imported them from here, which imports the clients: a cycle, issue 14).
export type { CheckInput, CheckOutcome };

/** What the CUSTOM step decided for one request. */
export type CustomDecision =
  | {
      allow: true;
      /** The CUSTOM policy that asked (absent when none matched). */
      policy?: string;
      /** Set on the upstream request (name lower-case). */
      upstreamSet: [string, string][];
      /** Appended to the upstream request. */
      upstreamAppend: [string, string][];
      upstreamRemove: string[];
      /** Added to the response to the client. */
      downstream: [string, string][];
      reason: string;
    }
  | {
      allow: false;
      policy: string;
      status: number;
      body: string;
      headers: Record<string, string>;
      reason: string;
    };

/** Opens a connection to the provider's service as the waypoint reaches any service. */
export type ProviderDial = (
  provider: ExtAuthzProvider,
) => Promise<
  { ok: true; stream: Duplex; authority: string } | { ok: false; unresolved: boolean; reason: string }
>;

const NONE: CustomDecision = {
  allow: true,
  upstreamSet: [],
  upstreamAppend: [],
  upstreamRemove: [],
  downstream: [],
  reason: 'no CUSTOM policy matched',
};

/**
 * The CUSTOM decision for a request whose matching CUSTOM policies are `match`: asks the one
 * provider they name (or denies, see the header), bounded by the provider's timeout.
 */
export async function decideCustom(
  match: CustomMatch,
  providers: readonly ExtAuthzProvider[],
  input: CheckInput,
  dial: ProviderDial,
  signal?: AbortSignal,
): Promise<CustomDecision> {
  if (match.matched.length === 0) return NONE;
  const first = match.matched[0]!;
  const deny = (reason: string): CustomDecision => ({
    allow: false,
    policy: first.policy,
    status: 403,
    body: RBAC_DENIED_BODY,
    headers: {},
    reason,
  });
  const names = [...new Set(match.matched.map((m) => m.provider))].sort();
  if (names.length > 1)
    return deny(`CUSTOM policies name several providers (${names.join(', ')}); one per request is supported`);
  const name = names[0]!;
  const provider = providers.find((p) => p.name === name);
  if (!provider)
    return deny(
      `CUSTOM provider ${JSON.stringify(name)} is not in meshConfig.extensionProviders` +
        (providers.length ? ` (have ${providers.map((p) => p.name).join(', ')})` : ''),
    );
  if (provider.invalid) return deny(`CUSTOM provider ${name} is invalid: ${provider.invalid}`);
  const outcome = await ask(provider, input, dial, signal);
  if (outcome.kind === 'ok')
    return {
      allow: true,
      policy: first.policy,
      upstreamSet: outcome.upstreamSet,
      upstreamAppend: outcome.upstreamAppend,
      upstreamRemove: outcome.upstreamRemove,
      downstream: outcome.downstream,
      reason: `allowed by provider ${name}`,
    };
  if (outcome.kind === 'denied')
    return {
      allow: false,
      policy: first.policy,
      status: outcome.status,
      body: outcome.body,
      headers: Object.fromEntries(outcome.headers),
      reason: `denied by provider ${name} (status ${outcome.status})`,
    };
  if (outcome.reason.startsWith('unresolved:'))
    return deny(`CUSTOM provider ${name}: ${outcome.reason.slice('unresolved:'.length).trim()}`);
  if (provider.failOpen)
    return { ...NONE, policy: first.policy, reason: `provider ${name} failed (${outcome.reason}); failOpen` };
  return {
    allow: false,
    policy: first.policy,
    status: provider.statusOnError,
    body: '',
    headers: {},
    reason: `provider ${name} failed: ${outcome.reason}`,
  };
}

/** One check, with the provider's timeout; never throws. */
async function ask(
  provider: ExtAuthzProvider,
  input: CheckInput,
  dial: ProviderDial,
  signal?: AbortSignal,
): Promise<CheckOutcome> {
  const timeout = AbortSignal.timeout(provider.timeoutMs);
  const both = signal ? AbortSignal.any([signal, timeout]) : timeout;
  const timedOut = new Promise<CheckOutcome>((resolve) => {
    const fire = () =>
      resolve({
        kind: 'error',
        reason: timeout.aborted ? `timeout after ${provider.timeoutMs} ms` : 'request went away',
      });
    if (both.aborted) fire();
    else both.addEventListener('abort', fire, { once: true });
  });
  const run = async (): Promise<CheckOutcome> => {
    const conn = await dial(provider);
    if (!conn.ok)
      return { kind: 'error', reason: conn.unresolved ? `unresolved: ${conn.reason}` : conn.reason };
    if (both.aborted) {
      conn.stream.destroy();
      return { kind: 'error', reason: 'aborted' };
    }
    return provider.kind === 'http'
      ? checkHttp(provider, input, conn.stream, conn.authority, both)
      : checkGrpc(provider, input, conn.stream, conn.authority, both);
  };
  return Promise.race([
    run().catch((err: unknown): CheckOutcome => ({ kind: 'error', reason: (err as Error).message })),
    timedOut,
  ]);
}

/** The lookups `serviceDial` needs (the waypoint's xDS state). */
export interface ProviderLookup {
  serviceByHostname(host: string): Service | undefined;
  endpointsOf(service: Service): Workload[];
}

/**
 * Reaches a provider as Envoy's cluster for its Service would: the Service named by `service`
 * ("ns/name", "ns/hostname" or a hostname), one of its healthy endpoints at random, its target
 * port; `connect` then opens an HBONE tunnel as the waypoint (a mesh endpoint) or plain TCP
 * (one outside the mesh), as for any upstream. A Service that does not exist is `unresolved`
 * (istiod's parseService fails: the policy's rules deny); no endpoint is a failed call.
 */
export function serviceDial(
  state: ProviderLookup,
  connect: (w: Workload, authority: SocketAddr) => Promise<Duplex>,
  clusterDomain = 'cluster.local',
): ProviderDial {
  return async (p) => {
    const host = providerHostname(p.service, clusterDomain);
    const svc = host ? state.serviceByHostname(host) : undefined;
    if (!svc)
      return { ok: false, unresolved: true, reason: `service ${JSON.stringify(p.service)} not found` };
    const eps = state.endpointsOf(svc).filter((w) => w.status === 'HEALTHY' && w.addresses.length > 0);
    if (eps.length === 0) return { ok: false, unresolved: false, reason: `no healthy endpoint of ${host}` };
    const w = eps[Math.floor(Math.random() * eps.length)]!;
    const own = w.services[`${svc.namespace}/${svc.hostname}`]?.find((x) => x.servicePort === p.port);
    const port = own?.targetPort || svc.ports.find((x) => x.servicePort === p.port)?.targetPort || p.port;
    const authority = formatSocketAddr(w.addresses[0]!, port);
    try {
      return { ok: true, stream: await connect(w, authority), authority };
    } catch (err) {
      return { ok: false, unresolved: false, reason: `connect to ${authority}: ${(err as Error).message}` };
    }
  };
}

/** "ns/name" → name.ns.svc.<domain>; "ns/a.b" → a.b; "a.b.c" as is; "name" alone → undefined. */
export function providerHostname(service: string, clusterDomain = 'cluster.local'): string | undefined {
  const slash = service.indexOf('/');
  if (slash < 0) return service.includes('.') ? service.toLowerCase() : undefined;
  const ns = service.slice(0, slash);
  const rest = service.slice(slash + 1);
  if (!ns || !rest || rest.includes('/')) return undefined;
  return (rest.includes('.') ? rest : `${rest}.${ns}.svc.${clusterDomain}`).toLowerCase();
}
