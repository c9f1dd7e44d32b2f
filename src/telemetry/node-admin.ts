// The node proxy's admin endpoint on nodeIP:15000 (ztunnel's admin.rs): what this proxy sees
// and holds, and a few operator actions.
//   GET  /                 the list below
//   GET  /config_dump      workloads, services, policies, certificates, local pods, xDS updates
//   GET  /certs            identity, serial, validity of each certificate (never key material)
//   GET  /logging          current log level and access-log mode
//   POST /logging?level=debug[&access_log=sample:0.1]   change them at run time
//   GET  /stats            302 to nodeIP:15020/metrics
//   GET  /debug/denials    recent L4 denials with their policies
//   POST /quitquitquit[?deadline_ms=N]   graceful drain: stop accepting, let connections finish, exit
// Every answer passes one last check that no private key text is in it. Every request first
// passes the admin gate (admin-guard.ts): the index and /stats are open, the GETs that show the
// mesh need the admin token (or loopback in netns/Kubernetes mode), and POST /logging and
// /quitquitquit — the only endpoints that change the process — always need the token.
import type { XdsTypeStatus } from '../xds/client.js';
import type http from 'node:http';
import { X509Certificate } from 'node:crypto';
import type { Logger } from '../common/log.js';
import { errorMessage } from '../common/errors.js';
import type { WorkloadCert } from '../identity/cert-manager.js';
import type { Service, Workload } from '../xds/resources.js';
import { formatAccessLogMode, parseAccessLogMode, type AccessLogPolicy } from './access-log.js';
import type { DenialLog } from './connection-telemetry.js';
import { sendJson, sendText } from './http-util.js';
import type { AdminAccess, AdminGuard } from './admin-guard.js';

/**
 * The proxy's xDS-fed state as admin reads it. Declared here, not imported from proxy/, so the
 * arrow runs one way: the node proxy (a higher layer) hands telemetry something that fits.
 */
export interface AdminStateView {
  allWorkloads(): Workload[];
  allServices(): Service[];
  counts(): { workloads: number; services: number };
  on(event: 'change', listener: () => void): unknown;
}

/** The proxy's authorization policies as admin reads them (proxy/policy-store.ts fits it). */
export interface AdminPolicyView {
  all(): ReadonlyMap<string, object>;
  rejections(): ReadonlyMap<string, string>;
  on(event: 'change', listener: () => void): unknown;
}

/** What the admin endpoint reads from the node proxy (NodeProxy fits it as is). */
export interface NodeAdminSource {
  readonly state: AdminStateView;
  readonly policies: AdminPolicyView;
  certificates(): WorkloadCert[];
  localPods(): { uid: string; name: string; namespace: string; ip: string; identity: string }[];
  isReady(): { ready: boolean; reason?: string };
  /** The last xDS response of each type: nonce, control plane version, ACK or NACK. */
  xdsStatus?(): XdsTypeStatus[];
  /** L4 authorization counters (proxy/inbound-gate.ts), exported as ambit_authz_* metrics. */
  authzCounters?(): {
    allowed: number;
    denied: number;
    closedByPolicyChange: number;
    deniedByPolicy: ReadonlyMap<string, number>;
  };
  stop(graceMs?: number): Promise<void>;
}

export interface XdsUpdateCounts {
  type: string;
  updates: number;
  lastUpdate?: string;
  resources: number;
}

export interface NodeAdminContext {
  nodeName: string;
  nodeIp: string;
  metricsUrl: string;
  proxy: NodeAdminSource;
  logger: Logger;
  access: AccessLogPolicy;
  denials: DenialLog;
  xdsUpdates(): XdsUpdateCounts[];
  /** After a /quitquitquit drain: exit the process (CLI) or nothing (in-process). */
  onQuit?: () => void;
  /** Who may ask what (admin-guard.ts); required, so no admin endpoint exists without one. */
  guard: AdminGuard;
}

/** The access class of each endpoint: write for anything that changes the process. */
export function nodeAdminAccess(method: string | undefined, path: string): AdminAccess {
  switch (path) {
    case '/':
    case '/stats':
    case '/stats/prometheus':
      return 'open';
    case '/logging':
      return method === 'GET' || method === 'HEAD' ? 'read' : 'write';
    case '/quitquitquit':
      return 'write';
    case '/config_dump':
    case '/certs':
    case '/debug/denials':
      return 'read';
    default:
      // Unknown paths answer 404 and show nothing; a new endpoint must be classified above.
      return method === 'GET' || method === 'HEAD' ? 'open' : 'write';
  }
}

export const DEFAULT_DRAIN_DEADLINE_MS = 5000;
const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);
const PRIVATE_KEY_TEXT = /PRIVATE KEY/;

