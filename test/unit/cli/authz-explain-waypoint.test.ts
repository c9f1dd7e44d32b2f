// `ambit authz explain` when the destination is served by a waypoint (Istio ambient): the L4
// check at each destination sees the WAYPOINT's identity, the L7 policies bound by targetRefs
// (Gateway, Service) are evaluated at the waypoint, selector-less policies are not enforced on
// the waypoint (istio pilot/pkg/model/policyattachment.go ShouldAttachPolicy: "waypoints never
// use selector") but at the destinations; every stage must allow. Offline, over real manifests
// through the control plane's index and the waypoint's own compiler and evaluator.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { explain, offlineView } from '../../../src/cli/authz.js';
import {
  demoService,
  serviceAuthorizationPolicy,
  waypointGateway,
} from '../../support/waypoint-manifests.js';

const WAYPOINT_ID = 'spiffe://cluster.local/ns/demo/sa/waypoint';
const pod = (name: string, ip: string, app: string) => `
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: demo, labels: {app: ${app}}}
spec: {nodeName: node-1, serviceAccountName: ${app}}
status: {podIP: ${ip}}
`;
const BASE = [
  'apiVersion: v1\nkind: Namespace\nmetadata: {name: demo, labels: {istio.io/dataplane-mode: ambient}}\n',
  'apiVersion: v1\nkind: Namespace\nmetadata: {name: istio-system}\n',
  'apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\nstatus: {addresses: [{type: InternalIP, address: 127.0.230.1}]}\n',
  waypointGateway('127.0.230.200'),
  pod('sleep', '127.0.231.10', 'sleep'),
  pod('intruder', '127.0.231.11', 'intruder'),
  pod('echo', '127.0.231.12', 'echo'),
  pod('direct', '127.0.231.13', 'direct'),
  demoService('echo', '127.0.230.100', { app: 'echo' }, '[{name: http, port: 8080}]', true),
  demoService('direct', '127.0.230.101', { app: 'direct' }, '[{name: http, port: 8080}]', false),
  // At the waypoint: sleep may GET /public/*.
  serviceAuthorizationPolicy(
    'echo-l7',
    'echo',
    'ALLOW',
    ` [{from: [{source: {principals: ["cluster.local/ns/demo/sa/sleep"]}}], to: [{operation: {methods: ["GET"], paths: ["/public/*"]}}]}]`,
  ),
];

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
async function view(...extra: string[]) {
  const dir = await mkdtemp(path.join(tmpdir(), 'ambit-explain-wp-'));
  dirs.push(dir);
  await writeFile(path.join(dir, 'mesh.yaml'), [...BASE, ...extra].join('---\n'));
  return offlineView(dir);
}

describe('authz explain through a waypoint', () => {
  it('shows the waypoint stages, and the destination sees the waypoint identity', async () => {
    const out = explain(await view(), 'demo/sleep', 'echo.demo:8080', { path: '/public/a' });
    expect(out.waypoint?.l7).toMatchObject({ allow: true, policy: 'demo/echo-l7', ruleIndex: 0 });
    expect(out.allowed).toEqual([true]);
    expect(out.text).toContain('── waypoint demo/waypoint  127.0.230.200');
    expect(out.text).toContain('ALLOW  demo/echo-l7  (targets echo.demo.svc.cluster.local, 1 rules)');
    expect(out.text).toContain(
      `3. L4 at each destination, from the waypoint (${WAYPOINT_ID}, 127.0.230.200)`,
    );
    expect(out.text).toMatch(/── demo\/echo {2}127\.0\.231\.12:8080/);
    expect(out.text).toContain('✔ ALLOWED  the waypoint and the destination both allow');
  });

  it.each([
    ['another method', 'demo/sleep', { method: 'POST', path: '/public/a' }],
    ['another path', 'demo/sleep', { path: '/admin' }],
    ['another client', 'demo/intruder', { path: '/public/a' }],
  ])('the waypoint refuses %s at L7', async (_why, from, request) => {
    const out = explain(await view(), from, 'echo.demo:8080', request);
    expect(out.waypoint?.l7?.allow).toBe(false);
    expect(out.decisions.map((d) => d.allow)).toEqual([true]); // the node proxy alone would allow
    expect(out.allowed).toEqual([false]);
    expect(out.text).toContain('✘ DENIED  refused by the waypoint (L7): no ALLOW policy matched');
  });

  it('--tcp reads the HTTP-only ALLOW rule as at TCP: it matches no connection', async () => {
    const out = explain(await view(), 'demo/sleep', 'echo.demo:8080', { tcp: true });
    expect(out.waypoint?.l7?.allow).toBe(false);
    expect(out.text).toContain('as TCP connection');
  });

  it('an L4 ALLOW for the client principal on the destination refuses the waypoint', async () => {
    const onlySleep = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo-only-sleep, namespace: demo}
spec:
  selector: {matchLabels: {app: echo}}
  rules: [{from: [{source: {principals: ["cluster.local/ns/demo/sa/sleep"]}}]}]
`;
    const out = explain(await view(onlySleep), 'demo/sleep', 'echo.demo:8080', { path: '/public/a' });
    expect(out.waypoint?.l7?.allow).toBe(true);
    expect(out.decisions.map((d) => d.allow)).toEqual([false]);
    expect(out.allowed).toEqual([false]);
    expect(out.text).toContain("the waypoint allows it, the destination's node proxy refuses the waypoint");
  });

  it('…and one for the waypoint principal admits it (the pattern Istio recommends)', async () => {
    const onlyWaypoint = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo-only-waypoint, namespace: demo}
spec:
  selector: {matchLabels: {app: echo}}
  rules: [{from: [{source: {principals: ["cluster.local/ns/demo/sa/waypoint"]}}]}]
`;
    const out = explain(await view(onlyWaypoint), 'demo/sleep', 'echo.demo:8080', { path: '/public/a' });
    expect(out.allowed).toEqual([true]);
  });

  it('a root-namespace allow-nothing is not enforced on the waypoint, but at the destination', async () => {
    const allowNothing =
      'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-nothing, namespace: istio-system}\nspec: {}\n';
    const out = explain(await view(allowNothing), 'demo/sleep', 'echo.demo:8080', { path: '/public/a' });
    expect(out.waypoint?.inbound.allow).toBe(true);
    expect(out.waypoint?.l7?.allow).toBe(true);
    expect(out.decisions.map((d) => d.allow)).toEqual([false]);
    expect(out.decisions[0]?.reason).toMatch(/istio-system\/allow-nothing|no ALLOW/);
    expect(out.allowed).toEqual([false]);
  });

  it('a CUSTOM policy that matches leaves the verdict to its provider', async () => {
    const custom = serviceAuthorizationPolicy('echo-ext', 'echo', 'ALLOW', ' [{}]').replace(
      'action: ALLOW',
      'action: CUSTOM\n  provider: {name: ext}',
    );
    const out = explain(await view(custom), 'demo/sleep', 'echo.demo:8080', { path: '/public/a' });
    expect(out.waypoint?.custom).toEqual(['demo/echo-ext (provider ext)']);
    expect(out.allowed).toEqual([undefined]);
    expect(out.text).toContain('? DEPENDS');
  });

  it('a destination without a waypoint is explained as before: one L4 stage, the client as source', async () => {
    const out = explain(await view(), 'demo/sleep', 'direct.demo:8080');
    expect(out.waypoint).toBeUndefined();
    expect(out.allowed).toEqual([true]);
    expect(out.text).not.toContain('── waypoint');
  });
});
