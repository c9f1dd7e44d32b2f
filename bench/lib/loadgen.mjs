// Load generator, in its own process so its CPU is not charged to the proxy under test.
// Enters the path under test directly (host:port), through a SOCKS5 proxy (ambit's local-mode
// capture) or through an HTTP CONNECT proxy (peers that need one).
//   bulk:    N streams read bytes from a source for D seconds → bytes/s (receiver side)
//   rps:     C keep-alive HTTP/1.1 connections, closed loop → req/s and latencies
//   rate:    open loop at R req/s over C keep-alive connections; a request held up by the path
//            (its connection still busy when it was due) is measured from its scheduled time,
//            so a stall is charged to every request it delayed (no coordinated omission)
//   newconn: C workers, each opens a new connection per request (Connection: close) → conn/s
//   idle:    opens N connections and holds them until stdin closes (prints "open" when done)
//   h2rps:   C h2c connections (HTTP/2 with prior knowledge, node:http2), S streams in flight on
//            each, closed loop → req/s and latencies
//   h2rate:  open loop at R req/s spread round-robin over C h2c connections; each request is
//            timed from its send (h2 never holds a request behind another on its connection, so
//            a stall of the path shows as the response's lateness; peer stream limits queue
//            inside the client and are charged to the path)
// Options shared by the HTTP modes: `path` (default "/").
// Open-loop modes stop at a hard deadline (end of the window + 1 s): requests due in the window
// that are still unanswered then count as `unfinished`, with their time-so-far as a lower bound
// of their latency, and `rps` counts only responses that completed inside the window, so a path
// that cannot keep up shows a lower achieved rate instead of stretching the run.
// usage: node loadgen.mjs JSON-OPTIONS ; prints one JSON result line.
import http2 from 'node:http2';
import net from 'node:net';

const o = JSON.parse(process.argv[2]);

function socksConnect(proxy, host, port) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: proxy.host, port: proxy.port, noDelay: true });
    let buf = Buffer.alloc(0);
    let stage = 0;
    s.once('error', reject);
    s.once('close', () => reject(new Error('SOCKS5 proxy closed the connection during the handshake')));
    s.once('connect', () => s.write(Buffer.from([5, 1, 0])));
    const onData = (c) => {
      buf = Buffer.concat([buf, c]);
      if (stage === 0 && buf.length >= 2) {
        buf = buf.subarray(2);
        stage = 1;
        const p = Buffer.alloc(2);
        p.writeUInt16BE(port);
        s.write(Buffer.concat([Buffer.from([5, 1, 0, 1, ...host.split('.').map(Number)]), p]));
      }
      // The reply is 4 bytes + the bound address (IPv4 4, IPv6 16, name 1+len) + 2.
      const replyLen = buf.length >= 5 ? 6 + (buf[3] === 4 ? 16 : buf[3] === 3 ? 1 + buf[4] : 4) : Infinity;
      if (stage === 1 && buf.length >= replyLen) {
        s.off('data', onData);
        s.off('error', reject);
        if (buf[1] !== 0) return reject(new Error(`socks reply ${buf[1]}`));
        // A server that speaks first (an h2c server's SETTINGS) may already have sent bytes
        // behind the reply: keep them for whoever reads the tunnel next.
        s.pause();
        if (buf.length > replyLen) s.unshift(buf.subarray(replyLen));
        resolve(s);
      }
    };
    s.on('data', onData);
  });
}

function httpConnect(proxy, host, port) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: proxy.host, port: proxy.port, noDelay: true });
    let buf = '';
    s.once('error', reject);
    s.once('close', () => reject(new Error('CONNECT proxy closed the connection before answering')));
    s.once('connect', () => s.write(`CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`));
    const onData = (c) => {
      buf += c.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      s.off('data', onData);
      s.off('error', reject);
      if (!/^HTTP\/1\.[01] 200/.test(buf))
        return reject(new Error(`CONNECT answered ${buf.split('\r\n')[0]}`));
      const rest = Buffer.from(buf.slice(end + 4), 'latin1');
      if (rest.length) s.unshift(rest);
      resolve(s);
    };
    s.on('data', onData);
  });
}

