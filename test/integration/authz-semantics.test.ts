// Issue 13, authorization divergences 1-3, through a real mesh (control plane, node proxies and
// a waypoint as processes, real HBONE) on 127.0.215.0/24:
//  1. a DENY whose `when` is HTTP-only beside an L4 `from` is a no-op at L4 (istiod's handleRule:
//     the `when` clause becomes an empty match that ztunnel skips), and the control plane says so
//     with istiod's UnsupportedValue message;
//  2. a root-namespace allow-nothing does not stop traffic reaching the waypoint (a waypoint is
//     not a captured workload); the destination's node proxy decides on the waypoint's identity;
//  3. L7 `hosts` compares the whole Host, port included (`name:*` takes any port).
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import http from 'node:http';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEcho } from '../../src/cli/echo.js';
import { SocksError } from '../../src/cli/socks-client.js';
import { TestMesh, closeServer, listen } from '../support/mesh.js';
import { demoService, serviceAuthorizationPolicy, waypointGateway } from '../support/waypoint-manifests.js';

const O = 215;
const ip = (n: number) => `127.0.${O}.${n}`;
const SLEEP = ip(10);
const ECHO_V1 = ip(11);
const API_VIP = ip(101);

// Service `api` (port 9090 on echo-v1) is bound to the waypoint.
const EXTRA = [
  waypointGateway(ip(200)),
  demoService('api', API_VIP, { app: 'echo', version: 'v1' }, '[{name: http, port: 9090}]', true),
].join('---\n');
const m = new TestMesh({ octet: O, extraManifests: EXTRA });
const servers: net.Server[] = [];

beforeAll(async () => {
  await m.start();
  servers.push(await startEcho({ host: ECHO_V1, port: 8080, pod: 'demo/echo-v1' }));
  servers.push(
    await listen(
      http.createServer((_req, res) => res.end('ok')),
      ECHO_V1,
      9090,
    ),
  );
  await m.waypointReady(30_000);
}, 60_000);

afterAll(async () => {
  await Promise.all(servers.map(closeServer));
  await m.stop();
});

/** The status of GET / from sleep to host:port with the given Host header; 'refused' when the mesh refuses. */
async function get(host: string, port: number, hostHeader?: string): Promise<number | 'refused'> {
  let socket: net.Socket;
  try {
    socket = await m.socks(SLEEP, host, port);
  } catch (err) {
    if (err instanceof SocksError) return 'refused';
    throw err;
  }
  return new Promise((resolve) => {
    const req = http.request(
      {
        host,
        port,
        path: '/',
        createConnection: () => socket,
        headers: { connection: 'close', ...(hostHeader ? { host: hostHeader } : {}) },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      },
    );
    req.on('error', () => resolve('refused'));
    req.end();
  });
}

/** Polls `fn` until it answers `want` (config arrives asynchronously), at most 6 s; returns the last answer. */
async function until<T>(want: T, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 6000;
  let last = await fn();
  while (last !== want && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 150));
    last = await fn();
  }
  return last;
}

/**
 * Asks `fn` repeatedly for 2.5 s (well past the config reaching every proxy) and returns the
 * first answer other than `want`, else `want`: for "this must not be refused" checks that would
 * otherwise pass before a policy arrives.
 */
async function steadily<T>(want: T, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 2500;
  while (Date.now() < deadline) {
    const got = await fn();
    if (got !== want) return got;
    await new Promise((r) => setTimeout(r, 150));
  }
  return want;
}

const write = (file: string, yaml: string) => writeFile(path.join(m.configDir, file), yaml);
const remove = (file: string) => rm(path.join(m.configDir, file), { force: true });

