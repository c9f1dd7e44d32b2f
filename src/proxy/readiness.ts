// `GET /healthz/ready` (Istio's readiness path and port 15021): 200 `ready`, or 503 `not ready:
// <reason>` while start-up waits for something; anything else is 404. Bound at start so a probe
// sees "not ready yet" rather than a refused connection; a bind error stops start-up.
import http from 'node:http';

export type ReadinessCheck = () => { ready: boolean; reason?: string };

export async function serveReadiness(
  host: string,
  port: number,
  check: ReadinessCheck,
): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || req.url !== '/healthz/ready')
      return void res.writeHead(404).end('not found\n');
    const r = check();
    res
      .writeHead(r.ready ? 200 : 503, { 'content-type': 'text/plain' })
      .end(r.ready ? 'ready\n' : `not ready: ${r.reason ?? 'unknown'}\n`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}
