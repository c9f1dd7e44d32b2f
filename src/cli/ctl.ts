// `ambit ctl`: operator commands against a running mesh (local `ambit up` or Kubernetes), like
// istioctl's. Reads the control plane's debug endpoint (15014) and, for what only a node proxy
// knows (certificates, its config dump), each node's admin endpoint (15000) at the addresses the
// control plane lists. `analyze` works on a folder of manifests, no mesh needed.
// Both endpoints ask for the admin token (telemetry/admin-guard.ts): read from AMBIT_ADMIN_TOKEN,
// else <--state>/admin.token (default ./.ambit, where `ambit up` keeps it).
import { parseArgs } from 'node:util';
import { ADMIN_TOKEN_ENV, readAdminToken } from '../common/token.js';
import { loadDirectory } from '../config/load.js';
import type { Service, Workload } from '../xds/resources.js';
import type { WaypointStatus } from '../controlplane/waypoint-planner.js';
import type { SyncEntry } from '../telemetry/controlplane-debug.js';
import type { CertInfo } from '../telemetry/node-admin.js';
import { getJson as getJsonFrom } from '../telemetry/http-util.js';
import { UsageError } from './usage-error.js';
import { analyze, formatAnalyzeMessage, loadMessages } from './ctl-analyze.js';
import { formatTable } from './ctl-table.js';
import { ADMIN_PORT, CONTROL_PLANE_DEBUG_PORT, DEFAULT_CONTROL_PLANE_DEBUG_ADDR } from '../common/ports.js';

const DEFAULT_CONTROL_PLANE = DEFAULT_CONTROL_PLANE_DEBUG_ADDR;

export const CTL_USAGE = `ambit ctl COMMAND [-o table|json] [--controlplane HOST:PORT (default ${DEFAULT_CONTROL_PLANE})] [--state DIR]
  workloads              every workload the control plane knows
  services               services with their VIPs, ports and waypoint
  policies               L4 AuthorizationPolicies as sent to node proxies (and those skipped, with why)
  waypoints              waypoint Gateways: programmed (address, node, identity) or why not
  certs                  each node proxy's certificates: identity, serial, expiry
  status                 every connected proxy: config SYNCED / STALE / NACKED against the control plane
  config-dump --node N   node N's full view (its admin /config_dump) plus its xDS sync state
  analyze DIR            validate manifests and warn about common mistakes
The admin token is read from $${ADMIN_TOKEN_ENV}, else DIR/admin.token (--state, default .ambit).`;

/** The admin token `ctl` and `dashboard` present: the environment's, else the state directory's. */
export function adminTokenFor(stateDir: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env[ADMIN_TOKEN_ENV]?.trim() || readAdminToken(stateDir);
}

export async function ctl(args: string[]): Promise<number> {
  try {
    return await run(args);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ETIMEDOUT') {
      const addr = (err as { address?: string; port?: number }).address;
      const port = (err as { port?: number }).port;
      throw new UsageError(
        `cannot reach ${addr}:${port} (${code}); is the mesh running (\`ambit up\`)? ` +
          `Point at the control plane's debug port with --controlplane HOST:${CONTROL_PLANE_DEBUG_PORT}`,
      );
    }
    throw err;
  }
}

