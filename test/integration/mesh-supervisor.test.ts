// `ambit up` supervises its components as a DaemonSet would: a node proxy (or the control plane)
// that dies is restarted with a back-off, a crash loop backs off to the cap and its log lines are
// bounded, the back-off resets after a stable run, and stopping the mesh during a back-off wait
// starts nothing again. Real processes, killed for real. Loopback 127.0.170.0/24 and 127.0.171.0/24.
import { readdir, readFile } from 'node:fs/promises';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestMesh, closeServer, listen, tcpEcho, type LogRecord } from '../support/mesh.js';
import { waypointGateway } from '../support/waypoint-manifests.js';

const m = new TestMesh({
  octet: 170,
  extraManifests: waypointGateway('127.0.170.50'),
  // stableMs well above how long a failing start takes on a loaded machine (else the loop would reset).
  restart: { initialMs: 100, maxMs: 800, stableMs: 5000, loudRestarts: 3, summaryEveryMs: 3000 },
});
const servers: net.Server[] = [];
const SLEEP = m.ip(10);
const ECHO_V2 = m.ip(12);
const NODE2 = m.ip(2);

beforeAll(async () => {
  await m.start();
  servers.push(await tcpEcho(ECHO_V2, 7000));
}, 60_000);

afterAll(async () => {
  await Promise.all(servers.map(closeServer));
  await m.stop();
});

const restartLines = (name: string, from = 0) =>
  m.logs
    .slice(from)
    .filter((l) => l.component === 'ambit' && String(l.rec.msg).startsWith(`restarting ${name} in `));

