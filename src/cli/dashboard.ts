// `ambit dashboard`: prints the live service graph's URL (served by the control plane on 15014)
// after checking it answers, and with --open starts the desktop's browser on it. The page's data
// (/debug/graph) needs the admin token (telemetry/admin-guard.ts): the URL carries it in its
// fragment (#token=…), which the browser keeps to itself (never sent to a server, nor in Referer).
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import { httpRequest } from '../telemetry/http-util.js';
import { ADMIN_TOKEN_ENV } from '../common/token.js';
import { adminTokenFor } from './ctl.js';
import { DEFAULT_CONTROL_PLANE_DEBUG_ADDR } from '../common/ports.js';

export async function dashboard(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      controlplane: { type: 'string', default: DEFAULT_CONTROL_PLANE_DEBUG_ADDR },
      state: { type: 'string', default: '.ambit' },
      open: { type: 'boolean', default: false },
    },
  });
  const base = `http://${values.controlplane}`;
  const token = adminTokenFor(values.state);
  try {
    const page = await httpRequest(`${base}/dashboard`, { timeoutMs: 3000 });
    if (page.status !== 200) throw new Error(`answered ${page.status}`);
  } catch (err) {
    console.error(
      `ambit: the control plane's dashboard at ${base}/dashboard is not reachable (${(err as Error).message}); is \`ambit up\` running?`,
    );
    return 1;
  }
  const graph = await httpRequest(`${base}/debug/graph`, {
    timeoutMs: 5000,
    headers: token ? { authorization: `Bearer ${token}` } : {},
  }).catch((err: Error) => ({ status: 0, body: err.message }));
  if (graph.status !== 200) {
    console.error(
      `ambit: the control plane refused the service graph (${graph.status}: ${graph.body.trim()}); ` +
        (token
          ? 'is this the state directory of that mesh (--state DIR)?'
          : `no admin token: set ${ADMIN_TOKEN_ENV} or pass --state DIR (default .ambit)`),
    );
    return 1;
  }
  const url = token ? `${base}/dashboard#token=${token}` : `${base}/dashboard`;
  console.log(url);
  if (values.open) {
    const opener =
      process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'start' : 'xdg-open';
    spawn(opener, [url], { stdio: 'ignore', detached: true })
      .on('error', () => {
        console.error(`ambit: could not start ${opener}; open the URL above yourself`);
      })
      .unref();
  }
  return 0;
}
