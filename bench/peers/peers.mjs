// Established C proxies started next to ambit in the same benchmark run (see bench/README.md,
// "Peers"). Each starter returns
//   { name, entry: { host, port, connect? }, pids, processes, stop() }
// where `entry` is where the load generator connects, `pids` are every process of the peer
// (masters and their worker processes, for CPU/RSS accounting from /proc), `processes` the same
// with the role each plays ({ pid, role, helper }: a helper is not one of the pair's two ends,
// as tinyproxy behind the nghttpx pair), and `stop()` ends
// them and removes the peer's temporary files. A missing binary throws PeerUnavailable, so a
// suite can skip that peer with a message (install them with bench/peers/install.sh).
// The haproxy TCP-mode mutual-TLS pair lives in haproxy-pair.mjs, built on launch(), need() and
// addr() exported from here.
import { spawn, execFile } from 'node:child_process';
import { access, constants, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The peer cannot run on this machine (its binary is missing); the suite skips it. */
export class PeerUnavailable extends Error {
  constructor(peer, detail) {
    super(`${peer} unavailable: ${detail} (install with: sudo bench/peers/install.sh)`);
    this.name = 'PeerUnavailable';
    this.peer = peer;
  }
}

const SEARCH = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/bin', '/bin'];

/** The first of `names` found as an executable on PATH or in /usr/sbin, /sbin. */
export async function findBinary(names) {
  for (const name of names)
    for (const dir of SEARCH.filter(Boolean)) {
      const file = path.join(dir, name);
      try {
        await access(file, constants.X_OK);
        return file;
      } catch {
        // next
      }
    }
  return undefined;
}

export async function need(peer, names, pkg) {
  const bin = await findBinary(names);
  if (!bin) throw new PeerUnavailable(peer, `${names.join(' or ')} not found (Debian package ${pkg})`);
  return bin;
}

// HTTP/2 windows as ambit's HBONE uses them (src/hbone/constants.ts), so that the nghttpx pair is
// not held back by the 64 KiB defaults.
const H2_STREAM_WINDOW = '4M';
const H2_CONNECTION_WINDOW = '16M';

/**
 * ECDSA P-256 certificates for the mTLS peers, made with the openssl CLI into `certDir` (kept and
 * reused when already there): ca.{crt,key}, server.{crt,key} (SAN DNS:server and `serverIp`),
 * client.{crt,key} (SAN DNS:client). Returns the file paths.
 */
export async function ensureCerts(certDir, serverIp = '127.0.0.1') {
  const openssl = await need('certificates', ['openssl'], 'openssl');
  await mkdir(certDir, { recursive: true });
  const f = (n) => path.join(certDir, n);
  const files = {
    ca: f('ca.crt'),
    serverCert: f('server.crt'),
    serverKey: f('server.key'),
    clientCert: f('client.crt'),
    clientKey: f('client.key'),
  };
  const have = await Promise.all(
    Object.values(files).map((p) =>
      access(p).then(
        () => true,
        () => false,
      ),
    ),
  );
  const sanFile = f('server.ext');
  if (have.every(Boolean)) {
    const ext = await readFile(sanFile, 'utf8').catch(() => '');
    if (ext.includes(`IP:${serverIp}`)) return files;
  }
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await run(
    openssl,
    ['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', files.ca, '-days', '30'].concat([
      '-subj',
      '/CN=ambit-bench-peers-ca',
    ]),
  );
  for (const [n, san, eku] of [
    ['server', `DNS:server,IP:${serverIp}`, 'serverAuth'],
    ['client', 'DNS:client', 'clientAuth'],
  ]) {
    await writeFile(f(`${n}.ext`), `subjectAltName=${san}\nextendedKeyUsage=${eku}\n`);
    await run(openssl, ['req', ...ec, '-keyout', f(`${n}.key`), '-out', f(`${n}.csr`), '-subj', `/CN=${n}`]);
    await run(
      openssl,
      ['x509', '-req', '-in', f(`${n}.csr`), '-CA', files.ca, '-CAkey', f('ca.key')].concat([
        '-CAcreateserial',
        '-out',
        f(`${n}.crt`),
        '-days',
        '30',
        '-extfile',
        f(`${n}.ext`),
      ]),
    );
  }
  return files;
}

/** Resolves when host:port accepts a TCP connection; rejects after `timeoutMs`. */
export async function waitForPort(host, port, timeoutMs = 10_000, isDead = () => undefined) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    const dead = isDead();
    if (dead) throw new Error(dead);
    if (Date.now() > deadline)
      throw new Error(`${host}:${port} did not accept connections in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** All descendants of `pid` (worker processes), from /proc/<pid>/task/<tid>/children. */
async function descendants(pid) {
  const out = [];
  const tasks = await readdir(`/proc/${pid}/task`).catch(() => []);
  for (const tid of tasks) {
    const kids = await readFile(`/proc/${pid}/task/${tid}/children`, 'utf8').catch(() => '');
    for (const k of kids.split(/\s+/).filter(Boolean).map(Number)) out.push(k, ...(await descendants(k)));
  }
  return out;
}

/**
 * Starts one process; its stdout/stderr go to `logFile`-like memory (last 8 KiB) so that a failed
 * start reports why.
 */
export function startProcess(bin, args, { cwd, env } = {}) {
  const child = spawn(bin, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const keep = (c) => {
    log = (log + c.toString()).slice(-8192);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited;
  const exit = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
    child.once('error', (err) => {
      exited = { code: -1, signal: null, err };
      resolve(exited);
    });
  });
  return {
    child,
    exit,
    log: () => log,
    dead: () =>
      exited &&
      `${path.basename(bin)} exited (${exited.err?.message ?? exited.signal ?? exited.code}): ${log.trim().slice(-2000)}`,
  };
}

export async function stopProcesses(procs, extraPids, dirs) {
  for (const p of procs) if (!p.dead()) p.child.kill('SIGTERM');
  const timeout = (ms) => new Promise((r) => setTimeout(r, ms, 'timeout'));
  for (const p of procs) {
    if ((await Promise.race([p.exit, timeout(3000)])) === 'timeout') {
      p.child.kill('SIGKILL');
      await p.exit;
    }
  }
  // Worker processes normally follow their master; make sure none is left behind.
  for (const pid of extraPids) {
    try {
      process.kill(pid, 0);
    } catch {
      continue;
    }
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 50));
      try {
        process.kill(pid, 0);
      } catch {
        break;
      }
      if (i === 19) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
  }
  for (const d of dirs) await rm(d, { recursive: true, force: true });
}

/** Starts processes in order, each waited for at its port; returns the peer handle. */
export async function launch(name, entry, steps, ownDirs) {
  const procs = [];
  try {
    for (const { bin, args, wait } of steps) {
      const p = startProcess(bin, args);
      procs.push(p);
      if (wait) await waitForPort(wait.host, wait.port, 10_000, p.dead);
    }
  } catch (err) {
    await stopProcesses(procs, [], ownDirs);
    throw new Error(`${name} failed to start: ${err.message}`, { cause: err });
  }
  const masters = procs.map((p) => p.child.pid);
  const children = await Promise.all(masters.map(descendants));
  const workers = children.flat();
  // Every process with the role it plays, so the cost suite can charge the two ends of the pair
  // and list helpers (tinyproxy) apart (bench/lib/cost-accounting.mjs).
  const processes = steps.flatMap((s, i) => {
    const role = s.role ?? path.basename(s.bin);
    const helper = Boolean(s.helper);
    if (!children[i].length) return [{ pid: masters[i], role, helper }];
    return [
      { pid: masters[i], role: `${role}, master`, helper },
      ...children[i].map((pid) => ({ pid, role: `${role}, worker`, helper })),
    ];
  });
  let stopped;
  return {
    name,
    entry,
    pids: [...masters, ...workers],
    processes,
    stop: () => (stopped ??= stopProcesses(procs, workers, ownDirs)),
  };
}

export const addr = (a, what) => {
  if (!a?.host || !a?.port) throw new Error(`${what} must be { host, port }`);
  return a;
};

/**
 * client → stunnel (client mode: plain TCP in, TLS 1.3 with a client certificate out) → stunnel
 * (server mode: requires and verifies the client certificate) → target. The L4 analogue of two
 * ambit node proxies: one TCP connection and one TLS session per client connection (no pooling,
 * no multiplexing).
 * @param {{ clientAddr: {host,port}, serverAddr: {host,port}, target: {host,port}, certDir?: string }} o
 */
export async function startStunnelPair(o) {
  const bin = await need('stunnel pair', ['stunnel4', 'stunnel'], 'stunnel4');
  const clientAddr = addr(o.clientAddr, 'clientAddr');
  const serverAddr = addr(o.serverAddr, 'serverAddr');
  const target = addr(o.target, 'target');
  const dir = await mkdtemp(path.join(tmpdir(), 'ambit-peer-stunnel-'));
  const certs = await ensureCerts(o.certDir ?? path.join(dir, 'certs'), serverAddr.host);
  const common = [
    'foreground = yes',
    'pid =',
    'debug = 4',
    'syslog = no',
    'socket = l:TCP_NODELAY=1',
    'socket = r:TCP_NODELAY=1',
  ];
  const tls = [`CAfile = ${certs.ca}`, 'verifyChain = yes', 'sslVersionMin = TLSv1.3'];
  const serverConf = path.join(dir, 'server.conf');
  const clientConf = path.join(dir, 'client.conf');
  await writeFile(
    serverConf,
    [
      ...common,
      '[server]',
      `accept = ${serverAddr.host}:${serverAddr.port}`,
      `connect = ${target.host}:${target.port}`,
      `cert = ${certs.serverCert}`,
      `key = ${certs.serverKey}`,
      ...tls,
      'requireCert = yes',
      '',
    ].join('\n'),
  );
  await writeFile(
    clientConf,
    [
      ...common,
      '[client]',
      'client = yes',
      `accept = ${clientAddr.host}:${clientAddr.port}`,
      `connect = ${serverAddr.host}:${serverAddr.port}`,
      `cert = ${certs.clientCert}`,
      `key = ${certs.clientKey}`,
      ...tls,
      'checkHost = server',
      '',
    ].join('\n'),
  );
  return launch(
    'stunnel pair',
    { host: clientAddr.host, port: clientAddr.port },
    [
      { bin, args: [serverConf], wait: serverAddr, role: 'stunnel server side' },
      { bin, args: [clientConf], wait: clientAddr, role: 'stunnel client side' },
    ],
    [dir],
  );
}

/**
 * HTTP/2 CONNECT over mTLS between two nghttpx instances, the same framing as HBONE:
 *
 *   loadgen ─HTTP/1.1 CONNECT target─▶ nghttpx#1 (--http2-proxy, plain HTTP/1.1 frontend on
 *   clientAddr) ═h2 CONNECT over TLS 1.3, client cert, pooled═▶ nghttpx#2 (--http2-proxy, TLS
 *   frontend on serverAddr, verifies the client cert) ─HTTP/1.1 CONNECT─▶ tinyproxy (finalAddr)
 *   ─TCP─▶ target
 *
 * nghttpx never opens the tunnel's TCP connection itself: in proxy mode it forwards CONNECT to
 * its backend, which must be a forward proxy. tinyproxy (C, Debian package tinyproxy-bin) is that
 * last hop. The load generator must send
 *   `CONNECT <host>:<port> HTTP/1.1\r\nHost: <host>:<port>\r\n\r\n`
 * and read a response head up to `\r\n\r\n` whose status line is `HTTP/1.1 200 ...`; after that
 * the connection is the tunnel. `entry.connect` is true to say so.
 * @param {{ clientAddr: {host,port}, serverAddr: {host,port}, finalAddr: {host,port}, target: {host,port}, certDir?: string, workers?: number }} o
 */
export async function startNghttpxPair(o) {
  const bin = await need('nghttpx pair', ['nghttpx'], 'nghttp2-proxy');
  const tinyproxy = await need('nghttpx pair (last CONNECT hop)', ['tinyproxy'], 'tinyproxy-bin');
  const clientAddr = addr(o.clientAddr, 'clientAddr');
  const serverAddr = addr(o.serverAddr, 'serverAddr');
  const finalAddr = addr(o.finalAddr, 'finalAddr');
  const target = addr(o.target, 'target');
  const workers = String(o.workers ?? 1);
  const dir = await mkdtemp(path.join(tmpdir(), 'ambit-peer-nghttpx-'));
  const certs = await ensureCerts(o.certDir ?? path.join(dir, 'certs'), serverAddr.host);
  const tpConf = path.join(dir, 'tinyproxy.conf');
  await writeFile(
    tpConf,
    [
      `Port ${finalAddr.port}`,
      `Listen ${finalAddr.host}`,
      'Timeout 600',
      'MaxClients 20000',
      'LogLevel Error',
      `PidFile "${path.join(dir, 'tinyproxy.pid')}"`,
      'Allow 127.0.0.0/8',
      'DisableViaHeader Yes',
      '',
    ].join('\n'),
  );
  const common = [
    '--conf=/dev/null',
    `--workers=${workers}`,
    '--no-via',
    '--no-ocsp',
    '--tls-min-proto-version=TLSv1.3',
    '--log-level=WARN',
    // The default of 8 backend connections per origin would queue every tunnel past the 8th.
    '--backend-connections-per-host=20000',
    `--frontend-http2-window-size=${H2_STREAM_WINDOW}`,
    `--frontend-http2-connection-window-size=${H2_CONNECTION_WINDOW}`,
    `--backend-http2-window-size=${H2_STREAM_WINDOW}`,
    `--backend-http2-connection-window-size=${H2_CONNECTION_WINDOW}`,
    ...[
      'frontend-read',
      'frontend-write',
      'frontend-http2-read',
      'backend-read',
      'backend-write',
      'frontend-keep-alive',
    ].map((t) => `--${t}-timeout=10m`),
  ];
  return launch(
    'nghttpx pair',
    { host: clientAddr.host, port: clientAddr.port, connect: true },
    [
      // -d: stay in the foreground (no daemon), log to stderr.
      {
        bin: tinyproxy,
        args: ['-d', '-c', tpConf],
        wait: finalAddr,
        role: 'tinyproxy (last CONNECT hop)',
        helper: true,
      },
      {
        bin,
        args: [
          ...common,
          '--http2-proxy',
          `--frontend=${serverAddr.host},${serverAddr.port}`,
          `--backend=${finalAddr.host},${finalAddr.port}`,
          '--verify-client',
          `--verify-client-cacert=${certs.ca}`,
          `--pid-file=${path.join(dir, 'nghttpx-2.pid')}`,
          certs.serverKey,
          certs.serverCert,
        ],
        wait: serverAddr,
        role: 'nghttpx server side',
      },
      {
        bin,
        args: [
          ...common,
          '--http2-proxy',
          `--frontend=${clientAddr.host},${clientAddr.port};no-tls`,
          `--backend=${serverAddr.host},${serverAddr.port};;proto=h2;tls;sni=server`,
          `--cacert=${certs.ca}`,
          `--client-private-key-file=${certs.clientKey}`,
          `--client-cert-file=${certs.clientCert}`,
          `--pid-file=${path.join(dir, 'nghttpx-1.pid')}`,
        ],
        wait: clientAddr,
        role: 'nghttpx client side',
      },
    ],
    [dir],
  ).then((peer) => ({ ...peer, entry: { ...peer.entry, target: { ...target } } }));
}

/**
 * Opens a tunnel through an `entry` with `connect: true` (the nghttpx pair): sends
 * `CONNECT host:port HTTP/1.1`, reads the response head, and resolves with the socket once the
 * status is 200. Bytes that arrived after the head are unshifted back onto the socket.
 */
export function httpConnect(entry, target) {
  return new Promise((resolve, reject) => {
    const authority = `${target.host}:${target.port}`;
    const s = net.connect({ host: entry.host, port: entry.port, noDelay: true });
    let buf = Buffer.alloc(0);
    const fail = (err) => {
      s.destroy();
      reject(err);
    };
    s.once('error', fail);
    s.once('connect', () => s.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`));
    const onData = (c) => {
      buf = Buffer.concat([buf, c]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buf.length > 16384) fail(new Error('CONNECT response head too long'));
        return;
      }
      s.off('data', onData);
      s.off('error', fail);
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(buf.toString('latin1', 0, end));
      if (status?.[1] !== '200')
        return fail(new Error(`CONNECT ${authority}: ${buf.toString('latin1', 0, Math.min(end, 200))}`));
      s.pause();
      if (buf.length > end + 4) s.unshift(buf.subarray(end + 4));
      resolve(s);
    };
    s.on('data', onData);
  });
}