function open(host, port) {
  if (o.socks) return socksConnect(o.socks, host, port);
  if (o.httpConnect) return httpConnect(o.httpConnect, host, port);
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, noDelay: true }, () => resolve(s));
    s.once('error', reject);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => Number(process.hrtime.bigint()) / 1e6; // ms

function quantiles(lat) {
  lat.sort((a, b) => a - b);
  const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? 0;
  return { p50: q(0.5), p90: q(0.9), p99: q(0.99), p999: q(0.999) };
}

/**
 * Calls onResponse(ok) once per complete HTTP/1.1 response (content-length bodies) on socket s;
 * ok is whether its status was 2xx.
 */
function responses(s, onResponse) {
  let pending = '';
  s.on('data', (c) => {
    pending += c.toString('latin1');
    for (;;) {
      const head = pending.indexOf('\r\n\r\n');
      if (head < 0) return;
      const len = Number(/content-length: (\d+)/i.exec(pending.slice(0, head))?.[1] ?? 0);
      if (pending.length < head + 4 + len) return;
      const ok = pending.charCodeAt(9) === 50; // "HTTP/1.1 2xx"
      pending = pending.slice(head + 4 + len);
      onResponse(ok);
    }
  });
  s.resume(); // a SOCKS tunnel is handed over paused (see socksConnect)
}

const PATH = o.path ?? '/';
const REQ = (close) =>
  Buffer.from(`GET ${PATH} HTTP/1.1\r\nHost: ${o.host}\r\n${close ? 'Connection: close\r\n' : ''}\r\n`);
/** Grace after the measured window before an open-loop run gives up on outstanding requests. */
const GRACE_MS = 1000;

async function bulk() {
  const socks = await Promise.all(Array.from({ length: o.streams }, () => open(o.host, o.port)));
  let bytes = 0;
  let counting = false;
  for (const s of socks) s.on('data', (c) => counting && (bytes += c.length)).resume();
  await sleep(o.warmupMs);
  counting = true;
  const t0 = now();
  await sleep(o.durationMs);
  counting = false;
  const secs = (now() - t0) / 1000;
  for (const s of socks) s.destroy();
  return { bytesPerSec: bytes / secs, bytes, secs };
}

async function rps() {
  const req = REQ(false);
  const conns = await Promise.all(Array.from({ length: o.connections }, () => open(o.host, o.port)));
  const lat = [];
  let measuring = false;
  let stop = false;
  let errors = 0; // non-2xx responses (not counted as requests done)
  let closed = 0; // connections the path closed during the run
  for (const s of conns) {
    let t0 = 0;
    const send = () => {
      if (stop) return;
      t0 = now();
      s.write(req);
    };
    responses(s, (ok) => {
      if (measuring) {
        if (ok) lat.push(now() - t0);
        else errors++;
      }
      send();
    });
    s.on('error', () => {});
    s.on('close', () => !stop && closed++);
    send();
  }
  await sleep(o.warmupMs);
  measuring = true;
  const t0 = now();
  await sleep(o.durationMs);
  measuring = false;
  stop = true;
  const secs = (now() - t0) / 1000;
  const count = lat.length;
  for (const s of conns) s.destroy();
  return { rps: count / secs, count, errors, closed, ...quantiles(lat) };
}

