// Runs Istio's own node proxy, ztunnel, beside a real ambit mesh (issue 15): ztunnel is a client of
// ambit's control plane (Delta xDS + CA, authenticated with a node token as `ambit node` is) and an
// HBONE peer of ambit's node proxy. Nothing of ztunnel lives in the repo: the binary is the one the
// user points AMBIT_ZTUNNEL_BIN at; without it (or without root) the interop tests skip, saying why.
//
// Topology (root; one /24 of 10.240.0.0/16 per test file, `k` = its third octet):
//
//   host network namespace                          netns ambit-zt-<name>
//   ┌──────────────────────────────────────┐        ┌─────────────────────────────────────┐
//   │ azt<k>h 10.240.k.1  (plaintext client)│ veth  │ azt<k>z 10.240.k.2 = pod demo/zt-pod │
//   │   .3 ambit node proxy "node-a"        │═══════│ ztunnel (PROXY_MODE=dedicated)       │
//   │   .5 ambit control plane :15012       │        │   SOCKS5 127.0.0.1:15080, HBONE 15008│
//   │   .10 pod amb-client  .11 amb-server  │        │ apps on 0.0.0.0:<port>               │
//   └──────────────────────────────────────┘        └─────────────────────────────────────┘
//
// The ambit addresses are /32s on the host end of the veth (the host answers ARP for them), so
// ztunnel reaches them by plain routing; deleting the namespace deletes the veth and every address.
// ztunnel's fixed ports (15000/15001/15006/15008/15020/15021/15053/15080) live in namespaces of
// its own, so parallel test files never collide.
//
// Two modes (`mode`): dedicated (ztunnel runs in zt-pod's namespace and serves only it,
// PROXY_WORKLOAD_INFO) and shared, as ambient runs it: ztunnel runs in ambit-zt-<name>-node
// (10.240.k.4 on a second veth) and is handed zt-pod's namespace by zds-node-agent.py, a stand-in
// for istio-cni's node agent (ZDS over a unix SEQPACKET socket with the namespace's fd); ztunnel
// then opens zt-pod's listeners inside the pod's namespace, as in a cluster.
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Mesh } from '../../src/cli/mesh-runner.js';
import { SocksError, socksConnect } from '../../src/cli/socks-client.js';
import { ensureNodeToken } from '../../src/controlplane/node-auth.js';
import { readAdminToken } from '../../src/common/token.js';
import {
  type InteropAccounts,
  type InteropAddresses,
  type ProbeResult,
  type ZtunnelLog,
  SOCKS_CLIENT_JS_PATH as SOCKS_CLIENT_JS,
  ZTUNNEL_BIN_ENV,
  ZT_NODE,
  appScript,
  hostEcho,
  httpAppScript,
  interopAddresses,
  interopManifests,
  parseZtunnelLog,
  roundTrip,
  sendVerb,
  stopChild,
} from './ztunnel-parts.js';

export * from './ztunnel-parts.js';

export interface ZtunnelInteropOptions {
  /** Short name: namespace ambit-zt-<name>. */
  name: string;
  /** Third octet in 10.240.0.0/16. */
  k: number;
  /** More manifests (policies), written beside the mesh's. */
  extraManifests?: string;
  accounts?: InteropAccounts;
  /** TCP ports the app in ztunnel's namespace and amb-server listen on. */
  appPorts: number[];
  /** HTTP ports zt-pod's app and amb-server serve (answering 200 with "<pod>:<port>"). */
  httpPorts?: number[];
  /** More ambit addresses on the host end (a waypoint's `spec.addresses`). */
  hostAddresses?: string[];
  /** Redirect plaintext arriving on these ports in the pod's namespace to ztunnel's 15006 (as in-pod capture does). */
  capturePlaintext?: number[];
  /**
   * dedicated (default): ztunnel runs in zt-pod's namespace and serves only it. shared: as ambient
   * runs it, ztunnel runs in a node namespace of its own (ambit-zt-<name>-node, 10.240.k.4) and
   * is handed zt-pod's namespace by a stand-in for istio-cni's node agent (zds-node-agent.py);
   * its listeners for the pod open inside the pod's namespace.
   */
  mode?: 'dedicated' | 'shared';
}

const ZDS_AGENT = fileURLToPath(new URL('./zds-node-agent.py', import.meta.url));

