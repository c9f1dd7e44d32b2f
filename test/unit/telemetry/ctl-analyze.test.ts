import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadDirectory } from '../../../src/config/load.js';
import { analyze, fqdn } from '../../../src/cli/ctl-analyze.js';
import { formatTable } from '../../../src/cli/ctl-table.js';

const BAD = `
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: missing-wp}}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v1, namespace: shop, labels: {app: reviews, version: v1}}
spec: {nodeName: n1}
status: {podIP: 127.0.9.10}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{name: web, port: 8080}, {name: http-api, port: 80}, {name: grpc, port: 90}, {name: x, port: 70, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: shop}
spec:
  selector: {app: ratings}
  ports: [{port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
    - route:
        - destination: {host: reviews, subset: v1}
        - destination: {host: reviews, subset: v3}
        - destination: {host: ratings, subset: v1}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews.shop.svc.cluster.local
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: nobody, namespace: shop}
spec:
  selector: {matchLabels: {app: ghost}}
  action: ALLOW
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-only, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  action: ALLOW
`;

describe('ctl analyze', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ambit-analyze-'));
    await writeFile(path.join(dir, 'bad.yaml'), BAD);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('warns about the mistakes users make, naming object, file and reason', async () => {
    const load = await loadDirectory(dir);
    expect(load.errors.map(String)).toEqual([]);
    const msgs = analyze(load.entries);
    const text = msgs.map((m) => `${m.object}: ${m.message}`);
    // VirtualService subsets
    expect(
      text.some(
        (t) =>
          t.includes('VirtualService shop/reviews') &&
          t.includes('subset "v3"') &&
          t.includes('defines only v1, v2'),
      ),
    ).toBe(true);
    expect(
      text.some(
        (t) =>
          t.includes('subset "v1"') &&
          t.includes('no DestinationRule for host ratings.shop.svc.cluster.local'),
      ),
    ).toBe(true);
    expect(text.filter((t) => t.includes('reviews subset "v1"'))).toEqual([]);
    // use-waypoint naming a missing Gateway
    expect(
      text.some(
        (t) => t.startsWith('Namespace shop') && t.includes('Gateway shop/missing-wp, which does not exist'),
      ),
    ).toBe(true);
    // Service ports: unnamed and protocol-less names; http-api, grpc and appProtocol are fine
    expect(msgs.filter((m) => m.code === 'IST0118').map((m) => m.message.split(' ')[1])).toEqual([
      '8080',
      '9080',
    ]);
    // AuthorizationPolicy selecting nothing (and not the one that selects reviews)
    expect(
      text.some((t) => t.startsWith('AuthorizationPolicy shop/nobody') && t.includes('matches no pod')),
    ).toBe(true);
    expect(text.some((t) => t.startsWith('AuthorizationPolicy shop/reviews-only'))).toBe(false);
    expect(msgs.every((m) => m.file?.endsWith('bad.yaml') && (m.document ?? 0) > 0)).toBe(true);
  });

  it('lists a policy that failed validation with the field and its fail-closed effect (issue 12)', async () => {
    const { parseManifests } = await import('../../../src/config/load.js');
    const load = parseManifests(
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo-nobody, namespace: demo}
spec:
  selector: {matchLabels: {app: echo}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/demo/sa/nobody]}}]
    to: [{operation: {ports: ['http']}}]
`,
      'p.yaml',
    );
    const msgs = analyze(load.entries).filter((m) => m.code === 'AMBIT_POLICY_DEGRADED');
    expect(msgs).toEqual([
      expect.objectContaining({
        level: 'Error',
        object: 'AuthorizationPolicy demo/echo-nobody',
        file: 'p.yaml',
      }),
    ]);
    expect(msgs[0]!.message).toMatch(
      /rule 0 dropped \(spec\.rules\[0\]\.to\[0\]\.operation\.ports\[0\]: must be a port number .*"http"\)\); ALLOW now has no rules: it denies every request to app=echo in namespace demo/,
    );
  });

  it('expands short hosts the way Istio does', () => {
    expect(fqdn('reviews', 'shop')).toBe('reviews.shop.svc.cluster.local');
    expect(fqdn('reviews.other.svc', 'shop')).toBe('reviews.other.svc.cluster.local');
    expect(fqdn('example.com', 'shop')).toBe('example.com');
    expect(fqdn('api.example.com', 'shop')).toBe('api.example.com');
  });

  it('prints aligned tables', () => {
    expect(
      formatTable(
        ['A', 'BB'],
        [
          ['xyz', '1'],
          ['q', '22'],
        ],
      ),
    ).toBe('A    BB\nxyz  1\nq    22');
  });
});
