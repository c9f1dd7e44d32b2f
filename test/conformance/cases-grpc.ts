// Expectations of the suite's two GRPCRoute mesh tests (the MESH-GRPC profile), written from
// gateway-api conformance/tests/mesh/grpcroute-*.go at 4564255a as data (case-types.ts). The
// client calls the echo's unary Echo method on echo:7070; metadata are the request headers.
import type { MeshCase, MeshTest } from './case-types.js';

const grpcCase = (
  name: string,
  from: 'echo-v1' | 'echo-v2',
  testCase: string,
  sent: Record<string, string>,
  seen: Record<string, string>,
  backend: string,
  absent?: string[],
): MeshCase => ({
  name,
  from,
  request: { protocol: 'grpc', host: 'echo:7070', headers: { 'x-test-case': testCase, ...sent } },
  seen: { headers: { 'x-test-case': testCase, ...seen }, absent },
  backend,
});

export const GRPC_TESTS: MeshTest[] = [
  {
    // grpcroute-request-header-modifier.go
    shortName: 'MeshGRPCRouteRequestHeaderModifier',
    description: 'RequestHeaderModifier on GRPCRoute rules selected by a header match',
    features: ['Mesh', 'GRPCRoute'],
    manifests: ['grpcroute-request-header-modifier.yaml'],
    cases: [
      grpcCase(
        'set overwrites a header',
        'echo-v1',
        'set',
        {
          'some-other-header': 'this-header-should-be-set',
          'x-header-set': 'this-value-should-be-overwritten',
        },
        { 'some-other-header': 'this-header-should-be-set', 'x-header-set': 'set-overwrites-values' },
        'echo-v1',
      ),
      grpcCase(
        'add appends to a header',
        'echo-v1',
        'add',
        { 'x-header-add': 'this-value-should-be-appended' },
        { 'x-header-add': 'this-value-should-be-appended,add-appends-values' },
        'echo-v1',
      ),
      grpcCase(
        'remove drops a header',
        'echo-v1',
        'remove',
        { 'x-header-remove': 'this-should-be-removed' },
        {},
        'echo-v1',
        ['x-header-remove'],
      ),
      grpcCase(
        'set, add and remove together',
        'echo-v2',
        'multi',
        {
          'x-header-set-2': 'set-header-2',
          'x-header-add-2': 'add-header-2',
          'x-header-remove-2': 'should-be-removed-2',
        },
        {
          'x-header-set-1': 'header-set-1',
          'x-header-set-2': 'header-set-2',
          'x-header-add-1': 'header-add-1',
          'x-header-add-2': 'add-header-2,header-add-2',
        },
        'echo-v2',
        ['x-header-remove-1', 'x-header-remove-2'],
      ),
    ],
  },
  {
    // grpcroute-weight.go
    shortName: 'MeshGRPCRouteWeight',
    description: 'weighted GRPCRoute backendRefs share the calls 70/30 (a weight-0 ref gets none)',
    features: ['Mesh', 'GRPCRoute'],
    manifests: ['grpcroute-weight.yaml'],
    cases: [{ name: 'Echo on echo:7070 answers OK', request: { protocol: 'grpc', host: 'echo:7070' } }],
    weight: { request: { protocol: 'grpc', host: 'echo:7070' }, weights: { 'echo-v1': 0.7, 'echo-v2': 0.3 } },
  },
];
