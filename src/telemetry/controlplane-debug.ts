// The control plane's HTTP endpoint on 15014 (istiod's monitoring/debug port):
//   GET /metrics           control plane metrics (controlplane-metrics.ts)
//   GET /debug/syncz       every connected proxy, per xDS type: nonce sent vs acked → SYNCED/STALE/NACKED
//   GET /debug/workloads   GET /debug/services   GET /debug/policies   GET /debug/waypoints
//   GET /debug/ca          root certificate: subject, fingerprint, expiry (never key material)
//   GET /debug/graph       the live service graph as JSON (service-graph.ts)
//   GET /dashboard         the service graph page (dashboard-page.ts)
// `ambit ctl` reads these; node proxies' own details come from their admin port (15000).
// Access (admin-guard.ts): /metrics and the static /dashboard page are open (no mesh data in the
// page itself; it reads /debug/graph with the token from its URL fragment); every /debug/* shows
// the mesh and needs the admin token, unless in Kubernetes mode the request came over loopback
// (`kubectl port-forward`). Nothing here changes state.
// Addresses the control plane contacts or hands to `ambit ctl` are never taken from what a client
// said about itself (its xDS node id): a node's IP is its Node object's InternalIP, looked up by
// the name its token authenticated; a waypoint's is the address the control plane assigned.
import http from 'node:http';
import { CONTROL_PLANE_DEBUG_PORT } from '../common/ports.js';
import { X509Certificate } from 'node:crypto';
import type { Registry } from 'prom-client';
import type { Logger } from '../common/log.js';
import { errorMessage } from '../common/errors.js';
import { isIpLiteral } from '../common/addr.js';
import { decodeAuthorization } from '../xds/authorization.js';
import { TYPE_AUTHORIZATION } from '../xds/proto.js';
import type { Service, Workload } from '../xds/resources.js';
import type { TokenSource } from '../common/token.js';
import { closeHttp, listenHttp, sendJson, sendText } from './http-util.js';
import { AdminGuard, type AdminAccess } from './admin-guard.js';
import { ServiceGraph, type ScrapeTarget } from './service-graph.js';
import { DASHBOARD_HTML } from './dashboard-page.js';
import { shortTypeName } from './controlplane-metrics.js';

/** What the debug endpoint reads (ControlPlane's index, xDS server and CA fit it). */
export interface ControlPlaneDebugSource {
  index():
    | {
        workloads(): Workload[];
        services(): Service[];
        policyStatuses(): { key: string; skipped?: string; warnings: string[] }[];
        waypointStatuses(): unknown[];
        resources(typeUrl: string): ReadonlyMap<string, { version: string; bytes: Uint8Array }>;
        version(): string;
      }
    | undefined;
  connections(): {
    nodeId: string;
    nodeName: string;
    connectedAt: Date;
    types: {
      typeUrl: string;
      lastSentNonce: string;
      lastAckedNonce: string;
      lastNack?: string;
      resourceCount: number;
    }[];
  }[];
  rootCertPem(): string | undefined;
  /** InternalIP of the Node object `nodeName` (the name a node token or TokenReview proved). */
  nodeAddress?(nodeName: string): string | undefined;
  /** Addresses of programmed waypoints, as this control plane assigned or read them. */
  waypointAddresses?(): string[];
}

export type SyncStatus = 'SYNCED' | 'STALE' | 'NACKED' | 'NOT SENT';

export interface SyncEntry {
  proxy: string;
  kind: string;
  nodeId: string;
  /** The address the control plane knows for this proxy (never the one it claimed). */
  ip?: string;
  /** The IP in the node id the proxy sent, shown only for comparison; never contacted. */
  claimedIp?: string;
  connectedAt: string;
  status: SyncStatus;
  controlPlaneVersion: string;
  types: {
    type: string;
    sent: string;
    acked: string;
    nack?: string;
    resources: number;
    status: SyncStatus;
  }[];
}

