// Attacks through configuration (issue 12, hole 3): a malformed AuthorizationPolicy must never
// open what it was meant to close. Real control plane and node proxy processes on 127.0.140.0/24,
// real HBONE; the policies are written to the watched folder exactly as the issue gives them, and
// served by the fake API server for the Kubernetes source.
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type net from 'node:net';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpGetOver } from '../support/mesh-http.js';
import { startEcho } from '../../src/cli/echo.js';
import { SocksError } from '../../src/cli/socks-client.js';
import { TestMesh, closeServer, listen } from '../support/mesh.js';
import { SocksAgent } from '../support/mesh-http.js';
import { demoService, serviceAuthorizationPolicy, waypointGateway } from '../support/waypoint-manifests.js';
import { explain, offlineView } from '../../src/cli/authz.js';
import { loadDirectory } from '../../src/config/load.js';
import { analyze } from '../../src/cli/ctl-analyze.js';
import { KubeSource } from '../../src/config/kube-source.js';
import { AmbientIndex } from '../../src/controlplane/ambient-index.js';
import { decodeAuthorization } from '../../src/xds/authorization.js';
import { decodeConfigObject } from '../../src/xds/config-objects.js';
import { TYPE_AUTHORIZATION, TYPE_CONFIG_OBJECT } from '../../src/xds/proto.js';
import { FakeApiServer } from '../support/fake-apiserver.js';
import { captureLogger } from '../support/capture-logger.js';
import { clientFor, eventually, node, ns, pod, untilSnapshot } from '../support/kube.js';

const O = 140;
const ip = (n: number) => `127.0.${O}.${n}`;
const SLEEP = ip(10);
const ECHO_V1 = ip(11);
const ECHO_V2 = ip(12);

/** The policy, with the ports value as the only variable. */
const allowNobody = (name: string, ports: string) => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ${name}, namespace: demo}
spec:
  selector: {matchLabels: {app: echo}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/demo/sa/nobody]}}]
    to: [{operation: {ports: [${ports}]}}]
`;
const allowSleep = (ports: string) => allowNobody('echo-allow', ports).replace('sa/nobody', 'sa/sleep');
// A DENY of everyone outside namespace "demo" whose port list cannot be read.
const DENY_BAD_PORT = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-bad, namespace: demo}
spec:
  selector: {matchLabels: {app: echo}}
  action: DENY
  rules:
  - from: [{source: {notNamespaces: [demo]}}]
    to: [{operation: {ports: ['http']}}]
`;

// A waypoint and a Service `api` behind it (on echo-v1:9090), for the targetRefs case.
const EXTRA = [
  waypointGateway(ip(200)),
  demoService('api', ip(101), { app: 'echo', version: 'v1' }, '[{name: http, port: 9090}]', true),
].join('---\n');
const m = new TestMesh({ octet: O, extraManifests: EXTRA });
const servers: net.Server[] = [];
const apiReceived: string[] = [];

beforeAll(async () => {
  await m.start();
  servers.push(await startEcho({ host: ECHO_V1, port: 8080, pod: 'demo/echo-v1' }));
  servers.push(await startEcho({ host: ECHO_V2, port: 8080, pod: 'demo/echo-v2' }));
  const api = http.createServer((req, res) => {
    apiReceived.push(`${req.method} ${req.url}`);
    res.end('ok');
  });
  servers.push(await listen(api, ECHO_V1, 9090));
  await m.waypointReady(30_000);
}, 60_000);

afterAll(async () => {
  await Promise.all(servers.map(closeServer));
  await m.stop();
});

/** 200 when sleep reaches echo-v1 and echo-v2 through the mesh, 'denied' when the proxy refuses. */
async function sleepToEcho(): Promise<(number | 'denied')[]> {
  return Promise.all(
    [ECHO_V1, ECHO_V2].map(async (dst) => {
      try {
        return await httpGetOver(await m.socks(SLEEP, dst, 8080), dst, 8080);
      } catch (err) {
        if (err instanceof SocksError) return 'denied';
        throw err;
      }
    }),
  );
}

async function writePolicy(file: string, yaml: string): Promise<void> {
  const from = m.logs.length;
  await writeFile(path.join(m.configDir, file), yaml);
  for (const node of ['node/node-1', 'node/node-2'])
    await m.waitForLog(
      (l) => l.component === node && l.rec.msg === 'authorization policies updated',
      5000,
      from,
    );
}

async function removePolicy(file: string): Promise<void> {
  const from = m.logs.length;
  await rm(path.join(m.configDir, file));
  await m.waitForLog(
    (l) => l.component === 'node/node-2' && l.rec.msg === 'authorization policies updated',
    5000,
    from,
  );
}

