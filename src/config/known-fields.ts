// Unknown-field detection, as kubectl's strict field validation (`--validate=strict`, the API
// server's `fieldValidation=Strict`) would report it: a key the upstream API does not define is
// named in a warning — a misspelt `weigth: 50` would otherwise be dropped without a word and the
// weight the user meant lost. Warnings, not errors: the object still loads, as with kubectl's
// default `--validate=warn`.
//
// Each tree lists the fields of an upstream message (field names in their JSON form); a subtree
// that is not listed is not checked, so only what is listed here can ever be reported.
// VirtualService: istio/api networking/v1alpha3/virtual_service.proto (VirtualService, HTTPRoute,
// HTTPRouteDestination, RouteDestination, Destination, PortSelector, Headers, TCPRoute, TLSRoute).

/** `true` = a leaf (any value); an object = a mapping with exactly these keys; `[tree]` = a list of them. */
export type FieldTree = true | { readonly [field: string]: FieldTree } | readonly [FieldTree];

const headerOps: FieldTree = { set: true, add: true, remove: true };
const headers: FieldTree = { request: headerOps, response: headerOps };
const destination: FieldTree = { host: true, subset: true, port: { number: true } };
const routeDestination: FieldTree = { destination, weight: true };

const VIRTUAL_SERVICE: FieldTree = {
  hosts: true,
  gateways: true,
  exportTo: true,
  http: [
    {
      name: true,
      match: true,
      route: [{ destination, weight: true, headers }],
      redirect: true,
      directResponse: true,
      delegate: true,
      rewrite: true,
      timeout: true,
      retries: true,
      fault: true,
      mirror: destination,
      mirrors: true,
      mirrorPercent: true,
      mirrorPercentage: true,
      corsPolicy: true,
      headers,
    },
  ],
  tcp: [{ match: true, route: [routeDestination] }],
  tls: [{ match: true, route: [routeDestination] }],
};

// Gateway API: kubernetes-sigs/gateway-api apis/v1 httproute_types.go, grpcroute_types.go and
// shared_types.go (ParentReference, BackendRef = BackendObjectReference + weight).
const parentRef: FieldTree = {
  group: true,
  kind: true,
  namespace: true,
  name: true,
  sectionName: true,
  port: true,
};
const backendRef: FieldTree = {
  group: true,
  kind: true,
  name: true,
  namespace: true,
  port: true,
  weight: true,
  filters: true,
};
const routeSpec = (rule: Record<string, FieldTree>): FieldTree => ({
  parentRefs: [parentRef],
  hostnames: true,
  rules: [rule],
});
const HTTP_ROUTE = routeSpec({
  name: true,
  matches: true,
  filters: true,
  backendRefs: [backendRef],
  timeouts: true,
  retry: true,
  sessionPersistence: true,
});
const GRPC_ROUTE = routeSpec({
  name: true,
  matches: true,
  filters: true,
  backendRefs: [backendRef],
  sessionPersistence: true,
});

/** The spec trees by kind; kinds not listed are not checked. */
export const SPEC_FIELDS: Readonly<Record<string, FieldTree>> = {
  VirtualService: VIRTUAL_SERVICE,
  HTTPRoute: HTTP_ROUTE,
  GRPCRoute: GRPC_ROUTE,
};

export interface UnknownField {
  /** Path from the spec's parent, e.g. `['spec', 'http', 0, 'route', 0, 'weigth']`. */
  path: PropertyKey[];
  field: string;
  /** The known field it is closest to, when it looks like a typo of one. */
  suggestion?: string;
}

/** Every key in `value` that `tree` does not define, depth first in document order. */
export function unknownFields(value: unknown, tree: FieldTree, at: PropertyKey[] = []): UnknownField[] {
  if (tree === true || value === null || typeof value !== 'object') return [];
  const out: UnknownField[] = [];
  if (Array.isArray(tree)) {
    if (Array.isArray(value)) value.forEach((v, i) => out.push(...unknownFields(v, tree[0], [...at, i])));
    return out;
  }
  if (Array.isArray(value)) return out;
  const known = tree as Record<string, FieldTree>;
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    const sub = Object.hasOwn(known, key) ? known[key] : undefined;
    if (sub === undefined) {
      const suggestion = closest(key, Object.keys(known));
      out.push({ path: [...at, key], field: key, ...(suggestion ? { suggestion } : {}) });
    } else out.push(...unknownFields(v, sub, [...at, key]));
  }
  return out;
}

/** The unknown fields of a manifest's spec, by its kind (none for kinds without a tree). */
export function unknownSpecFields(kind: string, spec: unknown): UnknownField[] {
  const tree = Object.hasOwn(SPEC_FIELDS, kind) ? SPEC_FIELDS[kind] : undefined;
  return tree ? unknownFields(spec, tree, ['spec']) : [];
}

export function unknownFieldMessage(kind: string, u: UnknownField): string {
  const hint = u.suggestion ? `; did you mean ${u.suggestion}?` : '';
  return `unknown field "${u.field}" (not in ${kind}'s API): ignored${hint}`;
}

/** A known name within edit distance 2 (a swap counts as one), case-insensitively. */
function closest(word: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const k of known) {
    const d = distance(word.toLowerCase(), k.toLowerCase());
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best;
}

// Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps.
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [
    i,
    ...Array<number>(b.length).fill(0),
  ]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}
