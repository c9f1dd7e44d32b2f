// Istio's MeshConfig, the parts ambit reads: `extensionProviders` of type `envoyExtAuthzHttp` and
// `envoyExtAuthzGrpc` (CUSTOM AuthorizationPolicy) and `pathNormalization`. Istio reads it from
// the ConfigMap `istio` in `istio-system`, key `mesh` (YAML of MeshConfig); so does ambit, from
// the manifest folder or the Kubernetes API. Validated here once (pure), into `MeshSettings`, the
// shape sent to waypoints as the config object `MeshConfig/istio-system/mesh` (xds/config-objects.ts).
//
// Validation follows istiod (pilot/pkg/security/authz/builder/extauthz.go): a provider whose
// name, port, service, statusOnError or pathPrefix is wrong is kept as `invalid` with the reason,
// and CUSTOM policies naming it deny what their rules match (istiod's getBadCustomDenyRules);
// a YAML document that cannot be read at all is an error, and the last good MeshConfig stays.
import { parse } from 'yaml';

export const MESH_CONFIGMAP_NAMESPACE = 'istio-system';
export const MESH_CONFIGMAP_NAME = 'istio';
export const MESH_CONFIGMAP_KEY = 'mesh';
/** The config object name waypoints receive ("MeshConfig/istio-system/mesh"). */
export const MESH_CONFIG_KIND = 'MeshConfig';
export const MESH_CONFIG_OBJECT_NAME = 'mesh';

export type PathNormalization = 'NONE' | 'BASE' | 'MERGE_SLASHES' | 'DECODE_AND_MERGE_SLASHES';
export const PATH_NORMALIZATIONS: readonly PathNormalization[] = [
  'NONE',
  'BASE',
  'MERGE_SLASHES',
  'DECODE_AND_MERGE_SLASHES',
];

/**
 * Istio's default timeout for ext_authz calls: 600 s (istiod puts 600 s in the HttpUri when the
 * MeshConfig sets none; release note "authz-ext-authz": "timeout (default is 10m)").
 */
export const EXT_AUTHZ_DEFAULT_TIMEOUT_MS = 600_000;

interface ProviderCommon {
  name: string;
  /** "ns/name", "ns/hostname" or a hostname (name.ns.svc.cluster.local), as Istio accepts. */
  service: string;
  port: number;
  timeoutMs: number;
  failOpen: boolean;
  /** HTTP status when the call fails (Envoy's status_on_error, default 403). */
  statusOnError: number;
  /** Set when the provider could not be read: CUSTOM policies naming it deny what they match. */
  invalid?: string;
}
export interface ExtAuthzHttpProvider extends ProviderCommon {
  kind: 'http';
  pathPrefix: string;
  includeRequestHeadersInCheck: string[];
  includeAdditionalHeadersInCheck: Record<string, string>;
  headersToUpstreamOnAllow: string[];
  headersToDownstreamOnDeny: string[];
  headersToDownstreamOnAllow: string[];
}
export interface ExtAuthzGrpcProvider extends ProviderCommon {
  kind: 'grpc';
}
export type ExtAuthzProvider = ExtAuthzHttpProvider | ExtAuthzGrpcProvider;

/** What waypoints need of the MeshConfig. */
export interface MeshSettings {
  pathNormalization?: PathNormalization;
  extensionProviders: ExtAuthzProvider[];
  /** Readable notes (declined fields, ignored provider kinds), one per line. */
  warnings: string[];
}

export interface MeshConfigIssue {
  field: string;
  message: string;
}

export type MeshParse = { ok: true; settings: MeshSettings } | { ok: false; issues: MeshConfigIssue[] };

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** The MeshConfig YAML of the ConfigMap's `mesh` key. */
export function parseMeshConfigYaml(text: string): MeshParse {
  let doc: unknown;
  try {
    doc = parse(text, { maxAliasCount: 100 });
  } catch (err) {
    return { ok: false, issues: [{ field: 'mesh', message: `not valid YAML: ${(err as Error).message}` }] };
  }
  return parseMeshConfig(doc ?? {});
}

