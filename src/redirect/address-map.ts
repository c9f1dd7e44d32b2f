// Addresses for netns mode (pure). The manifests carry 127.0.0.0/8 addresses so local mode needs
// no root; `ambit up --netns` gives every node, pod, waypoint and service VIP a private address
// instead, by one deterministic rule applied to the manifests' text before the control plane
// reads them:   127.A.B.C  →  10.(200+A).B.C   (A ≤ 55)
// so 127.0.10.2 becomes 10.200.10.2, and the control plane's 127.0.0.1:15012 becomes
// 10.200.0.1:15012 (the router namespace). Every place an address is written — Node InternalIP,
// status.podIP, Service clusterIP, AuthorizationPolicy ipBlocks, ServiceEntry addresses, a
// waypoint's spec.addresses, an app command's --host — maps the same way, so the mesh in
// namespaces is the same mesh as on loopback. A CIDR keeps its prefix when it is /16 or longer
// (the rule is exact on the low 16 bits).
//
// An address the rule cannot map (127.A.B.C with A > 55, or a CIDR shorter than /16) is an
// *error* naming the object and line, and netns mode refuses to start (manifest-mirror.ts):
// left as written, a Service VIP 127.60.0.1 is, inside a pod's namespace, the pod's own loopback,
// so traffic to it would silently skip capture; an ipBlock would silently match nothing.

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
  /** Kept for callers; always empty now that an unmappable address is an error. */
  warnings: string[];
  /** One line per address that cannot be mapped: `line N (Kind ns/name): address: why`. */
  errors: string[];
}

/** Rewrites every 127.x.x.x address (and CIDR) in a manifest's text. */
export function rewriteManifestText(text: string): RewriteResult {
  const errors: string[] = [];
  const out = text.replace(
    LOOPBACK_ADDR,
    (whole: string, a: string, b: string, c: string, p: string | undefined, offset: number) => {
      const ip = `127.${a}.${b}.${c}`;
      const fail = (why: string) => {
        errors.push(`${placeOf(text, offset)}: ${whole}: ${why}`);
        return whole;
      };
      if (p !== undefined && Number(p) < 16)
        return fail('a prefix shorter than /16 cannot be mapped exactly to netns addresses');
      try {
        return toNetnsAddress(ip) + (p !== undefined ? `/${p}` : '');
      } catch (err) {
        return fail((err as Error).message);
      }
    },
  );
  return { text: out, warnings: [], errors };
}

/** `line N (Kind namespace/name)` for an offset in a manifest file; the object when it can be told. */
function placeOf(text: string, offset: number): string {
  const line = text.slice(0, offset).split('\n').length;
  // The YAML document holding the offset: from the last "---" line before it to the next one.
  const starts = [...text.matchAll(/^---[^\S\n]*(?:#.*)?$/gm)].map((m) => m.index);
  const from = Math.max(0, ...starts.filter((i) => i < offset));
  const nextStart = starts.find((i) => i > offset);
  const doc = text.slice(from, nextStart ?? text.length);
  const kind = /^kind:\s*["']?([A-Za-z]+)/m.exec(doc)?.[1];
  const meta = /^metadata:[ \t]*(\{[^}\n]*\}|(?:\n[ \t]+.*)*)/m.exec(doc)?.[1] ?? '';
  const name = /(?:^|[{,\s])name:\s*["']?([-.a-z0-9]+)/.exec(meta)?.[1];
  const ns = /(?:^|[{,\s])namespace:\s*["']?([-a-z0-9]+)/.exec(meta)?.[1];
  if (!kind || !name) return `line ${line}`;
  return `line ${line} (${kind} ${ns ? `${ns}/` : ''}${name})`;
}
