// Bad input at the two edges where config enters a process: xDS resources (src/xds/*: a node
// proxy or waypoint NACKs and keeps its last good state) and manifests (src/config/load.ts:
// every problem is a ConfigError, never a throw). Any bytes or text give a value or the coded
// error; a valid resource with bytes flipped gives the coded error or a value that encodes
// cleanly again (protobuf has no checksum: a flip can yield another valid message).
import { test, fc } from '@fast-check/vitest';
import { expect } from 'vitest';
import { isAmbitError } from '../../src/common/errors.js';
import { decodeAddress, encodeAddress, type Address } from '../../src/xds/resources.js';
import { decodeAuthorization, encodeAuthorization, type Authorization } from '../../src/xds/authorization.js';
import { decodeConfigObject, encodeConfigObject } from '../../src/xds/config-objects.js';
import { parseManifests } from '../../src/config/load.js';
import { ConfigError } from '../../src/config/config-error.js';
import { runs } from './runs.js';

function codedOrValue(f: () => unknown): unknown {
  try {
    return f();
  } catch (err) {
    if (!isAmbitError(err, 'XDS_INVALID_RESOURCE')) throw err;
    return undefined;
  }
}

const AUTHZ: Authorization = {
  name: 'p',
  namespace: 'demo',
  scope: 'NAMESPACE',
  action: 'DENY',
  rules: [
    {
      clauses: [
        {
          matches: [
            {
              principals: [{ exact: 'cluster.local/ns/demo/sa/a' }],
              sourceIps: [{ address: '127.0.180.0' as never, length: 24 }],
            },
          ],
        },
        { matches: [{ destinationPorts: [8080], notNamespaces: [{ prefix: 'x' }] }] },
      ],
    },
  ],
};
const ADDRESS: Address = {
  service: {
    name: 'echo',
    namespace: 'demo',
    hostname: 'echo.demo.svc.cluster.local',
    addresses: [{ network: '', address: '127.0.180.100' as never }],
    ports: [{ servicePort: 8080, targetPort: 8080, appProtocol: 'HTTP11' }],
    subjectAltNames: [],
  } as never,
};
const CONFIG = {
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name: 'p', namespace: 'demo' },
  spec: { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] },
};

const seeds = (): {
  name: string;
  bytes: Uint8Array;
  decode: (n: string, b: Uint8Array) => unknown;
  encode: (v: never) => Uint8Array;
}[] => [
  {
    name: 'demo/p',
    bytes: encodeAuthorization(AUTHZ),
    decode: decodeAuthorization,
    encode: encodeAuthorization as never,
  },
  {
    name: 'demo/echo.demo.svc.cluster.local',
    bytes: encodeAddress(ADDRESS),
    decode: decodeAddress,
    encode: encodeAddress as never,
  },
  {
    name: 'AuthorizationPolicy/demo/p',
    bytes: encodeConfigObject(CONFIG as never),
    decode: decodeConfigObject,
    encode: encodeConfigObject as never,
  },
];

test.prop([fc.uint8Array({ maxLength: 400 }), fc.constantFrom(0, 1, 2)], runs())(
  'xDS: any bytes decode to a resource or XDS_INVALID_RESOURCE, nothing else',
  (bytes, which) => {
    const s = seeds()[which]!;
    codedOrValue(() => s.decode(s.name, bytes));
  },
);

test.prop(
  [
    fc.constantFrom(0, 1, 2),
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
  ],
  runs(),
)(
  'xDS: a valid resource with bytes changed is refused with its code or decodes to something that re-encodes',
  (which, edits) => {
    const s = seeds()[which]!;
    const bytes = Buffer.from(s.bytes);
    for (const [at, v] of edits) bytes[at % bytes.length] = v;
    const value = codedOrValue(() => s.decode(s.name, bytes));
    if (value !== undefined) expect(() => s.encode(value as never)).not.toThrow();
  },
);

const yamlish = fc.oneof(
  fc.string({ maxLength: 300 }),
  fc
    .array(
      fc.oneof(
        fc.constantFrom(
          'apiVersion: v1',
          'kind: Pod',
          'kind: AuthorizationPolicy',
          'kind: Service',
          'metadata:',
          '  name: x',
          '  namespace: demo',
          'spec:',
          '  rules:',
          '  - from: [{source: {principals: [a]}}]',
          '  ports: [{port: 99999}]',
          '---',
          '&a [*a]',
          '<<: *a',
          '  selector: {matchLabels: {app: 1}}',
          'status: {podIP: 999.1.1.1}',
          '\t',
          '{',
          ']',
        ),
        fc.string({ maxLength: 20 }),
      ),
      { maxLength: 20 },
    )
    .map((lines) => lines.join('\n')),
);

test.prop([yamlish], runs(0.5))(
  'manifests: any text parses to objects and ConfigErrors, never a throw',
  (text) => {
    const r = parseManifests(text, 'fuzz.yaml');
    for (const e of r.errors) expect(e).toBeInstanceOf(ConfigError);
    for (const o of r.objects) expect(typeof (o as { kind?: unknown }).kind).toBe('string');
  },
);
