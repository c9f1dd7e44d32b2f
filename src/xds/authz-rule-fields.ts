// The fields of an AuthorizationPolicy rule (security.istio.io/v1 AuthorizationPolicy: Source,
// Operation, Condition) and their reading as workload API matches (xds/authorization.ts): Istio's
// `*` string rules, ports, CIDRs, `namespace/name` service accounts, the L4 `when` keys. Pure.
// Shared by the control plane's L4 conversion (controlplane/authz-convert.ts) and the waypoint's
// L7 compiler (waypoint/policy/authz-l7.ts), so the two read a rule the same way; it lives here, below
// both, because the waypoint may not import the control plane (issue 14).
import { isIP } from 'node:net';
import type { Ip } from '../common/addr.js';
import type { AuthzMatch, Cidr, ServiceAccountMatch, StringMatch } from './authorization.js';

export interface Source {
  principals?: string[];
  notPrincipals?: string[];
  requestPrincipals?: string[];
  notRequestPrincipals?: string[];
  namespaces?: string[];
  notNamespaces?: string[];
  serviceAccounts?: string[];
  notServiceAccounts?: string[];
  ipBlocks?: string[];
  notIpBlocks?: string[];
  remoteIpBlocks?: string[];
  notRemoteIpBlocks?: string[];
}
export interface Operation {
  hosts?: string[];
  notHosts?: string[];
  ports?: string[];
  notPorts?: string[];
  methods?: string[];
  notMethods?: string[];
  paths?: string[];
  notPaths?: string[];
}
export interface Condition {
  key: string;
  values?: string[];
  notValues?: string[];
}
export interface Rule {
  from?: { source?: Source }[];
  to?: { operation?: Operation }[];
  when?: Condition[];
}
export interface AuthzSpec {
  selector?: { matchLabels?: Record<string, string> };
  targetRef?: unknown;
  targetRefs?: unknown[];
  action?: string;
  rules?: Rule[];
}

/** The `when` keys ztunnel can evaluate (istiod's l4WhenAttributes). */
export const L4_WHEN_KEYS = new Set([
  'source.ip',
  'source.namespace',
  'source.principal',
  'destination.ip',
  'destination.port',
]);
export const DRY_RUN_ANNOTATION = 'istio.io/dry-run';

/** A value the converter refuses; the policy then fails closed. */
export class Unconvertible extends Error {}

export function whenMatch(c: Condition): AuthzMatch {
  const v = c.values;
  const nv = c.notValues;
  switch (c.key) {
    case 'source.ip':
      return { sourceIps: cidrs(v), notSourceIps: cidrs(nv) };
    case 'destination.ip':
      return { destinationIps: cidrs(v), notDestinationIps: cidrs(nv) };
    case 'destination.port':
      return { destinationPorts: ports(v), notDestinationPorts: ports(nv) };
    case 'source.namespace':
      return { namespaces: strings(v, c.key), notNamespaces: strings(nv, c.key) };
    default: // source.principal
      return { principals: strings(v, c.key), notPrincipals: strings(nv, c.key) };
  }
}

/** Istio's `*` rules: "*" = present, "*x" = suffix, "x*" = prefix, else exact. */
export function stringMatchOf(v: string, field = 'value'): StringMatch {
  if (v === '') throw new Unconvertible(`${field}: empty value`);
  if (v === '*') return { presence: true };
  const inner = v.startsWith('*') ? v.slice(1) : v.endsWith('*') ? v.slice(0, -1) : v;
  if (inner.includes('*'))
    throw new Unconvertible(`${field}: "${v}" has a * that is not at the start or end`);
  if (v.startsWith('*')) return { suffix: inner };
  if (v.endsWith('*')) return { prefix: inner };
  return { exact: v };
}

export function strings(values: string[] | undefined, field: string): StringMatch[] | undefined {
  return values?.map((v) => stringMatchOf(v, field));
}

export function ports(values: string[] | undefined): number[] | undefined {
  return values?.map((v) => {
    const n = /^\d{1,5}$/.test(v) ? Number(v) : NaN;
    if (!(n >= 1 && n <= 65535)) throw new Unconvertible(`port "${v}" is not between 1 and 65535`);
    return n;
  });
}

export function parseCidr(v: string): Cidr | undefined {
  const [addr = '', len, extra] = v.split('/');
  const family = isIP(addr);
  if (family === 0 || extra !== undefined) return undefined;
  const max = family === 4 ? 32 : 128;
  if (len === undefined) return { address: addr as Ip, length: max };
  if (!/^\d{1,3}$/.test(len) || Number(len) > max) return undefined;
  return { address: addr as Ip, length: Number(len) };
}

export function cidrs(values: string[] | undefined): Cidr[] | undefined {
  return values?.map((v) => {
    const c = parseCidr(v);
    if (!c) throw new Unconvertible(`"${v}" is not an IP address or CIDR block`);
    return c;
  });
}

export function serviceAccounts(
  values: string[] | undefined,
  policyNamespace: string,
): ServiceAccountMatch[] | undefined {
  return values?.map((v) => {
    const [a = '', b, extra] = v.split('/');
    if (!a || b === '' || extra !== undefined || v.includes('*'))
      throw new Unconvertible(`serviceAccounts: "${v}" is not "namespace/name" or "name"`);
    return b === undefined
      ? { namespace: policyNamespace, serviceAccount: a }
      : { namespace: a, serviceAccount: b };
  });
}

export function compact(m: AuthzMatch): AuthzMatch {
  const out: AuthzMatch = {};
  for (const [k, v] of Object.entries(m) as [keyof AuthzMatch, unknown[] | undefined][])
    if (v?.length) (out as Record<string, unknown>)[k] = v;
  return out;
}
