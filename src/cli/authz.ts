// `ambit authz explain`: why would a connection be allowed or denied? Builds exactly what a node
// proxy holds — offline from a manifest folder (the control plane's own index and conversion), or
// online from a running control plane over xDS (authenticated with a node token from the state
// directory) — then decodes it with the proxies' decoders and asks the data path's evaluator
// (node/authz.ts) with `explain`. No second implementation of any rule. A destination served by
// a waypoint is explained in stages (authz-waypoint.ts): the waypoint's L7 policies, then each
// destination's node proxy, which sees the waypoint's identity.
import { UsageError } from './usage-error.js';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { isIP } from 'node:net';
import { loadDirectory } from '../config/load.js';
import { objectKey, type ConfigSnapshot, type KubeResource } from '../config/types.js';
import { AmbientIndex, type PolicyStatus } from '../controlplane/ambient-index.js';
import type { EffectivePeerAuthn } from '../controlplane/authz-convert.js';
import { CONTROL_PLANE_SERVER_NAME } from '../controlplane/server.js';
import { XdsClient, controlPlaneConnection } from '../xds/client.js';
import { TYPE_ADDRESS, TYPE_AUTHORIZATION } from '../xds/proto.js';
import { decodeAddress, spiffeIdOf, type Address, type Service, type Workload } from '../xds/resources.js';
import type { Authorization } from '../xds/authorization.js';
import type { Ip } from '../common/addr.js';
import { componentLogger } from '../common/log.js';
import { ProxyState } from '../proxy/state.js';
import { PolicyStore } from '../proxy/policy-store.js';
import { buildRoute, resolveServiceName } from '../proxy/route.js';
import { evaluate, type AuthzDecision, type PolicyTrace } from '../proxy/authz.js';
import { DEFAULT_ROOT_NAMESPACE } from '../controlplane/authz-convert.js';
import { explainWaypoint, type RequestSpec, type WaypointStages } from './authz-waypoint.js';

const USAGE = `usage: ambit authz explain DIR --from SRC --to DST:PORT [REQUEST]
       ambit authz explain --server HOST:PORT [--state DIR] --from SRC --to DST:PORT [REQUEST]

  SRC   a pod (ns/name), a SPIFFE id (spiffe://td/ns/N/sa/S) or an IP
  DST   a service (name.ns, name.ns.svc.cluster.local, or a VIP), a pod (ns/name) or a pod IP
  --root-namespace NS   the mesh root namespace (offline; default istio-system)
  REQUEST (asked of a waypoint's L7 policies when DST is served by one; default GET /):
  --method M  --path P  --host H (default DST:PORT as written)  --tcp (a TCP connection instead)`;

/** What explain needs: the proxies' view, plus (offline only) the control plane's notes. */
interface MeshView {
  state: ProxyState;
  policies: PolicyStore;
  statuses?: PolicyStatus[];
  peerAuthn?: (w: Workload) => EffectivePeerAuthn | undefined;
  configErrors?: string[];
  /** The manifests (offline only): a waypoint's L7 policies are compiled from them. */
  objects?: KubeResource[];
  rootNamespace?: string;
  where: string;
}

export async function authz(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== 'explain') throw new UsageError(USAGE);
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      from: { type: 'string' },
      to: { type: 'string' },
      server: { type: 'string' },
      state: { type: 'string', default: '.ambit' },
      'root-namespace': { type: 'string' },
      'trust-domain': { type: 'string' },
      method: { type: 'string' },
      path: { type: 'string' },
      host: { type: 'string' },
      tcp: { type: 'boolean' },
    },
  });
  if (!values.from || !values.to || (!values.server && positionals.length !== 1)) throw new UsageError(USAGE);
  const view = values.server
    ? await onlineView(values.server, values.state)
    : await offlineView(positionals[0]!, values['root-namespace'], values['trust-domain']);
  const request: RequestSpec = {
    ...(values.tcp ? { tcp: true } : {}),
    ...(values.method ? { method: values.method } : {}),
    ...(values.path ? { path: values.path } : {}),
    ...(values.host ? { host: values.host } : {}),
  };
  const out = explain(view, values.from, values.to, request);
  process.stdout.write(out.text);
  return 0;
}

