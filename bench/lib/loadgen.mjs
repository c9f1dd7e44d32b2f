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
// usage: node loadgen.mjs JSON-OPTIONS ; prints one JSON result line.
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
      if (stage === 1 && buf.length >= 10) {
        s.off('data', onData);
        s.off('error', reject);
        if (buf[1] !== 0) return reject(new Error(`socks reply ${buf[1]}`));
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

/** Calls onResponse once per complete HTTP/1.1 response (content-length bodies) on socket s. */
function responses(s, onResponse) {
  let pending = '';
  s.on('data', (c) => {
    pending += c.toString('latin1');
    for (;;) {
      const head = pending.indexOf('\r\n\r\n');
      if (head < 0) return;
      const len = Number(/content-length: (\d+)/i.exec(pending.slice(0, head))?.[1] ?? 0);
      if (pending.length < head + 4 + len) return;
      pending = pending.slice(head + 4 + len);
      onResponse();
    }
  });
}

const REQ = (close) =>
  Buffer.from(`GET / HTTP/1.1\r\nHost: ${o.host}\r\n${close ? 'Connection: close\r\n' : ''}\r\n`);

async function bulk() {
  const socks = await Promise.all(Array.from({ length: o.streams }, () => open(o.host, o.port)));
  let bytes = 0;
  let counting = false;
  for (const s of socks) s.on('data', (c) => counting && (bytes += c.length));
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
  for (const s of conns) {
    let t0 = 0;
    const send = () => {
      if (stop) return;
      t0 = now();
      s.write(req);
    };
    responses(s, () => {
      if (measuring) lat.push(now() - t0);
      send();
    });
    s.on('error', () => {});
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
  return { rps: count / secs, count, ...quantiles(lat) };
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
          const trySend = () => {
            if (inFlight) return;
            if (due >= end) return resolve();
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
          responses(s, () => {
            inFlight = false;
            const t = now();
            freeAt = t;
            if (due >= measureFrom && due < end) lat.push(t - from);
            k++;
            due = start + (i / o.connections + k) * interval;
            trySend();
          });
          s.on('error', () => {
            clearTimeout(timer);
            resolve();
          });
          trySend();
        }),
    ),
  );
  for (const s of conns) s.destroy();
  const secs = o.durationMs / 1000;
  return { rps: lat.length / secs, target: o.rate, count: lat.length, late, ...quantiles(lat) };
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

const modes = { bulk, rps, rate, newconn, idle };
const result = await modes[o.mode]();
const cpu = process.cpuUsage();
console.log(JSON.stringify({ ...result, loadgenCpuSec: (cpu.user + cpu.system) / 1e6 }));
process.exit(0);
