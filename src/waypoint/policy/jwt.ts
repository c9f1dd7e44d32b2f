// RequestAuthentication at the waypoint: which JWT rules bind here (targetRefs, as for
// AuthorizationPolicy), and validating a request's token against them. The result feeds
// `requestPrincipals` and `request.auth.*` in authz-l7.ts.
//
// Istio's (Envoy jwt_authn) behaviour:
//  - no token in any configured location → passes, unauthenticated (an AuthorizationPolicy must
//    ask for a request principal to reject it);
//  - a token that is present but invalid (bad signature, expired, wrong audience, issuer not
//    configured, unreadable JWKS) → 401, whatever the policies say;
//  - a valid token → principal "iss/sub" and its claims; the token header is removed before
//    forwarding unless forwardOriginalToken.
// Keys come from `jwks` (inline JSON) or `jwksUri` naming a local file; the waypoint fetches
// nothing over the network. Verification uses `jose` (asymmetric algorithms only).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  createLocalJWKSet,
  decodeJwt,
  errors,
  jwtVerify,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import type { CompileOptions } from './authz-l7-types.js';
import {
  policyTarget,
  targetCovers,
  type PolicyObject,
  type PolicyTarget,
  type ServiceRef,
  type WaypointRef,
} from './policy-binding.js';

/** Envoy's default allowance for clocks that disagree (clock_skew_seconds). */
export const CLOCK_SKEW_SECONDS = 60;
/** No HS* (a shared secret in a JWKS is a mistake) and never "none". */
export const JWT_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'EdDSA',
];

export interface JwtRule {
  /** The RequestAuthentication it came from, "namespace/name". */
  policy: string;
  issuer: string;
  audiences: string[];
  /** Undefined when the keys could not be read: every token of this issuer is then rejected. */
  keys?: JWTVerifyGetKey;
  keysError?: string;
  fromHeaders: { name: string; prefix: string }[];
  fromParams: string[];
  fromCookies: string[];
  forwardOriginalToken: boolean;
  outputPayloadToHeader?: string;
  outputClaimToHeaders: { header: string; claim: string }[];
}

export interface RequestAuthnSet {
  policies: { policy: string; target: PolicyTarget; rules: JwtRule[] }[];
  warnings: string[];
}

export type AuthnResult =
  | {
      ok: true;
      /** "iss/sub" of a validated token; absent when the request carried none. */
      principal?: string;
      claims?: JWTPayload;
      /** What to do to the request before forwarding it. */
      removeHeaders: string[];
      addHeaders: Record<string, string>;
    }
  | { ok: false; status: 401; reason: string; policy?: string };

/** The RequestAuthentications that bind to `waypoint` by targetRef(s), with their keys loaded. */
export function compileRequestAuthn(
  objects: Iterable<PolicyObject>,
  waypoint: WaypointRef,
  rootNamespace = 'istio-system',
  opts: CompileOptions & { baseDir?: string } = {},
): RequestAuthnSet {
  const all = [...objects];
  const warnings: string[] = [];
  const policies: RequestAuthnSet['policies'] = [];
  for (const obj of all) {
    if (obj.kind !== 'RequestAuthentication') continue;
    const target = policyTarget(obj, waypoint, rootNamespace, all, warnings, opts);
    if (!target) continue;
    const policy = `${obj.metadata.namespace ?? 'default'}/${obj.metadata.name}`;
    const raw = (obj.spec.jwtRules as RawJwtRule[] | undefined) ?? [];
    const rules = raw.map((r, i) =>
      compileRule(r, policy, `RequestAuthentication ${policy}: jwtRules[${i}]`, warnings, opts.baseDir),
    );
    policies.push({ policy, target, rules: rules.filter((r): r is JwtRule => r !== undefined) });
  }
  policies.sort((a, b) => a.policy.localeCompare(b.policy));
  return { policies, warnings };
}

/** The JWT rules that govern a request for `service` (undefined: addressed by pod IP). */
export function jwtRulesFor(set: RequestAuthnSet, service: ServiceRef | undefined): JwtRule[] {
  return set.policies.filter((p) => targetCovers(p.target, service)).flatMap((p) => p.rules);
}