/** "ambit~10.0.0.1~node-1~cluster.local" → kind "node", IP "10.0.0.1" (Istio's node id shape). */
export function parseNodeId(nodeId: string): { kind: string; ip?: string } {
  const [kind = '', ip = ''] = nodeId.split('~');
  return { kind: kind === 'ambit' ? 'node' : kind, ip: isIpLiteral(ip) && ip !== '0.0.0.0' ? ip : undefined };
}

export function syncz(source: ControlPlaneDebugSource): SyncEntry[] {
  const version = source.index()?.version() ?? '';
  const rank: Record<SyncStatus, number> = { SYNCED: 0, 'NOT SENT': 1, STALE: 2, NACKED: 3 };
  return source
    .connections()
    .map((c) => {
      const types = c.types.map((t) => {
        const status: SyncStatus = t.lastNack
          ? 'NACKED'
          : !t.lastSentNonce
            ? 'NOT SENT'
            : t.lastAckedNonce === t.lastSentNonce
              ? 'SYNCED'
              : 'STALE';
        return {
          type: shortTypeName(t.typeUrl),
          sent: t.lastSentNonce,
          acked: t.lastAckedNonce,
          ...(t.lastNack ? { nack: t.lastNack } : {}),
          resources: t.resourceCount,
          status,
        };
      });
      const status = types.reduce<SyncStatus>((s, t) => (rank[t.status] > rank[s] ? t.status : s), 'SYNCED');
      const { kind, ip: claimedIp } = parseNodeId(c.nodeId);
      return {
        proxy: c.nodeName,
        kind,
        nodeId: c.nodeId,
        ip: knownAddress(source, c),
        claimedIp,
        connectedAt: c.connectedAt.toISOString(),
        status: types.length ? status : 'NOT SENT',
        controlPlaneVersion: version,
        types,
      };
    })
    .sort((a, b) => a.proxy.localeCompare(b.proxy));
}

export interface ControlPlaneDebugOptions {
  host: string;
  port?: number;
  registry: Registry;
  source: ControlPlaneDebugSource;
  logger: Logger;
  /** The admin token /debug/* asks for (common/token.ts); unset: /debug/* answers nobody. */
  token?: TokenSource;
  /** /debug/* over loopback needs no token (Kubernetes: the pod's own loopback, port-forward). */
  trustLoopback?: boolean;
  /**
   * The token to present to node proxies' admin /debug/denials for the graph (local mode, where
   * every node reads the same state directory). Unset: the graph has no denials.
   */
  nodeAdminToken?: TokenSource;
}

export class ControlPlaneDebugServer {
  private server?: http.Server;
  readonly graph: ServiceGraph;
  private readonly guard: AdminGuard;

  constructor(private readonly opts: ControlPlaneDebugOptions) {
    this.graph = new ServiceGraph(() => scrapeTargets(opts.source), undefined, opts.nodeAdminToken);
    this.guard = new AdminGuard({
      token: opts.token,
      trustLoopback: opts.trustLoopback ?? false,
      logger: opts.logger,
    });
  }

  async start(): Promise<{ address: string }> {
    const port = this.opts.port ?? CONTROL_PLANE_DEBUG_PORT;
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.opts.logger.warn({ err: errorMessage(err), path: req.url }, 'debug endpoint failed');
        if (!res.headersSent) sendText(res, 500, `${errorMessage(err)}\n`);
      });
    });
    await listenHttp(this.server, this.opts.host, port);
    const address = `${this.opts.host}:${port}`;
    this.opts.logger.info(
      { address, dashboard: `http://${address}/dashboard` },
      'metrics and debug listening',
    );
    return { address };
  }

  stop(): Promise<void> {
    return closeHttp(this.server);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (!this.guard.admit(req, res, debugAccess(path))) return;
    const src = this.opts.source;
    const index = src.index();
    switch (path) {
      case '/metrics':
      case '/stats/prometheus': {
        const text = await this.opts.registry.metrics();
        res.writeHead(200, { 'content-type': this.opts.registry.contentType }).end(text);
        return;
      }
      case '/debug/syncz':
        return sendJson(res, 200, syncz(src));
      case '/debug/workloads':
        return sendJson(res, 200, index?.workloads() ?? []);
      case '/debug/services':
        return sendJson(res, 200, index?.services() ?? []);
      case '/debug/waypoints':
        return sendJson(res, 200, index?.waypointStatuses() ?? []);
      case '/debug/policies':
        return sendJson(res, 200, policies(index));
      case '/debug/ca':
        return sendJson(res, 200, rootInfo(src.rootCertPem()));
      case '/debug/graph':
        return sendJson(res, 200, await this.graph.snapshot());
      case '/':
      case '/dashboard':
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(DASHBOARD_HTML);
        return;
      default:
        return sendText(res, 404, 'not found\n');
    }
  }
}

