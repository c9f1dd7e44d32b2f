// Unknown-field detection, as the API server's strict field validation (`fieldValidation=Strict`,
// what `kubectl apply --validate=strict` asks for) would report it: a key the upstream API does
// not define is named in a warning — a misspelt `weigth: 50` or `metadata.lables` would otherwise
// be dropped without a word, and the weight or label selector the user meant lost. Warnings, not
// errors, on purpose: the object still loads, as the API server's default (`fieldValidation=Warn`,
// for clients that ask for nothing) warns and drops the field. kubectl's own default, strict,
// would refuse the object; refusing here would take a whole policy or route out of force for a
// typo in a field ambit may not even read.
//
// Every kind ambit reads from files is checked in full — `metadata` (ObjectMeta) of every kind,
// `spec` of the Istio and Gateway API kinds (known-fields-istio.ts, known-fields-gateway.ts),
// `spec` and `status` of the core kinds (known-fields-core.gen.ts, from client-node's models).
// What is a leaf there is unchecked on purpose: free maps (labels, annotations, header and port
// maps, Gateway listener `tls.options`), `google.protobuf.Struct`-like values, and the `status`
// of Istio and Gateway API objects (Istio's CRDs preserve unknown fields there; ambit never reads
// it). Objects from the API server never carry unknown fields (config/README.md).
import { CORE_MODELS } from './known-fields-core.gen.js';
import { GATEWAY_SPEC_FIELDS } from './known-fields-gateway.js';
import { ISTIO_SPEC_FIELDS } from './known-fields-istio.js';
import { MapOf, unknownFields, type FieldTree, type UnknownField } from './known-field-tree.js';

export { unknownFields, type FieldTree, type UnknownField } from './known-field-tree.js';

/** The spec trees by kind (Istio and Gateway API); core kinds are in `CORE_PARTS`. */
export const SPEC_FIELDS: Readonly<Record<string, FieldTree>> = {
  ...ISTIO_SPEC_FIELDS,
  ...GATEWAY_SPEC_FIELDS,
};

// The models of each core kind's spec and status. ConfigMap has neither (its `data` is a free
// map; its other top-level fields are checked by the loader).
const CORE_PARTS: Readonly<Record<string, { spec?: string; status?: string }>> = {
  Namespace: { spec: 'V1NamespaceSpec', status: 'V1NamespaceStatus' },
  Node: { spec: 'V1NodeSpec', status: 'V1NodeStatus' },
  Pod: { spec: 'V1PodSpec', status: 'V1PodStatus' },
  Service: { spec: 'V1ServiceSpec', status: 'V1ServiceStatus' },
  ConfigMap: {},
};

/**
 * The unknown fields of a manifest, by its kind: metadata, spec and (core kinds) status. The
 * top level itself is the loader's (an unknown top-level field is an error there). Kinds ambit
 * does not read get nothing.
 */
export function unknownObjectFields(kind: string, object: Record<string, unknown>): UnknownField[] {
  const core = Object.hasOwn(CORE_PARTS, kind) ? CORE_PARTS[kind] : undefined;
  const spec = Object.hasOwn(SPEC_FIELDS, kind) ? SPEC_FIELDS[kind] : undefined;
  if (!core && !spec) return [];
  const out = unknownFields(object.metadata, coreTree('V1ObjectMeta'), ['metadata']);
  if (spec) out.push(...unknownFields(object.spec, spec, ['spec']));
  if (core?.spec) out.push(...unknownFields(object.spec, coreTree(core.spec), ['spec']));
  if (core?.status) out.push(...unknownFields(object.status, coreTree(core.status), ['status']));
  return out;
}

/** The unknown fields of an Istio or Gateway API spec alone (none for other kinds). */
export function unknownSpecFields(kind: string, spec: unknown): UnknownField[] {
  const tree = Object.hasOwn(SPEC_FIELDS, kind) ? SPEC_FIELDS[kind] : undefined;
  return tree ? unknownFields(spec, tree, ['spec']) : [];
}

export function unknownFieldMessage(kind: string, u: UnknownField): string {
  const hint = u.suggestion ? `; did you mean ${u.suggestion}?` : '';
  return `unknown field "${u.field}" (not in ${kind}'s API): ignored${hint}`;
}

// Core trees are built on first use from the generated table; a model used in many places (an
// ObjectReference) is one shared tree. Built empty first and filled after, so a model that
// (indirectly) contains itself would still terminate.
const coreTrees = new Map<string, Record<string, FieldTree>>();

function coreTree(model: string): FieldTree {
  const built = coreTrees.get(model);
  if (built) return built;
  const fields = CORE_MODELS[model];
  if (fields === undefined) return true; // not in the table: not checked
  const tree: Record<string, FieldTree> = {};
  coreTrees.set(model, tree);
  for (const f of fields.split(' ')) {
    const [name, type] = f.split(':') as [string, string | undefined];
    if (type === undefined) tree[name] = true;
    else if (type.startsWith('[')) tree[name] = [coreTree(type.slice(1, -1))];
    else if (type.startsWith('{')) tree[name] = new MapOf(coreTree(type.slice(1, -1)));
    else tree[name] = coreTree(type);
  }
  return tree;
}