describe('a malformed AuthorizationPolicy fails closed (issue 12, hole 3)', () => {
  it('before any policy, sleep reaches both echo pods', async () => {
    expect(await sleepToEcho()).toEqual([200, 200]);
  });

  it("the issue's ALLOW with ports: ['http'] denies app=echo, and the control plane names file and field", async () => {
    const from = m.logs.length;
    const attack = allowNobody('echo-nobody', "'http'");
    // The line of the unreadable value, as the control plane must name it (file:line).
    const portsLine = attack.split('\n').findIndex((l) => l.includes("'http'")) + 1;
    expect(portsLine).toBeGreaterThan(0);
    await writePolicy('attack.yaml', attack);
    expect(await sleepToEcho()).toEqual(['denied', 'denied']);
    const field = await m.waitForLog(
      (l) =>
        l.component === 'controlplane' &&
        String(l.rec.msg).includes('spec.rules[0].to[0].operation.ports[0]'),
      5000,
      from,
    );
    expect(String(field.rec.msg)).toContain(`attack.yaml:${portsLine}:`);
    const degraded = await m.waitForLog((l) => l.rec.code === 'CONFIG_POLICY_DEGRADED', 5000, from);
    expect(String(degraded.rec.msg)).toMatch(
      /rule 0 dropped .*denies every request to app=echo in namespace demo/,
    );
    await removePolicy('attack.yaml');
    expect(await sleepToEcho()).toEqual([200, 200]);
  });

  it("the same policy with ports: ['8080'] denies too (the control)", async () => {
    await writePolicy('control.yaml', allowNobody('echo-nobody', "'8080'"));
    expect(await sleepToEcho()).toEqual(['denied', 'denied']);
    await removePolicy('control.yaml');
  });

  it('an edit that breaks a good policy keeps the good version in force', async () => {
    await writePolicy('edit.yaml', allowSleep("'8080'"));
    expect(await sleepToEcho()).toEqual([200, 200]);
    const from = m.logs.length;
    await writeFile(path.join(m.configDir, 'edit.yaml'), allowSleep("'http'"));
    await m.waitForLog(
      (l) =>
        l.component === 'controlplane' &&
        String(l.rec.msg).includes('last good version of these objects stays in force'),
      5000,
      from,
    );
    // Still the good version: sleep allowed (a degraded one would deny it).
    expect(await sleepToEcho()).toEqual([200, 200]);
    await removePolicy('edit.yaml');
  });

  it('a DENY rule with an unreadable field matches everything: sleep is denied, not let through', async () => {
    await writePolicy('deny.yaml', DENY_BAD_PORT);
    // Skipping the rule (as istiod's builder does) would allow sleep: it is in namespace demo.
    expect(await sleepToEcho()).toEqual(['denied', 'denied']);
    await removePolicy('deny.yaml');
    expect(await sleepToEcho()).toEqual([200, 200]);
  });

  it('ambit ctl analyze and authz explain show the degraded policy and its effect', async () => {
    await writeFile(path.join(m.configDir, 'explain.yaml'), allowNobody('echo-nobody', "'http'"));
    try {
      const load = await loadDirectory(m.configDir);
      const msgs = analyze(load.entries).filter((x) => x.code === 'AMBIT_POLICY_DEGRADED');
      expect(msgs).toHaveLength(1);
      expect(msgs[0]).toMatchObject({ level: 'Error', object: 'AuthorizationPolicy demo/echo-nobody' });
      expect(msgs[0]!.message).toContain('rule 0 dropped (spec.rules[0].to[0].operation.ports[0]');
      const view = await offlineView(m.configDir);
      const out = explain(view, 'demo/sleep', `${ECHO_V1}:8080`);
      expect(out.decisions[0]!.allow).toBe(false);
      expect(out.text).toContain('failed validation; in force degraded (fail closed)');
    } finally {
      await rm(path.join(m.configDir, 'explain.yaml'));
    }
  });
});