async function rate() {
  const req = REQ(false);
  const conns = await Promise.all(Array.from({ length: o.connections }, () => open(o.host, o.port)));
  const interval = (1000 * o.connections) / o.rate; // ms between requests on one connection
  const start = now() + 5;
  const measureFrom = start + o.warmupMs;
  const end = measureFrom + o.durationMs;
  const lat = [];
  let late = 0;
  let done = 0; // 2xx responses completed inside the measured window
  let errors = 0; // non-2xx responses
  const stuck = []; // per connection given up at the deadline: { inFlight, from, due }
  await Promise.all(
    conns.map(
      (s, i) =>
        new Promise((resolve) => {
          // Connection i's k-th request is due at start + (i/C + k) * interval.
          let k = 0;
          let inFlight = false;
          let due = start + (i / o.connections) * interval;
          let freeAt = 0; // when the previous response completed
          let from = 0; // the time this request's latency is measured from
          let timer;
          const finish = () => {
            clearTimeout(timer);
            clearTimeout(deadline);
            resolve();
          };
          // A path that cannot keep up must not stretch the run: give up at the deadline.
          const deadline = setTimeout(
            () => {
              stuck[i] = { inFlight, from, due };
              finish();
            },
            end + GRACE_MS - now(),
          );
          const trySend = () => {
            if (inFlight) return;
            if (due >= end) return finish();
            const t = now();
            if (t < due) {
              timer = setTimeout(trySend, Math.max(0, due - t - 0.5));
              return;
            }
            if (t - due > interval) late++;
            // A request the path held up (its connection was still busy when it was due) is
            // measured from when it was due; one our own timer fired late for, from its send.
            from = freeAt > due ? due : t;
            inFlight = true;
            s.write(req);
          };
          responses(s, (ok) => {
            inFlight = false;
            const t = now();
            freeAt = t;
            if (!ok) errors++;
            else if (due >= measureFrom && due < end) lat.push(t - from);
            if (ok && t >= measureFrom && t < end) done++;
            k++;
            due = start + (i / o.connections + k) * interval;
            trySend();
          });
          s.on('error', finish);
          trySend();
        }),
    ),
  );
  const stoppedAt = now();
  for (const s of conns) s.destroy();
  // A connection given up at the deadline: its request in flight, and every later one that was
  // due in the window but never sent, count with their time so far (a lower bound).
  let unfinished = 0;
  for (const c of stuck.filter(Boolean)) {
    for (let d = c.due, first = true; d < end; d += interval, first = false) {
      if (d < measureFrom) continue;
      lat.push(stoppedAt - (first && c.inFlight ? c.from : d));
      unfinished++;
    }
  }
  const secs = o.durationMs / 1000;
  return {
    rps: done / secs,
    target: o.rate,
    count: lat.length,
    late,
    unfinished,
    errors,
    ...quantiles(lat),
  };
}

/** An h2c session to host:port through the path's entry (direct, SOCKS5 or HTTP CONNECT). */
async function h2session() {
  const sock = await open(o.host, o.port);
  const session = http2.connect(`http://${o.host}:${o.port}`, {
    createConnection: () => sock,
    peerMaxConcurrentStreams: 1000,
  });
  session.on('error', () => {});
  await new Promise((resolve, reject) => {
    session.once('connect', resolve);
    session.once('error', reject);
    session.once('close', () => reject(new Error('h2c session closed before it was ready')));
  });
  return session;
}

/** Sends one GET on an h2 session; calls back once with true (a complete 2xx) or false. */
function h2get(session, cb) {
  let ok = false;
  let called = false;
  const once = (v) => {
    if (!called) {
      called = true;
      cb(v);
    }
  };
  let st;
  try {
    st = session.request({ ':method': 'GET', ':path': PATH, ':authority': `${o.host}:${o.port}` });
  } catch {
    return setImmediate(() => once(false));
  }
  st.on('response', (h) => (ok = h[':status'] >= 200 && h[':status'] < 300));
  st.on('data', () => {});
  st.on('end', () => once(ok));
  st.on('error', () => once(false));
  st.on('close', () => once(false));
  st.end();
}

async function h2rps() {
  const sessions = await Promise.all(Array.from({ length: o.connections }, h2session));
  const lat = [];
  let measuring = false;
  let stop = false;
  let errors = 0;
  for (const session of sessions)
    for (let j = 0; j < (o.streams ?? 10); j++) {
      const send = () => {
        if (stop || session.destroyed) return;
        const t0 = now();
        h2get(session, (ok) => {
          if (measuring) {
            if (ok) lat.push(now() - t0);
            else errors++;
          }
          send();
        });
      };
      send();
    }
  await sleep(o.warmupMs);
  measuring = true;
  const t0 = now();
  await sleep(o.durationMs);
  measuring = false;
  stop = true;
  const secs = (now() - t0) / 1000;
  const count = lat.length;
  for (const s of sessions) s.destroy();
  return { rps: count / secs, count, errors, ...quantiles(lat) };
}

