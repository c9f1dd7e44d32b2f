// The waypoint records its L4 connections as a node proxy does (issue 14), through the shared
// proxy core (proxy/connection-record.ts, proxy/inbound-gate.ts), on 127.0.232.0/24 with real
// processes, real HBONE and real TCP:
//  - a TCP connection through the waypoint and a TCP-path policy denial there give the same
//    istio_tcp_* series (the same label names; reporter="waypoint", as Istio's waypoints report)
//    and an access line with at least every field a node proxy's line has;
//  - a policy change closes an open TCP tunnel through the waypoint that it no longer allows
//    (as node proxies do: test/integration/authz.test.ts "closes an open connection when a
//    policy change no longer allows it", after ztunnel's policy watcher), logged and counted.
import http from 'node:http';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DENY_ECHO_7002, TestMesh, closeServer, tcpEcho, type LogRecord } from '../support/mesh.js';
import { demoService, serviceAuthorizationPolicy, waypointGateway } from '../support/waypoint-manifests.js';
import { parsePromText, type Sample } from '../../src/telemetry/prom-text.js';

const O = 232;
const ip = (n: number) => `127.0.${O}.${n}`;
const SLEEP = ip(10);
const ECHO_V1 = ip(11);
const WAYPOINT = ip(200);
const ECHO_VIP = ip(100); // the quickstart's `echo`, not bound to the waypoint
const RAW_VIP = ip(101); // bound to the waypoint, TCP
const LOCKED_VIP = ip(102); // bound to the waypoint, sleep denied on the TCP path
const SLEEP_ID = 'spiffe://cluster.local/ns/demo/sa/sleep';

const EXTRA = [
  waypointGateway(WAYPOINT),
  DENY_ECHO_7002,
  demoService('raw', RAW_VIP, { app: 'echo' }, '[{name: tcp-raw, port: 7100, targetPort: 7000}]', true),
  demoService(
    'locked',
    LOCKED_VIP,
    { app: 'echo' },
    '[{name: tcp-locked, port: 7101, targetPort: 7000}]',
    true,
  ),
  serviceAuthorizationPolicy(
    'locked-deny-sleep',
    'locked',
    'DENY',
    ` [{from: [{source: {principals: ["cluster.local/ns/demo/sa/sleep"]}}]}]`,
  ),
].join('---\n');

const m = new TestMesh({ octet: O, extraManifests: EXTRA });
const servers: net.Server[] = [];

beforeAll(async () => {
  await m.start();
  for (const host of [ip(11), ip(12)]) servers.push(await tcpEcho(host, 7000));
  await m.waypointReady(20_000);
}, 60_000);

afterAll(async () => {
  await Promise.all(servers.map(closeServer));
  await m.stop();
});

/** Process bindings and fields that name the reporting process, not the connection. */
const PER_PROCESS = new Set(['time', 'pid', 'hostname', 'node', 'waypoint', 'level', 'msg']);

function connectionFields(l: LogRecord, also: string[] = []): string[] {
  return Object.keys(l.rec)
    .filter((k) => !PER_PROCESS.has(k) && !also.includes(k))
    .sort();
}

async function scrape(host: string): Promise<Sample[]> {
  const body = await new Promise<string>((resolve, reject) => {
    http
      .get({ host, port: 15020, path: '/metrics' }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve(text));
      })
      .once('error', reject);
  });
  return parsePromText(body);
}

function series(samples: Sample[], name: string, labels: Record<string, string>): Sample[] {
  return samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
}

/** One echo round trip over a fresh connection from sleep; resolves with the open socket. */
async function roundTrip(host: string, port: number, payload: Buffer): Promise<net.Socket> {
  const s = await m.socks(SLEEP, host, port);
  s.write(payload);
  let got = Buffer.alloc(0);
  while (got.length < payload.length) {
    const c = await new Promise<Buffer>((resolve, reject) => {
      s.once('data', resolve);
      s.once('error', reject);
    });
    got = Buffer.concat([got, c]);
  }
  expect(got.equals(payload)).toBe(true);
  return s;
}

const WP = 'waypoint/demo/waypoint';

