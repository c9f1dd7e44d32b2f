// Addresses for netns mode (pure). The manifests carry 127.0.0.0/8 addresses so local mode needs
// no root; `ambit up --netns` gives every node, pod, waypoint and service VIP a private address
// instead, by one deterministic rule applied to the manifests' text before the control plane
// reads them:   127.A.B.C  →  10.(200+A).B.C   (A ≤ 55)
// so 127.0.10.2 becomes 10.200.10.2, and the control plane's 127.0.0.1:15012 becomes
// 10.200.0.1:15012 (the router namespace). Every place an address is written — Node InternalIP,
// status.podIP, Service clusterIP, AuthorizationPolicy ipBlocks, ServiceEntry addresses, a
// waypoint's spec.addresses, an app command's --host — maps the same way, so the mesh in
// namespaces is the same mesh as on loopback. A CIDR keeps its prefix when it is /16 or longer
// (the rule is exact on the low 16 bits); a shorter one cannot be mapped exactly and is left as
// written, with a warning.

const LOOPBACK_ADDR = /(?<![\d.])127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\/(\d{1,2}))?(?![\d.])/g;

/** The first octet's offset: 127.A.x.x maps into 10.(200+A).x.x. */
const BASE_SECOND_OCTET = 200;
const MAX_A = 255 - BASE_SECOND_OCTET;

export class AddressMapError extends Error {}

/** 127.A.B.C → 10.(200+A).B.C; throws for addresses outside 127.0.0.0/8 or with A > 55. */
export function toNetnsAddress(ip: string): string {
  const m = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) throw new AddressMapError(`${ip} is not a 127.0.0.0/8 address; netns mode maps only those`);
  const [a, b, c] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if ([a, b, c].some((x) => x > 255)) throw new AddressMapError(`${ip} is not an IPv4 address`);
  if (a > MAX_A)
    throw new AddressMapError(
      `${ip}: netns mode maps 127.A.B.C to 10.(200+A).B.C, so A must be at most ${MAX_A}`,
    );
  return `10.${BASE_SECOND_OCTET + a}.${b}.${c}`;
}

/** Same as toNetnsAddress for "host:port"; other hosts are returned unchanged. */
export function toNetnsHostPort(hostPort: string): string {
  const i = hostPort.lastIndexOf(':');
  if (i <= 0) return hostPort;
  const host = hostPort.slice(0, i);
  return /^127\./.test(host) ? `${toNetnsAddress(host)}${hostPort.slice(i)}` : hostPort;
}

export interface RewriteResult {
  text: string;
  /** One line per address that could not be mapped (left as written). */
  warnings: string[];
}

/** Rewrites every 127.x.x.x address (and CIDR) in a manifest's text. */
export function rewriteManifestText(text: string): RewriteResult {
  const warnings: string[] = [];
  const out = text.replace(LOOPBACK_ADDR, (whole: string, a: string, b: string, c: string, p?: string) => {
    const ip = `127.${a}.${b}.${c}`;
    if (p !== undefined && Number(p) < 16) {
      warnings.push(`${whole}: a prefix shorter than /16 cannot be mapped exactly; left as written`);
      return whole;
    }
    try {
      return toNetnsAddress(ip) + (p !== undefined ? `/${p}` : '');
    } catch (err) {
      warnings.push(`${whole}: ${(err as Error).message}; left as written`);
      return whole;
    }
  });
  return { text: out, warnings };
}
