// `ambit ctl analyze DIR`: the manifests through the same loader the control plane uses (errors
// and unknown-field warnings name file, line and field), then the mistakes users of Istio ambient make most, as
// warnings (after `istioctl analyze`): a VirtualService subset no DestinationRule defines, a
// use-waypoint label naming a Gateway that does not exist, Service ports whose protocol cannot be
// told (L7 is lost: treated as TCP), AuthorizationPolicies that select no workload, and those that
// failed validation and are in force in their fail-closed form (config/authz-degrade.ts).
// Pure over the loaded objects, so it is table-tested.
import { locationOf, type ConfigError } from '../config/config-error.js';
import type { LoadedObject } from '../config/load.js';
import { LABEL_USE_WAYPOINT, type KubeResource } from '../config/types.js';

export interface AnalyzeMessage {
  level: 'Error' | 'Warning';
  code: string;
  /** "Kind ns/name" */
  object: string;
  file?: string;
  document?: number;
  /** 1-based line of the object or field in `file`, when known. */
  line?: number;
  message: string;
}

/**
 * The loader's findings as analyze messages: errors (IST0101, as istioctl names a bad
 * resource) and, as kubectl's strict field validation would warn, fields the upstream API does
 * not define (AMBIT_UNKNOWN_FIELD).
 */
export function loadMessages(load: {
  errors: readonly ConfigError[];
  warnings: readonly ConfigError[];
}): AnalyzeMessage[] {
  const one = (level: AnalyzeMessage['level'], code: string, e: ConfigError): AnalyzeMessage => ({
    level,
    code,
    object: [e.kind, e.namespace ? `${e.namespace}/${e.name}` : e.name].filter(Boolean).join(' ') || '-',
    file: e.file,
    document: e.document,
    ...(e.line !== undefined ? { line: e.line } : {}),
    message: `${e.path || '(document)'}: ${e.message}`,
  });
  return [
    ...load.errors.map((e) => one('Error', 'IST0101', e)),
    // Ignored kinds (Deployments next to the mesh config) stay out, as before: they are no mistake.
    ...load.warnings
      .filter((e) => e.code === 'CONFIG_UNKNOWN_FIELD')
      .map((e) => one('Warning', 'AMBIT_UNKNOWN_FIELD', e)),
  ];
}

/** One line of `ambit ctl analyze` output; the place is `file:line` (never `file:documentNumber`). */
export function formatAnalyzeMessage(m: AnalyzeMessage): string {
  const at = m.file ? `  [${locationOf({ file: m.file, document: m.document, line: m.line })}]` : '';
  return `${m.level} [${m.code}] (${m.object}) ${m.message}${at}`;
}

const LABEL_USE_WAYPOINT_NAMESPACE = 'istio.io/use-waypoint-namespace';
/** Istio's protocol selection by port name prefix ("<protocol>[-<suffix>]"). */
const PROTOCOL_PREFIXES = [
  'http',
  'http2',
  'https',
  'grpc',
  'grpc-web',
  'tcp',
  'tls',
  'mongo',
  'mysql',
  'redis',
  'udp',
];

type Spec = Record<string, unknown>;
const specOf = (o: KubeResource): Spec => ((o as { spec?: Spec }).spec ?? {}) as Spec;
const nsOf = (o: KubeResource) => o.metadata.namespace ?? 'default';
const describe = (o: KubeResource) =>
  o.kind === 'Namespace' || o.kind === 'Node'
    ? `${o.kind} ${o.metadata.name}`
    : `${o.kind} ${nsOf(o)}/${o.metadata.name}`;

/** "reviews" in namespace "shop" → "reviews.shop.svc.cluster.local" (Istio expands only names without dots). */
export function fqdn(host: string, namespace: string, domain = 'cluster.local'): string {
  if (!host.includes('.')) return `${host}.${namespace}.svc.${domain}`;
  if (host.endsWith('.svc')) return `${host}.${domain}`;
  return host;
}

