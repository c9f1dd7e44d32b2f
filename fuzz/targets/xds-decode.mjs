// Fuzz target: xDS resource decoding (xds/resources.ts decodeAddress, xds/authorization.ts
// decodeAuthorization, xds/config-objects.ts decodeConfigObject). Any bytes give a resource or
// the coded XDS_INVALID_RESOURCE error (the client NACKs it and keeps the last good state); any
// other throw is a finding, and so is a decoded resource that cannot be encoded again.
import { isAmbitError } from '../../dist/common/errors.js';
import { decodeAddress, encodeAddress } from '../../dist/xds/resources.js';
import { decodeAuthorization, encodeAuthorization } from '../../dist/xds/authorization.js';
import { decodeConfigObject, encodeConfigObject } from '../../dist/xds/config-objects.js';

const DECODERS = [
  ['demo/echo.demo.svc.cluster.local', decodeAddress, encodeAddress],
  ['demo/p', decodeAuthorization, encodeAuthorization],
  ['AuthorizationPolicy/demo/p', decodeConfigObject, encodeConfigObject],
];

export function fuzz(data) {
  const buf = Buffer.from(data);
  const [name, decode, encode] = DECODERS[(buf[0] ?? 0) % DECODERS.length];
  let value;
  try {
    value = decode(name, buf.subarray(1));
  } catch (err) {
    if (isAmbitError(err, 'XDS_INVALID_RESOURCE')) return;
    throw err;
  }
  encode(value);
}

export const seeds = [
  Buffer.concat([
    Buffer.from([1]),
    encodeAuthorization({
      name: 'p',
      namespace: 'demo',
      scope: 'NAMESPACE',
      action: 'DENY',
      rules: [
        {
          clauses: [
            {
              matches: [{ principals: [{ exact: 'cluster.local/ns/demo/sa/a' }], destinationPorts: [8080] }],
            },
          ],
        },
      ],
    }),
  ]),
  Buffer.concat([
    Buffer.from([0]),
    encodeAddress({
      service: {
        name: 'echo',
        namespace: 'demo',
        hostname: 'echo.demo.svc.cluster.local',
        addresses: [{ network: '', address: '127.0.180.100' }],
        ports: [{ servicePort: 8080, targetPort: 8080, appProtocol: 'HTTP11' }],
        subjectAltNames: [],
      },
    }),
  ]),
  Buffer.concat([
    Buffer.from([2]),
    encodeConfigObject({
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'p', namespace: 'demo' },
      spec: { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] },
    }),
  ]),
];
