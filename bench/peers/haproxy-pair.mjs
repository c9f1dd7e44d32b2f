// The haproxy pair: two haproxy processes in TCP mode with mutual TLS between them, the L4 peer
// of two ambit node proxies next to the stunnel pair (issue 16, item 6). This file owns its
// configuration and start-up; the process handling (launch, roles, stop) is peers.mjs's.
//
//   client ─plain TCP─▶ haproxy A (client side: `mode tcp`, server line `ssl verify required
//   ca-file … crt … sni … verifyhost …`) ═TLS 1.3, client certificate═▶ haproxy B (server side:
//   `bind … ssl crt … ca-file … verify required`, `mode tcp`) ─plain TCP─▶ target
//
// Like the stunnel pair, one TCP connection and one TLS session per client connection: no pooling
// and no multiplexing (haproxy's connection reuse is an HTTP-mode feature; in TCP mode every
// client connection gets its own server connection). haproxy A resumes TLS sessions with B by
// default (its server-side session cache; `no-ssl-reuse` would turn that off), as stunnel's
// client does, so a new tunnel is usually an abbreviated handshake.
//
// Fairness, chosen to compare with one ambit event loop and the other peers' settings:
//  - `nbthread 1` and plain mode (no `-W` master-worker, no daemon): one process and one thread
//    per end, so the cost suite charges exactly the two ends.
//  - No per-connection logging: no `log` line in `defaults`, so the proxies never log a
//    connection; the global `log stderr … err` only carries start-up alerts to our captured
//    stderr (a failed start reports why).
//  - No `option splice-auto`: splicing moves bytes socket→pipe→socket only when both sides are
//    plain sockets, and each end here has TLS on one side (haproxy's SSL transport has no
//    rcv_pipe/snd_pipe, src/ssl_sock.c; only src/raw_sock.c does), so it could never apply.
//  - No ALPN: the tunnel carries raw bytes, there is no application protocol to agree on (ambit
//    offers h2 because HBONE is HTTP/2). SNI "server" is sent and, with `verify required`,
//    checked against the server certificate's names (haproxy configuration.txt, server `sni` and
//    `verify`); `verifyhost server` says the same for a connection without SNI.
//  - TLS 1.3 only (`ssl-min-ver TLSv1.3`, as the stunnel pair's `sslVersionMin`); ECDSA P-256
//    certificates from ensureCerts(), the same CA and leaf certificates as the stunnel and nghttpx
//    pairs (so `tune.ssl.default-dh-param` does not matter: no finite-field DH is used).
//  - Everything else at haproxy's defaults (16 KiB buffers, TCP_NODELAY on both sides).
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { addr, ensureCerts, launch, need } from './peers.mjs';

/**
 * Starts the pair. Each tunnel is one `listen` section on each end: haproxy A accepts plain TCP on
 * `clientAddr` and connects with TLS to haproxy B on `serverAddr`, which forwards to `target`.
 * Several tunnels share the two processes (the l4/cost suites use one per target port).
 * `entry` is the first tunnel's client address; `entries[i]` the i-th's.
 * @param {{ tunnels?: { clientAddr: {host,port}, serverAddr: {host,port}, target: {host,port} }[],
 *   clientAddr?: {host,port}, serverAddr?: {host,port}, target?: {host,port}, certDir?: string,
 *   maxconn?: number }} o
 */
export async function startHaproxyPair(o) {
  const bin = await need('haproxy pair', ['haproxy'], 'haproxy');
  const tunnels = (
    o.tunnels ?? [{ clientAddr: o.clientAddr, serverAddr: o.serverAddr, target: o.target }]
  ).map((t, i) => ({
    clientAddr: addr(t.clientAddr, `tunnels[${i}].clientAddr`),
    serverAddr: addr(t.serverAddr, `tunnels[${i}].serverAddr`),
    target: addr(t.target, `tunnels[${i}].target`),
  }));
  if (!tunnels.length) throw new Error('haproxy pair needs at least one tunnel');
  const serverHosts = new Set(tunnels.map((t) => t.serverAddr.host));
  if (serverHosts.size !== 1)
    throw new Error('haproxy pair: every tunnel must use the same server-side host (one certificate)');
  const dir = await mkdtemp(path.join(tmpdir(), 'ambit-peer-haproxy-pair-'));
  const certs = await ensureCerts(o.certDir ?? path.join(dir, 'certs'), [...serverHosts][0]);
  // haproxy's `crt` takes one PEM file with the certificate and its key (configuration.txt, bind
  // and server `crt`); the shared certificate directory keeps them apart, so join them here.
  const pem = async (name, cert, key) => {
    const file = path.join(dir, name);
    await writeFile(file, (await readFile(cert, 'utf8')) + (await readFile(key, 'utf8')), { mode: 0o600 });
    return file;
  };
  const serverPem = await pem('server.pem', certs.serverCert, certs.serverKey);
  const clientPem = await pem('client.pem', certs.clientCert, certs.clientKey);
  const global = [
    'global',
    '  nbthread 1',
    // About two fds per tunnel; stays under a 20 000 fd limit, as the HTTP-mode haproxy peer.
    `  maxconn ${o.maxconn ?? 9000}`,
    '  log stderr format raw local0 err',
    '  ssl-default-bind-options ssl-min-ver TLSv1.3',
    '  ssl-default-server-options ssl-min-ver TLSv1.3',
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    '  timeout client 10m',
    '  timeout server 10m',
  ];
  const serverConf = path.join(dir, 'server.cfg');
  const clientConf = path.join(dir, 'client.cfg');
  await writeFile(
    serverConf,
    [
      ...global,
      ...tunnels.flatMap((t, i) => [
        `listen tunnel${i}`,
        // `verify required`: a client without a certificate signed by ca-file fails the handshake.
        `  bind ${t.serverAddr.host}:${t.serverAddr.port} ssl crt ${serverPem} ca-file ${certs.ca} verify required`,
        `  server app ${t.target.host}:${t.target.port}`,
      ]),
      '',
    ].join('\n'),
  );
  await writeFile(
    clientConf,
    [
      ...global,
      ...tunnels.flatMap((t, i) => [
        `listen tunnel${i}`,
        `  bind ${t.clientAddr.host}:${t.clientAddr.port}`,
        `  server b ${t.serverAddr.host}:${t.serverAddr.port} ssl verify required ca-file ${certs.ca} crt ${clientPem} sni str(server) verifyhost server`,
      ]),
      '',
    ].join('\n'),
  );
  // -db: foreground, no daemon; no -W, so one process per end. haproxy binds every listener
  // before it serves any, so the first tunnel's port open means all are.
  const peer = await launch(
    'haproxy pair',
    { ...tunnels[0].clientAddr },
    [
      { bin, args: ['-db', '-f', serverConf], wait: tunnels[0].serverAddr, role: 'haproxy server side' },
      { bin, args: ['-db', '-f', clientConf], wait: tunnels[0].clientAddr, role: 'haproxy client side' },
    ],
    [dir],
  );
  return { ...peer, entries: tunnels.map((t) => ({ ...t.clientAddr })) };
}
