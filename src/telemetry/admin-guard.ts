// Who may use an admin or debug endpoint: the node proxy's 15000 (node-admin.ts) and the control
// plane's 15014 (controlplane-debug.ts) ask this one gate before they answer. Every endpoint has an
// access class:
//   open   answered to anyone (index pages, the static dashboard page, redirects to metrics)
//   read   shows the mesh (config dump, certificates, workloads, policies, the service graph)
//   write  changes the process (log level, access-log mode, drain and exit)
// and every request passes, in this order (the first refusal wins, answered and logged with why):
//  1. browser checks, on every class: an `Origin` that is not this endpoint's own origin, or
//     `Sec-Fetch-Site` other than same-origin/none, is refused 403. A page on another site can
//     send a "simple" cross-site POST without a CORS preflight; this is what stops it.
//  2. DNS rebinding, on read and write: the `Host` must be an IP literal or `localhost`. A page
//     whose name was re-pointed at 127.0.0.1 still sends its own name in `Host`.
//  3. the admin token (`Authorization: Bearer …`, common/token.ts): always for write; for read
//     unless the process was told to trust loopback (its own network namespace or a hostNetwork
//     node in Kubernetes, where no pod can reach 127.0.0.1) and the request arrived on a
//     loopback address. Without a configured token, read and write are refused (fail closed).
// ztunnel does not need the token: it binds admin to localhost:15000 in a network namespace no pod
// shares (ztunnel src/config.rs, DEFAULT_ADMIN_PORT on localhost). In ambit's local mode every
// pod is another loopback address of the same host, so loopback proves nothing there and the
// token is what stands between a pod and the admin actions.
import type http from 'node:http';
import net from 'node:net';
import type { Logger } from '../common/log.js';
import { tokenMatches, tokenOf, type TokenSource } from '../common/token.js';

export type AdminAccess = 'open' | 'read' | 'write';

export interface AdminGuardOptions {
  /** The admin token; undefined refuses every read and write. */
  token: TokenSource | undefined;
  /** Reads that arrive on a loopback address need no token (netns/Kubernetes mode only). */
  trustLoopback: boolean;
  logger: Logger;
}

export type AdminRefusalReason =
  | 'cross-origin'
  | 'cross-site-fetch'
  | 'host-not-allowed'
  | 'token-missing'
  | 'token-wrong'
  | 'token-not-configured';

export interface AdminRefusal {
  status: 401 | 403;
  reason: AdminRefusalReason;
  message: string;
}

/** The decision alone (pure but for reading the token): undefined admits the request. */
export function checkAdminRequest(
  req: http.IncomingMessage,
  access: AdminAccess,
  opts: Pick<AdminGuardOptions, 'token' | 'trustLoopback'>,
): AdminRefusal | undefined {
  const host = req.headers.host;
  const origin = req.headers.origin;
  if (origin !== undefined && (!host || origin.toLowerCase() !== `http://${host.toLowerCase()}`))
    return {
      status: 403,
      reason: 'cross-origin',
      message: `refused: Origin ${origin} is not this endpoint's own origin`,
    };
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none')
    return {
      status: 403,
      reason: 'cross-site-fetch',
      message: `refused: Sec-Fetch-Site ${site} (only same-origin requests are answered)`,
    };
  if (access === 'open') return undefined;
  if (host !== undefined && !allowedHost(host))
    return {
      status: 403,
      reason: 'host-not-allowed',
      message: `refused: Host ${host} is not an IP address or localhost (DNS rebinding?)`,
    };
  if (access === 'read' && opts.trustLoopback && isLoopback(req.socket.localAddress)) return undefined;
  const expected = opts.token === undefined ? '' : tokenOf(opts.token);
  if (!expected)
    return {
      status: 403,
      reason: 'token-not-configured',
      message: 'refused: this endpoint has no admin token configured, so it answers nobody',
    };
  const presented = bearer(req.headers.authorization);
  if (presented === undefined)
    return {
      status: 401,
      reason: 'token-missing',
      message: 'refused: send the admin token as Authorization: Bearer <token> (<state dir>/admin.token)',
    };
  if (!tokenMatches(presented, expected))
    return { status: 401, reason: 'token-wrong', message: 'refused: wrong admin token' };
  return undefined;
}

/** Refusal lines per second before they are counted instead (a flood of bad requests stays cheap). */
export const REFUSAL_LOG_PER_SECOND = 20;

export class AdminGuard {
  private windowStart = 0;
  private loggedInWindow = 0;
  private suppressed = 0;

  constructor(private readonly opts: AdminGuardOptions) {}

  /** True when the request may go on; otherwise the refusal is answered and logged. */
  admit(req: http.IncomingMessage, res: http.ServerResponse, access: AdminAccess): boolean {
    const refusal = checkAdminRequest(req, access, this.opts);
    if (!refusal) return true;
    if (this.shouldLog())
      this.opts.logger.warn(
        {
          ...(this.suppressed ? { 'admin.refusals_not_logged': this.takeSuppressed() } : {}),
          'admin.refusal': refusal.reason,
          'admin.access': access,
          'http.method': req.method,
          'http.path': (req.url ?? '/').split('?')[0],
          'http.host': req.headers.host,
          'http.origin': req.headers.origin,
          'http.sec_fetch_site': req.headers['sec-fetch-site'],
          'src.addr': `${req.socket.remoteAddress}:${req.socket.remotePort}`,
        },
        `admin: request refused (${refusal.reason})`,
      );
    else this.suppressed++;
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'text/plain; charset=utf-8' };
    if (refusal.status === 401) headers['www-authenticate'] = 'Bearer realm="ambit-admin"';
    res.writeHead(refusal.status, headers).end(refusal.message + '\n');
    return false;
  }

  /** At most REFUSAL_LOG_PER_SECOND lines a second; the rest are counted into the next line. */
  private shouldLog(now = Date.now()): boolean {
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.loggedInWindow = 0;
    }
    return this.loggedInWindow++ < REFUSAL_LOG_PER_SECOND;
  }

  private takeSuppressed(): number {
    const n = this.suppressed;
    this.suppressed = 0;
    return n;
  }
}

function bearer(header: string | undefined): string | undefined {
  const m = /^Bearer +(\S+) *$/i.exec(header ?? '');
  return m?.[1];
}

/** An IP literal (v4, or v6 in brackets) or localhost, with an optional port. */
function allowedHost(host: string): boolean {
  let name = host.trim().toLowerCase();
  if (name.startsWith('[')) {
    const end = name.indexOf(']');
    if (end < 0) return false;
    const rest = name.slice(end + 1);
    if (rest !== '' && !/^:\d{1,5}$/.test(rest)) return false;
    return net.isIPv6(name.slice(1, end));
  }
  const colon = name.lastIndexOf(':');
  if (colon >= 0) {
    if (!/^\d{1,5}$/.test(name.slice(colon + 1))) return false;
    name = name.slice(0, colon);
  }
  return name === 'localhost' || net.isIPv4(name);
}

export function isLoopback(addr: string | undefined): boolean {
  if (!addr) return false;
  const v4 = addr.startsWith('::ffff:') ? addr.slice(7) : addr;
  return addr === '::1' || (net.isIPv4(v4) && v4.startsWith('127.'));
}
