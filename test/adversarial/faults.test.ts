// Faults with every byte checked (issue 12, "Faults, with bytes checked"): 100 concurrent
// transfers of random data through the mesh, a SHA-256 of the bytes checked at the receiving app,
// while (a) the destination node proxy is killed and comes back, (b) the control plane is down for
// 30 s, (c) the waypoint is killed, (d) certificates rotate at a 10 s TTL.
//
// What must hold, per transfer: it completes with exactly the bytes sent, or the app sees a
// failure (reset or error). A transfer that ends cleanly (FIN) with wrong or missing bytes is the
// bug the issue found (a cut tunnel passed to the app as a clean close): it must never happen.
// Envoy passes a reset on a tunnelled TCP connection as a reset (tcp_proxy; ztunnel copies with
// shutdown only on a clean end, src/copy.rs), so the app can tell a cut from an end.
// And after each fault ends, new connections work again within 2 s.
//
// Protocol between the test client and the sink app on echo-v2 (127.0.180.12): the client sends
// the size (8 bytes); the app streams that many random bytes, paced so the transfers are in flight
// when the fault hits, then the SHA-256 of what it sent (32 bytes), then FIN. The client hashes
// what it received and compares.
//
// Sizes: AMBIT_FAULT_KB per transfer (default 512 KiB, so the four scenarios fit in ~2–3 min of
// CI on two cores), AMBIT_FAULT_TRANSFERS (100), AMBIT_FAULT_PACE_MS (how long one transfer is
// stretched over, 3000; 0: as fast as the mesh goes), AMBIT_FAULT_CP_OUTAGE_S (30). A manual run
// with the sizes: AMBIT_FAULT_KB=5120 AMBIT_FAULT_PACE_MS=0 npx vitest run test/adversarial/faults.test.ts
import net from 'node:net';
import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { endKind, keepHalfOpen } from '../support/end-kind.js';
import { TestMesh, closeServer, listen } from '../support/mesh.js';
import { demoService, waypointGateway } from '../support/waypoint-manifests.js';

const envNum = (k: string, d: number) =>
  process.env[k] !== undefined && process.env[k] !== '' ? Number(process.env[k]) : d;
const SIZE = envNum('AMBIT_FAULT_KB', 512) * 1024;
const TRANSFERS = envNum('AMBIT_FAULT_TRANSFERS', 100);
const PACE_MS = envNum('AMBIT_FAULT_PACE_MS', 3000);
const CP_OUTAGE_MS = envNum('AMBIT_FAULT_CP_OUTAGE_S', 30) * 1000;
/** When the fault hits after the transfers start: a third of their paced length, at most 1 s. */
const FAULT_AFTER_MS = envNum('AMBIT_FAULT_AFTER_MS', PACE_MS ? Math.min(1000, PACE_MS / 3) : 1000);
const RECOVERY_GOAL_MS = 2000;
/** A transfer that makes no progress for this long has hung: neither an end nor an error. */
const STALL_MS = 30_000;
const SINK_PORT = 7100;
const CHUNK = 16 * 1024;

type Kind = 'exact' | 'visible' | 'wrong' | 'stalled';
interface Outcome {
  kind: Kind;
  detail: string;
  received: number;
}
interface Row {
  scenario: string;
  transfers: number;
  exact: number;
  visible: number;
  wrong: number;
  stalled: number;
  recoveryMs: number | undefined;
  note: string;
  wrongDetails: string[];
}
const rows: Row[] = [];

/** The sink app: streams `size` random bytes paced over PACE_MS, then their SHA-256, then FIN. */
function sinkServer(host: string): Promise<net.Server> {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    let head = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      if (head.length >= 8) return;
      head = Buffer.concat([head, d]);
      if (head.length < 8) return;
      const size = Number(head.readBigUInt64BE(0));
      const pace = size > 64 * 1024 ? PACE_MS / Math.ceil(size / CHUNK) : 0;
      void stream(s, size, pace);
    });
  });
  return listen(server, host, SINK_PORT);
}

