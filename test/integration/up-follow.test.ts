// `ambit up` follows its folder: a waypoint Gateway or a Node written after start gets its
// process, and loses it when the file goes. Loopback range 127.0.54.0/24.
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestMesh } from '../support/mesh.js';
import { waypointGateway } from '../support/waypoint-manifests.js';

const m = new TestMesh({ octet: 54, follow: true });
const WAYPOINT = m.ip(20);

const gateway = waypointGateway(WAYPOINT, 'wp');
const node3 = `apiVersion: v1
kind: Node
metadata: {name: node-3}
status:
  addresses: [{type: InternalIP, address: ${m.ip(3)}}]
`;

function ready(host: string): Promise<number> {
  return new Promise((resolve) => {
    http
      .get({ host, port: 15021, path: '/healthz/ready', timeout: 2000 }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
      .once('error', () => resolve(0));
  });
}

const follows = (from: number, name: string, key: 'started' | 'stopped') =>
  m.waitForLog(
    (l) =>
      l.component === 'ambit' &&
      l.rec.msg === 'mesh follows the folder' &&
      (l.rec[key] as string[]).includes(name),
    20_000,
    from,
  );

beforeAll(async () => {
  await m.start();
}, 60_000);
afterAll(async () => {
  await m.stop();
});

describe('ambit up follows the folder', () => {
  it('starts a waypoint written after start, and stops it when the file is removed', async () => {
    expect(m.mesh.pid('waypoint/demo/wp')).toBeUndefined();
    let from = m.logs.length;
    await writeFile(path.join(m.configDir, 'wp.yaml'), gateway);
    await follows(from, 'waypoint/demo/wp', 'started');
    expect(m.mesh.pid('waypoint/demo/wp')).toBeGreaterThan(0);
    expect(m.mesh.description.waypoints.map((w) => w.ip)).toEqual([WAYPOINT]);
    const rec = await m.waitForLog(
      (l) => l.component === 'waypoint/demo/wp' && l.rec.msg === 'waypoint ready',
      10_000,
      from,
    );
    expect(rec.rec.identity).toBe('spiffe://cluster.local/ns/demo/sa/wp');

    from = m.logs.length;
    await rm(path.join(m.configDir, 'wp.yaml'));
    await follows(from, 'waypoint/demo/wp', 'stopped');
    expect(m.mesh.pid('waypoint/demo/wp')).toBeUndefined();
    expect(m.mesh.description.waypoints).toEqual([]);
  }, 40_000);

  it('starts a node proxy for a Node added later (ready on its 15021)', async () => {
    expect(await ready(m.ip(3))).toBe(0);
    const from = m.logs.length;
    await writeFile(path.join(m.configDir, 'node3.yaml'), node3);
    await follows(from, 'node/node-3', 'started');
    expect(await ready(m.ip(3))).toBe(200);
    // The nodes that were there are left alone: same processes as before.
    expect(
      m.logs.slice(from).some((l) => l.component === 'node/node-1' && l.rec.msg === 'node proxy ready'),
    ).toBe(false);
  }, 40_000);
});
