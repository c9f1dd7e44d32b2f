// The admin gate (telemetry/admin-guard.ts) on a real HTTP server on loopback 127.0.150.240: each
// refusal with its status and logged reason, and what is admitted. Headers are set by hand, the
// way a browser, a DNS-rebinding page or a curl from a pod would send them.
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import {
  AdminGuard,
  isLoopback,
  REFUSAL_LOG_PER_SECOND,
  type AdminAccess,
} from '../../../src/telemetry/admin-guard.js';

const HOST = '127.0.150.240';
const TOKEN = 'a'.repeat(64);
const lines: Record<string, unknown>[] = [];
const logger = pino(
  { level: 'info' },
  { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) },
);

function serve(guard: AdminGuard): http.Server {
  return http.createServer((req, res) => {
    const access = (req.url?.slice(1) ?? 'open') as AdminAccess;
    if (guard.admit(req, res, access)) res.end('ok');
  });
}

const strict = serve(new AdminGuard({ token: TOKEN, trustLoopback: false, logger }));
const loopbackTrusted = serve(new AdminGuard({ token: TOKEN, trustLoopback: true, logger }));
const tokenless = serve(new AdminGuard({ token: undefined, trustLoopback: false, logger }));
const floodLines: Record<string, unknown>[] = [];
const flooded = serve(
  new AdminGuard({
    token: TOKEN,
    trustLoopback: false,
    logger: pino(
      { level: 'info' },
      { write: (x: string) => void floodLines.push(JSON.parse(x) as Record<string, unknown>) },
    ),
  }),
);
const ports = new Map<http.Server, number>();

beforeAll(async () => {
  for (const s of [strict, loopbackTrusted, tokenless, flooded]) {
    await new Promise<void>((r) => s.listen(0, HOST, r));
    ports.set(s, (s.address() as { port: number }).port);
  }
});
afterAll(async () => {
  for (const s of [strict, loopbackTrusted, tokenless, flooded])
    await new Promise<void>((r) => s.close(() => r()));
});

function ask(
  server: http.Server,
  access: AdminAccess,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<{ status: number; body: string; auth?: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: HOST, port: ports.get(server), path: `/${access}`, method, headers, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body, auth: res.headers['www-authenticate'] }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const bearer = { authorization: `Bearer ${TOKEN}` };
const lastRefusal = () => lines.filter((l) => l['admin.refusal']).at(-1);

describe('admin gate', () => {
  it.each([
    ['write', 'POST', {}, 401, 'token-missing'],
    ['write', 'POST', { authorization: 'Bearer nope' }, 401, 'token-wrong'],
    ['write', 'POST', { authorization: `Basic ${TOKEN}` }, 401, 'token-missing'],
    ['read', 'GET', {}, 401, 'token-missing'],
    ['read', 'GET', { ...bearer, host: 'evil.example:15000' }, 403, 'host-not-allowed'],
    ['read', 'GET', { ...bearer, host: 'rebind.127.0.0.1.nip.io' }, 403, 'host-not-allowed'],
    ['write', 'POST', { ...bearer, origin: 'http://evil.example' }, 403, 'cross-origin'],
    ['read', 'GET', { ...bearer, origin: 'http://evil.example' }, 403, 'cross-origin'],
    ['read', 'GET', { ...bearer, origin: 'null' }, 403, 'cross-origin'],
    ['open', 'GET', { origin: 'http://evil.example' }, 403, 'cross-origin'],
    ['read', 'GET', { ...bearer, 'sec-fetch-site': 'cross-site' }, 403, 'cross-site-fetch'],
    // A page on another port of the same host is "same-site" to browsers: still not this origin.
    ['write', 'POST', { ...bearer, 'sec-fetch-site': 'same-site' }, 403, 'cross-site-fetch'],
  ] as const)(
    '%s %s with %j is refused %i (%s), and logged',
    async (access, method, headers, status, reason) => {
      const before = lines.length;
      const r = await ask(strict, access, headers, method);
      expect(r.status).toBe(status);
      expect(r.body).toMatch(/^refused: /);
      if (status === 401) expect(r.auth).toMatch(/^Bearer/);
      expect(lines.length).toBe(before + 1);
      expect(lastRefusal()).toMatchObject({
        'admin.refusal': reason,
        'admin.access': access,
        'http.method': method,
      });
    },
  );

  it('admits the token with the admin origin itself, an IP or localhost Host, and same-origin fetches', async () => {
    const port = ports.get(strict)!;
    for (const headers of [
      bearer,
      { ...bearer, origin: `http://${HOST}:${port}`, 'sec-fetch-site': 'same-origin' },
      { ...bearer, host: `localhost:${port}` },
      { ...bearer, host: `[::1]:${port}` },
      { ...bearer, 'sec-fetch-site': 'none' },
    ]) {
      expect((await ask(strict, 'write', headers, 'POST')).status, JSON.stringify(headers)).toBe(200);
      expect((await ask(strict, 'read', headers)).status).toBe(200);
    }
    expect((await ask(strict, 'open')).status).toBe(200);
    // open endpoints do not look at Host: Prometheus may scrape through a service name
    expect((await ask(strict, 'open', { host: 'metrics.example' })).status).toBe(200);
  });

  it('trusts loopback for reads only, and only when told to', async () => {
    expect((await ask(loopbackTrusted, 'read')).status).toBe(200);
    expect((await ask(loopbackTrusted, 'write', {}, 'POST')).status).toBe(401);
    // the browser checks still apply over loopback
    expect((await ask(loopbackTrusted, 'read', { origin: 'http://evil.example' })).status).toBe(403);
    expect((await ask(loopbackTrusted, 'read', { host: 'evil.example' })).status).toBe(403);
    expect((await ask(strict, 'read')).status).toBe(401);
  });

  it('without a token configured, refuses every read and write, whatever is sent', async () => {
    for (const headers of [{}, bearer, { authorization: 'Bearer ' }]) {
      expect((await ask(tokenless, 'read', headers)).status).toBe(403);
      expect((await ask(tokenless, 'write', headers, 'POST')).status).toBe(403);
    }
    expect(lastRefusal()).toMatchObject({ 'admin.refusal': 'token-not-configured' });
    expect((await ask(tokenless, 'open')).status).toBe(200);
  });

  it('a flood of refused requests is answered but logged at most REFUSAL_LOG_PER_SECOND a second, the rest counted', async () => {
    const answers = await Promise.all(Array.from({ length: 60 }, () => ask(flooded, 'write', {}, 'POST')));
    expect(answers.every((a) => a.status === 401)).toBe(true);
    // 60 requests may straddle one window boundary: never more than two windows' worth of lines
    expect(floodLines.length).toBeLessThanOrEqual(2 * REFUSAL_LOG_PER_SECOND);
    expect(floodLines.length).toBeLessThan(60);
    await new Promise((r) => setTimeout(r, 1050));
    await ask(flooded, 'write', {}, 'POST');
    const counted = floodLines.reduce((n, l) => n + Number(l['admin.refusals_not_logged'] ?? 0), 0);
    expect(floodLines.length - 1 + counted).toBe(60); // every refusal is a line or counted in one
  });

  it('knows loopback addresses, v4, v6 and v4-mapped', () => {
    expect(['127.0.0.1', '127.0.150.3', '::1', '::ffff:127.0.0.1'].map(isLoopback)).toEqual([
      true,
      true,
      true,
      true,
    ]);
    expect(['10.0.0.1', '::ffff:10.0.0.1', '128.0.0.1', '', undefined].map(isLoopback)).toEqual([
      false,
      false,
      false,
      false,
      false,
    ]);
  });
});
