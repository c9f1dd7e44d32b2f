// Serves one Prometheus registry on host:port (`/metrics`, and Envoy's `/stats/prometheus` so
// scrape configs written for Istio work). Used by node proxies (15020); a waypoint wires its
// request metrics with:
//   const registry = new Registry();
//   const onRequest = createRequestMetrics(registry, meta);
//   const server = await serveMetrics(registry, ip, METRICS_PORT);   // later: closeHttp(server)
import http from 'node:http';
import { METRICS_PORT } from '../common/ports.js';
import type { Registry } from 'prom-client';
import { listenHttp, sendText } from './http-util.js';

export async function serveMetrics(
  registry: Registry,
  host: string,
  port = METRICS_PORT,
): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics' && path !== '/stats/prometheus') return sendText(res, 404, 'not found\n');
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: Error) => sendText(res, 500, `${err.message}\n`),
    );
  });
  await listenHttp(server, host, port);
  return server;
}
