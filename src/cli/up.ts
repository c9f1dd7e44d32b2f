// `ambit up DIR`: run the mesh described by a folder of manifests until Ctrl-C.
import { parseArgs } from 'node:util';
import path from 'node:path';
import { Mesh } from './mesh-runner.js';
import { formatLogLine } from './log-format.js';
import { UsageError } from './usage-error.js';
import { certTtlFlag, untilSignal } from './run-flags.js';
import { DEFAULT_CONTROL_PLANE_ADDR } from '../common/ports.js';
import type { NetnsMeshOptions } from './up-netns.js';

export async function up(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      state: { type: 'string', default: '.ambit' },
      'log-format': { type: 'string', default: 'text' },
      controlplane: { type: 'string', default: DEFAULT_CONTROL_PLANE_ADDR },
      netns: { type: 'boolean' },
      'netns-prefix': { type: 'string', default: 'ambit-' },
      'disable-capture': { type: 'boolean' },
      // Workload certificate lifetime, to watch rotation (at half-life) without waiting a day.
      'cert-ttl': { type: 'string' },
    },
  });
  const certTtlSeconds = certTtlFlag(values['cert-ttl']);
  const dir = positionals[0];
  if (!dir) throw new UsageError('up needs a directory of manifests, e.g. `ambit up examples/quickstart`');
  const json = values['log-format'] === 'json';
  const stateDir = path.resolve(values.state);
  if (values.netns)
    return upNetns({
      configDir: path.resolve(dir),
      stateDir,
      controlPlaneAddr: values.controlplane,
      prefix: values['netns-prefix'],
      disableCapture: values['disable-capture'],
      certTtlSeconds,
      onLog: (component, line) => console.log(json ? line : formatLogLine(component, line)),
    });
  const mesh = await Mesh.start({
    configDir: path.resolve(dir),
    stateDir,
    controlPlaneAddr: values.controlplane,
    follow: true,
    certTtlSeconds,
    onLog: (component, line) => console.log(json ? line : formatLogLine(component, line)),
  });
  for (const e of mesh.configErrors) console.error(`ambit: invalid manifest skipped: ${e}`);
  const d = mesh.description;
  const ambient = d.pods.filter((p) => p.ambient);
  const client = ambient[0];
  console.log(
    `ambit: mesh ready — control plane ${d.controlPlane}, ${d.nodes.length} node proxies, ` +
      (d.waypoints.length
        ? `${d.waypoints.length} waypoint${d.waypoints.length > 1 ? 's' : ''} (${d.waypoints.map((w) => `${w.namespace}/${w.name} ${w.ip}`).join(', ')}), `
        : '') +
      `${d.pods.length} pods (${ambient.length} in ambient). ` +
      (client
        ? `Try: npx ambit exec --pod ${client.namespace}/${client.name} -- curl -s http://<service>.<namespace>:<port>/`
        : ''),
  );
  // Admin (15000) and debug (15014) ask for this token (telemetry/admin-guard.ts).
  console.log(
    `ambit: admin token in ${path.join(stateDir, 'admin.token')} — \`ambit ctl\` and \`ambit dashboard\` read it` +
      (values.state === '.ambit' ? '' : ` with --state ${values.state}`),
  );
  await untilSignal();
  console.log('ambit: stopping');
  await mesh.stop();
  return 0;
}

/** `ambit up --netns DIR`: the same mesh in real network namespaces, with transparent capture. */
async function upNetns(opts: NetnsMeshOptions): Promise<number> {
  const { NetnsMesh } = await import('./up-netns.js');
  // Ctrl-C during start-up must still remove what was built: stop() runs once start() returns.
  let interrupted = false;
  const early = () => (interrupted = true);
  process.once('SIGINT', early);
  process.once('SIGTERM', early);
  const mesh = await NetnsMesh.start(opts);
  process.off('SIGINT', early);
  process.off('SIGTERM', early);
  for (const e of mesh.configErrors) console.error(`ambit: manifest problem: ${e}`);
  const d = mesh.description;
  const ambient = d.pods.filter((p) => p.ambient);
  const client = ambient[0];
  console.log(
    `ambit: mesh ready in network namespaces (${d.netns.prefix}*) — control plane ${d.controlPlane} in ${d.netns.router}, ` +
      `${d.nodes.length} node proxies, ${d.pods.length} pods (${ambient.length} captured). ` +
      (client
        ? `Try: ambit exec --pod ${client.namespace}/${client.name} -- curl -s http://<service>.<namespace>:<port>/`
        : ''),
  );
  if (!interrupted) await untilSignal();
  console.log('ambit: stopping (removing the namespaces)');
  await mesh.stop();
  return 0;
}