describe('the waypoint records L4 connections as a node proxy does', () => {
  it(
    'a TCP connection through the waypoint: istio_tcp_* with reporter="waypoint" and a node-proxy access line',
    { timeout: 20_000 },
    async () => {
      const from = m.logs.length;
      const payload = Buffer.from('\x00\x01binary, so the waypoint proxies it as TCP\n');
      // Through the waypoint, and directly to the same pods for the node proxy's record.
      const viaWaypoint = await roundTrip(RAW_VIP, 7100, payload);
      viaWaypoint.end();
      const direct = await roundTrip(ECHO_VIP, 7000, payload);
      direct.end();
      const wpLine = await m.waitForLog(
        (l) => l.component === WP && l.rec.msg === 'connection complete' && l.rec.protocol === 'tcp',
        10_000,
        from,
      );
      const nodeLine = await m
        .waitForLog(
          (l) =>
            l.component.startsWith('node/') &&
            l.rec.msg === 'connection complete' &&
            l.rec.direction === 'inbound' &&
            l.rec['dst.addr'] === `${ECHO_V1}:7000`,
          10_000,
          from,
        )
        .catch(() =>
          // The VIP's round robin may have picked echo-v2 (node-2) for the direct connection.
          m.waitForLog(
            (l) =>
              l.component.startsWith('node/') &&
              l.rec.msg === 'connection complete' &&
              l.rec.direction === 'inbound' &&
              String(l.rec['dst.addr']).endsWith(':7000'),
            1000,
            from,
          ),
        );
      // Every field of the node proxy's line is on the waypoint's (it may have more: protocol, src.ip).
      const missing = connectionFields(nodeLine).filter((k) => !(k in wpLine.rec));
      expect(missing).toEqual([]);
      expect(wpLine.rec).toMatchObject({
        'src.identity': SLEEP_ID,
        'src.workload': 'sleep',
        'src.namespace': 'demo',
        'dst.addr': `${RAW_VIP}:7100`,
        'dst.service': 'raw.demo.svc.cluster.local',
        'dst.namespace': 'demo',
        connection_security_policy: 'mutual_tls',
        response_flags: '-',
        direction: 'inbound',
      });
      expect(wpLine.rec['dst.workload']).toMatch(/^echo-v[12]$/);
      expect(Number(wpLine.rec.bytes_recv)).toBe(payload.length);
      expect(Number(wpLine.rec.bytes_sent)).toBe(payload.length);

      const [wp, node] = [await scrape(WAYPOINT), await scrape(ip(1))];
      const wpOpened = series(wp, 'istio_tcp_connections_opened_total', {
        reporter: 'waypoint',
        destination_service: 'raw.demo.svc.cluster.local',
      });
      expect(wpOpened).toHaveLength(1);
      expect(wpOpened[0]!.labels).toMatchObject({
        source_workload: 'sleep',
        source_workload_namespace: 'demo',
        source_principal: SLEEP_ID,
        destination_workload_namespace: 'demo',
        destination_principal: 'spiffe://cluster.local/ns/demo/sa/echo',
        request_protocol: 'tcp',
        response_flags: '-',
        connection_security_policy: 'mutual_tls',
      });
      const nodeOpened = series(node, 'istio_tcp_connections_opened_total', { reporter: 'destination' });
      expect(nodeOpened.length).toBeGreaterThan(0);
      expect(Object.keys(wpOpened[0]!.labels).sort()).toEqual(Object.keys(nodeOpened[0]!.labels).sort());
      const raw = { reporter: 'waypoint', destination_service: 'raw.demo.svc.cluster.local' };
      expect(
        series(wp, 'istio_tcp_connections_closed_total', { ...raw, response_flags: '-' })[0]?.value,
      ).toBe(1);
      expect(series(wp, 'istio_tcp_received_bytes_total', raw)[0]?.value).toBe(payload.length);
      expect(series(wp, 'istio_tcp_sent_bytes_total', raw)[0]?.value).toBe(payload.length);
    },
  );

  it(
    "an L4 (TCP-path) denial at the waypoint: counted opened and closed with its flag, one denial line with the node proxy's fields",
    { timeout: 20_000 },
    async () => {
      const from = m.logs.length;
      // Refused at the waypoint (RST_STREAM), and at a node proxy (401) for comparison.
      const s = await m.socks(SLEEP, LOCKED_VIP, 7101);
      s.on('error', () => {});
      s.write(Buffer.from([0, 1, 2, 3]));
      // The reset reaches sleep's SOCKS socket as its end (the socket is half-open capable).
      await new Promise((resolve) => {
        s.once('end', resolve);
        s.once('close', resolve);
      });
      await expect(m.socks(SLEEP, ECHO_V1, 7002)).rejects.toThrow();
      const wpLine = await m.waitForLog(
        (l) => l.component === WP && l.rec.msg === 'connection denied by policy' && l.rec.protocol === 'tcp',
        10_000,
        from,
      );
      const nodeLine = await m.waitForLog(
        (l) => l.rec.msg === 'connection denied by policy' && l.rec['dst.port'] === 7002,
        10_000,
        from,
      );
      // The node proxy answers 401 on the CONNECT; the waypoint's TCP path resets: no status. The
      // waypoint denies a Service before it picks an endpoint (nothing is dialled), so no
      // destination workload exists to name; the node proxy's destination is its own pod.
      const unknowable = ['status', 'dst.workload', 'dst.namespace', 'dst.identity'];
      const missing = connectionFields(nodeLine, unknowable).filter((k) => !(k in wpLine.rec));
      expect(missing).toEqual([]);
      expect(wpLine.rec).toMatchObject({
        policy: 'demo/locked-deny-sleep',
        'policy.rule': 0,
        response_flags: 'RBAC',
        'src.identity': SLEEP_ID,
        'dst.service': 'locked.demo.svc.cluster.local',
        'dst.port': 7101,
      });
      expect(
        m.logs.slice(from).filter((l) => l.component === WP && l.rec.msg === 'connection denied by policy'),
      ).toHaveLength(1);

      const [wp, node] = [await scrape(WAYPOINT), await scrape(ip(1))];
      const locked = { reporter: 'waypoint', destination_service: 'locked.demo.svc.cluster.local' };
      expect(series(wp, 'istio_tcp_connections_opened_total', locked)[0]?.value).toBe(1);
      const closed = series(wp, 'istio_tcp_connections_closed_total', locked);
      expect(closed.map((c) => [c.labels.response_flags, c.value])).toEqual([['RBAC', 1]]);
      const nodeDenied = series(node, 'istio_tcp_connections_closed_total', {
        reporter: 'destination',
        response_flags: 'DENY',
      });
      expect(nodeDenied.length).toBeGreaterThan(0);
      expect(Object.keys(closed[0]!.labels).sort()).toEqual(Object.keys(nodeDenied[0]!.labels).sort());
      expect(
        series(wp, 'ambit_authz_denied_total', { policy: 'demo/locked-deny-sleep', protocol: 'tcp' })[0]
          ?.value,
      ).toBe(1);
    },
  );

  it(
    'a port declared tcp-* is opaque TCP at the waypoint: an HTTP request line on it is carried as bytes, not parsed (istiod sends TCP; Envoy does not sniff it)',
    { timeout: 20_000 },
    async () => {
      // Sniffed, these bytes would be an HTTP request, and the echoed request line would reach
      // the waypoint's HTTP client as a malformed response (a 503 instead of the bytes).
      const request = Buffer.from('GET / HTTP/1.1\r\nHost: raw.demo\r\n\r\n');
      const s = await roundTrip(RAW_VIP, 7100, request);
      s.end();
    },
  );

  it(
    'closes an open TCP tunnel through the waypoint when a policy change no longer allows it, logged and counted',
    { timeout: 20_000 },
    async () => {
      const s = await roundTrip(RAW_VIP, 7100, Buffer.from('\x00long-lived'));
      const closed = new Promise<number>((resolve) => {
        const t0 = Date.now();
        s.once('end', () => resolve(Date.now() - t0));
        s.once('close', () => resolve(Date.now() - t0));
      });
      s.on('error', () => {});
      const before = await scrape(WAYPOINT);
      const closedBefore = series(before, 'ambit_authz_closed_by_policy_change_total', {})[0]?.value ?? 0;
      const from = m.logs.length;
      await writeFile(
        path.join(m.configDir, 'raw-deny-sleep.yaml'),
        serviceAuthorizationPolicy(
          'raw-deny-sleep',
          'raw',
          'DENY',
          ` [{from: [{source: {principals: ["cluster.local/ns/demo/sa/sleep"]}}]}]`,
        ),
      );
      // Within 5 s of the change (the control plane's folder watch and push are part of it).
      const ms = await Promise.race([
        closed,
        new Promise<number>((_, reject) =>
          setTimeout(() => reject(new Error('tunnel still open after 5 s')), 5000),
        ),
      ]);
      expect(ms).toBeLessThan(5000);
      const line = await m.waitForLog(
        (l) => l.component === WP && l.rec.msg === 'connection closed: policy no longer allows it',
        5000,
        from,
      );
      expect(line.rec).toMatchObject({
        policy: 'demo/raw-deny-sleep',
        response_flags: 'DENY',
        'src.identity': SLEEP_ID,
        'dst.service': 'raw.demo.svc.cluster.local',
      });
      const after = await scrape(WAYPOINT);
      expect(series(after, 'ambit_authz_closed_by_policy_change_total', {})[0]?.value).toBe(closedBefore + 1);
      const raw = { reporter: 'waypoint', destination_service: 'raw.demo.svc.cluster.local' };
      expect(
        series(after, 'istio_tcp_connections_closed_total', { ...raw, response_flags: 'DENY' })[0]?.value,
      ).toBe(1);
      // New connections are refused now; the splice's end wrote no second line for the closed one.
      expect(
        m.logs
          .slice(from)
          .filter(
            (l) => l.component === WP && l.rec.msg === 'connection complete' && l.rec.protocol === 'tcp',
          ),
      ).toEqual([]);
    },
  );
});
