// The control plane's HTTP endpoint on 15014 (istiod's monitoring/debug port):
//   GET /metrics           control plane metrics (controlplane-metrics.ts)
//   GET /debug/syncz       every connected proxy, per xDS type: nonce sent vs acked → SYNCED/STALE/NACKED
//   GET /debug/workloads   GET /debug/services   GET /debug/policies   GET /debug/waypoints
//   GET /debug/ca          root certificate: subject, fingerprint, expiry (never key material)
//   GET /debug/graph       the live service graph as JSON (service-graph.ts)
//   GET /dashboard         the service graph page (dashboard-page.ts)
// `ambit ctl` reads these; node proxies' own details come from their admin port (15000).
import http from 'node:http';
import { X509Certificate } from 'node:crypto';
import type { Registry } from 'prom-client';
import type { Logger } from '../common/log.js';
import { errorMessage } from '../common/errors.js';
import { isIpLiteral } from '../common/addr.js';
import { decodeAuthorization } from '../xds/authorization.js';
import { TYPE_AUTHORIZATION } from '../xds/proto.js';
import type { Service, Workload } from '../xds/resources.js';
import { closeHttp, listenHttp, sendJson, sendText } from './http-util.js';
import { ServiceGraph, type ScrapeTarget } from './service-graph.js';
import { DASHBOARD_HTML } from './dashboard-page.js';
import { shortTypeName } from './controlplane-metrics.js';

export const CONTROL_PLANE_DEBUG_PORT = 15014;

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
}

export type SyncStatus = 'SYNCED' | 'STALE' | 'NACKED' | 'NOT SENT';

export interface SyncEntry {
  proxy: string;
  kind: string;
  nodeId: string;
  ip?: string;
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
      const { kind, ip } = parseNodeId(c.nodeId);
      return {
        proxy: c.nodeName,
        kind,
        nodeId: c.nodeId,
        ip,
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
}

export class ControlPlaneDebugServer {
  private server?: http.Server;
  readonly graph: ServiceGraph;

  constructor(private readonly opts: ControlPlaneDebugOptions) {
    this.graph = new ServiceGraph(() => scrapeTargets(opts.source));
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
    const path = (req.url ?? '/').split('?')[0];
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

function scrapeTargets(source: ControlPlaneDebugSource): ScrapeTarget[] {
  const seen = new Set<string>();
  const out: ScrapeTarget[] = [];
  for (const c of source.connections()) {
    const { ip } = parseNodeId(c.nodeId);
    if (!ip || seen.has(ip)) continue;
    seen.add(ip);
    out.push({ name: c.nodeName || c.nodeId, ip });
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
