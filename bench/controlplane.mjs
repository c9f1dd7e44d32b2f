#!/usr/bin/env node
// `node bench/controlplane.mjs [--quick] [--out FILE] [--cpu-prof DIR]`: the control plane at scale.
// 10 000 pods and 1 000 services (quick: 2 000 / 200) in 10 ambient namespaces on 100 nodes, the
// real control plane in its own process (`ambit controlplane`), and 100 node proxies' worth of real
// Delta xDS clients over gRPC+TLS (node tokens, root cert, decodeAddress on every resource), spread
// over 4 client processes. Measures: time to the first full push, the time for one pod label edit in
// the manifest folder to reach every proxy (and how much of it is the file watch), control plane CPU
// and RSS, and CSRs signed per second. Everything listens on 127.0.70.0/24 only; pod, service and
// node IPs in the manifests are data, never bound or dialled. See bench/README.md.
//
// The same file is the client process: `node bench/controlplane.mjs --client-worker` (forked).
import { fork } from 'node:child_process';
import { mkdtemp, mkdir, writeFile, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir, cpus, release, loadavg } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = (p) => path.join(here, '..', 'dist', p);
const now = () => performance.timeOrigin + performance.now(); // wall clock, sub-ms; shared by all processes

if (process.argv[2] === '--client-worker') await clientWorker();
else await main();

// ---------------------------------------------------------------------------------------------
// client process: N node proxies' xDS clients, later CA clients