/** A MeshConfig object (already parsed). */
export function parseMeshConfig(doc: unknown): MeshParse {
  if (!isRecord(doc)) return { ok: false, issues: [{ field: 'mesh', message: 'must be a mapping' }] };
  const issues: MeshConfigIssue[] = [];
  const settings: MeshSettings = { extensionProviders: [], warnings: [] };
  const pn = doc.pathNormalization;
  if (pn !== undefined) {
    const mode = isRecord(pn) ? (pn.normalization ?? 'DEFAULT') : undefined;
    if (mode === 'DEFAULT') {
      // Istio's DEFAULT means BASE; ambit's default (no field) merges slashes, see http-request.ts.
    } else if (typeof mode === 'string' && (PATH_NORMALIZATIONS as readonly string[]).includes(mode))
      settings.pathNormalization = mode as PathNormalization;
    else
      issues.push({
        field: 'pathNormalization.normalization',
        message: `must be one of DEFAULT, ${PATH_NORMALIZATIONS.join(', ')}`,
      });
  }
  const list = doc.extensionProviders;
  if (list !== undefined && !Array.isArray(list))
    issues.push({ field: 'extensionProviders', message: 'must be a list' });
  const seen = new Set<string>();
  (Array.isArray(list) ? list : []).forEach((raw, i) => {
    const at = `extensionProviders[${i}]`;
    if (!isRecord(raw)) return issues.push({ field: at, message: 'must be a mapping' });
    const name = typeof raw.name === 'string' ? raw.name : '';
    if (!name) return issues.push({ field: `${at}.name`, message: 'must not be empty' });
    if (seen.has(name)) return issues.push({ field: `${at}.name`, message: `duplicate provider ${name}` });
    seen.add(name);
    const p = providerOf(name, raw, settings.warnings, `${at}`);
    if (p) settings.extensionProviders.push(p);
  });
  return issues.length ? { ok: false, issues } : { ok: true, settings };
}