// ---- building the view ----

export async function offlineView(
  dir: string,
  rootNamespace?: string,
  trustDomain?: string,
): Promise<MeshView> {
  const load = await loadDirectory(dir);
  const objects = new Map<string, KubeResource>(load.objects.map((o) => [objectKey(o), o]));
  const snapshot: ConfigSnapshot = { objects };
  const index = new AmbientIndex({ rootNamespace, trustDomain });
  index.rebuild(snapshot);
  const state = new ProxyState();
  const policies = new PolicyStore();
  // Through the wire form, exactly as a node proxy receives it.
  const addrs = new Map<string, Address>();
  for (const [name, r] of index.resources(TYPE_ADDRESS)) addrs.set(name, decodeAddress(name, r.bytes));
  state.applyAddresses(addrs, []);
  const authz = new Map<string, Authorization>();
  for (const [name, r] of index.resources(TYPE_AUTHORIZATION)) {
    try {
      authz.set(name, policies.decode(name, r.bytes));
    } catch {
      /* recorded as a rejection: explained as fail-closed */
    }
  }
  policies.apply(authz, []);
  return {
    state,
    policies,
    statuses: index.policyStatuses(),
    peerAuthn: (w) => index.effectivePeerAuthentication(`${w.namespace}/${w.name}`),
    configErrors: load.errors.map(String),
    objects: load.objects,
    rootNamespace: rootNamespace ?? DEFAULT_ROOT_NAMESPACE,
    where: dir,
  };
}

/** Connects as an xDS client with a node token from the state directory, takes one full sync. */
export async function onlineView(server: string, stateDir: string): Promise<MeshView> {
  const rootPem = await readFile(path.join(stateDir, 'ca', 'root-cert.pem'), 'utf8');
  const tokens = (await readdir(path.join(stateDir, 'nodes'))).filter((f) => f.endsWith('.token')).sort();
  if (tokens.length === 0) throw new UsageError(`no node token in ${path.join(stateDir, 'nodes')}`);
  const nodeName = tokens[0]!.slice(0, -'.token'.length);
  const token = (await readFile(path.join(stateDir, 'nodes', tokens[0]!), 'utf8')).trim();
  const state = new ProxyState();
  const policies = new PolicyStore();
  const logger = componentLogger('authz-explain');
  logger.level = 'error';
  const xds = new XdsClient({
    ...controlPlaneConnection(server, rootPem, token, CONTROL_PLANE_SERVER_NAME),
    node: { id: `ambit-explain~0.0.0.0~${nodeName}~explain`, metadata: { NODE_NAME: nodeName } },
    types: [
      {
        typeUrl: TYPE_ADDRESS,
        decode: (n: string, b: Uint8Array) => decodeAddress(n, b),
        apply: (u: Map<string, Address>, r: string[]) => state.applyAddresses(u, r),
      },
      {
        typeUrl: TYPE_AUTHORIZATION,
        decode: (n: string, b: Uint8Array) => policies.decode(n, b),
        apply: (u: Map<string, Authorization>, r: string[]) => policies.apply(u, r),
      },
    ],
    logger,
  });
  xds.start();
  try {
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(
        () => reject(new Error(`no answer from the control plane at ${server} within 10 s`)),
        10_000,
      ).unref(),
    );
    await Promise.race([xds.ready(), timeout]);
  } finally {
    xds.stop();
  }
  return { state, policies, where: `control plane ${server}` };
}

// ---- the explanation ----

interface Source {
  label: string;
  identity?: string;
  ip: string;
  namespace: string;
}