async function stream(s: net.Socket, size: number, paceMs: number): Promise<void> {
  const hash = createHash('sha256');
  let sent = 0;
  while (sent < size && !s.destroyed) {
    const chunk = randomBytes(Math.min(CHUNK, size - sent));
    hash.update(chunk);
    sent += chunk.length;
    const more = s.write(chunk);
    if (!more) await new Promise((r) => s.once('drain', r).once('close', r));
    else if (paceMs > 0) await new Promise((r) => setTimeout(r, paceMs));
  }
  if (!s.destroyed) s.end(hash.digest());
}

/** One transfer as a client app in pod sleep (SOCKS5 on its node proxy) sees it. */
async function transfer(mesh: TestMesh, host: string, size: number): Promise<Outcome> {
  let sock: net.Socket;
  try {
    sock = await mesh.socks(mesh.ip(10), host, SINK_PORT);
    keepHalfOpen(sock);
  } catch (err) {
    return { kind: 'visible', detail: `connect: ${(err as Error).message}`, received: 0 };
  }
  return new Promise((resolve) => {
    const hash = createHash('sha256');
    const tail: Buffer[] = [];
    let received = 0;
    let done = false;
    const finish = (o: Outcome) => {
      if (done) return;
      done = true;
      clearTimeout(stall);
      sock.destroy();
      resolve(o);
    };
    let stall = setTimeout(
      () => finish({ kind: 'stalled', detail: `no byte for ${STALL_MS} ms`, received }),
      STALL_MS,
    );
    sock.on('data', (d: Buffer) => {
      clearTimeout(stall);
      stall = setTimeout(
        () => finish({ kind: 'stalled', detail: `no byte for ${STALL_MS} ms`, received }),
        STALL_MS,
      );
      const body = Math.max(0, Math.min(d.length, size - received));
      if (body) hash.update(d.subarray(0, body));
      if (body < d.length) tail.push(d.subarray(body));
      received += d.length;
    });
    let ended = false;
    sock.once('end', () => {
      ended = true;
      const trailer = Buffer.concat(tail);
      if (received === size + 32 && trailer.equals(hash.digest()))
        return finish({ kind: 'exact', detail: 'sha256 ok', received });
      // Short or wrong: was it a real FIN, or a RST that Node reported as 'end' because bytes were
      // still unread (libuv#2319)? The kernel tells: a write after a RST fails.
      clearTimeout(stall);
      void endKind(sock).then((k) =>
        finish(
          k === 'RST'
            ? { kind: 'visible', detail: 'ECONNRESET (reported by Node as end; write refused)', received }
            : {
                kind: 'wrong',
                detail: `clean end after ${received} of ${size + 32} bytes${received === size + 32 ? ', sha256 differs' : ''}`,
                received,
              },
        ),
      );
    });
    sock.once('error', (err: NodeJS.ErrnoException) =>
      finish({ kind: 'visible', detail: err.code ?? err.message, received }),
    );
    sock.once('close', () => {
      // After 'end' the probe decides; a close alone says nothing about how the data ended.
      if (!ended) finish({ kind: 'visible', detail: 'closed without end or error', received });
    });
    const head = Buffer.alloc(8);
    head.writeBigUInt64BE(BigInt(size));
    sock.write(head);
  });
}

