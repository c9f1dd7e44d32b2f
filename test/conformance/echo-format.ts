// The echo answer format the Gateway API suite's mesh client reads (gateway-api
// conformance/utils/echo/parse.go, Istio's echo server format): one `Field=value` per line, a
// `RequestHeader=Name:value` line per header value the server received. `formatEcho` writes it
// (the server side), `parseEcho` reads it back as the suite does: the first line of each scalar
// field, every RequestHeader line.

export interface EchoFields {
  serviceVersion: string;
  servicePort: number;
  host: string;
  /** Path and query as received. */
  url: string;
  method: string;
  proto: string;
  ip: string;
  hostname: string;
  /** [name, value] in the order received, one entry per header line. */
  headers: [string, string][];
}

export function formatEcho(f: EchoFields): string {
  const lines = [
    `ServiceVersion=${f.serviceVersion}`,
    `ServicePort=${f.servicePort}`,
    'StatusCode=200',
    `Host=${f.host}`,
    `URL=${f.url}`,
    `Method=${f.method}`,
    `Proto=${f.proto}`,
    `IP=${f.ip}`,
    ...f.headers.map(([k, v]) => `RequestHeader=${k}:${v}`),
    `Hostname=${f.hostname}`,
  ];
  return lines.join('\n') + '\n';
}

export interface ParsedEcho {
  hostname?: string;
  url?: string;
  method?: string;
  host?: string;
  proto?: string;
  /** Lower-case name -> values in order. */
  requestHeaders: Map<string, string[]>;
}

export function parseEcho(text: string): ParsedEcho {
  const first = (field: string): string | undefined => {
    const m = new RegExp(`(?:^|\\n)${field}=(.*)`).exec(text);
    return m?.[1];
  };
  const requestHeaders = new Map<string, string[]>();
  for (const m of text.matchAll(/(?:^|\n)RequestHeader=(.*)/g)) {
    const line = m[1]!;
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).toLowerCase();
    requestHeaders.set(name, [...(requestHeaders.get(name) ?? []), line.slice(colon + 1)]);
  }
  return {
    hostname: first('Hostname'),
    url: first('URL'),
    method: first('Method'),
    host: first('Host'),
    proto: first('Proto'),
    requestHeaders,
  };
}
