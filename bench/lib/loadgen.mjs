// Load generator, in its own process so its CPU is not charged to the proxy under test.
// Optionally enters the mesh through a SOCKS5 proxy (local mode capture).
//   bulk: one or more streams read bytes from a source for D seconds → bytes/s
//   rps:  C keep-alive HTTP/1.1 connections, closed loop, for D seconds → req/s and latencies
// usage: node loadgen.mjs JSON-OPTIONS ; prints one JSON result line.
import net from 'node:net';

const o = JSON.parse(process.argv[2]);

function socksConnect(proxy, host, port) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: proxy.host, port: proxy.port, noDelay: true });
    let buf = Buffer.alloc(0);
    let stage = 0;
    s.once('error', reject);
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

function open(host, port) {
  if (o.socks) return socksConnect(o.socks, host, port);
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, noDelay: true }, () => resolve(s));
    s.once('error', reject);
  });
}

async function bulk() {
  const socks = await Promise.all(Array.from({ length: o.streams }, () => open(o.host, o.port)));
  let bytes = 0;
  let counting = false;
  for (const s of socks) s.on('data', (c) => counting && (bytes += c.length));
  await new Promise((r) => setTimeout(r, o.warmupMs));
  counting = true;
  const t0 = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, o.durationMs));
  counting = false;
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  for (const s of socks) s.destroy();
  return { bytesPerSec: bytes / secs, bytes, secs };
}

async function rps() {
  const req = Buffer.from(`GET / HTTP/1.1\r\nHost: ${o.host}\r\n\r\n`);
  const conns = await Promise.all(Array.from({ length: o.connections }, () => open(o.host, o.port)));
  const lat = [];
  let measuring = false;
  let stop = false;
  let count = 0;
  await Promise.all(
    conns
      .map(
        (s) =>
          new Promise((resolve) => {
            let pending = '';
            let t0 = 0n;
            const send = () => {
              if (stop) return resolve();
              t0 = process.hrtime.bigint();
              s.write(req);
            };
            s.on('data', (c) => {
              pending += c.toString('latin1');
              // Responses have a fixed 64-byte body; one full response ends with it.
              const head = pending.indexOf('\r\n\r\n');
              if (head < 0) return;
              const len = Number(/content-length: (\d+)/i.exec(pending.slice(0, head))?.[1] ?? 0);
              if (pending.length < head + 4 + len) return;
              pending = pending.slice(head + 4 + len);
              if (measuring) {
                lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
                count++;
              }
              send();
            });
            s.on('error', () => resolve());
            send();
          }),
      )
      .concat(
        (async () => {
          await new Promise((r) => setTimeout(r, o.warmupMs));
          measuring = true;
          const t0 = process.hrtime.bigint();
          await new Promise((r) => setTimeout(r, o.durationMs));
          measuring = false;
          stop = true;
          globalThis.__secs = Number(process.hrtime.bigint() - t0) / 1e9;
        })(),
      ),
  );
  for (const s of conns) s.destroy();
  lat.sort((a, b) => a - b);
  const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? 0;
  return { rps: count / globalThis.__secs, count, p50: q(0.5), p90: q(0.9), p99: q(0.99), p999: q(0.999) };
}

const result = o.mode === 'bulk' ? await bulk() : await rps();
const cpu = process.cpuUsage();
console.log(JSON.stringify({ ...result, loadgenCpuSec: (cpu.user + cpu.system) / 1e6 }));
process.exit(0);