/** Milliseconds from `since` until a fresh small transfer completes exactly (tries every 100 ms). */
async function timeToNewConnection(
  mesh: TestMesh,
  host: string,
  since: number,
  limitMs = 30_000,
): Promise<number | undefined> {
  while (Date.now() - since < limitMs) {
    const o = await Promise.race([
      transfer(mesh, host, 16 * 1024),
      new Promise<Outcome>((r) =>
        setTimeout(() => r({ kind: 'stalled', detail: 'probe timeout', received: 0 }), 2000),
      ),
    ]);
    if (o.kind === 'exact') return Date.now() - since;
    await sleep(100);
  }
  return undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function tally(scenario: string, outcomes: Outcome[], recoveryMs: number | undefined, note: string): Row {
  const n = (k: Kind) => outcomes.filter((o) => o.kind === k).length;
  const row: Row = {
    scenario,
    transfers: outcomes.length,
    exact: n('exact'),
    visible: n('visible'),
    wrong: n('wrong'),
    stalled: n('stalled'),
    recoveryMs,
    note,
    wrongDetails: outcomes
      .filter((o) => o.kind === 'wrong' || o.kind === 'stalled')
      .map((o) => o.detail)
      .slice(0, 5),
  };
  const visibleKinds = [...new Set(outcomes.filter((o) => o.kind === 'visible').map((o) => o.detail))].join(
    ', ',
  );
  if (visibleKinds) row.note += `${row.note ? '; ' : ''}failures seen by the app: ${visibleKinds}`;
  rows.push(row);
  console.log(`faults: ${JSON.stringify(row)}`);
  return row;
}

function expectNoSilentLoss(row: Row): void {
  expect(
    row.wrong,
    `${row.scenario}: transfers that ended cleanly with wrong/missing bytes: ${row.wrongDetails.join(' | ')}`,
  ).toBe(0);
  expect(row.stalled, `${row.scenario}: transfers that hung: ${row.wrongDetails.join(' | ')}`).toBe(0);
  expect(row.exact + row.visible).toBe(row.transfers);
}

/** Waits until `url` answers 200 (a restarted component's readiness), up to `limitMs`. */
async function untilReady(url: string, limitMs: number): Promise<boolean> {
  const end = Date.now() + limitMs;
  while (Date.now() < end) {
    const ok = await new Promise<boolean>((resolve) => {
      const req = http.get(url, { timeout: 500 }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => req.destroy());
    });
    if (ok) return true;
    await sleep(50);
  }
  return false;
}

/**
 * Kills a component as a crash would (SIGKILL to its pid, not through the mesh's own `kill`,
 * which marks it stopped on purpose) and waits for the mesh's supervisor to start it again and
 * for it to report ready. Returns when it was back, and whether the supervisor did it.
 */
async function crashAndReturn(
  mesh: TestMesh,
  name: string,
  readyUrl: string,
): Promise<{ back: number; supervised: boolean; downMs: number }> {
  const pid = mesh.mesh.pid(name);
  if (!pid) throw new Error(`${name} is not running`);
  const killed = Date.now();
  process.kill(pid, 'SIGKILL');
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const now = mesh.mesh.pid(name);
    if (now && now !== pid && (await untilReady(readyUrl, 200)))
      return { back: Date.now(), supervised: true, downMs: Date.now() - killed };
    await sleep(50);
  }
  // Nobody restarted it: do it here so the rest of the scenario still measures the data path.
  await mesh.mesh.restart(name);
  await untilReady(readyUrl, 10_000);
  return { back: Date.now(), supervised: false, downMs: Date.now() - killed };
}

/**
 * Scenarios (a) and (c): TRANSFERS transfers to `target`, `component` crashed while they run
 * (crashAndReturn), the time until a new connection works again, and the row tallied and checked
 * for silent loss (expectNoSilentLoss). Returns what each scenario asserts further.
 */
async function killMidTransfer(
  m: TestMesh,
  f: { scenario: string; target: string; component: string; readyUrl: string },
): Promise<{ supervised: boolean; recoveryMs: number | undefined }> {
  const running = Array.from({ length: TRANSFERS }, () => transfer(m, f.target, SIZE));
  await sleep(FAULT_AFTER_MS);
  const { back, supervised, downMs } = await crashAndReturn(m, f.component, f.readyUrl);
  const recoveryMs = await timeToNewConnection(m, f.target, back);
  const row = tally(
    f.scenario,
    await Promise.all(running),
    recoveryMs,
    supervised
      ? `restarted by the mesh supervisor, ready ${downMs} ms after the kill`
      : 'NOT restarted by the mesh: the test restarted it',
  );
  expectNoSilentLoss(row);
  return { supervised, recoveryMs };
}

