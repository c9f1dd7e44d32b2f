// `ambit dashboard`: prints the live service graph's URL (served by the control plane on 15014)
// after checking it answers, and with --open starts the desktop's browser on it.
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import { httpRequest } from '../telemetry/http-util.js';

export async function dashboard(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      controlplane: { type: 'string', default: '127.0.0.1:15014' },
      open: { type: 'boolean', default: false },
    },
  });
  const url = `http://${values.controlplane}/dashboard`;
  try {
    const r = await httpRequest(url, { timeoutMs: 3000 });
    if (r.status !== 200) throw new Error(`answered ${r.status}`);
  } catch (err) {
    console.error(
      `ambit: the control plane's dashboard at ${url} is not reachable (${(err as Error).message}); is \`ambit up\` running?`,
    );
    return 1;
  }
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
