// An object from the API server → the same validated shape a manifest file gives (KIND_SCHEMAS),
// or the ConfigErrors that explain why not. The API server has already checked the built-in kinds,
// so in practice this catches custom resources that its CRD schema let through but Istio or the
// Gateway API would reject (a bad duration, an unknown action, a port out of range).
import { ConfigError, formatPath, issueMessage } from './config-error.js';
import { KIND_SCHEMAS } from './schema.js';
import { degradeAuthorizationPolicy, stripDegradedMark, type DegradedPolicy } from './authz-degrade.js';
import { CLUSTER_SCOPED_KINDS, type Kind, type KubeResource } from './types.js';
import type { KubeResourceType } from './kube-resources.js';
import type { RawObject } from './kube-client.js';

const MAX_ISSUES = 10;

export type Validated =
  | { ok: true; object: KubeResource }
  /** `degraded`: an AuthorizationPolicy's fail-closed stand-in (authz-degrade.ts), when one can be built. */
  | { ok: false; errors: ConfigError[]; degraded?: DegradedPolicy };

/** Where an object came from, for error messages: `Pod demo/echo-1` (API server objects have no file). */
export function kubeObjectLabel(kind: string, namespace: string | undefined, name: string): string {
  return `${kind} ${namespace ? `${namespace}/` : ''}${name}`;
}

export function validateKubeObject(t: KubeResourceType & { kind: Kind }, raw: RawObject): Validated {
  const kind = t.kind;
  const namespace = CLUSTER_SCOPED_KINDS.has(kind) ? undefined : raw.metadata.namespace;
  const name = raw.metadata.name;
  // List items of built-in kinds carry no apiVersion/kind; the informer knows what it lists.
  // Most kinds keep their state under spec/status; EndpointSlice keeps it at the top level.
  const body =
    kind === 'EndpointSlice'
      ? { addressType: raw.addressType, endpoints: raw.endpoints, ports: raw.ports }
      : kind === 'ConfigMap'
        ? { data: raw.data }
        : { spec: raw.spec, status: raw.status };
  const doc = normalize({
    apiVersion: raw.apiVersion ?? t.apiVersion,
    kind,
    metadata: raw.metadata,
    ...body,
  }) as Record<string, unknown>;
  if (namespace === undefined) delete (doc.metadata as Record<string, unknown>).namespace;
  const result = KIND_SCHEMAS[kind].safeParse(doc, { reportInput: true, error: issueMessage });
  if (result.success) {
    if (result.data.kind === 'AuthorizationPolicy') stripDegradedMark(result.data);
    return { ok: true, object: result.data };
  }
  const file = kubeObjectLabel(kind, namespace, name);
  const issues = result.error.issues;
  const errors = issues.slice(0, MAX_ISSUES).map(
    (iss) =>
      new ConfigError({
        file,
        document: 0,
        path: formatPath(iss.path),
        message: iss.message,
        kind,
        name,
        ...(namespace !== undefined ? { namespace } : {}),
      }),
  );
  if (issues.length > MAX_ISSUES) {
    errors.push(
      new ConfigError({
        file,
        document: 0,
        message: `${issues.length - MAX_ISSUES} more problems not shown`,
        kind,
        name,
      }),
    );
  }
  if (kind === 'AuthorizationPolicy') {
    const degraded = degradeAuthorizationPolicy(
      doc,
      issues.map((i) => ({ path: i.path, message: i.message })),
    );
    if (degraded) return { ok: false, errors, degraded };
  }
  return { ok: false, errors };
}

// Null means absent in Kubernetes; managedFields are server bookkeeping nobody downstream reads.
function normalize(v: unknown, depth = 0): unknown {
  if (depth > 64) return undefined;
  if (Array.isArray(v)) return v.map((x) => normalize(x, depth + 1));
  if (typeof v !== 'object' || v === null) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    if (x === null || x === undefined || k === '__proto__' || k === 'managedFields') continue;
    out[k] = normalize(x, depth + 1);
  }
  return out;
}