describe('faults with bytes checked (100 concurrent transfers, SHA-256 at the receiving app)', () => {
  let mesh: TestMesh | undefined;
  let sink: net.Server | undefined;
  const O = 180;
  const ECHO_V2 = `127.0.${O}.12`;
  const VIA_WAYPOINT = `127.0.${O}.101`;

  afterAll(async () => {
    await closeServer(sink);
    // AMBIT_FAULT_LOGS=FILE keeps every log line of the mesh, to see which hop ended a transfer.
    if (mesh && process.env.AMBIT_FAULT_LOGS)
      await writeFile(process.env.AMBIT_FAULT_LOGS, mesh.logs.map((l) => JSON.stringify(l)).join('\n'));
    await mesh?.stop();
    if (rows.length) {
      const lines = [
        `faults: ${TRANSFERS} transfers of ${SIZE / 1024} KiB each, paced over ${PACE_MS} ms`,
        '| scenario | transfers | exact | failed visibly | wrong | hung | new connections after (ms) | note |',
        '| --- | --- | --- | --- | --- | --- | --- | --- |',
        ...rows.map(
          (r) =>
            `| ${r.scenario} | ${r.transfers} | ${r.exact} | ${r.visible} | ${r.wrong} | ${r.stalled} | ${r.recoveryMs ?? 'never'} | ${r.note} |`,
        ),
      ];
      console.log(lines.join('\n'));
    }
  });

  it('starts the mesh with a sink app on echo-v2 and a waypoint in front of a service', async () => {
    mesh = await new TestMesh({
      octet: O,
      extraManifests: [
        waypointGateway(`127.0.${O}.200`),
        demoService(
          'sink',
          VIA_WAYPOINT,
          { app: 'echo', version: 'v2' },
          `[{name: tcp-sink, port: ${SINK_PORT}}]`,
          true,
        ),
      ].join('---\n'),
    }).start();
    sink = await sinkServer(ECHO_V2);
    expect((await transfer(mesh, ECHO_V2, 64 * 1024)).kind).toBe('exact');
    expect((await transfer(mesh, VIA_WAYPOINT, 64 * 1024)).kind).toBe('exact');
  }, 90_000);

  it('(a) destination node proxy killed mid-transfer and restarted: no transfer ends short but clean', async () => {
    if (!mesh) throw new Error('mesh did not start');
    const { supervised, recoveryMs } = await killMidTransfer(mesh, {
      scenario: '(a) destination node proxy killed',
      target: ECHO_V2,
      component: 'node/node-2',
      readyUrl: `http://127.0.${O}.2:15021/healthz/ready`,
    });
    expect(supervised, 'ambit up restarts a dead node proxy (issue 12)').toBe(true);
    expect(recoveryMs ?? Infinity).toBeLessThanOrEqual(RECOVERY_GOAL_MS);
  }, 120_000);

  it('(b) control plane down for 30 s: transfers and new connections keep working, config flows again soon after', async () => {
    if (!mesh) throw new Error('mesh did not start');
    const m = mesh;
    const running = Array.from({ length: TRANSFERS }, () => transfer(m, ECHO_V2, SIZE));
    await sleep(FAULT_AFTER_MS);
    await m.mesh.kill('controlplane');
    const down = Date.now();
    // New connections during the outage: one wave in the middle.
    await sleep(CP_OUTAGE_MS / 2);
    const during = await Promise.all(Array.from({ length: 10 }, () => transfer(m, ECHO_V2, 64 * 1024)));
    await sleep(Math.max(0, CP_OUTAGE_MS - (Date.now() - down)));
    const logMark = m.logs.length;
    await m.mesh.restart('controlplane');
    const back = Date.now();
    const recoveryMs = await timeToNewConnection(m, ECHO_V2, back);
    // Both node proxies back on xDS (the issue measured 11–15 s with an uncapped backoff).
    let reconnectMs: number | undefined;
    try {
      for (const node of ['node/node-1', 'node/node-2']) {
        await m.waitForLog(
          (l) => l.component === node && l.rec.msg === 'xDS stream connected',
          20_000,
          logMark,
        );
      }
      reconnectMs = Date.now() - back;
    } catch {
      reconnectMs = undefined;
    }
    const row = tally(
      '(b) control plane down 30 s',
      [...(await Promise.all(running)), ...during],
      recoveryMs,
      `${TRANSFERS} in flight + 10 opened during the outage; node proxies back on xDS ${reconnectMs ?? 'never (20 s)'} ms after it returned`,
    );
    expectNoSilentLoss(row);
    expect(
      during.filter((o) => o.kind !== 'exact').map((o) => o.detail),
      'new connections during the outage',
    ).toEqual([]);
    expect(recoveryMs ?? Infinity).toBeLessThanOrEqual(RECOVERY_GOAL_MS);
    expect(reconnectMs ?? Infinity, 'xDS reconnect after the control plane returned').toBeLessThanOrEqual(
      5000,
    );
  }, 180_000);

  it('(c) waypoint killed mid-transfer: no transfer through it ends short but clean', async () => {
    if (!mesh) throw new Error('mesh did not start');
    const { recoveryMs } = await killMidTransfer(mesh, {
      scenario: '(c) waypoint killed',
      target: VIA_WAYPOINT,
      component: 'waypoint/demo/waypoint',
      readyUrl: `http://127.0.${O}.200:15021/healthz/ready`,
    });
    expect(recoveryMs ?? Infinity).toBeLessThanOrEqual(RECOVERY_GOAL_MS);
  }, 120_000);
});