function resolveSource(view: MeshView, from: string): Source {
  if (from.startsWith('spiffe://')) {
    const w = view.state.allWorkloads().find((x) => x.tunnelProtocol === 'HBONE' && spiffeIdOf(x) === from);
    const ns = /\/ns\/([^/]+)\//.exec(from)?.[1] ?? '';
    return { label: from, identity: from, ip: w?.addresses[0] ?? '', namespace: ns };
  }
  const w = isIP(from) ? view.state.workloadByAddress(from) : findPod(view, from);
  if (!w) {
    if (isIP(from)) return { label: `${from} (outside the mesh: no identity)`, ip: from, namespace: '' };
    throw new UsageError(`--from ${from}: no such pod (write ns/name, a SPIFFE id or an IP)`);
  }
  const hbone = w.tunnelProtocol === 'HBONE';
  return {
    label: `${w.namespace}/${w.name}${hbone ? '' : ' (not in the mesh: plaintext, no identity)'}`,
    identity: hbone ? spiffeIdOf(w) : undefined,
    ip: w.addresses[0] ?? from,
    namespace: w.namespace,
  };
}

function findPod(view: MeshView, ref: string): Workload | undefined {
  const [ns, name] = ref.includes('/') ? ref.split('/', 2) : ['default', ref];
  return view.state.allWorkloads().find((w) => w.namespace === ns && w.name === name);
}

interface Target {
  label: string;
  endpoints: { workload: Workload; ip: string; port: number }[];
  /** The tunnel's target: the address and port as written (a VIP or a pod IP). */
  ip: string;
  port: number;
  service?: Service;
  /** The waypoint that serves this destination, when one does (buildRoute decides). */
  waypoint?: Workload;
}

function resolveTarget(view: MeshView, to: string, src: Source): Target {
  const i = to.lastIndexOf(':');
  const port = Number(to.slice(i + 1));
  if (i <= 0 || !(port >= 1 && port <= 65535)) throw new UsageError(`--to ${to}: expected HOST:PORT`);
  const host = to.slice(0, i);
  let ip: string | undefined;
  const pod = host.includes('/') ? findPod(view, host) : undefined;
  if (pod) ip = pod.addresses[0];
  else if (isIP(host)) ip = host;
  else ip = resolveServiceName(host, src.namespace || 'default', view.state)?.addresses[0]?.address;
  if (!ip) throw new UsageError(`--to ${to}: ${host} is not a known service, pod or IP`);
  const svc = view.state.serviceByAddress(ip);
  const endpoints: Target['endpoints'] = [];
  const candidates = svc ? view.state.endpointsOf(svc) : [undefined];
  // Through a waypoint? Then the endpoints are where the waypoint sends it (buildRoute skips the
  // waypoint when the source is the waypoint itself, as on the data path).
  const first = buildRoute({ host: ip as Ip, port }, view.state, (_s, list) => list[0]!);
  const waypoint = first.kind === 'hbone' && first.waypoint ? first.endpoint : undefined;
  for (let n = 0; n < candidates.length; n++) {
    // The data path's own routing decides each endpoint's address and target port.
    const route = buildRoute(
      { host: ip as Ip, port },
      view.state,
      (_s, list) => list[n % list.length]!,
      waypoint,
    );
    if (route.kind === 'hbone') {
      const [h, p] = [
        route.authority.slice(0, route.authority.lastIndexOf(':')),
        route.authority.split(':').pop(),
      ];
      if (!endpoints.some((e) => e.workload.uid === route.endpoint.uid))
        endpoints.push({ workload: route.endpoint, ip: h, port: Number(p) });
    } else if (route.kind === 'passthrough' && route.endpoint) {
      endpoints.push({ workload: route.endpoint, ip: route.addr.host, port: route.addr.port });
    }
  }
  const label = svc
    ? `service ${svc.hostname}:${port}`
    : pod
      ? `pod ${host} (${ip}:${port})`
      : `${ip}:${port}`;
  return { label, endpoints, ip, port, ...(svc ? { service: svc } : {}), ...(waypoint ? { waypoint } : {}) };
}

/**
 * The explanation of `from` → `to`. `decisions`: each endpoint's L4 decision at its node proxy;
 * `waypoint`: the waypoint's stages when one serves the destination; `allowed`: the final verdict
 * per endpoint (every stage allows; undefined where a CUSTOM provider's answer decides).
 */
