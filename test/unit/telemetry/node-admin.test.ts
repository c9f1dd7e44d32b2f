import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { ProxyState } from '../../../src/proxy/state.js';
import { PolicyStore } from '../../../src/proxy/policy-store.js';
import { adminHandler, type NodeAdminSource } from '../../../src/telemetry/node-admin.js';
import { AccessLogPolicy } from '../../../src/telemetry/access-log.js';
import { DenialLog } from '../../../src/telemetry/connection-telemetry.js';
import { httpRequest as rawRequest } from '../../../src/telemetry/http-util.js';
import { AdminGuard } from '../../../src/telemetry/admin-guard.js';
import { NodeTelemetry } from '../../../src/telemetry/node-telemetry.js';

const TOKEN = 'unit-admin-token';
// Every request here carries the admin token; admin-guard.test.ts covers the refusals.
const httpRequest = (url: string, opts: { method?: string } = {}) =>
  rawRequest(url, { ...opts, headers: { authorization: `Bearer ${TOKEN}` } });

// A proxy double whose dump would carry key text if the admin endpoint ever passed it through.
let leak = false;
let stoppedWith: number | undefined;
const proxy: NodeAdminSource = {
  state: new ProxyState(),
  policies: new PolicyStore(),
  certificates: () => [],
  localPods: () =>
    leak ? [{ uid: 'u', name: '-----BEGIN PRIVATE KEY-----', namespace: 'x', ip: '1', identity: 'i' }] : [],
  isReady: () => ({ ready: true }),
  stop: async (ms) => {
    stoppedWith = ms;
  },
};
const logger = pino({ level: 'info', enabled: false });
let quit = 0;
const server = http.createServer(
  adminHandler({
    nodeName: 'n1',
    nodeIp: '127.0.51.240',
    metricsUrl: 'http://127.0.51.240:15020/metrics',
    proxy,
    logger,
    access: new AccessLogPolicy(),
    denials: new DenialLog(),
    xdsUpdates: () => [],
    onQuit: () => quit++,
    guard: new AdminGuard({ token: TOKEN, trustLoopback: false, logger }),
  }),
);
let base = '';

beforeAll(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.51.240', r));
  base = `http://127.0.51.240:${(server.address() as { port: number }).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('node admin', () => {
  it('refuses to answer with anything that looks like key material', async () => {
    leak = true;
    const r = await httpRequest(`${base}/config_dump`);
    leak = false;
    expect(r.status).toBe(500);
    expect(r.body).not.toMatch(/BEGIN/);
    expect((await httpRequest(`${base}/config_dump`)).status).toBe(200);
  });

  it('changes the level only by POST, and only to a known level', async () => {
    expect((await httpRequest(`${base}/logging?level=debug`)).status).toBe(405);
    expect((await httpRequest(`${base}/logging?level=chatty`, { method: 'POST' })).status).toBe(400);
    expect((await httpRequest(`${base}/logging?access_log=sometimes`, { method: 'POST' })).status).toBe(400);
    const r = await httpRequest(`${base}/logging?level=warn&access_log=sample:0.5`, { method: 'POST' });
    expect(JSON.parse(r.body)).toEqual({ level: 'warn', access_log: 'sample:0.5' });
    expect(logger.level).toBe('warn');
  });

  it('changes nothing and drains nothing without the token', async () => {
    const level = logger.level;
    expect((await rawRequest(`${base}/logging?level=silent`, { method: 'POST' })).status).toBe(401);
    expect(logger.level).toBe(level);
    expect((await rawRequest(`${base}/quitquitquit?deadline_ms=0`, { method: 'POST' })).status).toBe(401);
    expect((await rawRequest(`${base}/config_dump`)).status).toBe(401);
    expect((await rawRequest(`${base}/`)).status).toBe(200);
    expect(stoppedWith).toBeUndefined();
  });

  it('drains on POST /quitquitquit with the deadline asked for, then calls onQuit once', async () => {
    expect((await httpRequest(`${base}/quitquitquit`)).status).toBe(405);
    expect((await httpRequest(`${base}/quitquitquit?deadline_ms=-1`, { method: 'POST' })).status).toBe(400);
    expect((await httpRequest(`${base}/quitquitquit?deadline_ms=1234`, { method: 'POST' })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 20));
    expect(stoppedWith).toBe(1234);
    expect(quit).toBe(1);
  });
});

describe('where admin listens (NodeTelemetry)', () => {
  const freePort = async (): Promise<number> => {
    const s = http.createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s.address() as { port: number }).port;
    await new Promise<void>((r) => s.close(() => r()));
    return port;
  };
  const start = async (opts: ConstructorParameters<typeof NodeTelemetry>[0]) => {
    const t = new NodeTelemetry({ metrics: false, ...opts }, logger);
    await t.start({ nodeName: 'n1', nodeIp: '127.0.150.241', proxy });
    return t;
  };

  it('binds 127.0.0.1 where loopback is private (netns/Kubernetes, as ztunnel), the node IP in local mode', async () => {
    const port = await freePort();
    const netns = await start({ adminPort: port, adminTrustLoopback: true, adminToken: TOKEN });
    try {
      expect((await rawRequest(`http://127.0.0.1:${port}/certs`)).status).toBe(200); // loopback read, no token
      expect(
        (await rawRequest(`http://127.0.0.1:${port}/logging?level=info`, { method: 'POST' })).status,
      ).toBe(401);
      await expect(rawRequest(`http://127.0.150.241:${port}/`)).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      await netns.stop();
    }
    const local = await start({ adminPort: port, adminToken: TOKEN });
    try {
      expect((await rawRequest(`http://127.0.150.241:${port}/certs`)).status).toBe(401); // loopback proves nothing here
      expect((await httpRequest(`http://127.0.150.241:${port}/certs`)).status).toBe(200);
    } finally {
      await local.stop();
    }
  });

  it('--admin-bind moves it off 127.0.0.1 (the token rule for non-loopback reads is in admin-guard.test.ts)', async () => {
    const port = await freePort();
    const wide = await start({
      adminPort: port,
      adminTrustLoopback: true,
      adminToken: TOKEN,
      adminHost: '127.0.150.241',
    });
    try {
      expect((await httpRequest(`http://127.0.150.241:${port}/certs`)).status).toBe(200);
      await expect(rawRequest(`http://127.0.0.1:${port}/`)).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      await wide.stop();
    }
  });
});
