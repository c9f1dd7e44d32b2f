// Compares one answer with a MeshCase. The checks are those of the suite's mesh client
// (gateway-api conformance/utils/echo/pod.go compareRequest: status, request headers seen by the
// backend with several values joined by ",", absent request headers, response headers and their
// absence, backend pod name prefix) plus two it leaves out and its gateway client makes
// (conformance/utils/http/http.go CompareRoundTrip): the path and query the backend saw, and the
// redirect Location part by part with the same defaults (host: as answered, scheme: the
// request's, path: the request's, an unset port: none or the scheme's well-known one).
// Returns why the answer does not match, or undefined when it does.
import type { MeshCase } from './case-types.js';
import type { ClientAnswer } from './echo-client.js';

export function compareAnswer(c: MeshCase, a: ClientAnswer): string | undefined {
  const grpc = c.request.protocol === 'grpc';
  const want = c.status ?? [200];
  if (!want.includes(a.status)) {
    return `status ${a.status}${a.grpcStatus ? ` (grpc-status ${a.grpcStatus})` : ''}, want one of ${want.join(', ')}`;
  }
  const fromEcho = a.status === 200;
  if (fromEcho && !a.echo.hostname) return `a ${a.status} that no echo pod wrote: ${a.body.slice(0, 120)}`;
  for (const [name, value] of Object.entries(c.seen?.headers ?? {})) {
    const got = a.echo.requestHeaders.get(name.toLowerCase());
    if (!got)
      return `the backend did not receive ${name} (it saw ${[...a.echo.requestHeaders.keys()].join(', ')})`;
    if (got.join(',') !== value) return `the backend saw ${name}: ${got.join(',')}, want ${value}`;
  }
  for (const name of c.seen?.absent ?? []) {
    const got = a.echo.requestHeaders.get(name.toLowerCase());
    if (got) return `the backend received ${name}: ${got.join(',')}, want it removed`;
  }
  for (const name of c.absentResponseHeaders ?? []) {
    const got = a.responseHeaders[name.toLowerCase()];
    if (got !== undefined) return `response header ${name}: ${String(got)}, want none`;
  }
  for (const [name, value] of Object.entries(c.responseHeaders ?? {})) {
    const raw = a.responseHeaders[name.toLowerCase()];
    const got = Array.isArray(raw) ? raw[0] : raw;
    if (got !== value) return `response header ${name}: ${got ?? '(none)'}, want ${value}`;
  }
  if (c.backend && !(a.echo.hostname ?? '').startsWith(c.backend)) {
    return `answered by ${a.echo.hostname ?? '(no echo)'}, want a pod of ${c.backend}`;
  }
  if (fromEcho && !grpc) {
    const path = c.seen?.path ?? c.request.path ?? '/';
    if (a.echo.url !== path) return `the backend saw path ${a.echo.url}, want ${path}`;
    const method = c.request.method ?? 'GET';
    if (a.echo.method !== method) return `the backend saw method ${a.echo.method}, want ${method}`;
  }
  if (c.redirect) return compareRedirect(c, a);
  return undefined;
}

function compareRedirect(c: MeshCase, a: ClientAnswer): string | undefined {
  const raw = a.responseHeaders.location;
  const location = Array.isArray(raw) ? raw[0] : raw;
  if (!location) return 'a redirect without a Location header';
  let u: URL;
  try {
    u = new URL(location);
  } catch {
    return `Location ${location} is not an absolute URL`;
  }
  const scheme = u.protocol.replace(/:$/, '');
  const wantScheme = c.redirect!.scheme ?? 'http';
  if (scheme !== wantScheme) return `Location ${location}: scheme ${scheme}, want ${wantScheme}`;
  const wantHost = c.redirect!.host ?? u.hostname;
  if (u.hostname !== wantHost) return `Location ${location}: host ${u.hostname}, want ${wantHost}`;
  const wantPort = c.redirect!.port;
  if (wantPort === undefined) {
    const wellKnown = scheme === 'https' ? '443' : scheme === 'http' ? '80' : undefined;
    if (u.port !== '' && u.port !== wellKnown)
      return `Location ${location}: port ${u.port}, want none or ${wellKnown}`;
  } else if (u.port !== wantPort) {
    return `Location ${location}: port ${u.port || '(none)'}, want ${wantPort}`;
  }
  const wantPath = c.redirect!.path ?? (c.request.path ?? '/').split('?')[0];
  if (u.pathname !== wantPath) return `Location ${location}: path ${u.pathname}, want ${wantPath}`;
  const wantQuery = c.redirect!.query;
  if (wantQuery !== undefined && u.search.replace(/^\?/, '') !== wantQuery) {
    return `Location ${location}: query ${u.search}, want ?${wantQuery}`;
  }
  return undefined;
}