export function explain(
  view: MeshView,
  from: string,
  to: string,
  request: RequestSpec = {},
): { text: string; decisions: AuthzDecision[]; waypoint?: WaypointStages; allowed: (boolean | undefined)[] } {
  const src = resolveSource(view, from);
  const dst = resolveTarget(view, to, src);
  const lines: string[] = [];
  const decisions: AuthzDecision[] = [];
  const allowed: (boolean | undefined)[] = [];
  lines.push(`authz explain  (${view.where})`, '');
  lines.push(`  from  ${src.label}`);
  if (src.identity && src.identity !== src.label) lines.push(`        identity ${src.identity}`);
  if (src.ip) lines.push(`        address  ${src.ip}`);
  lines.push(`  to    ${dst.label}`);

  // Through a waypoint, the destinations' node proxies see the waypoint as the source.
  let stages: WaypointStages | undefined;
  let l4Source = { identity: src.identity, ip: src.ip };
  const wp = dst.waypoint;
  if (wp) {
    const r = explainWaypoint(
      {
        waypoint: wp,
        policies: view.policies,
        ...(view.objects ? { objects: view.objects } : {}),
        rootNamespace: view.rootNamespace ?? DEFAULT_ROOT_NAMESPACE,
        source: { ...(src.identity ? { identity: src.identity } : {}), ip: src.ip },
        target: { ip: dst.ip, port: dst.port },
        ...(dst.service ? { service: dst.service } : {}),
      },
      // Host as a client would send it: the name it dialled, or the address for a pod reference.
      { host: to.includes('/') ? `${dst.ip}:${dst.port}` : to, ...request },
    );
    lines.push(...r.lines);
    stages = r.stages;
    l4Source = { identity: spiffeIdOf(wp), ip: wp.addresses[0] ?? '' };
    lines.push(
      '',
      `  3. L4 at each destination, from the waypoint (${l4Source.identity}, ${l4Source.ip})` +
        (dst.service
          ? `; the endpoints of ${dst.service.hostname} (routes may pick other backends: each is checked the same way)`
          : ''),
    );
  }
  if (dst.endpoints.length === 0)
    lines.push('', '  no endpoint serves this destination: nothing to authorize');

  for (const e of dst.endpoints) {
    const w = e.workload;
    lines.push('', `── ${w.namespace}/${w.name}  ${e.ip}:${e.port}  node ${w.node || '?'} ${'─'.repeat(8)}`);
    if (w.tunnelProtocol !== 'HBONE') {
      lines.push('  not in the mesh: traffic is plain TCP and no node proxy enforces policy here');
      allowed.push(verdict(stages, true));
      continue;
    }
    const pa = view.peerAuthn?.(w);
    if (pa) lines.push(`  mTLS      ${describePeerAuthn(pa)}`);
    const policies = view.policies.forWorkload(w);
    const d = evaluate(
      policies,
      { srcIdentity: l4Source.identity, srcIp: l4Source.ip, dstIp: e.ip, dstPort: e.port },
      { explain: true },
    );
    decisions.push(d);
    const count = (a: string) => policies.filter((p) => p.action === a && !p.invalid).length;
    lines.push(
      `  policies  ${policies.length === 0 ? 'none apply' : `${policies.length} apply (${count('DENY')} DENY, ${count('ALLOW')} ALLOW)`}`,
    );
    for (const t of d.trace ?? []) lines.push(...describeTrace(t, w, view));
    const final = verdict(stages, d.allow);
    allowed.push(final);
    if (!stages) lines.push('', `  ${d.allow ? '✔ ALLOWED' : '✘ DENIED'}  ${d.reason}`);
    else {
      lines.push('', `  ${d.allow ? '✔' : '✘'} at the node proxy: ${d.reason}`);
      lines.push(
        `  ${final === undefined ? '? DEPENDS' : final ? '✔ ALLOWED' : '✘ DENIED'}  ${finalReason(stages, d)}`,
      );
    }
  }
  const warnings = (view.statuses ?? []).filter((s) => s.warnings.length || s.skipped);
  if (warnings.length) {
    lines.push('', 'notes on policies');
    for (const s of warnings) {
      for (const wtext of s.warnings) lines.push(`  ! ${wtext}`);
      if (s.skipped && s.warnings.length === 0) lines.push(`  · AuthorizationPolicy ${s.key}: ${s.skipped}`);
    }
  }
  if (view.configErrors?.length) {
    lines.push('', 'invalid manifests (skipped; an AuthorizationPolicy stands in degraded, above)');
    for (const e of view.configErrors) lines.push(`  ✘ ${e}`);
  }
  if (!view.statuses)
    lines.push('', '(online: conversion warnings and mTLS modes are logged by the control plane)');
  return { text: lines.join('\n') + '\n', decisions, allowed, ...(stages ? { waypoint: stages } : {}) };
}