describe('certificates rotating at a 10 s TTL under load', () => {
  let mesh: TestMesh | undefined;
  let sink: net.Server | undefined;
  const O = 181;
  const ECHO_V2 = `127.0.${O}.12`;

  afterAll(async () => {
    await closeServer(sink);
    await mesh?.stop();
  });

  it('(d) three waves of transfers across two rotations: every byte exact, new connections never fail', async () => {
    mesh = await new TestMesh({ octet: O, certTtlSeconds: 10 }).start();
    sink = await sinkServer(ECHO_V2);
    const m = mesh;
    const outcomes: Outcome[] = [];
    let probeFailures = 0;
    let probes = 0;
    let longestGapMs = 0;
    let lastOk = Date.now();
    const end = Date.now() + 25_000;
    const probing = (async () => {
      while (Date.now() < end) {
        probes++;
        const o = await transfer(m, ECHO_V2, 16 * 1024);
        if (o.kind === 'exact') {
          longestGapMs = Math.max(longestGapMs, Date.now() - lastOk);
          lastOk = Date.now();
        } else probeFailures++;
        await sleep(250);
      }
    })();
    // A third of the transfers in each wave, waves spread over 25 s (two 10 s rotations).
    for (let wave = 0; wave < 3; wave++) {
      const n = wave < 2 ? Math.floor(TRANSFERS / 3) : TRANSFERS - 2 * Math.floor(TRANSFERS / 3);
      outcomes.push(...(await Promise.all(Array.from({ length: n }, () => transfer(m, ECHO_V2, SIZE)))));
      await sleep(Math.max(0, 8000 - PACE_MS));
    }
    await probing;
    const rotations = m.logs.filter((l) => /rotat|renew/i.test(String(l.rec.msg))).length;
    const row = tally(
      '(d) certificates rotate (10 s TTL)',
      outcomes,
      probeFailures ? undefined : longestGapMs,
      `${rotations} rotation log lines; ${probes} new-connection probes, ${probeFailures} failed; recovery column: longest gap between good probes`,
    );
    expectNoSilentLoss(row);
    expect(row.visible, 'rotation must not cut a transfer').toBe(0);
    expect(probeFailures, 'new connections while certificates rotate').toBe(0);
  }, 120_000);
});