/** /metrics and the static page are open; anything else shows the mesh (unknown paths too). */
export function debugAccess(path: string): AdminAccess {
  return path === '/metrics' || path === '/stats/prometheus' || path === '/' || path === '/dashboard'
    ? 'open'
    : 'read';
}

/**
 * The address the control plane itself knows for a connected proxy: a node proxy's Node
 * InternalIP (by its authenticated name), or a waypoint's assigned address when the waypoint
 * claims exactly that one. Undefined when there is none: such a proxy is never contacted.
 */
export function knownAddress(
  source: ControlPlaneDebugSource,
  c: { nodeId: string; nodeName: string },
): string | undefined {
  const { kind, ip: claimed } = parseNodeId(c.nodeId);
  if (kind === 'node') return c.nodeName ? source.nodeAddress?.(c.nodeName) : undefined;
  if (kind === 'waypoint' && claimed && (source.waypointAddresses?.() ?? []).includes(claimed))
    return claimed;
  return undefined;
}

/** What the graph scrapes: each connected proxy at the address the control plane knows for it. */
export function scrapeTargets(source: ControlPlaneDebugSource): ScrapeTarget[] {
  const seen = new Set<string>();
  const out: ScrapeTarget[] = [];
  for (const c of source.connections()) {
    const ip = knownAddress(source, c);
    if (!ip || seen.has(ip)) continue;
    seen.add(ip);
    out.push({ name: c.nodeName || c.nodeId, ip, nodeAdmin: parseNodeId(c.nodeId).kind === 'node' });
  }
  return out;
}

function policies(index: ReturnType<ControlPlaneDebugSource['index']>) {
  if (!index) return [];
  const status = new Map(index.policyStatuses().map((s) => [s.key, s]));
  const out: Record<string, unknown>[] = [];
  for (const [name, r] of index.resources(TYPE_AUTHORIZATION)) {
    try {
      const a = decodeAuthorization(name, r.bytes);
      out.push({ ...a, key: name, warnings: status.get(name)?.warnings ?? [] });
    } catch (err) {
      out.push({ key: name, error: errorMessage(err) });
    }
    status.delete(name);
  }
  // Policies not sent to node proxies (targetRefs → waypoints, AUDIT, CUSTOM) still show, with why.
  for (const s of status.values()) out.push({ key: s.key, skipped: s.skipped, warnings: s.warnings });
  return out.sort((a, b) => String(a.key).localeCompare(String(b.key)));
}

function rootInfo(pem: string | undefined) {
  if (!pem) return {};
  const x = new X509Certificate(pem);
  return {
    subject: x.subject,
    serial: x.serialNumber,
    fingerprint256: x.fingerprint256,
    notBefore: new Date(x.validFrom).toISOString(),
    notAfter: new Date(x.validTo).toISOString(),
  };
}

/**
 * A Node object's InternalIP (else its first address), from the config snapshot's objects; the
 * same choice `ambit up` makes when it starts that node (cli/mesh-runner.ts).
 */
export function nodeInternalIp(
  objects: ReadonlyMap<string, unknown> | undefined,
  nodeName: string,
): string | undefined {
  const node = objects?.get(`Node/${nodeName}`) as
    { status?: { addresses?: { type?: string; address?: string }[] } } | undefined;
  const addrs = node?.status?.addresses ?? [];
  const ip = (addrs.find((a) => a.type === 'InternalIP') ?? addrs[0])?.address;
  return ip && isIpLiteral(ip) ? ip : undefined;
}