/**
 * client → haproxy (HTTP mode, keep-alive on both sides, one thread by default) → target.
 * The C analogue of an L7 waypoint.
 *
 * Options for the l7 suite:
 *  - `h2c: { listen, target }`: a second frontend speaking h2c (`proto h2`, HTTP/2 with prior
 *    knowledge) to a backend that speaks h2c too (`server … proto h2`);
 *  - `routes: { count, prefix }`: route rules on both frontends, evaluated in order: `count - 1`
 *    `use_backend` rules on path prefixes the benchmark never asks for (`/nomatch-0001/` …), then
 *    the one it does (`path <prefix>` or `path_beg <prefix>/`, Gateway API PathPrefix semantics);
 *    all to the same backend, as the l7 suite's HTTPRoutes; anything else gets 404. Without
 *    `routes` every request goes to the backend.
 * @param {{ listen: {host,port}, target: {host,port}, threads?: number,
 *   h2c?: { listen: {host,port}, target: {host,port} }, routes?: { count: number, prefix: string } }} o
 */
export async function startHaproxy(o) {
  const bin = await need('haproxy', ['haproxy'], 'haproxy');
  const listen = addr(o.listen, 'listen');
  const target = addr(o.target, 'target');
  const h2c = o.h2c && { listen: addr(o.h2c.listen, 'h2c.listen'), target: addr(o.h2c.target, 'h2c.target') };
  const dir = await mkdtemp(path.join(tmpdir(), 'ambit-peer-haproxy-'));
  const conf = path.join(dir, 'haproxy.cfg');
  const routing = (backend) => {
    if (!o.routes) return [`  default_backend ${backend}`];
    const { count, prefix } = o.routes;
    const lines = [];
    for (let i = 1; i < count; i++)
      lines.push(`  use_backend ${backend} if { path_beg /nomatch-${String(i).padStart(4, '0')}/ }`);
    lines.push(`  use_backend ${backend} if { path ${prefix} } || { path_beg ${prefix}/ }`);
    lines.push('  default_backend be_noroute');
    return lines;
  };
  await writeFile(
    conf,
    [
      'global',
      `  nbthread ${o.threads ?? 1}`,
      '  maxconn 9000', // about 2 fds each; stays under a 20 000 fd limit
      '  log stderr format raw local0 err',
      'defaults',
      '  mode http',
      '  log global',
      '  option http-keep-alive',
      '  http-reuse always',
      '  timeout connect 5s',
      '  timeout client 10m',
      '  timeout server 10m',
      '  timeout http-keep-alive 10m',
      'frontend fe',
      `  bind ${listen.host}:${listen.port}`,
      ...routing('be'),
      'backend be',
      `  server app ${target.host}:${target.port}`,
      ...(h2c
        ? [
            'frontend fe_h2c',
            `  bind ${h2c.listen.host}:${h2c.listen.port} proto h2`,
            ...routing('be_h2c'),
            'backend be_h2c',
            `  server app ${h2c.target.host}:${h2c.target.port} proto h2`,
          ]
        : []),
      ...(o.routes
        ? ['backend be_noroute', '  http-request return status 404 content-type text/plain string "no route"']
        : []),
      '',
    ].join('\n'),
  );
  // -db: foreground, no daemon; -W is not used, so there is one process.
  const peer = await launch(
    'haproxy',
    { ...listen },
    [{ bin, args: ['-db', '-f', conf], wait: listen }],
    [dir],
  );
  if (h2c) await waitForPort(h2c.listen.host, h2c.listen.port);
  return peer;
}

