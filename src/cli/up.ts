// `ambit up DIR`: run the mesh described by a folder of manifests until Ctrl-C.
import { parseArgs } from 'node:util';
import path from 'node:path';
import { Mesh } from './mesh-runner.js';
import { formatLogLine } from './log-format.js';
import { UsageError, untilSignal } from './main.js';

export async function up(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      state: { type: 'string', default: '.ambit' },
      'log-format': { type: 'string', default: 'text' },
      controlplane: { type: 'string', default: '127.0.0.1:15012' },
    },
  });
  const dir = positionals[0];
  if (!dir) throw new UsageError('up needs a directory of manifests, e.g. `ambit up examples/quickstart`');
  const json = values['log-format'] === 'json';
  const stateDir = path.resolve(values.state);
  const mesh = await Mesh.start({
    configDir: path.resolve(dir),
    stateDir,
    controlPlaneAddr: values.controlplane,
    follow: true,
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
  await untilSignal();
  console.log('ambit: stopping');
  await mesh.stop();
  return 0;
}