async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      output: { type: 'string', short: 'o', default: 'table' },
      controlplane: { type: 'string', default: DEFAULT_CONTROL_PLANE },
      node: { type: 'string' },
      state: { type: 'string', default: '.ambit' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [cmd, arg] = positionals;
  if (values.help || !cmd) {
    console.log(CTL_USAGE);
    return cmd ? 0 : 2;
  }
  const json = values.output === 'json';
  if (!json && values.output !== 'table') throw new UsageError('-o must be table or json');
  const cp = `http://${values.controlplane}`;
  const token = adminTokenFor(values.state);
  const getJson = async <T>(url: string): Promise<T> => {
    try {
      return await getJsonFrom<T>(url, 5000, token ? { authorization: `Bearer ${token}` } : undefined);
    } catch (err) {
      if (!token && /answered 401/.test((err as Error).message))
        throw new UsageError(
          `${(err as Error).message.trim()}\nno admin token: set ${ADMIN_TOKEN_ENV} or pass --state DIR (the mesh's state directory, default .ambit)`,
        );
      throw err;
    }
  };
  const print = (data: unknown, headers: string[], rows: string[][]) =>
    console.log(json ? JSON.stringify(data, null, 2) : formatTable(headers, rows));

  switch (cmd) {
    case 'workloads': {
      const ws = await getJson<Workload[]>(`${cp}/debug/workloads`);
      ws.sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
      print(
        ws,
        ['NAMESPACE', 'NAME', 'IP', 'NODE', 'PROTOCOL', 'IDENTITY', 'WAYPOINT', 'STATUS'],
        ws.map((w) => [
          w.namespace,
          w.name,
          w.addresses.join(','),
          w.node,
          w.nativeTunnel ? 'HBONE (waypoint)' : w.tunnelProtocol === 'HBONE' ? 'HBONE' : 'TCP',
          `spiffe://${w.trustDomain}/ns/${w.namespace}/sa/${w.serviceAccount}`,
          w.waypoint ? `${w.waypoint.ip}:${w.waypoint.hboneMtlsPort}` : '-',
          w.status,
        ]),
      );
      return 0;
    }
    case 'services': {
      const [svcs, ws] = await Promise.all([
        getJson<Service[]>(`${cp}/debug/services`),
        getJson<Workload[]>(`${cp}/debug/workloads`),
      ]);
      svcs.sort((a, b) => a.hostname.localeCompare(b.hostname));
      print(
        svcs,
        ['NAMESPACE', 'NAME', 'VIP', 'PORTS', 'ENDPOINTS', 'WAYPOINT'],
        svcs.map((s) => [
          s.namespace,
          s.name,
          s.addresses.map((a) => a.address).join(',') || '-',
          s.ports
            .map(
              (p) =>
                `${p.servicePort}→${p.targetPort || 'named'}${p.appProtocol && p.appProtocol !== 'UNKNOWN' ? `/${p.appProtocol}` : ''}`,
            )
            .join(' '),
          String(ws.filter((w) => w.services[`${s.namespace}/${s.hostname}`]).length),
          s.waypoint ? `${s.waypoint.ip}:${s.waypoint.hboneMtlsPort}` : '-',
        ]),
      );
      return 0;
    }
    case 'policies': {
      type P = {
        key: string;
        scope?: string;
        action?: string;
        rules?: unknown[];
        dryRun?: boolean;
        skipped?: string;
        warnings?: string[];
        error?: string;
      };
      const ps = await getJson<P[]>(`${cp}/debug/policies`);
      print(
        ps,
        ['POLICY', 'SCOPE', 'ACTION', 'RULES', 'NOTE'],
        ps.map((p) => [
          p.key,
          p.scope ?? '-',
          p.action ? `${p.action}${p.dryRun ? ' (dry-run)' : ''}` : '-',
          p.rules ? String(p.rules.length) : '-',
          p.error ?? (p.skipped ? `not sent to node proxies: ${p.skipped}` : (p.warnings ?? []).join('; ')),
        ]),
      );
      return 0;
    }
    case 'waypoints': {
      const ws = await getJson<WaypointStatus[]>(`${cp}/debug/waypoints`);
      print(
        ws,
        ['WAYPOINT', 'PROGRAMMED', 'ADDRESS', 'NODE', 'FOR', 'IDENTITY / REASON'],
        ws.map((w) => [
          w.key,
          w.programmed ? 'True' : 'False',
          w.address ?? '-',
          w.node ?? '-',
          w.waypointFor ?? '-',
          (w.programmed ? w.identity : w.reason) ?? '-',
        ]),
      );
      return 0;
    }
    case 'status': {
      const entries = await getJson<SyncEntry[]>(`${cp}/debug/syncz`);
      const typeCol = (e: SyncEntry, t: string) => {
        const x = e.types.find((y) => y.type === t);
        return x ? `${x.status} (${x.resources})` : '-';
      };
      print(
        entries,
        ['PROXY', 'KIND', 'IP', 'STATUS', 'WDS', 'WADS', 'VERSION', 'CONNECTED'],
        entries.map((e) => [
          e.proxy,
          e.kind,
          e.ip ?? '-',
          e.status,
          typeCol(e, 'wds'),
          typeCol(e, 'wads'),
          e.controlPlaneVersion,
          e.connectedAt,
        ]),
      );
      return 0;
    }
    case 'certs': {
      const nodes = (await getJson<SyncEntry[]>(`${cp}/debug/syncz`)).filter(
        (e) => e.kind === 'node' && e.ip,
      );
      const ca = await getJson<{ subject?: string; notAfter?: string; fingerprint256?: string }>(
        `${cp}/debug/ca`,
      );
      const all = await Promise.all(
        nodes.map(async (n) => ({
          node: n.proxy,
          ...(await getJson<{ certificates: CertInfo[] }>(`http://${n.ip}:${ADMIN_PORT}/certs`).catch(
            (err: Error) => ({
              certificates: [] as CertInfo[],
              error: err.message,
            }),
          )),
        })),
      );
      if (json) {
        console.log(JSON.stringify({ root: ca, nodes: all }, null, 2));
        return 0;
      }
      console.log(
        `root: ${ca.subject ?? '?'}  not after ${ca.notAfter ?? '?'}  sha256 ${ca.fingerprint256 ?? '?'}\n`,
      );
      console.log(
        formatTable(
          ['NODE', 'IDENTITY', 'SERIAL', 'NOT BEFORE', 'NOT AFTER'],
          all.flatMap((n) =>
            'error' in n
              ? [[n.node, `(unreachable: ${n.error})`, '', '', '']]
              : n.certificates.map((c) => [n.node, c.identity, c.serial, c.notBefore, c.notAfter]),
          ),
        ),
      );
      return 0;
    }
    case 'config-dump': {
      const name = values.node ?? arg;
      if (!name) throw new UsageError('config-dump needs --node NODE');
      const entries = await getJson<SyncEntry[]>(`${cp}/debug/syncz`);
      const entry = entries.find((e) => e.proxy === name && e.kind === 'node');
      if (!entry?.ip)
        throw new UsageError(
          `node ${name} is not connected to the control plane (connected: ${entries.map((e) => e.proxy).join(', ') || 'none'})`,
        );
      const dump = await getJson<Record<string, unknown>>(`http://${entry.ip}:${ADMIN_PORT}/config_dump`);
      console.log(JSON.stringify({ ...dump, xdsSync: entry }, null, 2));
      return 0;
    }
    case 'analyze': {
      if (!arg) throw new UsageError('analyze needs a directory of manifests');
      const load = await loadDirectory(arg);
      const messages = [...loadMessages(load), ...analyze(load.entries)];
      if (json) console.log(JSON.stringify(messages, null, 2));
      else if (messages.length === 0) console.log(`✔ No validation issues found when analyzing ${arg}.`);
      else for (const m of messages) console.log(formatAnalyzeMessage(m));
      return messages.some((m) => m.level === 'Error') ? 1 : 0;
    }
    default:
      throw new UsageError(`unknown ctl command ${JSON.stringify(cmd)}\n\n${CTL_USAGE}`);
  }
}
