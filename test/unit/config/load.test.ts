import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isAmbitError } from '../../../src/common/errors.js';
import { loadDirectory, parseManifests } from '../../../src/config/load.js';
import { objectKey } from '../../../src/config/types.js';

const F = 'examples/quickstart/pods.yaml';
const keys = (text: string) => parseManifests(text, F).objects.map(objectKey);
const errors = (text: string) => parseManifests(text, F).errors.map(String);

const svc = (spec: string, name = 'web') =>
  `apiVersion: v1\nkind: Service\nmetadata:\n  name: ${name}\nspec:\n${spec}`;
const istio = (kind: string, spec: string, group = 'security.istio.io/v1') =>
  `apiVersion: ${group}\nkind: ${kind}\nmetadata:\n  name: p\nspec:\n${spec}`;
const gw = (kind: string, spec: string) => istio(kind, spec, 'gateway.networking.k8s.io/v1');
const net = (kind: string, spec: string) => istio(kind, spec, 'networking.istio.io/v1');

describe('parseManifests: each bad input gives an exact file:line: field: message', () => {
  it.each([
    ['a port out of range', svc('  ports:\n  - port: 0'), 'spec.ports[0].port: must be between 1 and 65535'],
    [
      'a quoted number as targetPort',
      svc('  ports:\n  - port: 80\n    targetPort: "8080"'),
      'spec.ports[0].targetPort: must be a port number or a port name (got "8080"; remove the quotes)',
    ],
    [
      'a lower-case protocol',
      svc('  ports:\n  - port: 80\n    protocol: tcp'),
      'spec.ports[0].protocol: must be one of TCP, UDP, SCTP (got the string "tcp"; did you mean TCP?)',
    ],
    [
      'a bad clusterIP',
      svc('  clusterIP: 10.0.0.256'),
      'spec.clusterIP: must be an IP address or "None" (got "10.0.0.256")',
    ],
    [
      'an unnamed second port',
      svc('  ports:\n  - {name: a, port: 80}\n  - {port: 81}'),
      'spec.ports[1].name: required when a Service has more than one port',
    ],
    [
      'a repeated port name',
      svc('  ports:\n  - {name: a, port: 80}\n  - {name: a, port: 81}'),
      'spec.ports[1]: duplicate port name "a", already used by ports[0]',
    ],
    [
      'an unquoted number label',
      svc('  selector:\n    version: 2'),
      'spec.selector.version: expected a string, got the number 2; quote it: "2"',
    ],
    [
      'a boolean annotation',
      'apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    sidecar: true\nspec: {}',
      'metadata.annotations.sidecar: expected a string, got true; quote it: "true"',
    ],
    [
      'an upper-case name',
      svc('  ports: []', 'Web'),
      'metadata.name: must be a DNS-1035 label: at most 63 lowercase letters, digits and \'-\', starting with a letter and ending with a letter or digit (got "Web")',
    ],
    [
      'a bad pod IP',
      'apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {}\nstatus: {podIP: 10.1.2}',
      'status.podIP: must be an IP address (got "10.1.2")',
    ],
    ['a Pod without spec', 'apiVersion: v1\nkind: Pod\nmetadata: {name: p}', 'spec: required'],
    ['a missing name', 'apiVersion: v1\nkind: Pod\nmetadata: {}\nspec: {}', 'metadata.name: required'],
    [
      'a label key with spaces',
      'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: n\n  labels: {"my label": x}',
      "metadata.labels[\"my label\"]: must be a label key: an optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' and '.' (got \"my label\")",
    ],
    [
      'a wrong apiVersion',
      'apiVersion: apps/v1\nkind: Pod\nmetadata: {name: p}\nspec: {}',
      'apiVersion: must be one of v1 (got the string "apps/v1")',
    ],
    [
      'a mis-indented spec field',
      'apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {}\nports: []',
      'ports: unknown field; a Service has only apiVersion, kind, metadata, spec and status at the top (is it indented under the wrong parent?)',
    ],
    [
      'a node address that is not an IP',
      'apiVersion: v1\nkind: Node\nmetadata: {name: n}\nstatus: {addresses: [{type: InternalIP, address: n1}]}',
      'status.addresses[0].address: must be an IP address for type InternalIP (got "n1")',
    ],
    [
      'a lower-case action',
      istio('AuthorizationPolicy', '  action: deny'),
      'spec.action: must be one of ALLOW, DENY, AUDIT, CUSTOM (got the string "deny"; did you mean DENY?)',
    ],
    [
      'a numeric operation port',
      istio('AuthorizationPolicy', '  rules:\n  - to:\n    - operation: {ports: [8080]}'),
      'spec.rules[0].to[0].operation.ports[0]: expected a string, got the number 8080; quote it: "8080"',
    ],
    [
      'a from without source',
      istio('AuthorizationPolicy', '  rules:\n  - from: [{}]'),
      'spec.rules[0].from[0].source: required',
    ],
    [
      'a bad ipBlock',
      istio('AuthorizationPolicy', '  rules:\n  - from: [{source: {ipBlocks: [10.0.0.0/33]}}]'),
      'spec.rules[0].from[0].source.ipBlocks[0]: must be an IP address or a CIDR block such as 10.0.0.0/8 (got "10.0.0.0/33")',
    ],
    [
      'a condition without values',
      istio('AuthorizationPolicy', '  rules:\n  - when: [{key: source.namespace}]'),
      'spec.rules[0].when[0].values: at least one of values or notValues must be set for source.namespace',
    ],
    [
      'an unknown condition key',
      istio('AuthorizationPolicy', '  rules:\n  - when: [{key: source.name, values: [a]}]'),
      'spec.rules[0].when[0].key: unknown attribute "source.name"; see istio.io/docs/reference/config/security/conditions',
    ],
    [
      'CUSTOM without provider',
      istio('AuthorizationPolicy', '  action: CUSTOM'),
      'spec.provider: required when action is CUSTOM',
    ],
    [
      'selector with targetRefs',
      istio(
        'AuthorizationPolicy',
        '  selector: {matchLabels: {app: a}}\n  targetRefs: [{kind: Service, name: a}]',
      ),
      'spec.targetRefs: cannot be used together with selector',
    ],
    [
      'a Gateway targetRef without group',
      istio('AuthorizationPolicy', '  targetRef: {kind: Gateway, name: w}'),
      'spec.targetRef.kind: must refer to a Service, a ServiceEntry (group networking.istio.io) or a Gateway or GatewayClass (group gateway.networking.k8s.io); got group "" kind "Gateway"',
    ],
    [
      'a bad mTLS mode',
      istio('PeerAuthentication', '  mtls: {mode: ON}'),
      'spec.mtls.mode: must be one of UNSET, DISABLE, PERMISSIVE, STRICT (got the string "ON")',
    ],
    [
      'a port-level key that is not a port',
      istio(
        'PeerAuthentication',
        '  selector: {matchLabels: {app: a}}\n  portLevelMtls:\n    http: {mode: DISABLE}',
      ),
      'spec.portLevelMtls.http: must be a port number between 1 and 65535 (got "http")',
    ],
    [
      'port-level mTLS without selector',
      istio('PeerAuthentication', '  portLevelMtls:\n    8080: {mode: DISABLE}'),
      'spec.portLevelMtls: needs a selector: namespace-wide and mesh-wide policies cannot set port-level mTLS',
    ],
    [
      'hosts as a single string',
      net('VirtualService', '  hosts: reviews'),
      'spec.hosts: expected a list, got the string "reviews"; write a list: ["reviews"]',
    ],
    [
      'an http route with nothing to do',
      net('VirtualService', '  http:\n  - match: [{uri: {prefix: /}}]'),
      'spec.http[0].route: required: an http route needs one of route, redirect, directResponse or delegate',
    ],
    [
      'a bad timeout',
      net('VirtualService', '  http:\n  - route: [{destination: {host: r}}]\n    timeout: 5 seconds'),
      'spec.http[0].timeout: must be a duration such as 500ms, 10s or 1h30m (got "5 seconds")',
    ],
    [
      'a DestinationRule without host',
      net('DestinationRule', '  subsets: [{name: v1}]'),
      'spec.host: required',
    ],
    [
      'a repeated subset name',
      net('DestinationRule', '  host: r\n  subsets: [{name: v1}, {name: v1}]'),
      'spec.subsets[1]: duplicate subset name "v1", already used by subsets[0]',
    ],
    [
      'a bad resolution',
      net('ServiceEntry', '  hosts: [a.com]\n  resolution: dns'),
      'spec.resolution: must be one of NONE, STATIC, DNS, DNS_ROUND_ROBIN (got the string "dns"; did you mean DNS?)',
    ],
    [
      'a wildcard ServiceEntry host',
      net('ServiceEntry', '  hosts: ["*"]'),
      'spec.hosts[0]: cannot be the wildcard "*"',
    ],
    [
      'a ServiceEntry port without name',
      net('ServiceEntry', '  hosts: [a.com]\n  ports: [{number: 443}]'),
      'spec.ports[0].name: required',
    ],
    [
      'a WorkloadEntry without address',
      net('WorkloadEntry', '  labels: {app: a}'),
      'spec.address: required (unless network is set)',
    ],
    [
      'a Gateway without class',
      gw('Gateway', '  listeners: [{name: mesh, port: 15008, protocol: HBONE}]'),
      'spec.gatewayClassName: required',
    ],
    [
      'a Gateway without listeners',
      gw('Gateway', '  gatewayClassName: istio-waypoint\n  listeners: []'),
      'spec.listeners: must not be empty',
    ],
    [
      'a bad path type',
      gw('HTTPRoute', '  rules:\n  - matches: [{path: {type: Prefix, value: /}}]'),
      'spec.rules[0].matches[0].path.type: must be one of Exact, PathPrefix, RegularExpression (got the string "Prefix")',
    ],
    [
      'a relative path',
      gw('HTTPRoute', '  rules:\n  - matches: [{path: {value: api}}]'),
      'spec.rules[0].matches[0].path.value: must be an absolute path starting with \'/\' (got "api")',
    ],
    [
      'a Service backend without port',
      gw('HTTPRoute', '  rules:\n  - backendRefs: [{name: web}]'),
      'spec.rules[0].backendRefs[0].port: required for a Service backend',
    ],
    [
      'a weight out of range',
      gw('HTTPRoute', '  rules:\n  - backendRefs: [{name: web, port: 80, weight: 2000000}]'),
      'spec.rules[0].backendRefs[0].weight: must be at most 1000000 (got the number 2000000)',
    ],
    [
      'a parentRef without name',
      gw('HTTPRoute', '  parentRefs: [{kind: Service}]'),
      'spec.parentRefs[0].name: required',
    ],
    [
      'an empty gRPC method match',
      gw('GRPCRoute', '  rules:\n  - matches: [{method: {type: Exact}}]'),
      'spec.rules[0].matches[0].method.service: set service, method or both',
    ],
  ])('%s', (_what, text, expected) => {
    // The line of each is checked where it is the subject (below); here, field and message.
    const [e] = parseManifests(text, F).errors;
    expect(e?.line).toBeGreaterThan(0);
    expect(errors(text)).toEqual([`${F}:${e?.line}: ${expected}`]);
  });

  it.each([
    [
      'a YAML syntax error, with its line',
      'apiVersion: v1\nkind: Pod\nmetadata:\n  name: [p\nspec: {}',
      `${F}:5:1: YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ]`,
    ],
    ['a duplicate key', 'kind: Pod\nkind: Service', `${F}:2:1: YAML syntax error: Map keys must be unique`],
    [
      'a list document',
      '- a\n- b',
      `${F}:1: (document): expected a mapping with apiVersion, kind and metadata, got a list`,
    ],
    [
      'a scalar document',
      '42',
      `${F}:1: (document): expected a mapping with apiVersion, kind and metadata, got the number 42`,
    ],
    ['a missing kind', 'apiVersion: v1\nmetadata: {name: a}', `${F}:1: kind: required`],
    ['a numeric kind', 'apiVersion: v1\nkind: 7', `${F}:2: kind: expected a kind name, got the number 7`],
    ['a missing apiVersion', 'kind: Pod\nmetadata: {name: a}', `${F}:1: apiVersion: required`],
    [
      'a misspelt kind',
      'apiVersion: v1\nkind: Servce\nmetadata: {name: a}',
      `${F}:2: kind: unsupported kind "Servce"; did you mean Service? (ambit reads Namespace, Node, Pod, Service, EndpointSlice, ServiceAccount, PeerAuthentication, AuthorizationPolicy, RequestAuthentication, VirtualService, DestinationRule, ServiceEntry, WorkloadEntry, Gateway, HTTPRoute, GRPCRoute, ConfigMap)`,
    ],
    ['a self-referencing alias', 'a: &x\n  b: *x', `${F}:1: (document): nested more than 64 levels deep`],
  ])('reports %s', (_what, text, expected) => {
    expect(errors(text)).toEqual([expected]);
  });

  it('records the line, kind, name and namespace of a validation error', () => {
    const [e] = parseManifests(svc('  ports:\n  - port: 0'), F).errors;
    expect(e).toMatchObject({
      code: 'CONFIG_INVALID',
      document: 1,
      path: 'spec.ports[0].port',
      line: 7,
      kind: 'Service',
      name: 'web',
      namespace: 'default',
    });
  });

  it('caps the number of errors reported for one document', () => {
    const labels = Array.from({ length: 15 }, (_, i) => `    l${i}: ${i}`).join('\n');
    const out = errors(`apiVersion: v1\nkind: Namespace\nmetadata:\n  name: n\n  labels:\n${labels}`);
    expect(out).toHaveLength(11);
    expect(out[10]).toBe(`${F}:1: (document): 5 more problems not shown`);
  });
});

