// Istio's L4 authorization resource (istio.security.Authorization) as ambit's internal type, and
// the one place that converts it to and from the wire. The control plane builds these from
// AuthorizationPolicy and PeerAuthentication (controlplane/authz-convert.ts) and encodes them;
// node proxies and `ambit authz explain` decode and validate them (a bad one is NACKed and the
// last good one kept) and evaluate them with node/authz.ts.
import { AmbitError } from '../common/errors.js';
import { ipFromBytes, ipToBytes, type Ip } from '../common/addr.js';
import { decodeMessage, encodeMessage, pb } from './proto.js';

export type AuthzScope = 'GLOBAL' | 'NAMESPACE' | 'WORKLOAD_SELECTOR';
export type AuthzAction = 'ALLOW' | 'DENY';

/** How a string attribute is compared; `presence` means "any non-empty value". */
export type StringMatch = { exact: string } | { prefix: string } | { suffix: string } | { presence: true };

export interface Cidr {
  address: Ip;
  /** Prefix length in bits (32 or 128 for a single address). */
  length: number;
}

export interface ServiceAccountMatch {
  namespace: string;
  serviceAccount: string;
}

/**
 * One match: every populated attribute must hold; within an attribute any positive value may
 * match and no negative (`not*`) value may. A match with nothing populated never matches.
 */
export interface AuthzMatch {
  namespaces?: StringMatch[];
  notNamespaces?: StringMatch[];
  principals?: StringMatch[];
  notPrincipals?: StringMatch[];
  serviceAccounts?: ServiceAccountMatch[];
  notServiceAccounts?: ServiceAccountMatch[];
  sourceIps?: Cidr[];
  notSourceIps?: Cidr[];
  destinationIps?: Cidr[];
  notDestinationIps?: Cidr[];
  destinationPorts?: number[];
  notDestinationPorts?: number[];
}

/** A clause holds when any of its matches does (or when it has none). */
export interface AuthzClause {
  matches: AuthzMatch[];
}

/** A rule holds when all its clauses do; a rule with no clauses always holds. */
export interface AuthzRule {
  clauses: AuthzClause[];
}

export interface Authorization {
  name: string;
  namespace: string;
  scope: AuthzScope;
  action: AuthzAction;
  /** Ored. A policy with no rules matches nothing. */
  rules: AuthzRule[];
  dryRun?: boolean;
}

/** xDS resource name of a policy: "namespace/name". */
export function authorizationKey(a: Pick<Authorization, 'namespace' | 'name'>): string {
  return `${a.namespace}/${a.name}`;
}

export const MATCH_FIELDS = [
  'namespaces',
  'notNamespaces',
  'principals',
  'notPrincipals',
  'serviceAccounts',
  'notServiceAccounts',
  'sourceIps',
  'notSourceIps',
  'destinationIps',
  'notDestinationIps',
  'destinationPorts',
  'notDestinationPorts',
] as const satisfies readonly (keyof AuthzMatch)[];

export function isEmptyMatch(m: AuthzMatch): boolean {
  return MATCH_FIELDS.every((f) => !m[f]?.length);
}

// ---- encoding (control plane) ----

const cidrToWire = (c: Cidr) => ({ address: ipToBytes(c.address), length: c.length });
const stringToWire = (s: StringMatch) => ('presence' in s ? { presence: {} } : s);

export function encodeAuthorization(a: Authorization): Uint8Array {
  return encodeMessage(pb.Authorization, {
    name: a.name,
    namespace: a.namespace,
    scope: a.scope,
    action: a.action,
    dryRun: a.dryRun ?? false,
    rules: a.rules.map((r) => ({
      clauses: r.clauses.map((c) => ({
        matches: c.matches.map((m) => ({
          namespaces: (m.namespaces ?? []).map(stringToWire),
          notNamespaces: (m.notNamespaces ?? []).map(stringToWire),
          principals: (m.principals ?? []).map(stringToWire),
          notPrincipals: (m.notPrincipals ?? []).map(stringToWire),
          serviceAccounts: m.serviceAccounts ?? [],
          notServiceAccounts: m.notServiceAccounts ?? [],
          sourceIps: (m.sourceIps ?? []).map(cidrToWire),
          notSourceIps: (m.notSourceIps ?? []).map(cidrToWire),
          destinationIps: (m.destinationIps ?? []).map(cidrToWire),
          notDestinationIps: (m.notDestinationIps ?? []).map(cidrToWire),
          destinationPorts: m.destinationPorts ?? [],
          notDestinationPorts: m.notDestinationPorts ?? [],
        })),
      })),
    })),
  });
}

// ---- decoding and validation (proxies) ----

