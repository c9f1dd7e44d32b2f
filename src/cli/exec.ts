// `ambit exec --pod NS/NAME -- CMD`: run a command whose traffic enters the mesh as that pod.
// Local mode captures explicitly: the command gets ALL_PROXY=socks5h://<podIP>:15080, which
// curl and most HTTP tools honour (socks5h: names are resolved by the mesh, so service names
// like echo.demo work). In netns mode (`ambit up --netns`) the command runs inside the pod's
// network namespace instead, with no proxy settings: its traffic is captured.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { MeshDescription } from './mesh-runner.js';
import { UsageError } from './usage-error.js';

export async function exec(argv: string[]): Promise<number> {
  const sep = argv.indexOf('--');
  const own = sep >= 0 ? argv.slice(0, sep) : argv;
  const cmd = sep >= 0 ? argv.slice(sep + 1) : [];
  let pod: string | undefined;
  let state = '.ambit';
  for (let i = 0; i < own.length; i++) {
    if (own[i] === '--pod') pod = own[++i];
    else if (own[i] === '--state') state = own[++i] ?? state;
    else throw new UsageError(`exec: unknown flag ${own[i]}`);
  }
  if (!pod || !pod.includes('/')) throw new UsageError('exec needs --pod NAMESPACE/NAME');
  if (cmd.length === 0) throw new UsageError('exec needs a command after --');
  const file = path.resolve(state, 'mesh.json');
  let desc: MeshDescription;
  try {
    desc = JSON.parse(await readFile(file, 'utf8')) as MeshDescription;
  } catch {
    throw new UsageError(`no running mesh found (${file} is missing); start one with \`ambit up DIR\``);
  }
  const [ns, name] = pod.split('/') as [string, string];
  const p = desc.pods.find((x) => x.namespace === ns && x.name === name);
  if (!p)
    throw new UsageError(
      `pod ${pod} is not in the mesh's manifests (known: ${desc.pods.map((x) => `${x.namespace}/${x.name}`).join(', ')})`,
    );
  const netns = (p as { netns?: string }).netns;
  if (netns) return runInNetns(netns, p, cmd);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    POD_IP: p.ip,
    POD_NAME: p.name,
    POD_NAMESPACE: p.namespace,
  };
  delete env.NO_PROXY;
  delete env.no_proxy;
  if (p.socks) {
    const proxy = `socks5h://${p.socks}`;
    Object.assign(env, {
      ALL_PROXY: proxy,
      all_proxy: proxy,
      HTTP_PROXY: proxy,
      http_proxy: proxy,
      HTTPS_PROXY: proxy,
      https_proxy: proxy,
    });
  } else {
    console.error(`ambit: pod ${pod} is not in an ambient namespace; its traffic does not enter the mesh`);
  }
  const child = spawn(cmd[0]!, cmd.slice(1), { stdio: 'inherit', env });
  return new Promise((resolve) => {
    child.once('error', (err) => {
      console.error(`ambit: cannot run ${cmd[0]}: ${err.message}`);
      resolve(127);
    });
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

/**
 * netns mode: the command runs inside the pod's network namespace, as the pod's app would. No
 * proxy settings: an ambient pod's traffic is captured by its redirection rules.
 */
function runInNetns(
  netns: string,
  p: { ip: string; name: string; namespace: string },
  cmd: string[],
): Promise<number> {
  const child = spawn('ip', ['netns', 'exec', netns, ...cmd], {
    stdio: 'inherit',
    env: { ...process.env, POD_IP: p.ip, POD_NAME: p.name, POD_NAMESPACE: p.namespace },
  });
  return new Promise((resolve) => {
    child.once('error', (err) => {
      console.error(`ambit: cannot run ip netns exec (netns mode needs root and iproute2): ${err.message}`);
      resolve(127);
    });
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}