/** ambit mesh + ztunnel in its own namespace, started and stopped as one. */
export class ZtunnelInterop {
  readonly ip: InteropAddresses;
  /** zt-pod's network namespace: its apps, its SOCKS5 entry, its 15008. */
  readonly netns: string;
  /** Where ztunnel itself runs (its admin, metrics, readiness): the pod's namespace in dedicated mode. */
  readonly nodeNetns: string;
  readonly zdsEvents: Record<string, unknown>[] = [];
  readonly ztLogs: ZtunnelLog[] = [];
  readonly meshLogs: { component: string; rec: Record<string, unknown> }[] = [];
  mesh?: Mesh;
  configDir = '';
  stateDir = '';
  private root = '';
  private ztunnel?: ChildProcess;
  private zdsAgent?: ChildProcess;
  private readonly apps: ChildProcess[] = [];
  private readonly hostApps: net.Server[] = [];
  private readonly waiters = new Set<() => void>();
  private readonly hostIf: string;

  constructor(readonly opts: ZtunnelInteropOptions) {
    this.ip = interopAddresses(opts.k);
    this.netns = `ambit-zt-${opts.name}`;
    this.nodeNetns = opts.mode === 'shared' ? `${this.netns}-node` : this.netns;
    this.hostIf = `azt${opts.k}h`;
  }

