// `ambit down`: removes what a crashed `ambit up --netns` left behind: every network namespace
// with the prefix (their links, routes and in-pod iptables rules go with them), the processes
// still running inside them, and the resolv.conf files written for them under /etc/netns.
// ambit creates nothing in the root namespace, so nothing else needs removing.
import { parseArgs } from 'node:util';
import { UsageError } from './usage-error.js';

export async function down(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { 'netns-prefix': { type: 'string', default: 'ambit-' } },
  });
  const prefix = values['netns-prefix'];
  if (!/^[A-Za-z0-9_.-]{3,}$/.test(prefix))
    throw new UsageError('--netns-prefix must be at least 3 characters of [A-Za-z0-9_.-]');
  if (process.getuid?.() !== 0) throw new UsageError('down needs root (it deletes network namespaces)');
  const { teardown } = await import('../redirect/topology.js');
  const r = await teardown(prefix);
  if (r.namespaces.length === 0)
    console.log(`ambit: nothing to remove (no network namespace named ${prefix}*)`);
  else
    console.log(
      `ambit: removed ${r.namespaces.length} network namespaces (${r.namespaces.join(', ')})` +
        (r.killed.length ? `, ended ${r.killed.length} processes still in them` : ''),
    );
  return 0;
}
