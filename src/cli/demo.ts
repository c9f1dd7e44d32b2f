// `ambit demo [DIR]`: start the quickstart mesh, send a few requests as demo/sleep, and print
// what happened to each: the route, the pod that answered and the identity the destination
// node proxy verified. Then stop everything.
import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Mesh, type MeshPod } from './mesh-runner.js';
import { socksConnect, SocksError } from './socks-client.js';

const QUICKSTART = fileURLToPath(new URL('../../examples/quickstart', import.meta.url));

interface Step {
  what: string;
  host: string;
  port: number;
  path: string;
}

export async function demo(args: string[]): Promise<number> {
  const dir = path.resolve(args[0] ?? QUICKSTART);
  const stateDir = await mkdtemp(path.join(tmpdir(), 'ambit-demo-'));
  const logs: { component: string; rec: Record<string, unknown> }[] = [];
  console.log(
    `ambit demo: starting the mesh in ${path.relative(process.cwd(), dir) || dir} (state in ${stateDir})`,
  );
  const mesh = await Mesh.start({
    configDir: dir,
    stateDir,
    onLog: (component, line) => {
      try {
        logs.push({ component, rec: JSON.parse(line) as Record<string, unknown> });
      } catch {
        /* app output that is not JSON */
      }
    },
  });
  const interrupted = () => void mesh.stop().then(() => process.exit(130));
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    const d = mesh.description;
    console.log(
      `ambit demo: mesh ready: control plane ${d.controlPlane}, nodes ${d.nodes.map((n) => `${n.name}@${n.ip}`).join(', ')}`,
    );
    for (const p of d.pods)
      console.log(
        `  pod ${p.namespace}/${p.name} ${p.ip} on ${p.node}${p.ambient ? ' (ambient)' : ' (not in the mesh)'}`,
      );
    const client =
      d.pods.find((p) => p.namespace === 'demo' && p.name === 'sleep') ?? d.pods.find((p) => p.ambient);
    if (!client?.socks) throw new Error('the manifests have no ambient pod to send traffic from');
    const echoV2 = d.pods.find((p) => p.name === 'echo-v2');
    const steps: Step[] = [
      { what: 'service by name', host: 'echo.demo', port: 8080, path: '/hello' },
      { what: 'service by name', host: 'echo.demo', port: 8080, path: '/hello' },
      { what: 'short name, own namespace', host: 'echo', port: 8080, path: '/short' },
      { what: 'fully qualified name', host: 'echo.demo.svc.cluster.local', port: 8080, path: '/fqdn' },
      ...(echoV2 ? [{ what: 'pod IP', host: echoV2.ip, port: 8080, path: '/pod' }] : []),
      { what: 'outside the mesh', host: 'plain.legacy', port: 8080, path: '/plain' },
      { what: 'unknown name', host: 'nope.demo', port: 8080, path: '/' },
    ];
    console.log(
      `\nambit demo: sending requests as ${client.namespace}/${client.name} through its node proxy (SOCKS5 ${client.socks})\n`,
    );
    let n = 0;
    for (const step of steps) {
      n++;
      const line = await runStep(step, client, d.pods, logs);
      console.log(
        `${String(n).padStart(2)}. GET http://${step.host}:${step.port}${step.path}  (${step.what})\n    ${line}`,
      );
    }
    console.log('\nambit demo: done. Run the mesh yourself with `npx ambit up examples/quickstart`.');
    return 0;
  } finally {
    await mesh.stop();
    await rm(stateDir, { recursive: true, force: true });
  }
}

async function runStep(
  step: Step,
  client: MeshPod,
  pods: MeshPod[],
  logs: { component: string; rec: Record<string, unknown> }[],
): Promise<string> {
  const [host = '', port = '0'] = client.socks!.split(':');
  let socket;
  try {
    socket = await socksConnect({ host, port: Number(port) }, step.host, step.port);
  } catch (err) {
    return err instanceof SocksError
      ? `refused by the node proxy: ${err.message}`
      : `failed: ${(err as Error).message}`;
  }
  const srcAddr = `${socket.localAddress}:${socket.localPort}`;
  const body = await new Promise<string>((resolve, reject) => {
    const req = http.request(
      {
        host: step.host,
        port: step.port,
        path: step.path,
        createConnection: () => socket,
        headers: { connection: 'close' },
      },
      (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (data += c));
        res.on('end', () => resolve(data));
      },
    );
    req.on('error', reject);
    req.end();
  });
  let servedBy = '?';
  try {
    servedBy = (JSON.parse(body) as { pod: string }).pod;
  } catch {
    /* not an echo answer */
  }
  const servedPod = pods.find((p) => `${p.namespace}/${p.name}` === servedBy);
  // The node proxies log each connection when it closes; wait briefly for both records.
  const find = (dir: string) =>
    logs.find(
      (l) => l.rec.direction === dir && l.rec['src.addr'] === srcAddr && l.rec.msg === 'connection complete',
    );
  for (
    let i = 0;
    i < 40 && !(find('outbound') && (find('inbound') || find('outbound')?.rec.route !== 'hbone'));
    i++
  ) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const out = find('outbound');
  const inbound = find('inbound');
  const route =
    out?.rec.route === 'hbone'
      ? `HBONE mTLS ${out.component} -> ${inbound?.component ?? '?'}`
      : out?.rec.route === 'passthrough'
        ? `plain TCP from ${out.component} (destination not in the mesh)`
        : 'route unknown';
  const verified = inbound ? `; destination verified ${String(inbound.rec['src.identity'])}` : '';
  return `answered by ${servedBy}${servedPod ? ` on ${servedPod.node}` : ''} via ${route}${verified}`;
}
