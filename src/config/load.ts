// Manifest text → validated objects. Multi-document YAML (JSON is YAML too), `kind: List`
// expansion, namespace defaulting, duplicate detection. A bad document becomes a ConfigError and
// is skipped; the documents around it still load, so one typo never hides the whole folder.
import { isMap, isNode, isScalar, LineCounter, parseAllDocuments, type Document, type YAMLError } from 'yaml';
import { errorMessage } from '../common/errors.js';
import {
  ConfigError,
  describeValue,
  formatPath,
  issueMessage,
  quote,
  type ConfigErrorCode,
} from './config-error.js';
import { unknownFieldMessage, unknownObjectFields } from './known-fields.js';
import { degradeAuthorizationPolicy, stripDegradedMark, type ValidationIssue } from './authz-degrade.js';
import { listManifestFiles, readManifestFile } from './manifest-files.js';
import { isSupportedKind, KIND_SCHEMAS, SUPPORTED_KINDS } from './schema.js';
import { isMeshConfigMap } from './mesh-config.js';
import { CLUSTER_SCOPED_KINDS, objectKey, type KubeResource, type ObjectKey } from './types.js';

/** An object together with where it was defined. */
export interface LoadedObject {
  object: KubeResource;
  key: ObjectKey;
  file: string;
  document: number;
  /** Index in the `items` of a List document. */
  item?: number;
  line?: number;
  /** Set when the object failed validation and stands in degraded (authz-degrade.ts): the effects. */
  degraded?: string[];
}

export interface ManifestParse {
  file: string;
  /** How many YAML documents the file holds, empty ones included. */
  documents: number;
  objects: KubeResource[];
  entries: LoadedObject[];
  errors: ConfigError[];
  /** Documents that are fine but that ambit does not read (Deployments, ConfigMaps, ...). */
  warnings: ConfigError[];
}

export type DirectoryLoad = Omit<ManifestParse, 'file' | 'documents'>;

// Limits that keep a hostile or broken document from exhausting the stack or the log.
const MAX_DEPTH = 64;
const MAX_ISSUES_PER_DOCUMENT = 10;
const TOP_LEVEL_FIELDS = new Set(['apiVersion', 'kind', 'metadata', 'spec', 'status']);
const CONFIG_MAP_FIELDS = new Set(['data', 'binaryData', 'immutable']);
/** name/namespace of a raw document, for the mesh ConfigMap test (anything else reads as absent). */
function metaOf(value: Record<string, unknown>): { name: string; namespace?: string } {
  const m = value.metadata as { name?: unknown; namespace?: unknown } | undefined;
  return {
    name: typeof m?.name === 'string' ? m.name : '',
    ...(typeof m?.namespace === 'string' ? { namespace: m.namespace } : {}),
  };
}

// Kinds often found next to mesh config. They are reported as warnings, not errors: the file is
// fine, ambit just has no use for them. Keyed "group/Kind" ("" is the core group).
const IGNORED_KINDS = new Set(
  [
    [
      '',
      'ConfigMap Secret ServiceAccount Endpoints PersistentVolume PersistentVolumeClaim LimitRange ResourceQuota Event ReplicationController',
    ],
    ['apps', 'Deployment StatefulSet DaemonSet ReplicaSet'],
    ['batch', 'Job CronJob'],
    ['autoscaling', 'HorizontalPodAutoscaler'],
    ['policy', 'PodDisruptionBudget'],
    ['discovery.k8s.io', 'EndpointSlice'],
    ['networking.k8s.io', 'NetworkPolicy Ingress IngressClass'],
    ['rbac.authorization.k8s.io', 'Role ClusterRole RoleBinding ClusterRoleBinding'],
    ['apiextensions.k8s.io', 'CustomResourceDefinition'],
    ['kustomize.config.k8s.io', 'Kustomization'],
    ['networking.istio.io', 'Gateway Sidecar EnvoyFilter WorkloadGroup ProxyConfig'],
    ['telemetry.istio.io', 'Telemetry'],
    ['extensions.istio.io', 'WasmPlugin'],
    ['gateway.networking.k8s.io', 'GatewayClass ReferenceGrant TLSRoute TCPRoute UDPRoute BackendTLSPolicy'],
  ].flatMap(([group, kinds]) => kinds!.split(' ').map((k) => `${group}/${k}`)),
);

class TooDeep extends Error {}

