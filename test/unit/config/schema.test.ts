import { describe, expect, it } from 'vitest';
import { issueMessage } from '../../../src/config/config-error.js';
import { KIND_SCHEMAS, podSchema, serviceSchema } from '../../../src/config/schema.js';
import type { Kind, Pod, Service } from '../../../src/config/types.js';

const meta = (name: string) => ({ name, namespace: 'shop' });

/** One realistic, valid manifest per kind. */
const VALID: Record<Kind, Record<string, unknown>> = {
  Namespace: {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient' } },
  },
  Node: {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: 'node-1.example' },
    status: {
      addresses: [
        { type: 'InternalIP', address: '10.0.0.1' },
        { type: 'Hostname', address: 'node-1' },
      ],
    },
  },
  Pod: {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      ...meta('web-7d9f'),
      labels: { app: 'web', version: 'v1' },
      annotations: { 'ambit.dev/command': 'node server.js' },
    },
    spec: {
      nodeName: 'node-1',
      serviceAccountName: 'web',
      containers: [
        { name: 'web', image: 'web:1', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] },
      ],
    },
    status: { podIP: '10.244.0.5', podIPs: [{ ip: '10.244.0.5' }, { ip: 'fd00::5' }], phase: 'Running' },
  },
  Service: {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { ...meta('web'), labels: { 'istio.io/use-waypoint': 'waypoint' } },
    spec: {
      clusterIP: '10.96.0.10',
      selector: { app: 'web' },
      ports: [
        { name: 'http', port: 80, targetPort: 8080, appProtocol: 'http' },
        { name: 'grpc', port: 9090, targetPort: 'grpc-port', protocol: 'TCP' },
      ],
    },
  },
  PeerAuthentication: {
    apiVersion: 'security.istio.io/v1',
    kind: 'PeerAuthentication',
    metadata: meta('strict'),
    spec: {
      selector: { matchLabels: { app: 'web' } },
      mtls: { mode: 'STRICT' },
      portLevelMtls: { '9090': { mode: 'DISABLE' } },
    },
  },
  AuthorizationPolicy: {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: meta('allow-frontend'),
    spec: {
      targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'waypoint' }],
      action: 'ALLOW',
      rules: [
        {
          from: [{ source: { principals: ['cluster.local/ns/shop/sa/frontend'], ipBlocks: ['10.0.0.0/8'] } }],
          to: [{ operation: { methods: ['GET'], paths: ['/api/*'], ports: ['8080'] } }],
          when: [
            { key: 'request.headers[x-team]', values: ['checkout'] },
            { key: 'source.ip', notValues: ['10.1.2.3'] },
          ],
        },
      ],
    },
  },
  VirtualService: {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: meta('reviews'),
    spec: {
      hosts: ['reviews'],
      http: [
        {
          match: [{ uri: { prefix: '/v2' }, headers: { 'end-user': { exact: 'jason' } } }],
          route: [
            { destination: { host: 'reviews', subset: 'v2', port: { number: 9080 } }, weight: 90 },
            { destination: { host: 'reviews', subset: 'v1' }, weight: 10 },
          ],
          timeout: '1.5s',
          retries: { attempts: 3, perTryTimeout: '500ms' },
        },
      ],
      tcp: [{ match: [{ port: 27017 }], route: [{ destination: { host: 'mongo' } }] }],
    },
  },
  DestinationRule: {
    apiVersion: 'networking.istio.io/v1beta1',
    kind: 'DestinationRule',
    metadata: meta('reviews'),
    spec: {
      host: 'reviews.shop.svc.cluster.local',
      trafficPolicy: { loadBalancer: { simple: 'LEAST_REQUEST' }, tls: { mode: 'ISTIO_MUTUAL' } },
      subsets: [
        { name: 'v1', labels: { version: 'v1' } },
        { name: 'v2', labels: { version: 'v2' } },
      ],
    },
  },
  ServiceEntry: {
    apiVersion: 'networking.istio.io/v1alpha3',
    kind: 'ServiceEntry',
    metadata: meta('external-api'),
    spec: {
      hosts: ['api.example.com'],
      ports: [{ number: 443, name: 'https', protocol: 'TLS' }],
      location: 'MESH_EXTERNAL',
      resolution: 'DNS',
    },
  },
  WorkloadEntry: {
    apiVersion: 'networking.istio.io/v1',
    kind: 'WorkloadEntry',
    metadata: meta('vm-1'),
    spec: {
      address: '192.168.1.20',
      ports: { http: 8080 },
      labels: { app: 'legacy' },
      serviceAccount: 'legacy',
    },
  },
  Gateway: {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { ...meta('waypoint'), labels: { 'istio.io/waypoint-for': 'service' } },
    spec: {
      gatewayClassName: 'istio-waypoint',
      listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }],
    },
  },
  HTTPRoute: {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: meta('reviews'),
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'reviews', port: 9080 }],
      rules: [
        {
          matches: [
            {
              path: { type: 'PathPrefix', value: '/api' },
              headers: [{ name: 'x-canary', value: 'true' }],
              method: 'GET',
            },
          ],
          filters: [
            {
              type: 'RequestHeaderModifier',
              requestHeaderModifier: { add: [{ name: 'x-via', value: 'ambit' }] },
            },
          ],
          backendRefs: [
            { name: 'reviews-v1', port: 9080, weight: 90 },
            { name: 'reviews-v2', port: 9080, weight: 10 },
          ],
          timeouts: { request: '10s' },
        },
      ],
    },
  },
  GRPCRoute: {
    apiVersion: 'gateway.networking.k8s.io/v1alpha2',
    kind: 'GRPCRoute',
    metadata: meta('users'),
    spec: {
      parentRefs: [{ name: 'waypoint' }],
      rules: [
        {
          matches: [{ method: { service: 'acme.users.v1.Users', method: 'GetUser' } }],
          backendRefs: [{ name: 'users', port: 50051 }],
        },
      ],
    },
  },
};