function providerOf(
  name: string,
  raw: Record<string, unknown>,
  warnings: string[],
  at: string,
): ExtAuthzProvider | undefined {
  const http = raw.envoyExtAuthzHttp;
  const grpc = raw.envoyExtAuthzGrpc;
  if (!isRecord(http) && !isRecord(grpc)) {
    // envoyOtelAls, zipkin, prometheus...: telemetry providers, not ambit's business.
    warnings.push(`${at} (${name}): not an ext_authz provider; ignored`);
    return undefined;
  }
  const c = (isRecord(http) ? http : grpc) as Record<string, unknown>;
  const problems: string[] = [];
  const service = typeof c.service === 'string' ? c.service.trim() : '';
  if (!service) problems.push('service must not be empty');
  const port = Number(c.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    problems.push(`port must be in the range [1, 65535], found: ${String(c.port)}`);
  let timeoutMs = EXT_AUTHZ_DEFAULT_TIMEOUT_MS;
  if (c.timeout !== undefined) {
    const m = typeof c.timeout === 'string' ? DURATION.exec(c.timeout) : null;
    if (!m) problems.push(`timeout ${JSON.stringify(c.timeout)} is not a duration like "0.5s"`);
    else timeoutMs = Math.round(Number(m[1]) * UNIT_MS[m[2]!]!);
    if (m && timeoutMs <= 0) problems.push('timeout must be positive');
  }
  let statusOnError = 403;
  if (c.statusOnError !== undefined && c.statusOnError !== '') {
    const s = Number(c.statusOnError);
    if (!Number.isInteger(s) || s < 100 || s > 599)
      problems.push(`statusOnError ${JSON.stringify(c.statusOnError)} is not an HTTP status`);
    else statusOnError = s;
  }
  const common = {
    name,
    service,
    port: Number.isInteger(port) ? port : 0,
    timeoutMs,
    failOpen: c.failOpen === true,
    statusOnError,
  };
  if (c.failOpen !== undefined && typeof c.failOpen !== 'boolean')
    problems.push('failOpen must be true or false');
  if (isRecord(grpc)) {
    const p: ExtAuthzGrpcProvider = { kind: 'grpc', ...common };
    if (problems.length) p.invalid = problems.join('; ');
    return p;
  }
  const pathPrefix = typeof c.pathPrefix === 'string' ? c.pathPrefix : '';
  if (pathPrefix && !pathPrefix.startsWith('/'))
    problems.push(`pathPrefix must begin with \`/\`, found: ${JSON.stringify(pathPrefix)}`);
  if (/[?#\s]/.test(pathPrefix)) problems.push('pathPrefix must be a plain path');
  if (c.includeRequestBodyInCheck !== undefined)
    warnings.push(
      `${at} (${name}): includeRequestBodyInCheck is not supported; the body is not sent to the provider`,
    );
  if (c.includeHeadersInCheck !== undefined && c.includeRequestHeadersInCheck === undefined)
    warnings.push(
      `${at} (${name}): includeHeadersInCheck is deprecated; read as includeRequestHeadersInCheck`,
    );
  const names = (field: string): string[] => {
    const v = c[field];
    if (v === undefined) return [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || x === '')) {
      problems.push(`${field} must be a list of header names`);
      return [];
    }
    return (v as string[]).map((x) => x.toLowerCase());
  };
  const additional: Record<string, string> = {};
  const add = c.includeAdditionalHeadersInCheck;
  if (add !== undefined) {
    if (!isRecord(add)) problems.push('includeAdditionalHeadersInCheck must be a mapping');
    else for (const [k, v] of Object.entries(add)) additional[k.toLowerCase()] = String(v);
  }
  const p: ExtAuthzHttpProvider = {
    kind: 'http',
    ...common,
    pathPrefix,
    includeRequestHeadersInCheck: names(
      c.includeRequestHeadersInCheck !== undefined ? 'includeRequestHeadersInCheck' : 'includeHeadersInCheck',
    ),
    includeAdditionalHeadersInCheck: additional,
    headersToUpstreamOnAllow: names('headersToUpstreamOnAllow'),
    headersToDownstreamOnDeny: names('headersToDownstreamOnDeny'),
    headersToDownstreamOnAllow: names('headersToDownstreamOnAllow'),
  };
  if (problems.length) p.invalid = problems.join('; ');
  return p;
}

/** Whether an object is Istio's mesh ConfigMap (`istio-system/istio`). */
export function isMeshConfigMap(o: {
  kind: string;
  metadata: { name: string; namespace?: string };
}): boolean {
  return (
    o.kind === 'ConfigMap' &&
    o.metadata.name === MESH_CONFIGMAP_NAME &&
    (o.metadata.namespace ?? 'default') === MESH_CONFIGMAP_NAMESPACE
  );
}

/** The mesh ConfigMap's settings; a ConfigMap without the `mesh` key is an empty MeshConfig. */
export function meshSettingsOfConfigMap(cm: { data?: Record<string, unknown> }): MeshParse {
  const text = cm.data?.[MESH_CONFIGMAP_KEY];
  if (text === undefined) return { ok: true, settings: { extensionProviders: [], warnings: [] } };
  if (typeof text !== 'string')
    return { ok: false, issues: [{ field: `data.${MESH_CONFIGMAP_KEY}`, message: 'must be a string' }] };
  const r = parseMeshConfigYaml(text);
  return r.ok
    ? r
    : { ok: false, issues: r.issues.map((x) => ({ ...x, field: `data.${MESH_CONFIGMAP_KEY}: ${x.field}` })) };
}

/** The config object a waypoint receives for these settings. */
export function meshConfigObject(settings: MeshSettings): {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string };
  spec: Record<string, unknown>;
} {
  return {
    apiVersion: 'ambit.dev/v1',
    kind: MESH_CONFIG_KIND,
    metadata: { name: MESH_CONFIG_OBJECT_NAME, namespace: MESH_CONFIGMAP_NAMESPACE },
    spec: settings as unknown as Record<string, unknown>,
  };
}

/**
 * Re-checks settings received over xDS (the waypoint's edge): the same rules, on the already
 * normalized shape. Throws a readable reason, so the xDS client NACKs and keeps the last good.
 */
export function checkMeshSettings(spec: Record<string, unknown>): MeshSettings {
  const pn = spec.pathNormalization;
  if (pn !== undefined && !(PATH_NORMALIZATIONS as readonly unknown[]).includes(pn))
    throw new Error(
      `pathNormalization ${JSON.stringify(pn)} is not one of ${PATH_NORMALIZATIONS.join(', ')}`,
    );
  const list = spec.extensionProviders;
  if (!Array.isArray(list)) throw new Error('extensionProviders must be a list');
  const names = new Set<string>();
  for (const [i, p] of list.entries()) {
    if (!isRecord(p)) throw new Error(`extensionProviders[${i}] must be an object`);
    if (p.kind !== 'http' && p.kind !== 'grpc')
      throw new Error(`extensionProviders[${i}].kind must be http or grpc`);
    if (typeof p.name !== 'string' || !p.name || names.has(p.name))
      throw new Error(`extensionProviders[${i}].name must be a unique non-empty string`);
    names.add(p.name);
    for (const f of ['service'] as const)
      if (typeof p[f] !== 'string') throw new Error(`extensionProviders[${i}].${f} must be a string`);
    for (const f of ['port', 'timeoutMs', 'statusOnError'] as const)
      if (typeof p[f] !== 'number' || !Number.isFinite(p[f]))
        throw new Error(`extensionProviders[${i}].${f} must be a number`);
    if (typeof p.failOpen !== 'boolean')
      throw new Error(`extensionProviders[${i}].failOpen must be a boolean`);
    if (p.kind === 'http') {
      if (typeof p.pathPrefix !== 'string')
        throw new Error(`extensionProviders[${i}].pathPrefix must be a string`);
      for (const f of [
        'includeRequestHeadersInCheck',
        'headersToUpstreamOnAllow',
        'headersToDownstreamOnDeny',
        'headersToDownstreamOnAllow',
      ])
        if (!Array.isArray(p[f]) || (p[f] as unknown[]).some((x) => typeof x !== 'string'))
          throw new Error(`extensionProviders[${i}].${f} must be a list of strings`);
      if (!isRecord(p.includeAdditionalHeadersInCheck))
        throw new Error(`extensionProviders[${i}].includeAdditionalHeadersInCheck must be an object`);
    }
  }
  return {
    ...(pn !== undefined ? { pathNormalization: pn as PathNormalization } : {}),
    extensionProviders: list as ExtAuthzProvider[],
    warnings: Array.isArray(spec.warnings) ? (spec.warnings as unknown[]).map(String) : [],
  };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