/**
 * nginx serving a fixed body (64 bytes of 'x' by default) with keep-alive, on `listen`: a C
 * backend for L7 comparisons.
 * @param {{ listen: {host,port}, bodyBytes?: number, workers?: number }} o
 */
export async function startNginxBackend(o) {
  const bin = await need('nginx backend', ['nginx'], 'nginx-light');
  const listen = addr(o.listen, 'listen');
  const dir = await mkdtemp(path.join(tmpdir(), 'ambit-peer-nginx-'));
  const body = 'x'.repeat(o.bodyBytes ?? 64);
  const conf = path.join(dir, 'nginx.conf');
  const t = (n) => path.join(dir, n);
  await writeFile(
    conf,
    [
      'daemon off;',
      `worker_processes ${o.workers ?? 1};`,
      `pid ${t('nginx.pid')};`,
      `error_log ${t('error.log')} warn;`,
      'events { worker_connections 9000; }',
      'http {',
      '  access_log off;',
      '  keepalive_requests 100000000;',
      '  keepalive_timeout 600s;',
      `  client_body_temp_path ${t('body')};`,
      `  proxy_temp_path ${t('proxy')};`,
      `  fastcgi_temp_path ${t('fastcgi')};`,
      `  uwsgi_temp_path ${t('uwsgi')};`,
      `  scgi_temp_path ${t('scgi')};`,
      '  server {',
      `    listen ${listen.host}:${listen.port};`,
      '    location / { default_type text/plain; return 200 "' + body + '"; }',
      '  }',
      '}',
      '',
    ].join('\n'),
  );
  return launch(
    'nginx',
    { ...listen },
    [{ bin, args: ['-e', t('error.log'), '-p', dir, '-c', conf], wait: listen }],
    [dir],
  );
}