  async start(): Promise<this> {
    this.root = await mkdtemp(path.join(tmpdir(), 'ambit-zt-'));
    this.configDir = path.join(this.root, 'config');
    this.stateDir = path.join(this.root, 'state');
    await mkdir(this.configDir);
    await mkdir(this.stateDir);
    this.createNetwork();
    await writeFile(
      path.join(this.configDir, 'mesh.yaml'),
      interopManifests(this.opts.k, this.opts.accounts),
    );
    if (this.opts.extraManifests)
      await writeFile(path.join(this.configDir, 'extra.yaml'), this.opts.extraManifests);
    // ztunnel's AUTH_TOKEN is ambit's own node token file for zt-node, as is (controlplane/node-auth.ts
    // writes it without a newline: ztunnel sends the file's bytes verbatim after "Bearer ").
    await ensureNodeToken(this.stateDir, ZT_NODE);
    const tokenFile = this.nodeTokenFile();
    this.mesh = await Mesh.start({
      configDir: this.configDir,
      stateDir: this.stateDir,
      controlPlaneAddr: `${this.ip.controlPlane}:15012`,
      env: { AMBIT_LOG_LEVEL: 'debug' },
      onLog: (component, line) => {
        try {
          this.meshLogs.push({ component, rec: JSON.parse(line) as Record<string, unknown> });
        } catch {
          this.meshLogs.push({ component, rec: { msg: line } });
        }
        this.wake();
      },
    });
    for (const port of this.opts.appPorts) {
      this.apps.push(this.spawnInNetns(appScript(port)));
      this.hostApps.push(await hostEcho(this.ip.ambServer, port, 'amb-server'));
    }
    for (const port of this.opts.httpPorts ?? []) {
      this.apps.push(this.spawnInNetns(httpAppScript(port, 'zt-pod')));
      const server = http.createServer((_req, res) => res.end(`amb-server:${port}`));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, this.ip.ambServer, resolve);
      });
      this.hostApps.push(server);
    }
    for (const port of this.opts.capturePlaintext ?? []) {
      this.execInNetns(
        'iptables',
        '-t',
        'nat',
        '-A',
        'PREROUTING',
        '-i',
        `azt${this.opts.k}z`,
        '-p',
        'tcp',
        '--dport',
        String(port),
        '-j',
        'REDIRECT',
        '--to-ports',
        '15006',
      );
    }
    if (this.opts.mode === 'shared') await this.startZdsAgent();
    this.startZtunnel(tokenFile);
    await this.waitFor(
      () => this.ztLogs.some((l) => l.msg.includes('marking server ready')),
      20_000,
      'ztunnel ready',
    );
    if (this.opts.mode === 'shared')
      await this.waitFor(
        () => this.zdsEvents.some((e) => e.event === 'snapshot-acked'),
        20_000,
        'ztunnel took zt-pod from the node agent',
      );
    return this;
  }

  private createNetwork(): void {
    const { k } = this.opts;
    this.deleteNetwork();
    const run = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
    run('netns', 'add', this.netns);
    run('-n', this.netns, 'link', 'set', 'lo', 'up');
    run('link', 'add', this.hostIf, 'type', 'veth', 'peer', 'name', `azt${k}z`);
    run('link', 'set', `azt${k}z`, 'netns', this.netns);
    run('addr', 'add', `${this.ip.host}/24`, 'dev', this.hostIf);
    for (const a of [
      this.ip.node,
      this.ip.controlPlane,
      this.ip.ambClient,
      this.ip.ambServer,
      ...(this.opts.hostAddresses ?? []),
    ])
      run('addr', 'add', `${a}/32`, 'dev', this.hostIf);
    run('link', 'set', this.hostIf, 'up');
    run('-n', this.netns, 'addr', 'add', `${this.ip.ztunnelPod}/24`, 'dev', `azt${k}z`);
    run('-n', this.netns, 'link', 'set', `azt${k}z`, 'up');
    if (this.nodeNetns === this.netns) return;
    // ztunnel's own namespace: 10.240.k.4 on a second veth, a /32 route to it on the host.
    run('netns', 'add', this.nodeNetns);
    run('-n', this.nodeNetns, 'link', 'set', 'lo', 'up');
    run('link', 'add', `azt${k}n`, 'type', 'veth', 'peer', 'name', `azt${k}m`);
    run('link', 'set', `azt${k}m`, 'netns', this.nodeNetns);
    run('link', 'set', `azt${k}n`, 'up');
    run('route', 'add', `${this.ip.ztunnelNode}/32`, 'dev', `azt${k}n`);
    run('-n', this.nodeNetns, 'addr', 'add', `${this.ip.ztunnelNode}/32`, 'dev', `azt${k}m`);
    run('-n', this.nodeNetns, 'link', 'set', `azt${k}m`, 'up');
    run('-n', this.nodeNetns, 'route', 'add', `10.240.${k}.0/24`, 'dev', `azt${k}m`);
  }

  private async startZdsAgent(): Promise<void> {
    const pod = {
      uid: 'zt-pod-uid',
      name: 'zt-pod',
      namespace: 'demo',
      sa: this.opts.accounts?.ztSa ?? 'target',
      netns: `/var/run/netns/${this.netns}`,
    };
    const child = spawn('python3', [ZDS_AGENT, path.join(this.root, 'ztunnel.sock'), JSON.stringify(pod)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.zdsAgent = child;
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        this.zdsEvents.push(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
        buf = buf.slice(nl + 1);
      }
      this.wake();
    });
    child.stderr!.on('data', (d: Buffer) => this.zdsEvents.push({ event: 'stderr', text: d.toString() }));
    await this.waitFor(
      () => this.zdsEvents.some((e) => e.event === 'listening'),
      5000,
      'ZDS agent listening',
    );
  }

  private deleteNetwork(): void {
    for (const ns of new Set([this.netns, this.nodeNetns])) spawnSync('ip', ['netns', 'del', ns]);
    spawnSync('ip', ['link', 'del', this.hostIf]);
    spawnSync('ip', ['link', 'del', `azt${this.opts.k}n`]);
  }

  /**
   * Stops ztunnel and starts it again with another token or more environment (ambit is left
   * running); resolves once it runs, without waiting for it to be ready (it may never be).
   */
  async relaunchZtunnel(o: { token?: string; env?: Record<string, string> }): Promise<void> {
    await stopChild(this.ztunnel);
    let tokenFile = this.nodeTokenFile();
    if (o.token !== undefined) {
      tokenFile = path.join(this.root, 'ztunnel.token');
      await writeFile(tokenFile, o.token, { mode: 0o600 });
    }
    this.startZtunnel(tokenFile, o.env);
  }

  private nodeTokenFile(): string {
    return path.join(this.stateDir, 'nodes', `${ZT_NODE}.token`);
  }

  private startZtunnel(tokenFile: string, extraEnv: Record<string, string> = {}): void {
    const rootCa = path.join(this.stateDir, 'ca', 'root-cert.pem');
    const cp = `https://${this.ip.controlPlane}:15012`;
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      XDS_ADDRESS: cp,
      CA_ADDRESS: cp,
      XDS_ROOT_CA: rootCa,
      CA_ROOT_CA: rootCa,
      // ambit's serving certificate names istiod.istio-system.svc (controlplane/server.ts), as istiod's does.
      ALT_XDS_HOSTNAME: 'istiod.istio-system.svc',
      ALT_CA_HOSTNAME: 'istiod.istio-system.svc',
      AUTH_TOKEN: tokenFile,
      ...(this.opts.mode === 'shared'
        ? { INPOD_UDS: path.join(this.root, 'ztunnel.sock') }
        : {
            PROXY_MODE: 'dedicated',
            PROXY_WORKLOAD_INFO: `demo/zt-pod/${this.opts.accounts?.ztSa ?? 'target'}`,
          }),
      UNSTABLE_ENABLE_SOCKS5: 'true',
      NODE_NAME: ZT_NODE,
      INSTANCE_IP: this.opts.mode === 'shared' ? this.ip.ztunnelNode : this.ip.ztunnelPod,
      ZTUNNEL_WORKER_THREADS: '1',
      // Without in-pod capture the app's answer to a spoofed source would leave the namespace.
      ENABLE_ORIG_SRC: 'false',
      RUST_LOG: 'info',
      ...extraEnv,
    };
    const child = spawn('ip', ['netns', 'exec', this.nodeNetns, process.env[ZTUNNEL_BIN_ENV]!], {
      cwd: this.root,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.ztunnel = child;
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const rec = parseZtunnelLog(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (rec) this.ztLogs.push(rec);
      }
      this.wake();
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
  }

  private spawnInNetns(script: string): ChildProcess {
    const child = spawn(
      'ip',
      ['netns', 'exec', this.netns, process.execPath, '--input-type=module', '-e', script],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    child.stderr!.on('data', () => {});
    return child;
  }

  execInNetns(cmd: string, ...args: string[]): string {
    return execFileSync('ip', ['netns', 'exec', this.netns, cmd, ...args], { encoding: 'utf8' });
  }

  /** From the pod behind ztunnel: SOCKS5 to 127.0.0.1:15080 in its namespace, one round trip. */
  async fromZtunnelPod(host: string, port: number, payload = 'ping'): Promise<ProbeResult> {
    const script = `
      const { socksConnect } = await import(${JSON.stringify(SOCKS_CLIENT_JS)});
      const out = (r) => { process.stdout.write(JSON.stringify(r)); process.exit(0); };
      setTimeout(() => out({ ok: false, data: '', error: 'timeout' }), 5000);
      try {
        const s = await socksConnect({ host: '127.0.0.1', port: 15080 }, ${JSON.stringify(host)}, ${port});
        let data = '';
        s.on('data', (d) => (data += d));
        s.on('error', (e) => out({ ok: false, data, error: e.message }));
        s.on('end', () => s.end()); // half-open socket: close once the peer has ended too
        s.on('close', () => out({ ok: data.includes(${JSON.stringify(payload)}), data }));
        s.${sendVerb(payload)}(${JSON.stringify(payload)});
      } catch (e) { out({ ok: false, data: '', error: e.message }); }`;
    const child = this.spawnInNetns(script);
    let stdout = '';
    child.stdout!.on('data', (d) => (stdout += d));
    await new Promise((r) => child.once('exit', r));
    return JSON.parse(stdout || '{"ok":false,"data":"","error":"no output"}') as ProbeResult;
  }

  /** From amb-client through ambit's node proxy (SOCKS5 on the pod's 15080), one round trip. */
  async fromAmbitPod(
    host: string,
    port: number,
    payload = 'ping',
    from = this.ip.ambClient,
  ): Promise<ProbeResult> {
    let s: net.Socket;
    try {
      s = await socksConnect({ host: from, port: 15080 }, host, port);
    } catch (err) {
      return {
        ok: false,
        data: '',
        error: err instanceof SocksError ? `socks: ${err.message}` : String(err),
      };
    }
    return roundTrip(s, payload);
  }

  /** Plaintext from outside the mesh (the host's 10.240.k.1), no proxy on the sending side. */
  async plaintext(host: string, port: number): Promise<ProbeResult> {
    const s = net.connect({ host, port, localAddress: this.ip.host });
    return roundTrip(s);
  }

  /**
   * Writes (or, with undefined, removes) a policy file and waits until ztunnel and node-a hold the
   * result: both got a new response (of either type) and ACKed everything, and nothing more was
   * sent for 300 ms (one config change is one index update: its Authorization and Address pushes
   * follow each other within milliseconds). The change must alter what proxies see.
   */
  async setPolicies(name: string, yaml: string | undefined): Promise<void> {
    const nonces = (z: Awaited<ReturnType<ZtunnelInterop['syncz']>>, p: string) =>
      (z.find((e) => e.proxy === p)?.types ?? []).map((t) => `${t.type}=${t.sent}`).join(',');
    const before = await this.syncz();
    const file = path.join(this.configDir, `${name}.yaml`);
    if (yaml === undefined) await rm(file, { force: true });
    else await writeFile(file, yaml);
    let last: Awaited<ReturnType<ZtunnelInterop['syncz']>> = before;
    let stableSince = 0;
    await this.waitFor(
      async () => {
        const now = await this.syncz();
        const moved = [ZT_NODE, 'node-a'].every((p) => nonces(now, p) !== nonces(before, p));
        const same = [ZT_NODE, 'node-a'].every((p) => nonces(now, p) === nonces(last, p));
        const synced = now.length >= 2 && now.every((e) => e.status === 'SYNCED');
        if (!(moved && synced && same)) stableSince = Date.now();
        last = now;
        return moved && synced && same && Date.now() - stableSince >= 300;
      },
      10_000,
      `policies ${name} pushed to and ACKed by both proxies`,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; syncz before ${JSON.stringify(before)}, last ${JSON.stringify(last)}`);
    });
  }

  /** The control plane's view of every proxy's xDS state (GET /debug/syncz). */
  async syncz(): Promise<
    {
      proxy: string;
      kind: string;
      status: string;
      types: { type: string; sent: string; acked: string; nack?: string }[];
    }[]
  > {
    const token = readAdminToken(this.stateDir) ?? '';
    const res = await fetch(`http://${this.ip.controlPlane}:15014/debug/syncz`, {
      headers: { authorization: `Bearer ${token}` },
    });
    if (!res.ok) throw new Error(`syncz ${res.status}`);
    return (await res.json()) as Awaited<ReturnType<ZtunnelInterop['syncz']>>;
  }

  /** ztunnel's admin config_dump (127.0.0.1:15000 in its namespace). */
  configDump(): Record<string, unknown> {
    const script =
      "fetch('http://127.0.0.1:15000/config_dump').then(r=>r.text()).then(t=>process.stdout.write(t))";
    const out = execFileSync('ip', ['netns', 'exec', this.nodeNetns, 'node', '-e', script], {
      encoding: 'utf8',
    });
    return JSON.parse(out) as Record<string, unknown>;
  }

  async waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (
        await Promise.resolve()
          .then(check)
          .catch(() => false)
      )
        return;
      if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(done, 100);
        this.waiters.add(done);
        function done() {
          clearTimeout(t);
          r();
        }
      });
    }
  }

  private wake(): void {
    for (const w of [...this.waiters]) {
      this.waiters.delete(w);
      w();
    }
  }

  async stop(): Promise<void> {
    for (const c of [this.ztunnel, this.zdsAgent, ...this.apps]) await stopChild(c);
    // AMBIT_INTEROP_LOGS=<dir>: every line of the run, ambit's and ztunnel's, for a failure's post-mortem.
    const logDir = process.env.AMBIT_INTEROP_LOGS;
    if (logDir) {
      const lines = [
        ...this.meshLogs.map((l) => `${l.component} ${JSON.stringify(l.rec)}`),
        ...this.ztLogs.map((l) => `ztunnel ${JSON.stringify(l)}`),
        ...this.zdsEvents.map((e) => `zds-agent ${JSON.stringify(e)}`),
      ];
      await mkdir(logDir, { recursive: true });
      await writeFile(path.join(logDir, `${this.opts.name}.log`), lines.join('\n') + '\n');
    }
    await Promise.all(this.hostApps.map((s) => new Promise((r) => s.close(r))));
    await this.mesh?.stop();
    this.deleteNetwork();
    if (this.root) await rm(this.root, { recursive: true, force: true });
  }
}