export function analyze(entries: readonly LoadedObject[], rootNamespace = 'istio-system'): AnalyzeMessage[] {
  const out: AnalyzeMessage[] = [];
  const objects = entries.map((e) => e.object);
  const where = new Map(
    entries.map((e) => [
      e.object,
      { file: e.file, document: e.document, ...(e.line !== undefined ? { line: e.line } : {}) },
    ]),
  );
  const warn = (o: KubeResource, code: string, message: string) =>
    out.push({ level: 'Warning', code, object: describe(o), ...where.get(o), message });
  const byKind = (k: string) => objects.filter((o) => o.kind === k);

  // 1. VirtualService subsets that no DestinationRule defines
  const subsets = new Map<string, Set<string>>(); // fqdn → subset names
  for (const dr of byKind('DestinationRule')) {
    const s = specOf(dr);
    const host = typeof s.host === 'string' ? fqdn(s.host, nsOf(dr)) : undefined;
    if (!host) continue;
    const set = subsets.get(host) ?? new Set<string>();
    for (const sub of (s.subsets as { name?: string }[] | undefined) ?? []) if (sub.name) set.add(sub.name);
    subsets.set(host, set);
  }
  for (const vs of byKind('VirtualService')) {
    const s = specOf(vs);
    for (const section of ['http', 'tcp', 'tls'] as const) {
      for (const route of (s[section] as
        { route?: { destination?: { host?: string; subset?: string } }[] }[] | undefined) ?? []) {
        for (const r of route.route ?? []) {
          const d = r.destination;
          if (!d?.host || !d.subset) continue;
          const host = fqdn(d.host, nsOf(vs));
          const defined = subsets.get(host);
          if (!defined)
            warn(
              vs,
              'IST0101',
              `${section} route to ${d.host} subset ${JSON.stringify(d.subset)}: no DestinationRule for host ${host} defines subsets`,
            );
          else if (!defined.has(d.subset))
            warn(
              vs,
              'IST0101',
              `${section} route to ${d.host} subset ${JSON.stringify(d.subset)}: the DestinationRule for ${host} defines only ${[...defined].join(', ') || 'no subsets'}`,
            );
        }
      }
    }
  }

  // 2. use-waypoint naming a Gateway that does not exist (or is not a waypoint)
  const gateways = new Map(byKind('Gateway').map((g) => [`${nsOf(g)}/${g.metadata.name}`, g]));
  for (const o of objects) {
    if (!['Namespace', 'Service', 'Pod', 'ServiceEntry'].includes(o.kind)) continue;
    const name = o.metadata.labels?.[LABEL_USE_WAYPOINT];
    if (!name || name === 'none') continue;
    const ns =
      o.metadata.labels?.[LABEL_USE_WAYPOINT_NAMESPACE] ||
      (o.kind === 'Namespace' ? o.metadata.name : nsOf(o));
    const gw = gateways.get(`${ns}/${name}`);
    if (!gw)
      warn(
        o,
        'IST0167',
        `${LABEL_USE_WAYPOINT}=${name} names Gateway ${ns}/${name}, which does not exist: traffic skips the waypoint's L7 policy`,
      );
    else if (specOf(gw).gatewayClassName !== 'istio-waypoint')
      warn(
        o,
        'IST0167',
        `${LABEL_USE_WAYPOINT}=${name}: Gateway ${ns}/${name} has gatewayClassName ${JSON.stringify(specOf(gw).gatewayClassName)}, not istio-waypoint`,
      );
  }

  // 3. Service ports whose protocol cannot be told: treated as TCP, L7 lost
  for (const svc of byKind('Service')) {
    const ports =
      (specOf(svc).ports as { name?: string; port?: number; appProtocol?: string }[] | undefined) ?? [];
    for (const p of ports) {
      if (p.appProtocol) continue;
      const prefix = p.name?.toLowerCase().split('-')[0];
      if (!p.name)
        warn(
          svc,
          'IST0118',
          `port ${p.port} has no name and no appProtocol: it is treated as TCP, so waypoint routing and L7 policy do not apply (name it "http-…" or set appProtocol)`,
        );
      else if (!PROTOCOL_PREFIXES.includes(prefix ?? '') && !PROTOCOL_PREFIXES.includes(p.name.toLowerCase()))
        warn(
          svc,
          'IST0118',
          `port ${p.port} name ${JSON.stringify(p.name)} names no protocol and there is no appProtocol: it is treated as TCP (L7 lost); use "http-${p.name}" or appProtocol`,
        );
    }
  }

  // 4. AuthorizationPolicies that select nothing
  const pods = byKind('Pod');
  for (const ap of byKind('AuthorizationPolicy')) {
    const s = specOf(ap);
    const refs = [
      ...((s.targetRefs as { kind?: string; name?: string }[] | undefined) ?? []),
      ...(s.targetRef ? [s.targetRef as { kind?: string; name?: string }] : []),
    ];
    if (refs.length) {
      for (const r of refs) {
        const exists = objects.some(
          (o) => o.kind === r.kind && o.metadata.name === r.name && nsOf(o) === nsOf(ap),
        );
        if (!exists)
          warn(
            ap,
            'IST0173',
            `targetRef ${r.kind}/${r.name} does not exist in namespace ${nsOf(ap)}: the policy applies to nothing`,
          );
      }
      continue;
    }
    const match = (s.selector as { matchLabels?: Record<string, string> } | undefined)?.matchLabels;
    if (!match || Object.keys(match).length === 0) continue; // namespace- or mesh-wide
    const inScope = pods.filter((p) => nsOf(ap) === rootNamespace || nsOf(p) === nsOf(ap));
    const selected = inScope.some((p) =>
      Object.entries(match).every(([k, v]) => p.metadata.labels?.[k] === v),
    );
    if (!selected)
      warn(
        ap,
        'IST0173',
        `selector ${Object.entries(match)
          .map(([k, v]) => `${k}=${v}`)
          .join(',')} matches no pod in namespace ${nsOf(ap)}: the policy applies to nothing`,
      );
  }
  // 5. AuthorizationPolicies that failed validation and are in force degraded (fail closed):
  // errors, since what is enforced is not what was written.
  for (const e of entries) {
    if (!e.degraded) continue;
    out.push({
      level: 'Error',
      code: 'AMBIT_POLICY_DEGRADED',
      object: describe(e.object),
      file: e.file,
      document: e.document,
      ...(e.line !== undefined ? { line: e.line } : {}),
      message: `failed validation; in force degraded (fail closed): ${e.degraded.join('; ')}`,
    });
  }
  return out;
}
