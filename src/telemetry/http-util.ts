// Small HTTP helpers shared by the telemetry endpoints (metrics, admin, control plane debug):
// bind-or-fail listening, closing with keep-alive connections, JSON answers, and a bounded GET
// used by `ambit ctl` and the service graph's scraper.
import http from 'node:http';

/** Binds; rejects when the address is taken, so start-up fails loudly. */
export function listenHttp(server: http.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

export function closeHttp(server: http.Server | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (!server?.listening) return resolve();
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body, null, 2) + '\n');
}

export function sendText(res: http.ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' }).end(text);
}

export interface HttpAnswer {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

/** One HTTP request with a deadline; rejects on network errors and timeouts, not on status codes. */
export function httpRequest(
  url: string,
  opts: { method?: string; timeoutMs?: number; maxBytes?: number; headers?: http.OutgoingHttpHeaders } = {},
): Promise<HttpAnswer> {
  const maxBytes = opts.maxBytes ?? 32 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: opts.method ?? 'GET', agent: false, headers: opts.headers },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > maxBytes) req.destroy(new Error(`${url}: answer larger than ${maxBytes} bytes`));
          else chunks.push(c);
        });
        res.once('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8'),
            headers: res.headers,
          }),
        );
        res.once('error', reject);
      },
    );
    req.setTimeout(opts.timeoutMs ?? 5000, () =>
      req.destroy(new Error(`${url}: no answer within ${opts.timeoutMs ?? 5000} ms`)),
    );
    req.once('error', reject);
    req.end();
  });
}

export async function getJson<T>(
  url: string,
  timeoutMs = 5000,
  headers?: http.OutgoingHttpHeaders,
): Promise<T> {
  const r = await httpRequest(url, { timeoutMs, headers });
  if (r.status !== 200) throw new Error(`GET ${url} answered ${r.status}: ${r.body.slice(0, 200).trim()}`);
  return JSON.parse(r.body) as T;
}