describe('issue 13 #1: istiod handleRule — an HTTP-only `when` beside an L4 `from` makes a DENY a no-op at L4', () => {
  it('sleep still reaches echo-v1 directly, and the control plane reports istiod’s UnsupportedValue text', async () => {
    const from = m.logs.length;
    await write(
      'deny-header.yaml',
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-header, namespace: demo}
spec:
  selector: {matchLabels: {app: echo}}
  action: DENY
  rules:
  - from: [{source: {namespaces: [demo]}}]
    when: [{key: 'request.headers[x-block]', values: ['1']}]
`,
    );
    const warn = await m.waitForLog(
      (l) => l.component === 'controlplane' && String(l.rec.msg).includes('demo/deny-header'),
      5000,
      from,
    );
    expect(String(warn.rec.msg)).toContain(
      'ztunnel does not support HTTP attributes (found: request.headers[x-block])',
    );
    expect(String(warn.rec.msg)).toContain('will have no effect');
    // Give the node proxies time to hold the policy, then check it did not deny.
    await m.waitForLog(
      (l) => l.component === 'node/node-1' && l.rec.msg === 'authorization policies updated',
      5000,
      from,
    );
    expect(await steadily(200, () => get(ECHO_V1, 8080))).toBe(200);
    await remove('deny-header.yaml');
  });

  it('the same rule with the L4 field beside an HTTP field in one source denies (stricter)', async () => {
    await write(
      'deny-mixed.yaml',
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-mixed, namespace: demo}
spec:
  selector: {matchLabels: {app: echo}}
  action: DENY
  rules:
  - from: [{source: {namespaces: [demo], requestPrincipals: ['*']}}]
`,
    );
    expect(await until('refused', () => get(ECHO_V1, 8080))).toBe('refused');
    await remove('deny-mixed.yaml');
    expect(await until(200, () => get(ECHO_V1, 8080))).toBe(200);
  });
});

describe('issue 13 #2: a root allow-nothing does not stop traffic reaching the waypoint', () => {
  it('sleep → api (waypoint) → echo-v1 is allowed when the destination allows the waypoint’s identity', async () => {
    await write(
      'root-allow-nothing.yaml',
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: istio-system}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-waypoint, namespace: demo}
spec:
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/demo/sa/waypoint]}}]
`,
    );
    // Direct traffic from sleep is refused by echo-v1's node proxy (sleep is not allowed) ...
    expect(await until('refused', () => get(ECHO_V1, 8080))).toBe('refused');
    // ... but through the waypoint it arrives: the waypoint does not apply them to its inbound.
    expect(await steadily(200, () => get(API_VIP, 9090, 'api.demo.svc.cluster.local:9090'))).toBe(200);
  });

  it('without the ALLOW for the waypoint, the destination node proxy refuses the waypoint: the request does not succeed', async () => {
    await write(
      'root-allow-nothing.yaml',
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: istio-system}
spec: {}
`,
    );
    const status = await until(503, () => get(API_VIP, 9090, 'api.demo.svc.cluster.local:9090'));
    expect(status).not.toBe(200);
    await remove('root-allow-nothing.yaml');
    expect(await until(200, () => get(ECHO_V1, 8080))).toBe(200);
  });
});

describe('issue 13 #3: L7 hosts compare the whole Host, port included (Istio authz host matcher)', () => {
  it('hosts [api.demo.svc.cluster.local] does not allow Host "…:9090"; "…:*" does', async () => {
    await write(
      'hosts.yaml',
      serviceAuthorizationPolicy(
        'hosts-exact',
        'api',
        'ALLOW',
        ' [{to: [{operation: {hosts: [api.demo.svc.cluster.local]}}]}]',
      ),
    );
    expect(await until(403, () => get(API_VIP, 9090, 'api.demo.svc.cluster.local:9090'))).toBe(403);
    expect(await get(API_VIP, 9090, 'api.demo.svc.cluster.local')).toBe(200);
    await write(
      'hosts.yaml',
      serviceAuthorizationPolicy(
        'hosts-exact',
        'api',
        'ALLOW',
        " [{to: [{operation: {hosts: ['api.demo.svc.cluster.local:*']}}]}]",
      ),
    );
    expect(await until(200, () => get(API_VIP, 9090, 'api.demo.svc.cluster.local:9090'))).toBe(200);
    await remove('hosts.yaml');
  });
});