/** Parses one file's text. Never throws: every problem comes back as a ConfigError. */
export function parseManifests(text: string, file: string): ManifestParse {
  const out: ManifestParse = { file, documents: 0, objects: [], entries: [], errors: [], warnings: [] };
  const lineCounter = new LineCounter();
  let docs: Document.Parsed[];
  try {
    docs = Array.from(parseAllDocuments(text, { lineCounter, merge: true }));
  } catch (err) {
    out.errors.push(
      new ConfigError({
        code: 'CONFIG_YAML',
        file,
        document: 0,
        message: `cannot parse YAML: ${errorMessage(err)}`,
      }),
    );
    return out;
  }
  out.documents = docs.length;
  docs.forEach((doc, i) => new DocumentParser(doc, i + 1, file, lineCounter, out).run());
  const { kept, errors } = dedupe(out.entries);
  out.entries = [...kept.values()];
  out.objects = out.entries.map((e) => e.object);
  out.errors.push(...errors);
  return out;
}

class DocumentParser {
  constructor(
    private readonly doc: Document.Parsed,
    private readonly document: number,
    private readonly file: string,
    private readonly lines: LineCounter,
    private readonly out: ManifestParse,
  ) {}

  run(): void {
    const { doc, document, file } = this;
    const syntax = doc.errors[0];
    if (syntax) {
      this.out.errors.push(fromYaml(syntax, file, document, 'YAML syntax error: '));
      return;
    }
    for (const w of doc.warnings) this.out.warnings.push(fromYaml(w, file, document, ''));
    let value: unknown;
    try {
      value = normalize(doc.toJS({ maxAliasCount: 100 }), 0);
    } catch (err) {
      const message =
        err instanceof TooDeep
          ? `nested more than ${MAX_DEPTH} levels deep`
          : `cannot read document: ${errorMessage(err)}`;
      this.error({ message });
      return;
    }
    if (value === null || value === undefined) return; // an empty document, e.g. after a trailing "---"
    this.object(value, [], false);
  }