describe('parseManifests: documents', () => {
  it('loads the other documents of a file when one is invalid', () => {
    const text = [
      svc('  ports: [{port: 80}]', 'a'),
      svc('  ports: [{port: 0}]', 'b'),
      svc('  ports: [{port: 81}]', 'c'),
    ].join('\n---\n');
    const out = parseManifests(text, F);
    expect(out.objects.map(objectKey)).toEqual(['Service/default/a', 'Service/default/c']);
    expect(out.errors.map(String)).toEqual([`${F}:13: spec.ports[0].port: must be between 1 and 65535`]);
    expect(out.errors[0]?.document).toBe(2);
  });

  it('numbers documents as the file does, counting empty ones, and skips the empty ones', () => {
    const text = `---\n# only a comment\n---\n${svc('  ports: [{port: 0}]')}\n---\n`;
    expect(errors(text)).toEqual([`${F}:9: spec.ports[0].port: must be between 1 and 65535`]);
    expect(parseManifests(text, F).errors[0]?.document).toBe(2);
  });

  it('loads the documents after a YAML syntax error', () => {
    const text = `${svc('  ports: [{port: 80}]', 'a')}\n---\nfoo: [1, 2\nbar: 3\n---\n${svc('  ports: [{port: 80}]', 'c')}`;
    const out = parseManifests(text, F);
    expect(out.objects.map(objectKey)).toEqual(['Service/default/a', 'Service/default/c']);
    expect(out.errors.map((e) => [e.document, e.code, e.line])).toEqual([[2, 'CONFIG_YAML', 9]]);
  });

  it('defaults the namespace of namespaced objects', () => {
    expect(
      keys(
        `${svc('  ports: []')}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop, namespace: x}`,
      ),
    ).toEqual(['Service/default/web', 'Namespace/shop']);
  });

  it('expands a List, and a PodList whose items carry no kind', () => {
    const text = `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: shop}
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: shop}
  spec: {ports: [{port: 0}]}
---
apiVersion: v1
kind: PodList
items:
- metadata: {name: a}
  spec: {}
- metadata: {name: b, namespace: shop}
  spec: {}`;
    const out = parseManifests(text, F);
    expect(out.objects.map(objectKey)).toEqual(['Namespace/shop', 'Pod/default/a', 'Pod/shop/b']);
    expect(out.errors.map(String)).toEqual([
      `${F}:10: items[1].spec.ports[0].port: must be between 1 and 65535`,
    ]);
  });

  it('reports a duplicate at the second place, naming the first; the first wins', () => {
    const text = `${svc('  ports: [{port: 80}]')}\n---\n${svc('  ports: [{port: 81}]')}`;
    const out = parseManifests(text, F);
    expect(out.objects).toHaveLength(1);
    expect((out.objects[0] as { spec: { ports: { port: number }[] } }).spec.ports[0]?.port).toBe(80);
    expect(out.errors.map(String)).toEqual([
      `${F}:8: metadata.name: Service default/web is already defined at ${F}:1; the first definition is used and this one is ignored`,
    ]);
  });

  it('warns about kinds ambit does not read, without failing the file', () => {
    const text =
      'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}';
    const out = parseManifests(text, F);
    expect(out.errors).toEqual([]);
    expect(out.warnings.map(String)).toEqual([
      `${F}:2: kind: Deployment (apps/v1) is not used by ambit; ignored`,
      `${F}:6: kind: Gateway (networking.istio.io/v1) is not used by ambit (waypoints are gateway.networking.k8s.io Gateways); ignored`,
    ]);
  });

  it('treats null values as absent, as Kubernetes does', () => {
    const out = parseManifests(
      'apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\nspec:\n  nodeName:\n',
      F,
    );
    expect(out.errors).toEqual([]);
    expect(out.objects[0]).toEqual({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'p', namespace: 'default' },
      spec: {},
    });
  });

  it('reads JSON', () => {
    expect(keys(JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'a' } }))).toEqual([
      'Namespace/a',
    ]);
  });
});