async function h2rate() {
  const sessions = await Promise.all(Array.from({ length: o.connections }, h2session));
  const interval = 1000 / o.rate; // ms between requests overall
  const start = now() + 5;
  const measureFrom = start + o.warmupMs;
  const end = measureFrom + o.durationMs;
  const lat = [];
  const outstanding = new Map(); // request number → send time, for requests due in the window
  let late = 0;
  let done = 0;
  let errors = 0;
  let n = 0; // next request number
  await new Promise((resolve) => {
    let timer;
    const deadline = setTimeout(
      () => {
        clearTimeout(timer);
        resolve();
      },
      end + GRACE_MS - now(),
    );
    const tick = () => {
      const t = now();
      for (; start + n * interval <= t; n++) {
        const due = start + n * interval;
        if (due >= end) {
          clearTimeout(deadline);
          // Wait for the outstanding ones, but never past the deadline.
          const wait = () =>
            outstanding.size === 0 || now() >= end + GRACE_MS ? resolve() : setTimeout(wait, 5);
          wait();
          return;
        }
        if (t - due > interval && t - due > 1) late++;
        const measured = due >= measureFrom;
        const id = n;
        if (measured) outstanding.set(id, t);
        h2get(sessions[n % sessions.length], (ok) => {
          const tr = now();
          if (measured && outstanding.delete(id)) {
            if (ok) lat.push(tr - t);
            else errors++;
          }
          if (ok && tr >= measureFrom && tr < end) done++;
        });
      }
      timer = setTimeout(tick, Math.max(0, start + n * interval - now() - 0.5));
    };
    tick();
  });
  const stoppedAt = now();
  const unfinished = outstanding.size;
  for (const sent of outstanding.values()) lat.push(stoppedAt - sent);
  for (const s of sessions) s.destroy();
  const secs = o.durationMs / 1000;
  return { rps: done / secs, target: o.rate, count: lat.length, late, unfinished, errors, ...quantiles(lat) };
}

async function newconn() {
  const req = REQ(true);
  const lat = [];
  let measuring = false;
  let stop = false;
  let errors = 0;
  const worker = async () => {
    while (!stop) {
      const t0 = now();
      try {
        const s = await open(o.host, o.port);
        await new Promise((resolve) => {
          responses(s, () => {
            s.destroy();
            resolve();
          });
          s.on('error', resolve);
          s.on('close', resolve);
          s.write(req);
        });
        if (measuring) lat.push(now() - t0);
      } catch {
        errors++;
        await sleep(5);
      }
    }
  };
  const workers = Array.from({ length: o.concurrency }, worker);
  await sleep(o.warmupMs);
  measuring = true;
  const t0 = now();
  await sleep(o.durationMs);
  measuring = false;
  const secs = (now() - t0) / 1000;
  const count = lat.length;
  stop = true;
  await Promise.all(workers);
  return { connPerSec: count / secs, count, errors, ...quantiles(lat) };
}

async function idle() {
  const conns = [];
  for (let i = 0; i < o.count; i += 200) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(200, o.count - i) }, () => open(o.host, o.port)),
    );
    conns.push(...batch);
  }
  for (const s of conns) s.on('error', () => {});
  process.stdout.write(JSON.stringify({ open: conns.length }) + '\n');
  await new Promise((r) => process.stdin.once('end', r).resume());
  for (const s of conns) s.destroy();
  return { open: conns.length };
}

/** One GET (h1, or h2c with `h2: true`) through the path; resolves with its status (0: failed). */
async function probe() {
  const give = (ms, p) => Promise.race([p, sleep(ms).then(() => 0)]);
  if (o.h2) {
    const session = await h2session();
    const status = await give(
      5000,
      new Promise((resolve) => {
        const st = session.request({ ':method': 'GET', ':path': PATH, ':authority': `${o.host}:${o.port}` });
        let code = 0;
        st.on('response', (h) => (code = h[':status']));
        st.on('data', () => {});
        st.on('end', () => resolve(code));
        st.on('error', () => resolve(0));
        st.end();
      }),
    );
    session.destroy();
    return { status };
  }
  const s = await open(o.host, o.port);
  const status = await give(
    5000,
    new Promise((resolve) => {
      s.once('data', (c) => resolve(Number(c.toString('latin1', 9, 12)) || 0)).resume();
      s.once('error', () => resolve(0));
      s.write(REQ(true));
    }),
  );
  s.destroy();
  return { status };
}

const modes = { bulk, rps, rate, newconn, idle, h2rps, h2rate, probe };
const result = await modes[o.mode]();
const cpu = process.cpuUsage();
console.log(JSON.stringify({ ...result, loadgenCpuSec: (cpu.user + cpu.system) / 1e6 }));
process.exit(0);