/** Every stage must allow; a matching CUSTOM policy leaves it to its provider (unknown here). */
function verdict(stages: WaypointStages | undefined, atDestination: boolean): boolean | undefined {
  if (!stages) return atDestination;
  const { inbound, l7, custom } = stages;
  if (!inbound.allow || (l7 && !l7.allow) || !atDestination) return false;
  return custom.length ? undefined : true;
}

function finalReason(stages: WaypointStages, atDestination: AuthzDecision): string {
  if (!stages.inbound.allow) return `refused at the waypoint's inbound: ${stages.inbound.reason}`;
  if (stages.l7 && !stages.l7.allow) return `refused by the waypoint (L7): ${stages.l7.reason}`;
  if (!atDestination.allow)
    return `the waypoint allows it, the destination's node proxy refuses the waypoint: ${atDestination.reason}`;
  if (stages.custom.length) return `if the CUSTOM provider allows: every other stage allows`;
  if (!stages.l7) return "L4 stages allow (the waypoint's L7 policies are not in this view)";
  return 'the waypoint and the destination both allow';
}

const SCOPE_WORDS: Record<string, string> = {
  GLOBAL: 'mesh-wide',
  NAMESPACE: 'namespace-wide',
  WORKLOAD_SELECTOR: 'selects this workload',
};

function describeTrace(t: PolicyTrace, w: Workload, view: MeshView): string[] {
  const kind = t.policy.includes('/istio_converted_static_strict')
    ? 'PeerAuthentication STRICT'
    : t.policy.includes('/converted_peer_authentication_')
      ? 'PeerAuthentication port-level mTLS'
      : SCOPE_WORDS[t.scope];
  const head = `  ${t.action.padEnd(5)} ${t.policy}  (${kind}${t.dryRun ? ', dry-run: not enforced' : ''})`;
  if (t.invalid)
    return ['', head, `        ✘ could not be understood, so it denies everything: ${t.invalid}`];
  const out = ['', head];
  // A decision from a policy that failed validation must say so: it is not the policy as written.
  const degraded = view.statuses?.find((s) => s.key === t.policy)?.degraded;
  if (degraded) {
    out.push(
      '        ! failed validation; in force degraded (fail closed), rule numbers are of the degraded form:',
    );
    for (const e of degraded) out.push(`          - ${e}`);
  }
  const policy = view.policies.forWorkload(w).find((p) => `${p.namespace}/${p.name}` === t.policy);
  if (policy && policy.rules.length === 0) out.push('        no rules: matches nothing');
  for (const r of t.rules) {
    out.push(
      r.matched
        ? `        ✔ rule ${r.index} matches: ${r.why}`
        : `        · rule ${r.index} does not match: ${r.why}`,
    );
  }
  if (policy && t.matched && t.ruleIndex !== undefined && t.ruleIndex < policy.rules.length - 1)
    out.push(`        (rules after ${t.ruleIndex} not needed)`);
  if (!t.matched && policy && policy.rules.length) out.push('        → no rule matches');
  return out;
}

function describePeerAuthn(pa: EffectivePeerAuthn): string {
  const from = pa.from === 'default' ? 'default: no PeerAuthentication' : `${pa.from} policy ${pa.policy}`;
  const ports = Object.entries(pa.ports).map(([p, m]) => `${p}=${m}`);
  const strictNote = pa.mode === 'STRICT' ? '; connections without a verified identity are denied' : '';
  return `${pa.mode} (${from})${ports.length ? `, ports ${ports.join(' ')}` : ''}${strictNote}`;
}