  private object(value: unknown, at: PropertyKey[], inList: boolean): void {
    if (!isPlainObject(value)) {
      this.error({
        at,
        message: `expected a mapping with apiVersion, kind and metadata, got ${describeValue(value)}`,
      });
      return;
    }
    const { kind, apiVersion } = value;
    if (typeof kind !== 'string' || kind === '') {
      this.error({
        at: [...at, 'kind'],
        message: kind === undefined ? 'required' : `expected a kind name, got ${describeValue(kind)}`,
      });
      return;
    }
    if (typeof apiVersion !== 'string') {
      this.error({
        at: [...at, 'apiVersion'],
        message:
          apiVersion === undefined ? 'required' : `expected a string, got ${describeValue(apiVersion)}`,
      });
      return;
    }
    if (kind === 'List' || (kind.endsWith('List') && Array.isArray(value.items))) {
      if (inList) this.error({ at: [...at, 'kind'], message: 'a List inside a List is not supported' });
      else this.list(value, kind, apiVersion);
      return;
    }
    const who = identity(value, kind);
    const group = apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.indexOf('/')) : '';
    // Istio's mesh ConfigMap (istio-system/istio) is read (mesh-config.ts); other ConfigMaps are not.
    if (IGNORED_KINDS.has(`${group}/${kind}`) && !isMeshConfigMap({ kind, metadata: metaOf(value) })) {
      const why =
        group === 'networking.istio.io' && kind === 'Gateway'
          ? ' (waypoints are gateway.networking.k8s.io Gateways)'
          : '';
      this.out.warnings.push(
        this.make({
          at: [...at, 'kind'],
          message: `${kind} (${apiVersion}) is not used by ambit${why}; ignored`,
          who,
        }),
      );
      return;
    }
    if (!isSupportedKind(kind)) {
      this.error({ at: [...at, 'kind'], message: unsupportedKind(kind), who });
      return;
    }
    const before = this.out.errors.length;
    const issues: ValidationIssue[] = [];
    for (const field of Object.keys(value)) {
      if (!TOP_LEVEL_FIELDS.has(field) && !(kind === 'ConfigMap' && CONFIG_MAP_FIELDS.has(field))) {
        issues.push({ path: [field], message: 'unknown top-level field' });
        this.error({
          at: [...at, field],
          message: `unknown field; a ${kind} has only apiVersion, kind, metadata, spec and status at the top (is it indented under the wrong parent?)`,
          who,
        });
      }
    }
    const result = KIND_SCHEMAS[kind].safeParse(value, { reportInput: true, error: issueMessage });
    if (!result.success) {
      const issues = result.error.issues;
      for (const iss of issues.slice(0, MAX_ISSUES_PER_DOCUMENT))
        this.error({ at: [...at, ...iss.path], message: iss.message, who });
      if (issues.length > MAX_ISSUES_PER_DOCUMENT) {
        this.error({
          at,
          message: `${issues.length - MAX_ISSUES_PER_DOCUMENT} more problems not shown`,
          who,
        });
      }
    }
    if (!result.success || this.out.errors.length > before) {
      if (kind === 'AuthorizationPolicy') {
        if (!result.success)
          issues.push(...result.error.issues.map((i) => ({ path: i.path, message: i.message })));
        this.degraded(value, issues, at);
      }
      return;
    }
    if (result.data.kind === 'AuthorizationPolicy') stripDegradedMark(result.data);
    this.push(result.data, at);
    // The API server's field validation reports these; a typo (`metadata.lables`, `weigth`) would
    // otherwise be dropped silently. Capped like errors, so a document of junk keys cannot flood
    // the log or the ctl analyze report.
    const unknown = unknownObjectFields(kind, value);
    for (const u of unknown.slice(0, MAX_ISSUES_PER_DOCUMENT)) {
      this.out.warnings.push(
        this.make({
          at: [...at, ...u.path],
          message: unknownFieldMessage(kind, u),
          who,
          code: 'CONFIG_UNKNOWN_FIELD',
          line: this.keyLineOf([...at, ...u.path]),
        }),
      );
    }
    if (unknown.length > MAX_ISSUES_PER_DOCUMENT) {
      this.out.warnings.push(
        this.make({
          at,
          message: `${unknown.length - MAX_ISSUES_PER_DOCUMENT} more unknown fields not shown (not in ${kind}'s API; ignored)`,
          who,
          code: 'CONFIG_UNKNOWN_FIELD',
        }),
      );
    }
  }

  // A policy that fails validation still counts, with the fail-closed meaning of its unreadable
  // parts (issue 12, hole 3); its errors above are reported as for any other document.
  private degraded(value: Record<string, unknown>, issues: ValidationIssue[], at: PropertyKey[]): void {
    const d = degradeAuthorizationPolicy(value, issues);
    if (d) this.push(d.object, at, d.effects);
  }

  private push(object: KubeResource, at: PropertyKey[], degraded?: string[]): void {
    const entry: LoadedObject = {
      object,
      key: objectKey(object),
      file: this.file,
      document: this.document,
    };
    if (degraded) entry.degraded = degraded;
    if (typeof at[1] === 'number') entry.item = at[1];
    const line = this.lineOf(at);
    if (line !== undefined) entry.line = line;
    this.out.entries.push(entry);
  }

  // `kubectl get -o yaml` writes kind: List; the API's PodList and friends leave kind off the items.
  private list(value: Record<string, unknown>, kind: string, apiVersion: string): void {
    const items = value.items;
    if (!Array.isArray(items)) {
      this.error({
        at: ['items'],
        message: items === undefined ? 'required' : `expected a list, got ${describeValue(items)}`,
      });
      return;
    }
    const itemKind = kind === 'List' ? undefined : kind.slice(0, -'List'.length);
    items.forEach((item, i) => {
      const filled = itemKind && isPlainObject(item) ? { apiVersion, kind: itemKind, ...item } : item;
      this.object(filled, ['items', i], true);
    });
  }

  private error(e: { at?: PropertyKey[]; message: string; who?: Identity }): void {
    this.out.errors.push(this.make(e));
  }

  private make({
    at = [],
    message,
    who,
    code,
    line,
  }: {
    at?: PropertyKey[];
    message: string;
    who?: Identity;
    code?: ConfigErrorCode;
    line?: number;
  }): ConfigError {
    return new ConfigError({
      ...(code ? { code } : {}),
      file: this.file,
      document: this.document,
      path: formatPath(at),
      message,
      line: line ?? this.lineOf(at),
      ...who,
    });
  }

  /** The line of the key that ends `at` (`htp:` whose list starts on the next line), if written. */
  private keyLineOf(at: PropertyKey[]): number | undefined {
    const parent = at.length === 0 ? undefined : this.doc.getIn(at.slice(0, -1) as unknown[], true);
    if (!isMap(parent)) return undefined;
    const last = at[at.length - 1];
    const pair = parent.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === last);
    const key = pair?.key;
    return isNode(key) && key.range ? this.lines.linePos(key.range[0]).line : undefined;
  }

  /** The line of the deepest node on `at` that exists in the text. */
  private lineOf(at: PropertyKey[]): number | undefined {
    for (let n = at.length; n >= 0; n--) {
      const node = n === 0 ? this.doc.contents : this.doc.getIn(at.slice(0, n) as unknown[], true);
      if (isNode(node) && node.range) return this.lines.linePos(node.range[0]).line;
    }
    return undefined;
  }
}