describe('parseManifests: hostile input', () => {
  it('does not throw on random bytes', () => {
    let seed = 42;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 200; i++) {
      const bytes = Buffer.from(
        Array.from({ length: 1 + Math.floor(rand() * 400) }, () => Math.floor(rand() * 256)),
      );
      expect(() => parseManifests(bytes.toString('utf8'), F)).not.toThrow();
      expect(() => parseManifests(bytes.toString('latin1'), F)).not.toThrow();
    }
  });

  it.each([
    ['null', 'null'],
    ['~', '~'],
    ['a number', '3.14'],
    ['a boolean', 'true'],
    ['a string', '"kind: Pod"'],
    ['binary', 'apiVersion: v1\nkind: Pod\nmetadata: {name: !!binary aGVsbG8=}\nspec: {}'],
    ['numbers for strings', 'apiVersion: 1\nkind: Pod'],
    ['deep nesting', `${'['.repeat(5000)}${']'.repeat(5000)}`],
    [
      'an alias bomb',
      `a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]`,
    ],
    [
      'a __proto__ key',
      'apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {__proto__: {polluted: true}}',
    ],
  ])('does not throw on %s', (_what, text) => {
    expect(() => parseManifests(text, F)).not.toThrow();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('loads a huge document', () => {
    const ports = Array.from({ length: 5000 }, (_, i) => `  - {name: p${i}, port: ${(i % 60000) + 1}}`).join(
      '\n',
    );
    const out = parseManifests(svc(`  ports:\n${ports}`), F);
    expect(out.errors).toEqual([]);
    expect(out.objects).toHaveLength(1);
  });
});

describe('loadDirectory', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ambit-load-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads yaml, yml and json files recursively in sorted order, skipping dot-files', async () => {
    const ns = (name: string) => `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${name}}\n`;
    await mkdir(path.join(dir, 'sub'));
    await mkdir(path.join(dir, '.hidden'));
    await writeFile(path.join(dir, 'b.yaml'), ns('b'));
    await writeFile(path.join(dir, 'a.yml'), ns('a'));
    await writeFile(
      path.join(dir, 'sub', 'c.json'),
      JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'c' } }),
    );
    await writeFile(path.join(dir, '.hidden', 'd.yaml'), ns('d'));
    await writeFile(path.join(dir, '.swap.yaml'), ns('e'));
    await writeFile(path.join(dir, 'notes.txt'), ns('f'));
    await symlink(path.join(dir, 'b.yaml'), path.join(dir, 'link.yaml'));
    const out = await loadDirectory(dir);
    expect(out.objects.map(objectKey)).toEqual(['Namespace/a', 'Namespace/b', 'Namespace/c']);
    // The symlink repeats b.yaml: a duplicate, reported at the later file.
    expect(out.errors.map(String)).toEqual([
      `${path.join(dir, 'link.yaml')}:1: metadata.name: Namespace b is already defined at ${path.join(dir, 'b.yaml')}:1; the first definition is used and this one is ignored`,
    ]);
  });

  it('keeps going past a file that is not YAML at all', async () => {
    await writeFile(path.join(dir, 'a.yaml'), Buffer.from([0xff, 0xfe, 0x00, 0x5b, 0x7b, 0x3a]));
    await writeFile(path.join(dir, 'b.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n');
    const out = await loadDirectory(dir);
    expect(out.objects.map(objectKey)).toEqual(['Namespace/b']);
    expect(out.errors.length).toBeGreaterThan(0);
    expect(out.errors.every((e) => e.file === path.join(dir, 'a.yaml'))).toBe(true);
  });

  it('rejects a folder that does not exist with CONFIG_INVALID', async () => {
    const err = await loadDirectory(path.join(dir, 'missing')).catch((e: unknown) => e);
    expect(isAmbitError(err, 'CONFIG_INVALID')).toBe(true);
  });
});
