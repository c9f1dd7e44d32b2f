// The ztunnel pair for the l4 and cost suites (issue 15, item 4): Istio's own node proxy, measured
// beside ambit in the same run. Nothing of ztunnel is in this repository: the user builds it and
// points the bench at the binary with AMBIT_ZTUNNEL_BIN; without it the ztunnel rows are left out
// with the reason (ztunnelAvailability).
//
// ztunnel binds fixed ports (15001/15006/15008 and 15020/15021 on the wildcard address, admin 15000,
// DNS 15053 and SOCKS5 15080 on localhost; src/config.rs in istio/ztunnel builds them as constants,
// no setting moves them), so two of them cannot share one network namespace, nor run beside other
// tests' listeners. Each end runs in its own network namespace, joined by one veth pair:
//
//   ns ambit-bzt-a (client pod 10.248.0.1)          ns ambit-bzt-b (server pod 10.248.0.2, CA .3)
//   loadgen ─SOCKS5 127.0.0.1:15080─▶ ztunnel A ═HBONE (mTLS, h2 CONNECT) over veth═▶ ztunnel B
//                                                   ─▶ app 10.248.0.2:{8080,9000,9100}
//
// Each ztunnel runs in dedicated mode (PROXY_MODE=dedicated, PROXY_WORKLOAD_INFO): one pod's proxy
// with its listeners in the pod's network namespace, which is where ambient's in-pod mode puts
// them too. Shared mode would wait for the CNI agent to hand it pod namespaces (INPOD_UDS), which
// this bench has no reason to emulate. Workloads come from a local file (LOCAL_XDS_PATH, XDS_ADDRESS
// empty), so no xDS server runs during the measurement. Certificates come from ambit's CA: an
// `ambit controlplane` in ns ambit-bzt-b, with the two pods on nodes zt-a and zt-b and one node
// token each (ztunnel's AUTH_TOKEN). FAKE_CA needs ztunnel's `testing` build feature, which a
// release build lacks. Each ztunnel fetches its certificate once, in the warm-up request below;
// the CA is idle during the measurement and is listed as a helper in the cost table.
import { execFile, spawn } from 'node:child_process';
import { access, constants, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { findBinary, startProcess, stopProcesses } from '../peers/peers.mjs';
import { progress } from './stats.mjs';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.join(here, '..', '..');

/**
 * Names and addresses of one ztunnel network: `index` 0 is the benchmark's (namespaces
 * ambit-bzt-a/-b, 10.248.0.0/24), others are for tests running beside it (ambit-bzt-<i>a/-<i>b,
 * 10.248.<i>.0/24), so a test never takes the benchmark's namespaces from under it.
 */
export function ztLayout(index = 0) {
  if (!Number.isInteger(index) || index < 0 || index > 255) throw new RangeError(`layout index ${index}`);
  const tag = index === 0 ? '' : String(index);
  return {
    nsClient: `ambit-bzt-${tag}a`,
    nsServer: `ambit-bzt-${tag}b`,
    vethClient: `bzt${tag}-a`,
    vethServer: `bzt${tag}-b`,
    client: `10.248.${index}.1`,
    server: `10.248.${index}.2`,
    ca: `10.248.${index}.3`,
    namespace: 'bench-zt',
  };
}
const PREFIX = 24;
// Loopback's MTU is 64 KiB; a 1 500-byte veth would cost ztunnel's bulk figures 40× the segments.
const VETH_MTU = 65535;
const SOCKS = { host: '127.0.0.1', port: 15080 };

/**
 * Whether the ztunnel pair can run here. Resolves { bin, version } or { skip: reason }.
 * `version` is what `ztunnel version` prints (its BuildInfo fields).
 */
export async function ztunnelAvailability(env = process.env) {
  const bin = env.AMBIT_ZTUNNEL_BIN;
  if (!bin) return { skip: 'AMBIT_ZTUNNEL_BIN is unset (point it at a ztunnel binary you built)' };
  try {
    await access(bin, constants.X_OK);
  } catch {
    return { skip: `AMBIT_ZTUNNEL_BIN=${bin} is not an executable file` };
  }
  if (process.getuid?.() !== 0)
    return { skip: 'the ztunnel pair needs root (it runs each ztunnel in its own network namespace)' };
  if (!(await findBinary(['ip']))) return { skip: 'the `ip` command (iproute2) is missing' };
  let out;
  try {
    out = (await run(bin, ['version'], { timeout: 10_000 })).stdout;
  } catch (err) {
    return { skip: `\`${bin} version\` failed: ${err.message}` };
  }
  const version = parseZtunnelVersion(out);
  if (!version.GitRevision)
    return { skip: `\`${bin} version\` printed no GitRevision: ${out.trim().slice(0, 200)}` };
  return { bin, version };
}

/** `version.BuildInfo{Version:"…", GitRevision:"…", …}` → { Version, GitRevision, … }. */
export function parseZtunnelVersion(text) {
  const out = {};
  for (const m of text.matchAll(/(\w+):"([^"]*)"/g)) out[m[1]] = m[2];
  return out;
}

/** One line for the results header: the commit and what the binary says about its build. */
export function ztunnelVersionLine(v) {
  return `ztunnel ${v.GitRevision} (${v.BuildProfile ?? '?'} build, crypto provider ${v.CryptoProvider ?? '?'}, Rust ${v.RustVersion ?? '?'}, build status ${v.BuildStatus ?? '?'})`;
}

const ip = (...args) => run('ip', args, { timeout: 10_000 });
const inNs = (ns, cmd, ...args) => ['netns', 'exec', ns, cmd, ...args];

/** Creates a fresh namespace; an existing one with processes in it is refused, not cleared. */
async function freshNamespace(ns) {
  const { stdout } = await ip('netns', 'list');
  if (stdout.split('\n').some((l) => l.split(' ')[0] === ns)) {
    const pids = (await ip('netns', 'pids', ns)).stdout.trim();
    if (pids)
      throw new Error(
        `network namespace ${ns} exists with processes ${pids.split('\n').join(', ')} (a previous run left them?): stop them and run \`ip netns del ${ns}\``,
      );
    await ip('netns', 'del', ns);
  }
  await ip('netns', 'add', ns);
}

/** Resolves once something listens on `addr` (as `ss` prints it) inside `ns`. */
async function waitListening(ns, filter, timeoutMs, isDead) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { stdout } = await run('ip', inNs(ns, 'ss', '-Hltn', ...filter)).catch(() => ({ stdout: '' }));
    if (stdout.trim()) return;
    const dead = isDead();
    if (dead) throw new Error(dead);
    if (Date.now() > deadline)
      throw new Error(`nothing listens on ${filter.join(' ')} in ${ns} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function localXds(ZT) {
  // ztunnel's local config format (LOCAL_XDS_PATH; examples/localhost.yaml in istio/ztunnel): the
  // two pods as HBONE workloads, in the trust domain ambit's CA signs for.
  const workload = (name, node, ipAddr) => `- uid: Kubernetes//Pod/${ZT.namespace}/${name}
  name: ${name}
  namespace: ${ZT.namespace}
  serviceAccount: ${name}
  trustDomain: cluster.local
  workloadIps: ["${ipAddr}"]
  protocol: HBONE
  node: ${node}
  network: ""
  services: {}
`;
  return `workloads:\n${workload('client', 'zt-a', ZT.client)}${workload('server', 'zt-b', ZT.server)}policies: []\nservices: []\n`;
}

function caManifests(ZT) {
  const node = (name, addr) =>
    `apiVersion: v1\nkind: Node\nmetadata: {name: ${name}}\nstatus: {addresses: [{type: InternalIP, address: ${addr}}]}\n`;
  const pod = (name, nodeName, addr) =>
    `apiVersion: v1\nkind: Pod\nmetadata: {name: ${name}, namespace: ${ZT.namespace}, labels: {app: ${name}}}\nspec: {nodeName: ${nodeName}, serviceAccountName: ${name}}\nstatus: {podIP: ${addr}}\n`;
  return [
    `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${ZT.namespace}, labels: {istio.io/dataplane-mode: ambient}}\n`,
    node('zt-a', ZT.client),
    node('zt-b', ZT.server),
    pod('client', 'zt-a', ZT.client),
    pod('server', 'zt-b', ZT.server),
  ].join('---\n');
}

/**
 * Sets up both namespaces, the backend app and the CA in ns b. Returns
 * { paths, stop() }: a "direct (netns, veth)" baseline and one ztunnel pair per entry of
 * `workerThreads`; each pair is started by its `activate()` and stopped by `deactivate()`, so only
 * the pair under test runs.
 * @param {{ root: string, bin: string, workerThreads: number[], loadgen: Function, logLevel: string, layout?: number }} o
 */
export async function startZtunnelNet(o) {
  const ZT = ztLayout(o.layout ?? 0);
  const dir = path.join(o.root, 'ztunnel');
  await mkdir(path.join(dir, 'config'), { recursive: true });
  const cleanup = [];
  const stop = async () => {
    for (const f of cleanup.reverse()) await f().catch((err) => progress(`ztunnel cleanup: ${err.message}`));
  };
  try {
    for (const ns of [ZT.nsClient, ZT.nsServer]) {
      await freshNamespace(ns);
      cleanup.push(() => ip('netns', 'del', ns));
    }
    await ip('link', 'del', ZT.vethClient).catch(() => {}); // left over from a half-built run
    await ip(
      'link',
      'add',
      ZT.vethClient,
      'mtu',
      String(VETH_MTU),
      'type',
      'veth',
      'peer',
      'name',
      ZT.vethServer,
      'mtu',
      String(VETH_MTU),
    );
    await ip('link', 'set', ZT.vethClient, 'netns', ZT.nsClient);
    await ip('link', 'set', ZT.vethServer, 'netns', ZT.nsServer);
    await ip('-n', ZT.nsClient, 'addr', 'add', `${ZT.client}/${PREFIX}`, 'dev', ZT.vethClient);
    await ip('-n', ZT.nsServer, 'addr', 'add', `${ZT.server}/${PREFIX}`, 'dev', ZT.vethServer);
    await ip('-n', ZT.nsServer, 'addr', 'add', `${ZT.ca}/${PREFIX}`, 'dev', ZT.vethServer);
    for (const [ns, dev] of [
      [ZT.nsClient, ZT.vethClient],
      [ZT.nsServer, ZT.vethServer],
    ]) {
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
      await ip('-n', ns, 'link', 'set', dev, 'up');
    }

    // The backend, the same program as for every other path, on the server pod's address.
    const app = spawn(
      'ip',
      inNs(ZT.nsServer, process.execPath, path.join(here, 'app.mjs'), ZT.server, '8080', '9000', '9100'),
      { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
    );
    cleanup.push(async () => {
      app.kill();
      await new Promise((r) => (app.exitCode !== null ? r() : app.once('exit', r)));
    });
    await new Promise((resolve, reject) => {
      app.once('message', resolve);
      app.once('exit', (code) => reject(new Error(`the backend in ${ZT.nsServer} exited (${code})`)));
    });

    // The CA: an ambit control plane that knows the two pods and their nodes' tokens.
    const state = path.join(dir, 'state');
    await writeFile(path.join(dir, 'config', 'zt.yaml'), caManifests(ZT));
    const { ensureNodeToken } = await import(path.join(repo, 'dist', 'controlplane', 'node-auth.js'));
    const tokenFiles = {};
    for (const node of ['zt-a', 'zt-b']) {
      const token = await ensureNodeToken(state, node);
      // ztunnel sends the token file's bytes as they are (src/identity/auth.rs); ambit's token
      // files end in a newline, which is not a valid header value: give it the bare token.
      tokenFiles[node] = path.join(dir, `${node}.token`);
      await writeFile(tokenFiles[node], token.trim(), { mode: 0o600 });
    }
    const ca = startProcess(
      'ip',
      inNs(
        ZT.nsServer,
        process.execPath,
        path.join(repo, 'bin', 'ambit.js'),
        'controlplane',
        '--config',
        path.join(dir, 'config'),
        '--state',
        state,
        '--listen',
        `${ZT.ca}:15012`,
      ),
      { env: { ...process.env, AMBIT_LOG_LEVEL: 'warn' } },
    );
    cleanup.push(() => stopProcesses([ca], [], []));
    await waitListening(ZT.nsServer, ['src', `${ZT.ca}:15012`], 30_000, ca.dead);
    const xdsFile = path.join(dir, 'local-xds.yaml');
    await writeFile(xdsFile, localXds(ZT));

    const startEnd = (side, threads) => {
      const client = side === 'client';
      const env = {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        RUST_LOG: o.logLevel,
        PROXY_MODE: 'dedicated',
        PROXY_WORKLOAD_INFO: `${ZT.namespace}/${side}/${side}`,
        LOCAL_XDS_PATH: xdsFile,
        XDS_ADDRESS: '', // empty: no xDS client, the local file is the whole config
        CA_ADDRESS: `https://${ZT.ca}:15012`,
        CA_ROOT_CA: path.join(state, 'ca', 'root-cert.pem'),
        ALT_CA_HOSTNAME: 'istiod.istio-system.svc', // the name in ambit's control-plane certificate
        AUTH_TOKEN: tokenFiles[client ? 'zt-a' : 'zt-b'],
        UNSTABLE_ENABLE_SOCKS5: 'true',
        ZTUNNEL_WORKER_THREADS: String(threads),
        // Dedicated mode would otherwise dial the app from the client's address (IP_TRANSPARENT),
        // and the reply would leave by the veth: ztunnel's own namespace tests turn it off for
        // dedicated mode too (src/test_helpers/linux.rs, require_original_source).
        ENABLE_ORIG_SRC: 'false',
      };
      return startProcess('ip', inNs(client ? ZT.nsClient : ZT.nsServer, o.bin, 'proxy', 'ztunnel'), { env });
    };

    const pair = (threads) => {
      let ends;
      const name = `ztunnel pair, ${threads} worker thread${threads > 1 ? 's' : ''}`;
      return {
        name,
        kind: 'ztunnel',
        idleTunnels: true,
        target: (port) => ({ netns: ZT.nsClient, socks: SOCKS, host: ZT.server, port }),
        async activate() {
          progress(`${name}: starting`);
          const b = startEnd('server', threads);
          const a = startEnd('client', threads);
          ends = { a, b };
          try {
            await waitListening(ZT.nsServer, ['sport', '=', ':15008'], 10_000, b.dead);
            await waitListening(ZT.nsClient, ['src', `${SOCKS.host}:${SOCKS.port}`], 10_000, a.dead);
            // One request through: both ends fetch their certificate from the CA now, not
            // inside the first measurement.
            const r = await o.loadgen({
              ...this.target(8080),
              mode: 'rps',
              connections: 1,
              warmupMs: 0,
              durationMs: 300,
            });
            if (!(r.rps > 0))
              throw new Error(
                `no request got through: client end: ${a.log().slice(-600)} server end: ${b.log().slice(-600)}`,
              );
          } catch (err) {
            await this.deactivate();
            throw new Error(`${name} failed to start: ${err.message}`, { cause: err });
          }
        },
        async deactivate() {
          if (!ends) return;
          const { a, b } = ends;
          ends = undefined;
          await stopProcesses([a, b], [], []);
        },
        pids: () => (ends ? [ends.a.child.pid, ends.b.child.pid] : []),
        processes: () =>
          ends
            ? [
                { pid: ends.a.child.pid, role: 'ztunnel client side', helper: false },
                { pid: ends.b.child.pid, role: 'ztunnel server side', helper: false },
                { pid: ca.child.pid, role: 'ambit CA (certificates only; idle)', helper: true },
              ]
            : [],
      };
    };

    const paths = [
      {
        name: 'direct (netns, veth)',
        kind: 'baseline',
        target: (port) => ({ netns: ZT.nsClient, host: ZT.server, port }),
        pids: () => [],
      },
      ...o.workerThreads.map(pair),
    ];
    cleanup.push(async () => {
      for (const p of paths) await p.deactivate?.();
    });
    return { paths, stop, layout: ZT };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The ztunnel log level for a given ambit level (pino and tracing share these names). */
export function rustLogLevel(ambitLevel) {
  return ['trace', 'debug', 'info', 'warn', 'error'].includes(ambitLevel)
    ? ambitLevel
    : ambitLevel === 'fatal'
      ? 'error'
      : 'warn';
}