interface WireStringMatch {
  exact?: string;
  prefix?: string;
  suffix?: string;
  presence?: object | null;
}
interface WireMatch {
  namespaces: WireStringMatch[];
  notNamespaces: WireStringMatch[];
  principals: WireStringMatch[];
  notPrincipals: WireStringMatch[];
  serviceAccounts: { namespace: string; serviceAccount: string }[];
  notServiceAccounts: { namespace: string; serviceAccount: string }[];
  sourceIps: { address: Uint8Array; length: number }[];
  notSourceIps: { address: Uint8Array; length: number }[];
  destinationIps: { address: Uint8Array; length: number }[];
  notDestinationIps: { address: Uint8Array; length: number }[];
  destinationPorts: number[];
  notDestinationPorts: number[];
}
interface WireAuthorization {
  name: string;
  namespace: string;
  scope: string;
  action: string;
  dryRun: boolean;
  rules: { clauses: { matches: WireMatch[] }[] }[];
}

function invalid(name: string, why: string): AmbitError {
  return new AmbitError('XDS_INVALID_RESOURCE', `authorization ${JSON.stringify(name)}: ${why}`);
}

/** Decodes and validates one Authorization resource; throws XDS_INVALID_RESOURCE with the reason. */
export function decodeAuthorization(name: string, bytes: Uint8Array): Authorization {
  let w: WireAuthorization;
  try {
    w = decodeMessage(pb.Authorization, bytes);
  } catch (err) {
    throw invalid(name, `undecodable protobuf (${(err as Error).message})`);
  }
  if (!w.name || !w.namespace) throw invalid(name, 'needs a name and a namespace');
  if (name !== `${w.namespace}/${w.name}`)
    throw invalid(name, `resource name does not equal namespace/name (${w.namespace}/${w.name})`);
  // protobufjs gives unknown enum numbers back as numbers: an action we do not know must not
  // be guessed at (an unknown action read as ALLOW would fail open).
  if (w.action !== 'ALLOW' && w.action !== 'DENY') throw invalid(name, `unknown action ${String(w.action)}`);
  if (w.scope !== 'GLOBAL' && w.scope !== 'NAMESPACE' && w.scope !== 'WORKLOAD_SELECTOR')
    throw invalid(name, `unknown scope ${String(w.scope)}`);
  const where = (r: number, c: number, m: number) => `rules[${r}].clauses[${c}].matches[${m}]`;
  const rules = w.rules.map((rule, ri) => ({
    clauses: rule.clauses.map((clause, ci) => ({
      matches: clause.matches.map((m, mi) => decodeMatch(name, where(ri, ci, mi), m)),
    })),
  }));
  const out: Authorization = {
    name: w.name,
    namespace: w.namespace,
    scope: w.scope,
    action: w.action,
    rules,
  };
  if (w.dryRun) out.dryRun = true;
  return out;
}

function decodeMatch(name: string, at: string, m: WireMatch): AuthzMatch {
  const out: AuthzMatch = {};
  const strings = (field: 'namespaces' | 'notNamespaces' | 'principals' | 'notPrincipals') => {
    if (!m[field].length) return;
    out[field] = m[field].map((s, i) => {
      if (s.exact !== undefined && s.exact !== null && s.exact !== '') return { exact: s.exact };
      if (s.prefix) return { prefix: s.prefix };
      if (s.suffix) return { suffix: s.suffix };
      if (s.presence) return { presence: true };
      // An empty string match is what a mis-encoded "*" looks like: refuse rather than guess.
      throw invalid(name, `${at}.${field}[${i}]: empty string match`);
    });
  };
  const cidrs = (field: 'sourceIps' | 'notSourceIps' | 'destinationIps' | 'notDestinationIps') => {
    if (!m[field].length) return;
    out[field] = m[field].map((a, i) => {
      const ip = ipFromBytes(a.address);
      if (!ip) throw invalid(name, `${at}.${field}[${i}]: address of ${a.address.length} bytes`);
      const max = a.address.length * 8;
      if (!(a.length >= 0 && a.length <= max))
        throw invalid(name, `${at}.${field}[${i}]: prefix length ${a.length} > ${max}`);
      return { address: ip, length: a.length };
    });
  };
  const ports = (field: 'destinationPorts' | 'notDestinationPorts') => {
    if (!m[field].length) return;
    for (const p of m[field])
      if (!(p >= 1 && p <= 65535)) throw invalid(name, `${at}.${field}: port ${p} out of range`);
    out[field] = [...m[field]];
  };
  const sas = (field: 'serviceAccounts' | 'notServiceAccounts') => {
    if (!m[field].length) return;
    out[field] = m[field].map((s, i) => {
      if (!s.namespace || !s.serviceAccount)
        throw invalid(name, `${at}.${field}[${i}]: needs a namespace and a service account`);
      return { namespace: s.namespace, serviceAccount: s.serviceAccount };
    });
  };
  strings('namespaces');
  strings('notNamespaces');
  strings('principals');
  strings('notPrincipals');
  sas('serviceAccounts');
  sas('notServiceAccounts');
  cidrs('sourceIps');
  cidrs('notSourceIps');
  cidrs('destinationIps');
  cidrs('notDestinationIps');
  ports('destinationPorts');
  ports('notDestinationPorts');
  return out;
}