async function clientWorker() {
  const grpc = (await import('@grpc/grpc-js')).default;
  const { XdsClient } = await import(dist('xds/client.js'));
  const { decodeAddress } = await import(dist('xds/resources.js'));
  const { TYPE_ADDRESS, TYPE_AUTHORIZATION } = await import(dist('xds/proto.js'));
  const { CaClient } = await import(dist('identity/ca-client.js'));
  const { createCsr } = await import(dist('identity/csr.js'));
  const { generateKeyPair } = await import(dist('identity/keys.js'));
  const { componentLogger } = await import(dist('common/log.js'));
  const log = componentLogger('bench-client');
  const SERVER_NAME = 'istiod.istio-system.svc';
  const send = (m) => process.send(m);

  /** @type {{name:string, token:string, xds:any, state:Map<string,any>, syncedAt?:number, seen:Set<string>}[]} */
  let clients = [];
  const pendingRevs = new Map(); // marker revision → receive times (one per client)
  let cfg;

  function onApply(c, upserted, removed) {
    const t = now();
    for (const [name, addr] of upserted) {
      c.state.set(name, addr);
      const rev = addr.workload?.canonicalRevision;
      if (rev?.startsWith('bench-') && !c.seen.has(rev)) {
        c.seen.add(rev);
        let times = pendingRevs.get(rev);
        if (!times) pendingRevs.set(rev, (times = []));
        times.push(t);
        if (times.length === clients.length) {
          pendingRevs.delete(rev);
          send({ type: 'rev', rev, times });
        }
      }
    }
    for (const name of removed) c.state.delete(name);
    if (c.syncedAt === undefined && c.state.size >= cfg.expected) {
      c.syncedAt = t;
      send({ type: 'synced', node: c.name, t });
    }
  }

  async function startXds(m) {
    cfg = m;
    clients = m.nodes.map(({ name, token }) => ({ name, token, state: new Map(), seen: new Set() }));
    for (const c of clients) {
      c.xds = new XdsClient({
        address: m.address,
        credentials: grpc.credentials.createSsl(Buffer.from(m.rootPem)),
        channelOptions: {
          'grpc.ssl_target_name_override': SERVER_NAME,
          'grpc.default_authority': SERVER_NAME,
        },
        metadata: () => {
          const md = new grpc.Metadata();
          md.set('authorization', `Bearer ${c.token}`);
          return md;
        },
        node: { id: `ambit~${m.nodeIps[c.name]}~${c.name}~cluster.local`, metadata: { NODE_NAME: c.name } },
        types: [
          {
            typeUrl: TYPE_ADDRESS,
            decode: (name, bytes) => decodeAddress(name, bytes),
            apply: (upserted, removed) => onApply(c, upserted, removed),
          },
          { typeUrl: TYPE_AUTHORIZATION, decode: () => null, apply: () => {} },
        ],
        logger: log.child({ node: c.name }),
      });
      c.xds.on('disconnected', (reason) => send({ type: 'disconnected', node: c.name, reason }));
    }
    for (const c of clients) c.xds.start();
  }

  // CSRs for identities the node may hold, found the way a node proxy finds them: the ambient
  // workloads the control plane pushed whose node is this node.
  let csrJobs = [];
  const caClients = [];
  async function prepareCsrs(m) {
    const keys = await Promise.all(Array.from({ length: m.keys }, () => generateKeyPair('ECDSA_P256')));
    csrJobs = [];
    for (let i = 0; i < m.keys; i++) {
      const c = clients[i % clients.length];
      const ids = [...c.state.values()]
        .filter((a) => a.workload?.node === c.name && a.workload.tunnelProtocol === 'HBONE')
        .map((a) => ({
          trustDomain: a.workload.trustDomain,
          namespace: a.workload.namespace,
          serviceAccount: a.workload.serviceAccount,
        }));
      if (ids.length === 0) throw new Error(`no ambient workload on ${c.name}`);
      const id = ids[Math.floor(i / clients.length) % ids.length];
      c.ca ??= new CaClient({ address: m.address, rootCertPem: cfg.rootPem, token: c.token });
      if (!caClients.includes(c.ca)) caClients.push(c.ca);
      csrJobs.push({ ca: c.ca, csr: await createCsr(id, keys[i]) });
    }
    // Warm-up: one call per CA client, so the runs do not include channel set-up (TLS handshakes).
    await Promise.all(
      caClients.map((ca) =>
        csrJobs.find((j) => j.ca === ca).ca.createCertificate(csrJobs.find((j) => j.ca === ca).csr, 3600),
      ),
    );
    send({ type: 'csr-prepared', csrs: csrJobs.length, caClients: caClients.length });
  }

  async function runCsrs(m) {
    const latencies = [];
    let ok = 0;
    const errors = [];
    let next = 0;
    const start = now();
    const end = start + m.durationMs;
    async function loop() {
      while (now() < end) {
        const job = csrJobs[next++ % csrJobs.length];
        const t0 = now();
        try {
          const chain = await job.ca.createCertificate(job.csr, 3600);
          if (chain.length < 2) throw new Error(`chain of ${chain.length}`);
          const t1 = now();
          if (t1 <= end) {
            ok++;
            latencies.push(t1 - t0);
          }
        } catch (err) {
          if (errors.length < 5) errors.push(String(err?.message ?? err));
          else errors.push('');
        }
      }
    }
    await Promise.all(Array.from({ length: m.concurrency }, loop));
    send({ type: 'csr-result', ok, errors: errors.length, errorSamples: errors.filter(Boolean), latencies });
  }

  process.on('message', (m) => {
    const fail = (err) => send({ type: 'error', error: String(err?.stack ?? err) });
    if (m.type === 'start') startXds(m).catch(fail);
    else if (m.type === 'csr-prepare') prepareCsrs(m).catch(fail);
    else if (m.type === 'csr-run') runCsrs(m).catch(fail);
    else if (m.type === 'stop') {
      for (const c of clients) c.xds?.stop();
      for (const ca of caClients) ca.close();
      process.exit(0);
    }
  });
  process.on('disconnect', () => process.exit(0));
  send({ type: 'hello' });
}

// ---------------------------------------------------------------------------------------------
// the measurement