interface RawJwtRule {
  issuer?: string;
  audiences?: string[];
  jwks?: string;
  jwksUri?: string;
  fromHeaders?: { name?: string; prefix?: string }[];
  fromParams?: string[];
  fromCookies?: string[];
  forwardOriginalToken?: boolean;
  outputPayloadToHeader?: string;
  outputClaimToHeaders?: { header?: string; claim?: string }[];
}

function compileRule(
  r: RawJwtRule,
  policy: string,
  id: string,
  warnings: string[],
  baseDir: string | undefined,
): JwtRule | undefined {
  if (!r.issuer) {
    warnings.push(`${id}: no issuer; rule ignored`);
    return undefined;
  }
  const explicit =
    (r.fromHeaders?.length ?? 0) + (r.fromParams?.length ?? 0) + (r.fromCookies?.length ?? 0) > 0;
  const rule: JwtRule = {
    policy,
    issuer: r.issuer,
    audiences: r.audiences ?? [],
    // Istio's default locations: "Authorization: Bearer <token>", then ?access_token=
    fromHeaders: explicit
      ? (r.fromHeaders ?? [])
          .filter((h) => h.name)
          .map((h) => ({ name: h.name!.toLowerCase(), prefix: h.prefix ?? '' }))
      : [{ name: 'authorization', prefix: 'Bearer ' }],
    fromParams: explicit ? (r.fromParams ?? []) : ['access_token'],
    fromCookies: r.fromCookies ?? [],
    forwardOriginalToken: r.forwardOriginalToken ?? false,
    outputClaimToHeaders: (r.outputClaimToHeaders ?? [])
      .filter((o) => o.header && o.claim)
      .map((o) => ({ header: o.header!.toLowerCase(), claim: o.claim! })),
  };
  if (r.outputPayloadToHeader) rule.outputPayloadToHeader = r.outputPayloadToHeader.toLowerCase();
  try {
    rule.keys = createLocalJWKSet(readJwks(r, baseDir));
  } catch (err) {
    // As istiod does when it cannot fetch a JWKS: keep the issuer, reject its tokens.
    rule.keysError = err instanceof Error ? err.message : String(err);
    warnings.push(
      `${id}: cannot load the JWKS (${rule.keysError}); tokens from ${r.issuer} will be rejected`,
    );
  }
  return rule;
}

function readJwks(r: RawJwtRule, baseDir: string | undefined): JSONWebKeySet {
  let text: string;
  if (r.jwks !== undefined) text = r.jwks;
  else if (r.jwksUri) {
    const uri = r.jwksUri;
    if (/^https?:/i.test(uri))
      throw new Error(
        `jwksUri ${uri}: the waypoint does not fetch keys over the network; use jwks or a file`,
      );
    const path = uri.startsWith('file:')
      ? fileURLToPath(uri)
      : baseDir && !uri.startsWith('/')
        ? `${baseDir}/${uri}`
        : uri;
    text = readFileSync(path, 'utf8');
  } else throw new Error('neither jwks nor jwksUri is set');
  const parsed = JSON.parse(text) as unknown;
  if (!parsed || typeof parsed !== 'object' || !Array.isArray((parsed as { keys?: unknown }).keys))
    throw new Error('not a JSON Web Key Set ({"keys": [...]})');
  return parsed as JSONWebKeySet;
}

/** Finds and validates the request's JWT against `rules` (from jwtRulesFor). */
export async function authenticateRequest(
  rules: readonly JwtRule[],
  headers: Record<string, string | string[] | undefined>,
  query?: URLSearchParams,
): Promise<AuthnResult> {
  const found = findTokens(rules, headers, query);
  if (found.length === 0) return { ok: true, removeHeaders: [], addHeaders: {} };
  let accepted: { rule: JwtRule; payload: JWTPayload; header?: string } | undefined;
  for (const f of found) {
    const r = await verify(f.token, f.rules);
    if (!r.ok) return r; // one invalid token fails the request, as Envoy's allow_missing does
    accepted ??= { rule: r.rule, payload: r.payload, header: f.header };
  }
  const { rule, payload } = accepted!;
  const removeHeaders: string[] = [];
  const addHeaders: Record<string, string> = {};
  for (const f of found)
    if (f.header && !f.rules.some((x) => x.forwardOriginalToken)) removeHeaders.push(f.header);
  if (rule.outputPayloadToHeader)
    addHeaders[rule.outputPayloadToHeader] = Buffer.from(JSON.stringify(payload)).toString('base64url');
  for (const o of rule.outputClaimToHeaders) {
    const v = payload[o.claim];
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean')
      addHeaders[o.header] = String(v);
  }
  return {
    ok: true,
    principal: `${payload.iss}/${payload.sub ?? ''}`,
    claims: payload,
    removeHeaders,
    addHeaders,
  };
}