interface Identity {
  kind?: string;
  name?: string;
  namespace?: string;
}

/** Kind, name and namespace as far as the document gives them, for errors and the last-good rule. */
function identity(value: Record<string, unknown>, kind: string): Identity {
  const meta = isPlainObject(value.metadata) ? value.metadata : {};
  const who: Identity = { kind };
  if (typeof meta.name === 'string') who.name = meta.name;
  if (isSupportedKind(kind) && !CLUSTER_SCOPED_KINDS.has(kind)) {
    who.namespace = typeof meta.namespace === 'string' ? meta.namespace : 'default';
  }
  return who;
}

function unsupportedKind(kind: string): string {
  const near = SUPPORTED_KINDS.find(
    (k) => k.toLowerCase() === kind.toLowerCase() || editDistance(k, kind) <= 2,
  );
  const hint = near ? `; did you mean ${near}?` : '';
  return `unsupported kind ${quote(kind)}${hint} (ambit reads ${SUPPORTED_KINDS.join(', ')})`;
}

/** Keeps the first definition of each object; each later one becomes an error naming both places. */
export function dedupe(entries: readonly LoadedObject[]): {
  kept: Map<ObjectKey, LoadedObject>;
  errors: ConfigError[];
} {
  const kept = new Map<ObjectKey, LoadedObject>();
  const errors: ConfigError[] = [];
  for (const e of entries) {
    const first = kept.get(e.key);
    if (!first) {
      kept.set(e.key, e);
      continue;
    }
    const { kind, metadata } = e.object;
    const ref = metadata.namespace ? `${metadata.namespace}/${metadata.name}` : metadata.name;
    errors.push(
      new ConfigError({
        file: e.file,
        document: e.document,
        path: e.item === undefined ? 'metadata.name' : `items[${e.item}].metadata.name`,
        line: e.line,
        message: `${kind} ${ref} is already defined at ${first.line !== undefined ? `${first.file}:${first.line}` : `${first.file} (document ${first.document})`}; the first definition is used and this one is ignored`,
        kind,
        name: metadata.name,
        namespace: metadata.namespace,
      }),
    );
  }
  return { kept, errors };
}

/** Combines the files of a folder in order: duplicates across files, errors sorted by place. */
export function mergeParses(parses: readonly ManifestParse[]): DirectoryLoad {
  const { kept, errors: duplicates } = dedupe(parses.flatMap((p) => p.entries));
  const order = new Map(parses.map((p, i) => [p.file, i]));
  const byPlace = (a: ConfigError, b: ConfigError) =>
    (order.get(a.file) ?? 0) - (order.get(b.file) ?? 0) || a.document - b.document;
  const entries = [...kept.values()];
  return {
    objects: entries.map((e) => e.object),
    entries,
    errors: [...parses.flatMap((p) => p.errors), ...duplicates].sort(byPlace),
    warnings: parses.flatMap((p) => p.warnings),
  };
}

/** Reads a whole folder once: every manifest file below `dir`, in sorted order. */
export async function loadDirectory(dir: string): Promise<DirectoryLoad> {
  const { files } = await listManifestFiles(dir);
  const parses: ManifestParse[] = [];
  for (const file of files) {
    const read = await readManifestFile(file);
    if (read !== undefined)
      parses.push(typeof read === 'string' ? parseManifests(read, file) : unreadable(file, read));
  }
  return mergeParses(parses);
}

/** The parse result of a file that could not be read at all. */
export function unreadable(file: string, error: ConfigError): ManifestParse {
  return { file, documents: 0, objects: [], entries: [], errors: [error], warnings: [] };
}

function fromYaml(e: YAMLError, file: string, document: number, prefix: string): ConfigError {
  // yaml appends " at line L, column C:" and a code excerpt; the position goes in its own fields.
  const message = (e.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
  const pos = e.linePos?.[0];
  return new ConfigError({
    code: 'CONFIG_YAML',
    file,
    document,
    message: `${prefix}${message}`,
    line: pos?.line,
    column: pos?.col,
  });
}

// Drops null-valued keys, as the Kubernetes API server does for optional fields (so an empty
// `labels:` is simply absent), and bounds the depth so later recursion cannot overflow the stack.
function normalize(v: unknown, depth: number): unknown {
  if (depth > MAX_DEPTH) throw new TooDeep();
  if (Array.isArray(v)) return v.map((x) => normalize(x, depth + 1));
  if (!isPlainObject(v)) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    if (x !== null && k !== '__proto__') out[k] = normalize(x, depth + 1);
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