async function main() {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const argOf = (flag) => {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const outFile = argOf('--out');
  const cpuProfDir = argOf('--cpu-prof');

  const P = {
    pods: quick ? 2000 : 10000,
    services: quick ? 200 : 1000,
    namespaces: 10,
    nodes: 100,
    clientProcs: 4,
    podChanges: quick ? 20 : 30,
    csrRuns: 3,
    csrMs: quick ? 2000 : 5000,
    csrConcurrencyPerProc: 16,
    csrKeysPerProc: quick ? 64 : 256,
  };
  const LISTEN = '127.0.70.1:15012';
  const nodeName = (n) => `node-${String(n).padStart(3, '0')}`;
  const nodeIp = (n) => `127.0.70.${100 + n}`; // data only (no proxy listens there)

  const progress = (msg) => process.stderr.write(`[bench controlplane] ${msg}\n`);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const started = new Date();
  const loadBefore = loadavg();
  const children = [];
  const cleanup = () => children.forEach((c) => c.exitCode === null && c.kill('SIGKILL'));
  process.on('exit', cleanup);
  // The whole suite is bounded: a wedged run fails instead of hanging.
  setTimeout(
    () => {
      progress('suite time limit reached; giving up');
      cleanup();
      process.exit(1);
    },
    (quick ? 75 : 300) * 1000,
  ).unref();

  // ---- 1. manifests ----
  const { ensureNodeToken } = await import(dist('controlplane/node-auth.js'));
  const root = await mkdtemp(path.join(tmpdir(), 'ambit-bench-cp-'));
  const configDir = path.join(root, 'config');
  const stateDir = path.join(root, 'state');
  await mkdir(configDir);
  const perNs = P.services / P.namespaces;
  const podsPerSvc = P.pods / P.services;
  const services = [];
  const podsByNode = Array.from({ length: P.nodes }, () => []);
  for (let s = 0; s < P.services; s++) {
    const ns = `ns-${Math.floor(s / perNs)}`;
    const name = `svc-${s}`;
    services.push({ ns, name, ip: `10.96.${Math.floor(s / 250)}.${(s % 250) + 1}` });
    for (let j = 0; j < podsPerSvc; j++) {
      const n = (s * podsPerSvc + j) % P.nodes;
      const list = podsByNode[n];
      list.push({
        ns,
        name: `${name}-${j}`,
        app: name,
        sa: `sa-${s}`,
        node: n,
        ip: `10.${16 + (n >> 8)}.${n & 255}.${list.length + 1}`,
      });
    }
  }
  const version = new Map(); // pod key → version label
  const podYaml = (p) =>
    `apiVersion: v1\nkind: Pod\nmetadata: {name: ${p.name}, namespace: ${p.ns}, labels: {app: ${p.app}, version: ${version.get(`${p.ns}/${p.name}`) ?? 'v1'}}}\n` +
    `spec: {nodeName: ${nodeName(p.node)}, serviceAccountName: ${p.sa}, containers: [{name: app, image: bench, ports: [{name: http, containerPort: 8080}]}]}\n` +
    `status: {phase: Running, podIP: ${p.ip}, conditions: [{type: Ready, status: 'True'}]}\n`;
  const podFile = (n) => path.join(configDir, `pods-${nodeName(n)}.yaml`);
  const writePodFile = async (n) => {
    // Written beside and renamed into place, as editors and ConfigMap updates do: the watcher never sees half a file.
    const tmp = path.join(configDir, `.pods-${nodeName(n)}.tmp`);
    await writeFile(tmp, podsByNode[n].map(podYaml).join('---\n'));
    await rename(tmp, podFile(n));
  };
  const docs = (xs) => xs.join('---\n');
  await writeFile(
    path.join(configDir, 'namespaces.yaml'),
    docs(
      Array.from(
        { length: P.namespaces },
        (_, i) =>
          `apiVersion: v1\nkind: Namespace\nmetadata: {name: ns-${i}, labels: {istio.io/dataplane-mode: ambient}}\n`,
      ),
    ),
  );
  await writeFile(
    path.join(configDir, 'nodes.yaml'),
    docs(
      Array.from(
        { length: P.nodes },
        (_, n) =>
          `apiVersion: v1\nkind: Node\nmetadata: {name: ${nodeName(n)}}\nstatus: {addresses: [{type: InternalIP, address: ${nodeIp(n)}}]}\n`,
      ),
    ),
  );
  for (let i = 0; i < P.namespaces; i++) {
    const mine = services.filter((s) => s.ns === `ns-${i}`);
    await writeFile(
      path.join(configDir, `services-ns-${i}.yaml`),
      docs(
        mine.map(
          (s) =>
            `apiVersion: v1\nkind: Service\nmetadata: {name: ${s.name}, namespace: ${s.ns}}\n` +
            `spec: {clusterIP: ${s.ip}, selector: {app: ${s.name}}, ports: [{name: http, port: 80, targetPort: http}]}\n`,
        ),
      ),
    );
  }
  for (let n = 0; n < P.nodes; n++) await writePodFile(n);
  const fileCount = 2 + P.namespaces + P.nodes;
  progress(
    `wrote ${P.pods} pods, ${P.services} services, ${P.nodes} nodes in ${fileCount} files under ${configDir}`,
  );
  const tokens = {};
  for (let n = 0; n < P.nodes; n++) tokens[nodeName(n)] = await ensureNodeToken(stateDir, nodeName(n));
  const expected = P.pods + P.services; // one Address per pod (all have IPs) and per service (all have VIPs)

  // ---- 2. the control plane, in its own process ----
  const cpuSeconds = async (pid) => {
    const f = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, clock ticks at 100 Hz
  };
  const memMb = async (pid) => {
    const s = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = (k) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0);
    return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
  };

  progress(`starting the control plane on ${LISTEN}${cpuProfDir ? ` (CPU profile to ${cpuProfDir})` : ''}`);
  const cpStart = now();
  const cp = fork(
    path.join(here, '..', 'bin', 'ambit.js'),
    ['controlplane', '--config', configDir, '--state', stateDir, '--listen', LISTEN],
    {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: { ...process.env, AMBIT_LOG_LEVEL: 'info' },
      execArgv: cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', cpuProfDir] : [],
    },
  );
  children.push(cp);
  // "config changed" lines carry the time the file source published a change to the index, which
  // splits a pod change into file watch + reload (before) and index + push (after).
  const configChanges = []; // { t, line }
  const cpErrors = [];
  createInterface({ input: cp.stdout }).on('line', (line) => {
    if (line.includes('"config changed')) {
      try {
        const o = JSON.parse(line);
        configChanges.push({ t: Date.parse(o.time), upserted: o.upserted ?? [] });
      } catch {
        /* not ours */
      }
    } else if (line.includes('"level":50') || line.includes('"level":40')) {
      if (cpErrors.length < 20) cpErrors.push(line.slice(0, 400));
    }
  });
  createInterface({ input: cp.stderr }).on('line', (l) => process.stderr.write(`[controlplane] ${l}\n`));
  await new Promise((resolve, reject) => {
    cp.on('message', (m) => m?.type === 'ready' && resolve());
    cp.once('exit', (code) => reject(new Error(`control plane exited (${code}) before it was ready`)));
  });
  const cpReadyMs = now() - cpStart;
  const cpu0 = await cpuSeconds(cp.pid);
  const mem0 = await memMb(cp.pid);
  progress(
    `control plane ready in ${(cpReadyMs / 1000).toFixed(1)} s (${cpu0.toFixed(1)} CPU s, ${mem0.rss.toFixed(0)} MB RSS)`,
  );
  const rootPem = await readFile(path.join(stateDir, 'ca', 'root-cert.pem'), 'utf8');

  // ---- 3. 100 node proxies' xDS clients in 4 processes ----
  const procs = [];
  const listeners = new Set();
  for (let i = 0; i < P.clientProcs; i++) {
    const w = fork(fileURLToPath(import.meta.url), ['--client-worker'], {
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
      env: { ...process.env, AMBIT_LOG_LEVEL: 'warn' },
    });
    children.push(w);
    w.stdout.on('data', (c) => process.stderr.write(c)); // warnings from the clients, never on our stdout
    w.on('message', (m) => {
      if (m.type === 'error') {
        progress(`client process ${i} failed: ${m.error}`);
        cleanup();
        process.exit(1);
      }
      for (const l of listeners) l(m, i);
    });
    procs.push(w);
  }
  const clientsCpu = async () =>
    (await Promise.all(procs.map((w) => cpuSeconds(w.pid)))).reduce((a, b) => a + b, 0);
  const waitFor = (pred, timeoutMs, what) =>
    new Promise((resolve, reject) => {
      const l = (m, i) => {
        if (pred(m, i)) {
          listeners.delete(l);
          clearTimeout(timer);
          resolve(m);
        }
      };
      const timer = setTimeout(() => {
        listeners.delete(l);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      listeners.add(l);
    });
  let disconnects = 0;
  listeners.add((m) => {
    if (m.type === 'disconnected') disconnects++;
  });
  await Promise.all(
    procs.map((_, i) => waitFor((m, j) => m.type === 'hello' && j === i, 20_000, 'client process')),
  );

  const nodeIps = Object.fromEntries(Array.from({ length: P.nodes }, (_, n) => [nodeName(n), nodeIp(n)]));
  const synced = [];
  listeners.add((m) => m.type === 'synced' && synced.push(m.t));
  progress(
    `connecting ${P.nodes} xDS clients (${P.clientProcs} processes) and waiting for the full state (${expected} resources each)`,
  );
  let peakRss = mem0.rss;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      peakRss = Math.max(peakRss, (await memMb(cp.pid)).rss);
      await sleep(20);
    }
  })();
  const allSynced = waitFor(() => synced.length === P.nodes, quick ? 40_000 : 120_000, 'the first full push');
  const clientCpuPush0 = await clientsCpu();
  const tPush0 = now();
  procs.forEach((w, i) =>
    w.send({
      type: 'start',
      address: LISTEN,
      rootPem,
      expected,
      nodeIps,
      nodes: Array.from({ length: P.nodes }, (_, n) => n)
        .filter((n) => n % P.clientProcs === i)
        .map((n) => ({ name: nodeName(n), token: tokens[nodeName(n)] })),
    }),
  );
  await allSynced;
  sampling = false;
  await sampler;
  const syncTimes = synced.map((t) => t - tPush0).sort((a, b) => a - b);
  const cpu1 = await cpuSeconds(cp.pid);
  const clientCpuPush1 = await clientsCpu();
  const mem1 = await memMb(cp.pid);
  const firstPush = {
    lastProxyMs: syncTimes.at(-1),
    firstProxyMs: syncTimes[0],
    medianProxyMs: syncTimes[Math.floor(syncTimes.length / 2)],
    cpuSec: cpu1 - cpu0,
    clientsCpuSec: clientCpuPush1 - clientCpuPush0,
    peakRssMb: Math.max(peakRss, mem1.rss),
    hwmMb: mem1.hwm,
  };
  progress(
    `first full push: all ${P.nodes} proxies in ${(firstPush.lastProxyMs / 1000).toFixed(2)} s (control plane ${firstPush.cpuSec.toFixed(1)} CPU s, peak RSS ${firstPush.peakRssMb.toFixed(0)} MB; client processes ${firstPush.clientsCpuSec.toFixed(1)} CPU s)`,
  );

  // idle after sync
  await sleep(2000);
  const cpuIdle0 = await cpuSeconds(cp.pid);
  await sleep(quick ? 2000 : 5000);
  const cpuIdle1 = await cpuSeconds(cp.pid);
  const idle = {
    rssMb: (await memMb(cp.pid)).rss,
    cpuPerSec: (cpuIdle1 - cpuIdle0) / ((quick ? 2000 : 5000) / 1000),
  };
  progress(`idle: ${idle.rssMb.toFixed(0)} MB RSS, ${idle.cpuPerSec.toFixed(3)} CPU s/s`);

  // ---- 4. one pod change at a time, to every proxy ----
  let seed = 42;
  const rand = (n) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const changes = [];
  const cpuC0 = await cpuSeconds(cp.pid);
  for (let i = 0; i < P.podChanges; i++) {
    const n = rand(P.nodes);
    const pod = podsByNode[n][rand(podsByNode[n].length)];
    const rev = `bench-${i}`;
    version.set(`${pod.ns}/${pod.name}`, rev);
    const got = Array.from({ length: P.clientProcs }, (_, w) =>
      waitFor((m, j) => m.type === 'rev' && m.rev === rev && j === w, 10_000, `pod change ${rev}`),
    );
    const before = configChanges.length;
    const tWrite = now();
    await writePodFile(n);
    const times = (await Promise.all(got)).flatMap((m) => m.times).sort((a, b) => a - b);
    await sleep(50); // the log line may trail the push by a moment
    const cc = configChanges
      .slice(before)
      .find((c) => c.upserted.some((k) => k.includes(`${pod.ns}/${pod.name}`)));
    const r = {
      pod: `${pod.ns}/${pod.name}`,
      writeToLastMs: times.at(-1) - tWrite,
      writeToFirstMs: times[0] - tWrite,
      watchMs: cc ? cc.t - tWrite : null,
      pushLastMs: cc ? times.at(-1) - cc.t : null,
      pushSpreadMs: times.at(-1) - times[0],
      proxies: times.length,
    };
    changes.push(r);
    progress(
      `pod change ${i + 1}/${P.podChanges}: last of ${r.proxies} proxies after ${r.writeToLastMs.toFixed(1)} ms (watch+reload ${r.watchMs ?? '?'} ms, index→last proxy ${r.pushLastMs?.toFixed(1) ?? '?'} ms)`,
    );
    await sleep(150 + rand(100)); // apart, so the watcher's debounce never merges two changes
  }
  const cpuC1 = await cpuSeconds(cp.pid);

  // ---- 5. CSRs signed per second ----
  progress(`preparing CSRs (${P.csrKeysPerProc} keys per client process)`);
  await Promise.all(
    procs.map((w, i) => {
      const p = waitFor((m, j) => m.type === 'csr-prepared' && j === i, 60_000, 'CSR preparation');
      w.send({ type: 'csr-prepare', address: LISTEN, keys: P.csrKeysPerProc });
      return p;
    }),
  );
  const csrRuns = [];
  for (let r = 0; r < P.csrRuns; r++) {
    progress(
      `CSR run ${r + 1}/${P.csrRuns}: ${P.clientProcs * P.csrConcurrencyPerProc} concurrent calls for ${P.csrMs / 1000} s`,
    );
    const c0 = await cpuSeconds(cp.pid);
    const w0 = await clientsCpu();
    const results = await Promise.all(
      procs.map((w, i) => {
        const p = waitFor((m, j) => m.type === 'csr-result' && j === i, P.csrMs + 30_000, 'CSR run');
        w.send({ type: 'csr-run', durationMs: P.csrMs, concurrency: P.csrConcurrencyPerProc });
        return p;
      }),
    );
    const c1 = await cpuSeconds(cp.pid);
    const w1 = await clientsCpu();
    const lat = results.flatMap((x) => x.latencies).sort((a, b) => a - b);
    const ok = results.reduce((a, x) => a + x.ok, 0);
    const errors = results.reduce((a, x) => a + x.errors, 0);
    const run = {
      signed: ok,
      errors,
      errorSamples: results.flatMap((x) => x.errorSamples).slice(0, 3),
      perSec: ok / (P.csrMs / 1000),
      p50Ms: pct(lat, 0.5),
      p99Ms: pct(lat, 0.99),
      cpCpuSec: c1 - c0,
      clientCpuSec: w1 - w0,
    };
    csrRuns.push(run);
    progress(
      `CSR run ${r + 1}: ${run.perSec.toFixed(0)} signed/s, p50 ${run.p50Ms.toFixed(1)} ms, p99 ${run.p99Ms.toFixed(1)} ms, CPU s control plane ${run.cpCpuSec.toFixed(2)} / clients ${run.clientCpuSec.toFixed(2)}, ${errors} errors${errors ? ` (${run.errorSamples[0]})` : ''}`,
    );
  }
  const memEnd = await memMb(cp.pid);
  const clientCpu = await clientsCpu();
  const xdsDisconnects = disconnects; // before we stop the clients ourselves

  // ---- stop ----
  progress('stopping');
  for (const w of procs) w.send({ type: 'stop' });
  cp.kill('SIGTERM');
  await Promise.race([new Promise((r) => cp.once('exit', r)), sleep(10_000)]);
  cleanup();
  await rm(root, { recursive: true, force: true });

  // ---- 6. report ----
  const machine = {
    cores: cpus().length,
    cpu: cpus()[0]?.model,
    node: process.version,
    kernel: release(),
    // Other work on the machine skews every figure here; the load averages say how busy it was.
    loadavgBefore: loadBefore.map((x) => +x.toFixed(2)),
    loadavgAfter: loadavg().map((x) => +x.toFixed(2)),
  };
  const st = (xs) => {
    const v = xs.filter((x) => typeof x === 'number').sort((a, b) => a - b);
    return { p50: pct(v, 0.5), p99: pct(v, 0.99), min: v[0], max: v.at(-1), n: v.length };
  };
  const podChange = {
    writeToLastProxy: st(changes.map((c) => c.writeToLastMs)),
    writeToFirstProxy: st(changes.map((c) => c.writeToFirstMs)),
    watchAndReload: st(changes.map((c) => c.watchMs)),
    indexToLastProxy: st(changes.map((c) => c.pushLastMs)),
    firstToLastProxy: st(changes.map((c) => c.pushSpreadMs)),
    cpCpuMsPerChange: ((cpuC1 - cpuC0) * 1000) / P.podChanges,
    runs: changes,
  };
  const csr = {
    perSec: stat3(csrRuns.map((r) => r.perSec)),
    p99Ms: stat3(csrRuns.map((r) => r.p99Ms)),
    p50Ms: stat3(csrRuns.map((r) => r.p50Ms)),
    errors: csrRuns.reduce((a, r) => a + r.errors, 0),
    concurrency: P.clientProcs * P.csrConcurrencyPerProc,
    durationMs: P.csrMs,
    runs: csrRuns,
  };
  const controlPlane = {
    startupMs: cpReadyMs,
    startupCpuSec: cpu0,
    startupRssMb: mem0.rss,
    firstPushCpuSec: firstPush.cpuSec,
    firstPushPeakRssMb: firstPush.peakRssMb,
    peakRssSinceStartMb: mem1.hwm,
    idleRssMb: idle.rssMb,
    idleCpuPerSec: idle.cpuPerSec,
    rssAfterCsrMb: memEnd.rss,
    clientProcessesCpuSec: clientCpu,
    xdsDisconnects,
    warnings: cpErrors,
  };
  const f1 = (x) => (x === undefined || x === null ? '–' : x.toFixed(1));
  const f0 = (x) => (x === undefined || x === null ? '–' : x.toFixed(0));
  const md = [
    `# controlplane — ${started.toISOString()}${quick ? ' (quick)' : ''}`,
    '',
    `machine: ${machine.cores} cores (${machine.cpu}), Node ${machine.node}, Linux ${machine.kernel}; load average (1 min) ${machine.loadavgBefore[0]} before, ${machine.loadavgAfter[0]} after.`,
    `scale: ${P.pods} pods, ${P.services} services, ${P.namespaces} ambient namespaces, ${P.nodes} nodes in ${fileCount} manifest files; ` +
      `${P.nodes} xDS clients (gRPC+TLS, Delta ADS, every resource decoded) in ${P.clientProcs} processes; ${expected} Address resources per proxy.`,
    '',
    '| figure | value | target |',
    '|---|---|---|',
    `| control plane start (load + index ${P.pods + P.services} objects) | ${(cpReadyMs / 1000).toFixed(2)} s, ${cpu0.toFixed(1)} CPU s | |`,
    `| first full push: all ${P.nodes} proxies hold the full state | ${(firstPush.lastProxyMs / 1000).toFixed(2)} s (first proxy ${(firstPush.firstProxyMs / 1000).toFixed(2)} s, median ${(firstPush.medianProxyMs / 1000).toFixed(2)} s) | |`,
    `| CPU during first push: control plane / the ${P.clientProcs} client processes | ${firstPush.cpuSec.toFixed(1)} / ${firstPush.clientsCpuSec.toFixed(1)} CPU s | |`,
    `| control plane RSS: after load / peak in first push / idle after sync | ${f0(mem0.rss)} / ${f0(firstPush.peakRssMb)} / ${f0(idle.rssMb)} MB | |`,
    `| control plane idle CPU after sync | ${idle.cpuPerSec.toFixed(3)} CPU s/s | |`,
    `| one pod change → last of ${P.nodes} proxies, from the file write (p50 / p99, n=${changes.length}) | ${f1(podChange.writeToLastProxy.p50)} / ${f1(podChange.writeToLastProxy.p99)} ms | < 100 ms p99 |`,
    `| … of which file watch + debounce + folder reload (p50 / p99) | ${f1(podChange.watchAndReload.p50)} / ${f1(podChange.watchAndReload.p99)} ms | |`,
    `| … of which index + push → last proxy decoded it (p50 / p99) | ${f1(podChange.indexToLastProxy.p50)} / ${f1(podChange.indexToLastProxy.p99)} ms | |`,
    `| … spread first → last proxy (p50 / p99) | ${f1(podChange.firstToLastProxy.p50)} / ${f1(podChange.firstToLastProxy.p99)} ms | |`,
    `| control plane CPU per pod change | ${podChange.cpCpuMsPerChange.toFixed(0)} CPU ms | |`,
    `| CSRs signed per second (${csr.concurrency} concurrent, ${P.csrMs / 1000} s × ${P.csrRuns}) | ${fmt3(csr.perSec, f0)} | ≥ 500/s |`,
    `| CSR latency p50 / p99 (at saturation: ${csr.concurrency} calls always outstanding) | ${f1(csr.p50Ms.median)} / ${fmt3(csr.p99Ms, f1)} ms | |`,
    `| CPU per 1 000 CSRs: control plane / client processes | ${f1(median(csrRuns.map((r) => (r.cpCpuSec * 1000) / r.signed)))} / ${f1(median(csrRuns.map((r) => (r.clientCpuSec * 1000) / r.signed)))} CPU s | |`,
    `| CSR errors | ${csr.errors} | 0 |`,
    '',
    'Repeated figures are median (min–max) over the runs; pod-change figures are p50 / p99 over the changes.',
    '',
  ].join('\n');
  console.log('\n' + md);
  const result = {
    suite: 'controlplane',
    quick,
    started,
    machine,
    params: P,
    controlPlane,
    firstPush,
    idle,
    podChange,
    csr,
  };
  if (outFile) {
    await writeFile(outFile, JSON.stringify(result, null, 2));
  } else {
    const stamp = started.toISOString().slice(0, 10);
    await mkdir(path.join(here, 'results'), { recursive: true });
    const base = path.join(here, 'results', `${stamp}-controlplane${quick ? '-quick' : ''}`);
    await writeFile(`${base}.json`, JSON.stringify(result, null, 2));
    await writeFile(`${base}.md`, md);
    progress(`wrote ${path.relative(process.cwd(), base)}.{json,md}`);
  }
  process.exit(0);
}

function pct(sorted, q) {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}
function median(xs) {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}
function stat3(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)], min: s[0], max: s.at(-1), runs: xs };
}
function fmt3(s, f) {
  return `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
}
