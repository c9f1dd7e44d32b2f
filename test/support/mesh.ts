// Starts a real mesh (control plane + node proxies as child processes) from manifests written
// to a temp dir, on a loopback range of the test's own, and collects every log line.
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { Mesh, type MeshOptions } from '../../src/cli/mesh-runner.js';
import { socksConnect } from '../../src/cli/socks-client.js';

export interface LogRecord {
  component: string;
  rec: Record<string, unknown>;
}

/** demo/no-7002: a DENY of port 7002 on the echo pods, for tests that need a policy denial to see. */
export const DENY_ECHO_7002 = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-7002, namespace: demo}
spec:
  selector: {matchLabels: {app: echo}}
  action: DENY
  rules:
  - to: [{operation: {ports: ["7002"]}}]
`;

export interface TestMeshOptions {
  /** Third octet of the test's range: nodes 127.0.<o>.1-9, pods 127.0.<o>.10-99, VIPs 127.0.<o>.100+. */
  octet: number;
  extraManifests?: string;
  certTtlSeconds?: number;
  env?: Record<string, string>;
  /** Mesh follows the folder (as `ambit up` does): nodes and waypoints added later are started. */
  follow?: boolean;
  /** Back-off of supervised restarts (src/cli/restart-backoff.ts). */
  restart?: MeshOptions['restart'];
}

/** The quickstart's shape, moved to the test's range; no app commands (tests bind their own apps). */
export function manifests(o: number): string {
  const pod = (
    name: string,
    ns: string,
    node: string,
    ip: number,
    labels: Record<string, string>,
    sa?: string,
  ) => `
apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: ${ns}
  labels: ${JSON.stringify(labels)}
spec:
  nodeName: ${node}
  ${sa ? `serviceAccountName: ${sa}` : ''}
status:
  podIP: 127.0.${o}.${ip}
`;
  return [
    `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n  labels:\n    istio.io/dataplane-mode: ambient\n`,
    `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: legacy\n`,
    `apiVersion: v1\nkind: Node\nmetadata:\n  name: node-1\nstatus:\n  addresses: [{type: InternalIP, address: 127.0.${o}.1}]\n`,
    `apiVersion: v1\nkind: Node\nmetadata:\n  name: node-2\nstatus:\n  addresses: [{type: InternalIP, address: 127.0.${o}.2}]\n`,
    pod('sleep', 'demo', 'node-1', 10, { app: 'sleep' }, 'sleep'),
    pod('echo-v1', 'demo', 'node-1', 11, { app: 'echo', version: 'v1' }, 'echo'),
    pod('echo-v2', 'demo', 'node-2', 12, { app: 'echo', version: 'v2' }, 'echo'),
    pod('plain', 'legacy', 'node-2', 13, { app: 'plain' }),
    `apiVersion: v1\nkind: Service\nmetadata:\n  name: echo\n  namespace: demo\nspec:\n  clusterIP: 127.0.${o}.100\n  selector: {app: echo}\n  ports: [{name: http, port: 8080, targetPort: 8080}, {name: tcp-echo, port: 7000, targetPort: 7000}]\n`,
  ].join('---\n');
}

export class TestMesh {
  readonly logs: LogRecord[] = [];
  mesh!: Mesh;
  configDir!: string;
  stateDir!: string;
  private root!: string;
  private readonly waiters = new Set<() => void>();

  constructor(readonly opts: TestMeshOptions) {}

  ip(last: number): string {
    return `127.0.${this.opts.octet}.${last}`;
  }

  async start(): Promise<this> {
    this.root = await mkdtemp(path.join(tmpdir(), 'ambit-test-'));
    this.configDir = path.join(this.root, 'config');
    this.stateDir = path.join(this.root, 'state');
    await mkdir(this.configDir);
    await writeFile(path.join(this.configDir, 'mesh.yaml'), manifests(this.opts.octet));
    if (this.opts.extraManifests)
      await writeFile(path.join(this.configDir, 'extra.yaml'), this.opts.extraManifests);
    const options: MeshOptions = {
      configDir: this.configDir,
      stateDir: this.stateDir,
      controlPlaneAddr: `${this.ip(5)}:15012`,
      certTtlSeconds: this.opts.certTtlSeconds,
      follow: this.opts.follow,
      restart: this.opts.restart,
      env: { AMBIT_LOG_LEVEL: 'debug', ...this.opts.env },
      onLog: (component, line) => {
        try {
          this.logs.push({ component, rec: JSON.parse(line) as Record<string, unknown> });
        } catch {
          this.logs.push({ component, rec: { msg: line } });
        }
        for (const w of this.waiters) w();
      },
    };
    this.mesh = await Mesh.start(options);
    return this;
  }

  async stop(): Promise<void> {
    await this.mesh?.stop();
    await rm(this.root, { recursive: true, force: true });
  }

  /** Resolves with the first log record (past or future) matching `pred`. */
  waitForLog(pred: (l: LogRecord) => boolean, timeoutMs = 10_000, from = 0): Promise<LogRecord> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const hit = this.logs.slice(from).find(pred);
        if (hit) {
          this.waiters.delete(check);
          clearTimeout(timer);
          resolve(hit);
        }
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`no matching log line within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  /** Resolves when the demo waypoint (waypoint/demo/waypoint) has logged that it is ready. */
  waypointReady(timeoutMs = 10_000): Promise<LogRecord> {
    return this.waitForLog(
      (l) => l.component === 'waypoint/demo/waypoint' && l.rec.msg === 'waypoint ready',
      timeoutMs,
    );
  }

  /** Opens a connection into the mesh as pod `from` (its SOCKS5 listener) to host:port. */
  socks(fromIp: string, host: string, port: number): Promise<net.Socket> {
    return socksConnect({ host: fromIp, port: 15080 }, host, port);
  }
}

/** A TCP server bound to a pod IP that echoes every byte back (with half-close passed on). */
export function tcpEcho(host: string, port: number): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  return listen(server, host, port);
}

export function listen<T extends net.Server>(server: T, host: string, port: number): Promise<T> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

export function closeServer(server: net.Server | undefined): Promise<void> {
  return new Promise((resolve) => (server ? server.close(() => resolve()) : resolve()));
}

/** Reads a socket to its end; resolves with all bytes. */
export function readAll(s: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('error', reject);
  });
}