function parse(kind: Kind, doc: unknown) {
  return KIND_SCHEMAS[kind].safeParse(doc, { reportInput: true, error: issueMessage });
}

describe('kind schemas', () => {
  it.each(Object.keys(VALID) as Kind[])('accepts a valid %s', (kind) => {
    const result = parse(kind, VALID[kind]);
    expect(result.error?.issues ?? []).toEqual([]);
    expect(result.data?.kind).toBe(kind);
  });

  it('keeps fields it does not know on Istio and Gateway API kinds', () => {
    const doc = structuredClone(VALID.AuthorizationPolicy) as { spec: Record<string, unknown> };
    doc.spec.futureField = { nested: [1, 2] };
    const out = parse('AuthorizationPolicy', doc);
    expect(out.data?.spec.futureField).toEqual({ nested: [1, 2] });
  });

  it('drops fields ambit does not read from core kinds', () => {
    const doc = structuredClone(VALID.Pod) as {
      spec: Record<string, unknown>;
      metadata: Record<string, unknown>;
    };
    doc.spec.volumes = [{ name: 'data' }];
    doc.metadata.creationTimestamp = '2024-01-01T00:00:00Z';
    const pod: Pod = podSchema.parse(doc);
    expect(pod.spec).not.toHaveProperty('volumes');
    // creationTimestamp is kept: it breaks precedence ties (config/precedence.ts, issue 13).
    expect(pod.metadata).toHaveProperty('creationTimestamp', '2024-01-01T00:00:00Z');
  });

  it('defaults the namespace of namespaced kinds and drops it from cluster-scoped ones', () => {
    const svc: Service = serviceSchema.parse({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web' },
      spec: {},
    });
    expect(svc.metadata.namespace).toBe('default');
    const ns = parse('Namespace', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: 'a', namespace: 'b' },
    });
    expect(ns.data?.metadata).toEqual({ name: 'a' });
  });

  it.each([
    ['PeerAuthentication', 'security.istio.io/v1beta1'],
    ['AuthorizationPolicy', 'security.istio.io/v1beta1'],
    ['VirtualService', 'networking.istio.io/v1alpha3'],
    ['DestinationRule', 'networking.istio.io/v1'],
    ['ServiceEntry', 'networking.istio.io/v1beta1'],
    ['WorkloadEntry', 'networking.istio.io/v1alpha3'],
    ['Gateway', 'gateway.networking.k8s.io/v1beta1'],
    ['HTTPRoute', 'gateway.networking.k8s.io/v1beta1'],
    ['GRPCRoute', 'gateway.networking.k8s.io/v1'],
  ] as [Kind, string][])('accepts %s at %s', (kind, apiVersion) => {
    expect(parse(kind, { ...VALID[kind], apiVersion }).success).toBe(true);
  });

  it.each([
    ['Pod', 'apps/v1'],
    ['AuthorizationPolicy', 'security.istio.io/v2'],
    ['HTTPRoute', 'gateway.networking.k8s.io/v1alpha2'],
    ['VirtualService', 'networking.k8s.io/v1'],
  ] as [Kind, string][])('rejects %s at %s', (kind, apiVersion) => {
    const out = parse(kind, { ...VALID[kind], apiVersion });
    expect(out.error?.issues.map((i) => i.path.join('.'))).toEqual(['apiVersion']);
  });

  it('lets an empty AuthorizationPolicy through, since it means "allow nothing"', () => {
    const out = parse('AuthorizationPolicy', {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'deny-all' },
    });
    expect(out.data?.spec).toEqual({});
  });

  it.each([
    [8080, true],
    ['http-alt', true],
    [0, false],
    [70000, false],
    ['8080', false],
    ['HTTP', false],
    ['a-very-long-port-name', false],
    [true, false],
  ])('targetPort %j valid=%s', (targetPort, ok) => {
    const svc = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web' },
      spec: { ports: [{ port: 80, targetPort }] },
    };
    expect(parse('Service', svc).success).toBe(ok);
  });

  it.each(['10.0.0.1', 'fd00::1', 'None', ''])('accepts clusterIP %j', (clusterIP) => {
    expect(
      parse('Service', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'w' }, spec: { clusterIP } })
        .success,
    ).toBe(true);
  });

  it('never throws, whatever the input', () => {
    const inputs: unknown[] = [
      null,
      undefined,
      0,
      'x',
      [],
      {},
      { spec: null },
      { metadata: [] },
      { metadata: { name: {} } },
      new Uint8Array(3),
    ];
    for (const kind of Object.keys(KIND_SCHEMAS) as Kind[]) {
      for (const input of inputs) expect(parse(kind, input).success).toBe(false);
    }
  });
});