export function adminHandler(ctx: NodeAdminContext): http.RequestListener {
  let quitting = false;
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    if (!ctx.guard.admit(req, res, nodeAdminAccess(req.method, url.pathname))) return;
    const safeJson = (status: number, body: unknown) => {
      const text = JSON.stringify(body, null, 2);
      // Last line of defence: nothing that looks like key material ever leaves this endpoint.
      if (PRIVATE_KEY_TEXT.test(text)) return sendText(res, 500, 'refused: answer contained key material\n');
      sendJson(res, status, body);
    };
    try {
      switch (url.pathname) {
        case '/':
          return sendText(
            res,
            200,
            [
              'GET  /config_dump',
              'GET  /certs',
              'GET  /logging',
              'POST /logging?level=LEVEL&access_log=off|full|sample:RATIO',
              'GET  /stats (redirects to /metrics on port 15020)',
              'GET  /debug/denials',
              'POST /quitquitquit?deadline_ms=N',
              '',
              'All but this list and /stats need the admin token: -H "Authorization: Bearer $(cat STATE_DIR/admin.token)".',
              '',
            ].join('\n'),
          );
        case '/config_dump':
          return safeJson(200, configDump(ctx));
        case '/certs':
          return safeJson(200, { node: ctx.nodeName, certificates: ctx.proxy.certificates().map(certInfo) });
        case '/logging':
          return logging(ctx, req, url, res);
        case '/stats':
        case '/stats/prometheus':
          res.writeHead(302, { location: ctx.metricsUrl }).end();
          return;
        case '/debug/denials':
          return safeJson(200, { node: ctx.nodeName, denials: ctx.denials.list() });
        case '/quitquitquit': {
          if (req.method !== 'POST') return sendText(res, 405, 'use POST\n');
          const deadline = Number(url.searchParams.get('deadline_ms') ?? DEFAULT_DRAIN_DEADLINE_MS);
          if (!Number.isFinite(deadline) || deadline < 0) return sendText(res, 400, 'bad deadline_ms\n');
          sendText(res, 200, `draining (deadline ${deadline} ms)\n`);
          if (quitting) return;
          quitting = true;
          ctx.logger.info(
            { deadline_ms: deadline, 'src.addr': req.socket.remoteAddress },
            'admin: /quitquitquit, draining',
          );
          void ctx.proxy.stop(deadline).finally(() => ctx.onQuit?.());
          return;
        }
        default:
          return sendText(res, 404, 'not found; GET / lists the endpoints\n');
      }
    } catch (err) {
      ctx.logger.error({ err: errorMessage(err), path: url.pathname }, 'admin: request failed');
      if (!res.headersSent) sendText(res, 500, `${errorMessage(err)}\n`);
    }
  };
}

function logging(ctx: NodeAdminContext, req: http.IncomingMessage, url: URL, res: http.ServerResponse): void {
  const current = () => ({ level: ctx.logger.level, access_log: formatAccessLogMode(ctx.access.mode) });
  if (req.method === 'GET' && url.searchParams.size === 0) return sendJson(res, 200, current());
  if (req.method !== 'POST') return sendText(res, 405, 'use POST to change the log level\n');
  const level = url.searchParams.get('level');
  const access = url.searchParams.get('access_log');
  if (level !== null && !LEVELS.has(level))
    return sendText(res, 400, `unknown level ${JSON.stringify(level)}; one of ${[...LEVELS].join(', ')}\n`);
  let mode;
  try {
    mode = access !== null ? parseAccessLogMode(access) : undefined;
  } catch (err) {
    return sendText(res, 400, `${errorMessage(err)}\n`);
  }
  const before = current();
  if (level !== null) ctx.logger.level = level; // children made without their own level follow it
  if (mode) ctx.access.mode = mode;
  ctx.logger.info(
    { from: before, to: current(), 'src.addr': req.socket.remoteAddress },
    'admin: logging changed',
  );
  sendJson(res, 200, current());
}

export interface CertInfo {
  identity: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  /** Leaf first; subject/issuer/serial/expiry only. */
  chain: { subject: string; issuer: string; serial: string; notAfter: string; uri?: string }[];
  root: { subject: string; fingerprint256: string; notAfter: string };
}

export function certInfo(c: WorkloadCert): CertInfo {
  const describe = (pem: string) => {
    const x = new X509Certificate(pem);
    return {
      subject: x.subject,
      issuer: x.issuer,
      serial: x.serialNumber,
      notAfter: new Date(x.validTo).toISOString(),
      ...(x.subjectAltName ? { uri: x.subjectAltName } : {}),
    };
  };
  const root = new X509Certificate(c.rootPem);
  return {
    identity: c.spiffeId,
    serial: c.serial,
    notBefore: c.notBefore.toISOString(),
    notAfter: c.notAfter.toISOString(),
    chain: c.certChainPem.map(describe),
    root: {
      subject: root.subject,
      fingerprint256: root.fingerprint256,
      notAfter: new Date(root.validTo).toISOString(),
    },
  };
}

export function configDump(ctx: NodeAdminContext) {
  const p = ctx.proxy;
  return {
    node: ctx.nodeName,
    nodeIp: ctx.nodeIp,
    ready: p.isReady(),
    localPods: p.localPods(),
    xds: ctx.xdsUpdates(),
    xdsResponses: p.xdsStatus?.() ?? [],
    workloads: p.state.allWorkloads(),
    services: p.state.allServices(),
    policies: [...p.policies.all().entries()].map(([key, policy]) => ({ key, ...policy })),
    policyRejections: Object.fromEntries(p.policies.rejections()),
    certificates: p.certificates().map(certInfo),
  };
}
