// Field schemas shared by every kind: Kubernetes names, labels, ports, IPs, durations, metadata.
// The rules follow Kubernetes' own validation (apimachinery's validation package), so a file
// that ambit accepts would also be accepted by a cluster, and the messages say which rule failed.
import { isIP } from 'node:net';
import * as z from 'zod';
import { describeValue, quote } from './config-error.js';

/** A string schema with a rule and a message that names the offending value. */
export function stringRule(test: (s: string) => boolean, rule: string): z.ZodString {
  return z.string().superRefine((s, ctx) => {
    if (!test(s)) ctx.addIssue({ code: 'custom', message: `${rule} (got ${quote(s)})`, input: s });
  });
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

export const isDns1123Label = (s: string): boolean => s.length <= 63 && DNS1123_LABEL.test(s);
export const isDns1123Subdomain = (s: string): boolean => s.length <= 253 && DNS1123_SUBDOMAIN.test(s);

export const dns1123Label = stringRule(
  isDns1123Label,
  "must be a DNS-1123 label: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit",
);
export const dns1123Subdomain = stringRule(
  isDns1123Subdomain,
  "must be a DNS-1123 name: at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
);
// Service names become DNS labels under the namespace, so Kubernetes also forbids a leading digit.
export const dns1035Label = stringRule(
  (s) => s.length <= 63 && DNS1035_LABEL.test(s),
  "must be a DNS-1035 label: at most 63 lowercase letters, digits and '-', starting with a letter and ending with a letter or digit",
);

/** Kubernetes label keys: an optional DNS-subdomain prefix and '/', then a name of at most 63 characters. */
export function isLabelKey(key: string): boolean {
  const parts = key.split('/');
  if (parts.length > 2) return false;
  const name = parts.pop() ?? '';
  const prefix = parts[0];
  if (prefix !== undefined && !isDns1123Subdomain(prefix)) return false;
  return name.length <= 63 && QUALIFIED_NAME.test(name);
}
export const isLabelValue = (v: string): boolean => v === '' || (v.length <= 63 && QUALIFIED_NAME.test(v));

const labelKey = stringRule(
  isLabelKey,
  "must be a label key: an optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' and '.'",
);
const labelValue = stringRule(
  isLabelValue,
  "must be a label value: empty or at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
);
/** Labels and label selectors (matchLabels, Service selector, subset labels). */
export const labels = z.record(labelKey, labelValue);
export const annotations = z.record(z.string(), z.string());

export const PORT_RANGE = 'must be between 1 and 65535';
export const isPort = (n: unknown): n is number =>
  Number.isInteger(n) && (n as number) >= 1 && (n as number) <= 65535;
export const port = z.number().int().min(1, PORT_RANGE).max(65535, PORT_RANGE);

/** IANA service name, as Kubernetes port names and named targetPorts must be. */
export const isIanaSvcName = (s: string): boolean =>
  s.length >= 1 &&
  s.length <= 15 &&
  /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(s) &&
  /[a-z]/.test(s) &&
  !s.includes('--');

/** `targetPort`, `containerPort` names and the like: a port number or an IANA port name. */
export const portNumberOrName = z
  .custom<number | string>(() => true)
  .superRefine((v, ctx) => {
    let message: string | undefined;
    if (typeof v === 'number') {
      if (!isPort(v)) message = PORT_RANGE;
    } else if (typeof v === 'string') {
      if (/^\d+$/.test(v))
        message = `must be a port number or a port name (got ${quote(v)}; remove the quotes)`;
      else if (!isIanaSvcName(v)) {
        message = `must be a port number or a port name of at most 15 lowercase letters, digits and '-' (got ${quote(v)})`;
      }
    } else {
      message = `expected a port number or a port name, got ${describeValue(v)}`;
    }
    if (message) ctx.addIssue({ code: 'custom', message, input: v });
  });

export const ipAddress = stringRule((s) => isIP(s) !== 0, 'must be an IP address');

export function isCidr(s: string): boolean {
  const slash = s.indexOf('/');
  if (slash < 0) return isIP(s) !== 0;
  const ip = s.slice(0, slash);
  const bits = s.slice(slash + 1);
  const family = isIP(ip);
  if (family === 0 || !/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}
export const ipOrCidr = stringRule(isCidr, 'must be an IP address or a CIDR block such as 10.0.0.0/8');

// Istio durations are Go durations ("1.5s", "1h30m"); Gateway API narrows them (GEP-2257).
export const istioDuration = stringRule(
  (s) => /^(\d+(\.\d+)?(h|m|s|ms|us|µs|ns))+$/.test(s),
  'must be a duration such as 500ms, 10s or 1h30m',
);
export const gatewayDuration = stringRule(
  (s) => /^([0-9]{1,5}(h|m|s|ms)){1,4}$/.test(s),
  'must be a duration such as 500ms, 10s or 1h30m (units h, m, s, ms)',
);

/** Kubernetes-style hostname, optionally with a leading "*." wildcard. */
export const hostname = stringRule(
  (s) =>
    s.length <= 253 && /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(s),
  'must be a lowercase hostname, optionally starting with "*."',
);

export const stringList = z.array(z.string());

/** RFC 3339 as Kubernetes writes it (`2020-09-08T01:02:03Z`); YAML 1.1 readers may give a Date. */
const creationTimestamp = z
  .union([z.string(), z.date()])
  .transform((v) => (v instanceof Date ? v.toISOString() : v))
  .refine(
    (s) =>
      /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.test(s) &&
      !Number.isNaN(Date.parse(s)),
    'must be an RFC 3339 time, e.g. 2020-09-08T01:02:03Z',
  );

function metaFields<N extends z.ZodType<string>>(name: N) {
  return {
    name,
    labels: labels.optional(),
    annotations: annotations.optional(),
    uid: z.string().optional(),
    resourceVersion: z.string().optional(),
    generation: z.number().int().optional(),
    creationTimestamp: creationTimestamp.optional(),
  };
}

/** Metadata of a namespaced kind; the loader's rule is that a missing namespace means "default". */
export function namespacedMeta<N extends z.ZodType<string>>(name: N) {
  return z.object({ ...metaFields(name), namespace: dns1123Label.default('default') });
}

/** Metadata of a cluster-scoped kind: a namespace, if written, is dropped as Kubernetes does. */
export function clusterMeta<N extends z.ZodType<string>>(name: N) {
  return z.object(metaFields(name));
}

/** Adds a custom issue at `path` below the value being refined. */
export function addIssue(ctx: z.RefinementCtx, path: PropertyKey[], message: string): void {
  ctx.addIssue({ code: 'custom', path, message });
}

/** Reports every later item whose `keyOf` repeats an earlier one. */
export function checkUnique<T>(
  ctx: z.RefinementCtx,
  items: readonly T[] | undefined,
  field: string,
  keyOf: (item: T) => unknown,
  what: string,
): void {
  const seen = new Map<unknown, number>();
  items?.forEach((item, i) => {
    const k = keyOf(item);
    if (k === undefined) return;
    const first = seen.get(k);
    if (first === undefined) seen.set(k, i);
    else
      addIssue(ctx, [field, i], `duplicate ${what} ${quote(String(k))}, already used by ${field}[${first}]`);
  });
}