async function echoes(deadlineMs: number): Promise<boolean> {
  const end = Date.now() + deadlineMs;
  while (Date.now() < end) {
    try {
      const s = await m.socks(SLEEP, ECHO_V2, 7000);
      const back = await new Promise<string>((resolve, reject) => {
        s.once('data', (d: Buffer) => resolve(d.toString()));
        s.once('error', reject);
        s.write('ping');
      });
      s.destroy();
      if (back === 'ping') return true;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Takes host:port as soon as it is free (the dead process's listener is gone). */
async function occupy(host: string, port: number, deadlineMs: number): Promise<net.Server> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    try {
      return await listen(net.createServer(), host, port);
    } catch (err) {
      if (Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, 2));
    }
  }
}

describe('supervision of the mesh processes', () => {
  it('restarts a node proxy that was killed, as a DaemonSet would, and its pods are served again', async () => {
    const pid = m.mesh.pid('node/node-2')!;
    const from = m.logs.length;
    process.kill(pid, 'SIGKILL');
    const line = await m.waitForLog(
      (l) => l.component === 'ambit' && String(l.rec.msg).startsWith('restarting node/node-2'),
      5000,
      from,
    );
    expect(line.rec.msg).toBe('restarting node/node-2 in 100ms (signal SIGKILL, restart 1)');
    await m.waitForLog(
      (l) => l.component === 'node/node-2' && l.rec.msg === 'node proxy ready',
      15_000,
      from,
    );
    expect(m.mesh.pid('node/node-2')).not.toBe(pid);
    expect(alive(m.mesh.pid('node/node-2')!)).toBe(true);
    expect(await echoes(10_000)).toBe(true);
  }, 30_000);

  it('restarts the control plane too', async () => {
    const pid = m.mesh.pid('controlplane')!;
    const from = m.logs.length;
    process.kill(pid, 'SIGKILL');
    await m.waitForLog(
      (l) =>
        l.component === 'ambit' &&
        l.rec.msg === 'restarting controlplane in 100ms (signal SIGKILL, restart 1)',
      5000,
      from,
    );
    await m.waitForLog(
      (l) => l.component === 'controlplane' && l.rec.msg === 'control plane ready',
      15_000,
      from,
    );
    expect(alive(m.mesh.pid('controlplane')!)).toBe(true);
  }, 30_000);

  it('restarts a waypoint too', async () => {
    const pid = m.mesh.pid('waypoint/demo/waypoint')!;
    const from = m.logs.length;
    process.kill(pid, 'SIGKILL');
    await m.waitForLog(
      (l) =>
        l.component === 'ambit' &&
        l.rec.msg === 'restarting waypoint/demo/waypoint in 100ms (signal SIGKILL, restart 1)',
      5000,
      from,
    );
    await m.waitForLog(
      (l) => l.component === 'waypoint/demo/waypoint' && l.rec.msg === 'waypoint ready',
      15_000,
      from,
    );
    expect(alive(m.mesh.pid('waypoint/demo/waypoint')!)).toBe(true);
  }, 30_000);

  it('backs off in a crash loop up to the cap, bounds its log lines, and starts over after a stable run', async () => {
    // Let the previous test's restart count as stable, so this loop starts at restart 1.
    await new Promise((r) => setTimeout(r, 5100));
    const pid = m.mesh.pid('node/node-2')!;
    const from = m.logs.length;
    process.kill(pid, 'SIGKILL');
    // A real crash loop: node-2's readiness address is taken, so each new node proxy fails to start.
    const blocker = await occupy(NODE2, 15021, 2000);
    let summary: LogRecord;
    try {
      summary = await m.waitForLog(
        (l) => l.component === 'ambit' && /^restarting node\/node-2 .*crash loop/.test(String(l.rec.msg)),
        30_000,
        from,
      );
    } finally {
      await closeServer(blocker);
    }
    const loud = restartLines('node/node-2', from).map((l) => String(l.rec.msg));
    // The first three of the loop, with doubling delays and the exit code of the failed start.
    expect(loud.slice(0, 3)).toEqual([
      'restarting node/node-2 in 100ms (signal SIGKILL, restart 1)',
      'restarting node/node-2 in 200ms (exit code 1, restart 2)',
      'restarting node/node-2 in 400ms (exit code 1, restart 3)',
    ]);
    // Then quiet until the summary, which is at the cap and says what was not shown.
    const s =
      /in (\d+)ms \(exit code 1, restart (\d+); crash loop: (\d+) restarts and (\d+) log lines not shown/.exec(
        String(summary.rec.msg),
      )!;
    expect(s, String(summary.rec.msg)).not.toBeNull();
    const [delay, restart, quietRestarts, quietLines] = s.slice(1).map(Number) as [
      number,
      number,
      number,
      number,
    ];
    expect(delay).toBe(800);
    expect(restart).toBeGreaterThan(4);
    expect(quietRestarts).toBe(restart - 4);
    expect(quietLines).toBeGreaterThan(0); // each failed start printed its error; none was shown
    expect(loud.length).toBe(4);
    // The port is free again: the loop ends, and after a stable run it says so.
    await m.waitForLog(
      (l) =>
        l.component === 'ambit' &&
        /^node\/node-2 is running again after \d+ restarts$/.test(String(l.rec.msg)),
      15_000,
      from,
    );
    expect(await echoes(10_000)).toBe(true);
    // A crash after a stable run starts a new loop at the first delay.
    const again = m.logs.length;
    process.kill(m.mesh.pid('node/node-2')!, 'SIGKILL');
    const next = await m.waitForLog((l) => restartLines('node/node-2', again).includes(l), 5000, again);
    expect(next.rec.msg).toBe('restarting node/node-2 in 100ms (signal SIGKILL, restart 1)');
    await m.waitForLog(
      (l) => l.component === 'node/node-2' && l.rec.msg === 'node proxy ready',
      15_000,
      again,
    );
  }, 60_000);

  it('leaves a component stopped on purpose (kill) stopped until restart', async () => {
    const from = m.logs.length;
    await m.mesh.kill('node/node-2', 'SIGKILL');
    await new Promise((r) => setTimeout(r, 500));
    expect(restartLines('node/node-2', from)).toEqual([]);
    expect(m.mesh.pid('node/node-2')).toBeUndefined();
    await m.mesh.restart('node/node-2');
    expect(await echoes(10_000)).toBe(true);
  }, 30_000);
});

describe('stopping during a back-off wait', () => {
  const slow = new TestMesh({ octet: 171, restart: { initialMs: 3000 } });
  beforeAll(async () => {
    await slow.start();
  }, 60_000);
  afterAll(async () => {
    await slow.stop();
  });

  it('starts nothing again once the mesh is stopping (Ctrl-C)', async () => {
    const from = slow.logs.length;
    process.kill(slow.mesh.pid('node/node-1')!, 'SIGKILL');
    await slow.waitForLog(
      (l) => l.component === 'ambit' && String(l.rec.msg).startsWith('restarting node/node-1 in 3000ms'),
      5000,
      from,
    );
    await slow.mesh.stop(); // what `ambit up` does on SIGINT
    const stoppedAt = slow.logs.length;
    await new Promise((r) => setTimeout(r, 3500)); // past the back-off
    expect(slow.mesh.pid('node/node-1')).toBeUndefined();
    expect(slow.logs.slice(stoppedAt).filter((l) => l.component === 'node/node-1')).toEqual([]);
    // No process of this mesh is left: none has its state folder on its command line.
    expect(await processesWith(slow.stateDir)).toEqual([]);
  }, 30_000);
});

async function processesWith(text: string): Promise<number[]> {
  const pids: number[] = [];
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    const cmd = await readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(text)) pids.push(Number(e));
  }
  return pids;
}