describe('from the Kubernetes API (no validation webhook in front of the CRD)', () => {
  const policy = (spec: Record<string, unknown>, name = 'p') => ({
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name, namespace: 'demo' },
    spec,
  });
  const ATTACK = {
    selector: { matchLabels: { app: 'echo' } },
    action: 'ALLOW',
    rules: [
      {
        from: [{ source: { principals: ['cluster.local/ns/demo/sa/nobody'] } }],
        to: [{ operation: { ports: ['http'] } }],
      },
    ],
  };

  it('a new malformed ALLOW is in force with no rules, an edit of a good one keeps the good one, a waypoint gets the safe form', async () => {
    const api = await new FakeApiServer({ host: ip(141), bookmarkIntervalMs: 100 }).start();
    const { logger, lines } = captureLogger();
    const source = new KubeSource({
      client: clientFor(api, 1000),
      logger,
      backoff: { initialMs: 50, maxMs: 200 },
    });
    try {
      api.put(ns('demo'));
      api.put(node('node-1', ip(1)));
      api.put(pod('echo', 'demo', 'node-1', ip(11)));
      await source.start();
      api.put(policy(ATTACK));
      await untilSnapshot(source, (snap) => snap.objects.has('AuthorizationPolicy/demo/p'));
      const index = new AmbientIndex({});
      index.rebuild(source.snapshot());
      const wire = index.resources(TYPE_AUTHORIZATION).get('demo/p');
      expect(wire).toBeDefined();
      expect(decodeAuthorization('demo/p', wire!.bytes)).toMatchObject({ action: 'ALLOW', rules: [] });
      expect(
        lines.some((l) => l.code === 'CONFIG_POLICY_DEGRADED' && String(l.msg).includes('rule 0 dropped')),
      ).toBe(true);
      expect(source.errors().map(String).join()).toContain('AuthorizationPolicy demo/p');

      // A good version, then an edit that breaks it: the good one stays.
      const good = { ...ATTACK, rules: [{ to: [{ operation: { ports: ['8080'] } }] }] };
      api.put(policy(good));
      await untilSnapshot(source, (snap) => {
        const o = snap.objects.get('AuthorizationPolicy/demo/p') as
          { spec: { rules: unknown[] } } | undefined;
        return o?.spec.rules.length === 1;
      });
      api.put(policy(ATTACK));
      await eventually(() =>
        lines.some((l) => l.msg === 'invalid object; its last good version stays in force'),
      );
      const held = source.snapshot().objects.get('AuthorizationPolicy/demo/p') as { spec: unknown };
      expect(held.spec).toEqual(good);

      // A waypoint policy (targetRefs) with a DENY rule that cannot be read: the waypoint is sent
      // the match-everything rule, never the policy without it.
      api.put(
        policy(
          {
            targetRefs: [{ kind: 'Service', group: '', name: 'echo' }],
            action: 'DENY',
            rules: [{ to: [{ operation: { paths: ['/admin'], ports: ['http'] } }] }],
          },
          'wp-deny',
        ),
      );
      await untilSnapshot(source, (snap) => snap.objects.has('AuthorizationPolicy/demo/wp-deny'));
      index.rebuild(source.snapshot());
      const obj = [...index.resources(TYPE_CONFIG_OBJECT).entries()].find(([n]) => n.includes('wp-deny'));
      expect(obj).toBeDefined();
      const sent = decodeConfigObject(obj![0], obj![1].bytes) as unknown as { spec: { rules: unknown[] } };
      expect(sent.spec.rules).toEqual([{}]);
    } finally {
      await source.stop();
      await api.stop();
    }
  });
});

describe('at the waypoint (targetRefs policies arrive as config objects)', () => {
  const agent = new SocksAgent(SLEEP, { keepAlive: false });
  afterAll(() => agent.destroy());
  const get = (p: string) =>
    new Promise<number>((resolve, reject) => {
      const req = http.request({ host: 'api.demo', port: 9090, path: p, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      });
      req.on('error', reject);
      req.end();
    });

  it('a DENY on /admin* whose rule has an unreadable port denies every request to the Service', async () => {
    expect(await get('/public')).toBe(200);
    const seen = apiReceived.length;
    // Skipping the bad rule (istiod's builder) would let /public through; the waypoint must not.
    await writeFile(
      path.join(m.configDir, 'wp-deny.yaml'),
      serviceAuthorizationPolicy(
        'api-deny',
        'api',
        'DENY',
        `
    - to: [{operation: {paths: ["/admin*"], ports: ['http']}}]`,
      ),
    );
    await eventuallyStatus(() => get('/public'), 403);
    expect(await get('/admin')).toBe(403);
    // Only the /public answered before the policy arrived reached the app; nothing after it.
    expect(apiReceived.slice(seen).filter((r) => r.includes('/admin'))).toEqual([]);
    await rm(path.join(m.configDir, 'wp-deny.yaml'));
    await eventuallyStatus(() => get('/public'), 200);
  });
});

/** Polls until `fn` answers `want` (config reaches the waypoint asynchronously), at most 5 s. */
async function eventuallyStatus(fn: () => Promise<number>, want: number): Promise<void> {
  const deadline = Date.now() + 5000;
  let last = 0;
  while (Date.now() < deadline) {
    last = await fn();
    if (last === want) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(last).toBe(want);
}