interface FoundToken {
  token: string;
  /** The rules whose locations hold this token. */
  rules: JwtRule[];
  /** The header it came from (to remove before forwarding). */
  header?: string;
}

function findTokens(
  rules: readonly JwtRule[],
  headers: Record<string, string | string[] | undefined>,
  query: URLSearchParams | undefined,
): FoundToken[] {
  const out = new Map<string, FoundToken>();
  const add = (token: string, rule: JwtRule, header?: string) => {
    const t = token.trim();
    if (!t) return;
    const f = out.get(t) ?? { token: t, rules: [], ...(header ? { header } : {}) };
    if (!f.rules.includes(rule)) f.rules.push(rule);
    out.set(t, f);
  };
  for (const rule of rules) {
    for (const h of rule.fromHeaders) {
      const raw = first(headers[h.name]);
      if (raw === undefined) continue;
      if (!h.prefix) add(raw, rule, h.name);
      else if (raw.toLowerCase().startsWith(h.prefix.toLowerCase()))
        add(raw.slice(h.prefix.length), rule, h.name);
    }
    for (const p of rule.fromParams) {
      const v = query?.get(p);
      if (v) add(v, rule);
    }
    if (rule.fromCookies.length) {
      const cookies = parseCookies(first(headers.cookie));
      for (const c of rule.fromCookies) {
        const v = cookies.get(c);
        if (v) add(v, rule);
      }
    }
  }
  return [...out.values()];
}

type Verified = { ok: true; rule: JwtRule; payload: JWTPayload } | Extract<AuthnResult, { ok: false }>;

async function verify(token: string, candidates: JwtRule[]): Promise<Verified> {
  const deny = (reason: string, rule?: JwtRule): Verified => ({
    ok: false,
    status: 401,
    reason,
    ...(rule ? { policy: rule.policy } : {}),
  });
  let iss: string | undefined;
  try {
    iss = decodeJwt(token).iss;
  } catch {
    return deny('Jwt is not in the form of Header.Payload.Signature');
  }
  const rule = candidates.find((r) => r.issuer === iss);
  if (!rule) return deny(`Jwt issuer is not configured (${iss ?? 'no iss claim'})`);
  if (!rule.keys)
    return deny(`Jwks for ${rule.issuer} could not be loaded: ${rule.keysError ?? 'unknown'}`, rule);
  try {
    const { payload } = await jwtVerify(token, rule.keys, {
      issuer: rule.issuer,
      algorithms: JWT_ALGORITHMS,
      clockTolerance: CLOCK_SKEW_SECONDS,
      ...(rule.audiences.length ? { audience: rule.audiences } : {}),
    });
    return { ok: true, rule, payload };
  } catch (err) {
    return deny(joseReason(err), rule);
  }
}

/** Envoy's words for each failure, so operators see what Istio would have said. */
function joseReason(err: unknown): string {
  if (err instanceof errors.JWTExpired) return 'Jwt is expired';
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return 'Audiences in Jwt are not allowed';
    if (err.claim === 'nbf') return 'Jwt not yet valid';
    return `Jwt verification fails: ${err.message}`;
  }
  if (err instanceof errors.JWKSNoMatchingKey) return "Jwks doesn't have key to match kid or alg from Jwt";
  if (err instanceof errors.JOSEAlgNotAllowed) return 'Jwt verification fails: algorithm not allowed';
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid)
    return 'Jwt is not in the form of Header.Payload.Signature';
  return 'Jwt verification fails';
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out.set(part.slice(0, i).trim(), part.slice(i + 1).trim());
  }
  return out;
}
