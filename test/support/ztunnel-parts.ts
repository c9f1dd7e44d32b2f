// The parts of the ztunnel interop harness (test/support/ztunnel.ts) that are not the run itself:
// when the tests can run, the addresses and manifests of the topology, ztunnel's log lines read
// back, and the apps and probes on either side of the mesh.
import { type ChildProcess, spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

export const ZTUNNEL_BIN_ENV = 'AMBIT_ZTUNNEL_BIN';
const SOCKS_CLIENT_JS = fileURLToPath(new URL('../../dist/cli/socks-client.js', import.meta.url));

/** Why the interop tests cannot run here (printed when they skip), or undefined. */
export function ztunnelSkipReason(): string | undefined {
  const bin = process.env[ZTUNNEL_BIN_ENV];
  if (!bin) return `${ZTUNNEL_BIN_ENV} is not set (build istio/ztunnel yourself and point it at the binary)`;
  try {
    accessSync(bin, constants.X_OK);
  } catch {
    return `${ZTUNNEL_BIN_ENV}=${bin} is not an executable file`;
  }
  if (process.platform !== 'linux') return 'not Linux (ztunnel runs in its own network namespace)';
  if (process.getuid?.() !== 0) return 'not root (network namespaces and veth links need root)';
  if (spawnSync('ip', ['-V']).status !== 0) return 'no `ip` command (iproute2)';
  try {
    accessSync(SOCKS_CLIENT_JS);
  } catch {
    return 'dist/ is not built (npx tsc -p tsconfig.json)';
  }
  return undefined;
}

/** Where everything of one interop run lives. */
export interface InteropAddresses {
  host: string;
  ztunnelPod: string;
  node: string;
  controlPlane: string;
  ambClient: string;
  ambServer: string;
  /** ztunnel's own address in shared mode (its node namespace). */
  ztunnelNode: string;
  /** Service `target`'s VIP. */
  vip: string;
}

export function interopAddresses(k: number): InteropAddresses {
  const a = (n: number) => `10.240.${k}.${n}`;
  return {
    host: a(1),
    ztunnelPod: a(2),
    node: a(3),
    ztunnelNode: a(4),
    controlPlane: a(5),
    ambClient: a(10),
    ambServer: a(11),
    vip: a(100),
  };
}

export const ZT_NODE = 'zt-node';
export const SPIFFE = (sa: string, ns = 'demo') => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;

/** Service accounts of amb-server and zt-pod: the same one lets one policy read alike on both. */
export interface InteropAccounts {
  serverSa?: string;
  ztSa?: string;
}

/**
 * The mesh: namespace demo (ambient), ambit's node-a with amb-client (sa `client`) and amb-server,
 * and zt-pod on zt-node (no Node object, so `Mesh` starts no ambit node proxy for it: ztunnel is
 * that node). amb-server and zt-pod carry the label role=target; their accounts default to `target`.
 */
export function interopManifests(k: number, o: InteropAccounts = {}): string {
  const ip = interopAddresses(k);
  const pod = (name: string, node: string, podIp: string, sa: string, labels: string) =>
    `apiVersion: v1\nkind: Pod\nmetadata: {name: ${name}, namespace: demo, labels: ${labels}}\n` +
    `spec: {nodeName: ${node}, serviceAccountName: ${sa}}\nstatus: {podIP: ${podIp}}\n`;
  return [
    'apiVersion: v1\nkind: Namespace\nmetadata: {name: demo, labels: {istio.io/dataplane-mode: ambient}}\n',
    'apiVersion: v1\nkind: Namespace\nmetadata: {name: istio-system}\n',
    `apiVersion: v1\nkind: Node\nmetadata: {name: node-a}\nstatus: {addresses: [{type: InternalIP, address: ${ip.node}}]}\n`,
    pod('amb-client', 'node-a', ip.ambClient, 'client', '{app: client}'),
    pod('amb-server', 'node-a', ip.ambServer, o.serverSa ?? 'target', '{role: target, app: amb-server}'),
    pod('zt-pod', ZT_NODE, ip.ztunnelPod, o.ztSa ?? 'target', '{role: target, app: zt-pod}'),
    // Service `target` (VIP 10.240.k.100, port 80 → 7000) with both as endpoints.
    `apiVersion: v1\nkind: Service\nmetadata: {name: target, namespace: demo}\n` +
      `spec: {clusterIP: ${ip.vip}, selector: {role: target}, ports: [{name: tcp, port: 80, targetPort: 7000}]}\n`,
  ].join('---\n');
}

export interface ZtunnelLog {
  level: string;
  target: string;
  msg: string;
  fields: Record<string, string>;
}

/** One ztunnel log line ("time\tlevel\ttarget\tmsg\tk=v k="v" …"), or undefined for a continuation line. */
export function parseZtunnelLog(line: string): ZtunnelLog | undefined {
  const parts = line.split('\t');
  if (parts.length < 4 || !/^\d{4}-\d\d-\d\dT/.test(parts[0]!)) return undefined;
  const fields: Record<string, string> = {};
  for (const m of (parts.slice(4).join('\t') || '').matchAll(/([\w.]+)=("(?:[^"\\]|\\.)*"|\S+)/g)) {
    const v = m[2]!;
    fields[m[1]!] = v.startsWith('"') ? (JSON.parse(v) as string) : v;
  }
  return { level: parts[1]!, target: parts[2]!, msg: parts[3]!, fields };
}

export interface ProbeResult {
  /** Bytes came back through the tunnel (the app answered). */
  ok: boolean;
  data: string;
  error?: string;
}

/** Why shared mode cannot run here (besides ztunnelSkipReason), or undefined. */
export function sharedModeSkipReason(): string | undefined {
  const probe = spawnSync('python3', ['-c', 'import socket; socket.send_fds']);
  if (probe.status !== 0)
    return 'shared mode needs python3 >= 3.9 (socket.send_fds) for the ZDS node agent stand-in';
  return undefined;
}

export const SOCKS_CLIENT_JS_PATH = SOCKS_CLIENT_JS;

/** SIGTERM, then SIGKILL after 3 s; only the child this helper started. */
export async function stopChild(c: ChildProcess | undefined): Promise<void> {
  if (!c?.pid || c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise((r) => c.once('exit', r));
  c.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
  if (c.exitCode === null && c.signalCode === null) {
    c.kill('SIGKILL');
    await exited;
  }
}

/** An HTTP app in zt-pod's namespace: 200 with its name. */
export function httpAppScript(port: number, name: string): string {
  return `
    import http from 'node:http';
    http.createServer((_req, res) => res.end('${name}:${port}')).listen(${port}, '0.0.0.0');`;
}

/** The app in ztunnel's namespace: greets with its name and echoes. */
export function appScript(port: number): string {
  return `
    import net from 'node:net';
    net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => {});
      s.write('zt-pod:${port} ');
      s.pipe(s);
    }).listen(${port}, '0.0.0.0');`;
}

export function hostEcho(host: string, port: number, name: string): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.write(`${name}:${port} `);
    s.pipe(s);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

/**
 * How a probe sends its payload: half-closed after it (the echo apps answer and end), except an
 * HTTP request, which waits for the response (Connection: close): a waypoint, as Envoy, reads
 * a client's FIN during a request as the client leaving.
 */
export function sendVerb(payload: string): 'end' | 'write' {
  return /^[A-Z]+ \S+ HTTP\/1\.1\r\n/.test(payload) ? 'write' : 'end';
}

export function roundTrip(s: net.Socket, payload = 'ping'): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let data = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ ok: false, data, error: 'timeout' });
    }, 5000);
    const finish = (error?: string) => {
      clearTimeout(timer);
      resolve({ ok: data.includes(payload), data, ...(error ? { error } : {}) });
    };
    s.on('data', (d: Buffer) => (data += d.toString()));
    s.on('error', (e) => finish(e.message));
    s.on('end', () => s.end()); // half-open socket: close once the peer has ended too
    s.on('close', () => finish());
    const send = () => (sendVerb(payload) === 'end' ? s.end(payload) : s.write(payload));
    s.on('connect', send);
    if (!s.connecting) send();
  });
}
