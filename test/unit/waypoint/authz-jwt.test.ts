// RequestAuthentication at the waypoint with real signed JWTs (keys generated here with jose),
// and its effect on L7 AuthorizationPolicy: invalid tokens are 401 before any policy runs; a
// missing token passes unauthenticated and is then denied by a requestPrincipals ALLOW.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { compileWaypointPolicies, evaluateL7 } from '../../../src/waypoint/policy/authz-l7.js';
import type { PolicyObject } from '../../../src/waypoint/policy/policy-binding.js';
import {
  authenticateRequest,
  compileRequestAuthn,
  jwtRulesFor,
  type JwtRule,
} from '../../../src/waypoint/policy/jwt.js';

const ROOT = 'istio-system';
const WAYPOINT = { namespace: 'demo', name: 'waypoint' };
const GATEWAY_REF = { kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'waypoint' };
const ECHO = { namespace: 'demo', hostname: 'echo.demo.svc.cluster.local', name: 'echo' };
const RSA_ISS = 'https://rsa.example';
const EC_ISS = 'https://ec.example';

interface Signer {
  key: CryptoKey;
  jwk: JWK;
  alg: 'RS256' | 'ES256';
}
let rsa: Signer;
let ec: Signer;
let impostor: Signer; // same kid as rsa, different key
let dir: string;

async function signer(alg: 'RS256' | 'ES256', kid: string): Promise<Signer> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { key: privateKey, jwk, alg };
}

async function token(
  s: Signer,
  claims: Record<string, unknown> & { iss?: string; sub?: string; aud?: string | string[] },
  opts: { exp?: number | string } = {},
): Promise<string> {
  const { iss, sub, aud, ...rest } = claims;
  let jwt = new SignJWT(rest).setProtectedHeader({ alg: s.alg, kid: s.jwk.kid! }).setIssuedAt();
  if (iss) jwt = jwt.setIssuer(iss);
  if (sub) jwt = jwt.setSubject(sub);
  if (aud) jwt = jwt.setAudience(aud);
  jwt = jwt.setExpirationTime(opts.exp ?? '10m');
  return jwt.sign(s.key);
}

function requestAuthn(spec: Record<string, unknown>, name = 'jwt'): PolicyObject {
  return { kind: 'RequestAuthentication', metadata: { name, namespace: 'demo' }, spec };
}

function rulesOf(objects: PolicyObject[]): JwtRule[] {
  return jwtRulesFor(compileRequestAuthn(objects, WAYPOINT, ROOT), ECHO);
}

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

beforeAll(async () => {
  [rsa, ec, impostor] = await Promise.all([
    signer('RS256', 'k1'),
    signer('ES256', 'k2'),
    signer('RS256', 'k1'),
  ]);
  dir = mkdtempSync(join(tmpdir(), 'ambit-jwt-'));
  writeFileSync(join(dir, 'ec.json'), JSON.stringify({ keys: [ec.jwk] }));
});

/** RSA issuer inline, EC issuer from a file, both on the waypoint. */
function standard(extra: Record<string, unknown> = {}): JwtRule[] {
  return rulesOf([
    requestAuthn({
      targetRefs: [GATEWAY_REF],
      jwtRules: [
        { issuer: RSA_ISS, jwks: JSON.stringify({ keys: [rsa.jwk] }), audiences: ['echo', 'web'], ...extra },
        { issuer: EC_ISS, jwksUri: pathToFileURL(join(dir, 'ec.json')).href },
      ],
    }),
  ]);
}

describe('authenticateRequest', () => {
  it('accepts an RS256 token from inline jwks and yields principal "iss/sub" and the claims', async () => {
    const t = await token(rsa, { iss: RSA_ISS, sub: 'alice', aud: 'echo', groups: ['dev'] });
    const r = await authenticateRequest(standard(), bearer(t));
    expect(r).toMatchObject({ ok: true, principal: `${RSA_ISS}/alice`, claims: { groups: ['dev'] } });
    // forwardOriginalToken defaults to false: the token is not passed to the backend
    expect(r.ok && r.removeHeaders).toEqual(['authorization']);
  });

  it('accepts an ES256 token with keys from a file:// jwksUri', async () => {
    const t = await token(ec, { iss: EC_ISS, sub: 'bob' });
    expect(await authenticateRequest(standard(), bearer(t))).toMatchObject({
      ok: true,
      principal: `${EC_ISS}/bob`,
    });
  });

  it('accepts keys from a plain file path', async () => {
    const rules = rulesOf([
      requestAuthn({
        targetRefs: [GATEWAY_REF],
        jwtRules: [{ issuer: EC_ISS, jwksUri: join(dir, 'ec.json') }],
      }),
    ]);
    const t = await token(ec, { iss: EC_ISS, sub: 'bob' });
    expect(await authenticateRequest(rules, bearer(t))).toMatchObject({
      ok: true,
      principal: `${EC_ISS}/bob`,
    });
  });

  it('lets a request without a token through, unauthenticated', async () => {
    expect(await authenticateRequest(standard(), {})).toEqual({
      ok: true,
      removeHeaders: [],
      addHeaders: {},
    });
  });

  it.each([
    [
      'an expired token',
      async () =>
        token(rsa, { iss: RSA_ISS, sub: 'a', aud: 'echo' }, { exp: Math.floor(Date.now() / 1000) - 3600 }),
      'Jwt is expired',
    ],
    [
      'a token for another audience',
      async () => token(rsa, { iss: RSA_ISS, sub: 'a', aud: 'billing' }),
      'Audiences in Jwt are not allowed',
    ],
    [
      'a token signed by another key with the same kid',
      async () => token(impostor, { iss: RSA_ISS, sub: 'a', aud: 'echo' }),
      'Jwt verification fails',
    ],
    [
      'a token from an issuer no rule names',
      async () => token(rsa, { iss: 'https://evil.example', sub: 'a', aud: 'echo' }),
      'Jwt issuer is not configured',
    ],
    [
      'a token that is not a JWT',
      async () => 'not.a.jwt',
      'Jwt is not in the form of Header.Payload.Signature',
    ],
    [
      'a token whose kid is unknown',
      async () => token({ ...ec, jwk: { ...ec.jwk, kid: 'nope' } }, { iss: EC_ISS, sub: 'a' }),
      "Jwks doesn't have key",
    ],
  ])('rejects %s with 401', async (_what, make, reason) => {
    const r = await authenticateRequest(standard(), bearer(await make()));
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.status).toBe(401);
      expect(r.reason).toContain(reason);
    }
  });

  it('rejects an HS256 token even if the JWKS held a shared secret', async () => {
    const secret = new TextEncoder().encode('0123456789abcdef0123456789abcdef');
    const jwks = JSON.stringify({
      keys: [{ kty: 'oct', k: Buffer.from(secret).toString('base64url'), kid: 'h', alg: 'HS256' }],
    });
    const rules = rulesOf([
      requestAuthn({ targetRefs: [GATEWAY_REF], jwtRules: [{ issuer: RSA_ISS, jwks }] }),
    ]);
    const t = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256', kid: 'h' })
      .setIssuer(RSA_ISS)
      .setSubject('a')
      .sign(secret);
    expect(await authenticateRequest(rules, bearer(t))).toMatchObject({ ok: false, status: 401 });
  });

  it('takes the token from ?access_token= by default and from custom locations when configured', async () => {
    const t = await token(ec, { iss: EC_ISS, sub: 'q' });
    const q = new URLSearchParams({ access_token: t });
    expect(await authenticateRequest(standard(), {}, q)).toMatchObject({
      ok: true,
      principal: `${EC_ISS}/q`,
    });

    const custom = rulesOf([
      requestAuthn({
        targetRefs: [GATEWAY_REF],
        jwtRules: [
          {
            issuer: EC_ISS,
            jwksUri: join(dir, 'ec.json'),
            fromHeaders: [{ name: 'X-Jwt' }],
            fromParams: ['tok'],
          },
        ],
      }),
    ]);
    expect(await authenticateRequest(custom, { 'x-jwt': t })).toMatchObject({
      ok: true,
      principal: `${EC_ISS}/q`,
      removeHeaders: ['x-jwt'],
    });
    expect(await authenticateRequest(custom, {}, new URLSearchParams({ tok: t }))).toMatchObject({
      ok: true,
    });
    // explicit locations replace the defaults
    expect(await authenticateRequest(custom, bearer(t))).toEqual({
      ok: true,
      removeHeaders: [],
      addHeaders: {},
    });
  });

  it('keeps the token when forwardOriginalToken and copies claims to headers', async () => {
    const t = await token(rsa, { iss: RSA_ISS, sub: 'alice', aud: 'web', team: 'blue' });
    const r = await authenticateRequest(
      standard({ forwardOriginalToken: true, outputClaimToHeaders: [{ header: 'x-team', claim: 'team' }] }),
      bearer(t),
    );
    expect(r).toMatchObject({ ok: true, removeHeaders: [], addHeaders: { 'x-team': 'blue' } });
  });

  it('rejects tokens of an issuer whose keys cannot be loaded, and says why at compile time', async () => {
    const set = compileRequestAuthn(
      [
        requestAuthn({
          targetRefs: [GATEWAY_REF],
          jwtRules: [{ issuer: RSA_ISS, jwksUri: 'https://rsa.example/jwks' }],
        }),
      ],
      WAYPOINT,
      ROOT,
    );
    expect(set.warnings[0]).toMatch(
      /does not fetch keys over the network.*tokens from https:\/\/rsa.example will be rejected/,
    );
    const t = await token(rsa, { iss: RSA_ISS, sub: 'a' });
    expect(await authenticateRequest(jwtRulesFor(set, ECHO), bearer(t))).toMatchObject({
      ok: false,
      status: 401,
    });
  });
});

describe('compileRequestAuthn binding', () => {
  it('binds by targetRefs (Gateway, Service) and ignores selector policies', () => {
    const set = compileRequestAuthn(
      [
        requestAuthn({ targetRefs: [GATEWAY_REF], jwtRules: [{ issuer: 'gw', jwks: '{"keys":[]}' }] }, 'a'),
        requestAuthn(
          {
            targetRefs: [{ kind: 'Service', group: '', name: 'echo' }],
            jwtRules: [{ issuer: 'svc', jwks: '{"keys":[]}' }],
          },
          'b',
        ),
        requestAuthn(
          { selector: { matchLabels: { app: 'echo' } }, jwtRules: [{ issuer: 'sel', jwks: '{"keys":[]}' }] },
          'c',
        ),
      ],
      WAYPOINT,
      ROOT,
    );
    expect(jwtRulesFor(set, ECHO).map((r) => r.issuer)).toEqual(['gw', 'svc']);
    expect(
      jwtRulesFor(set, { namespace: 'demo', hostname: 'other.demo.svc.cluster.local' }).map((r) => r.issuer),
    ).toEqual(['gw']);
  });
});

describe('requestPrincipals with real tokens', () => {
  const policies: PolicyObject[] = [
    {
      kind: 'AuthorizationPolicy',
      metadata: { name: 'require-jwt', namespace: 'demo' },
      spec: {
        targetRefs: [GATEWAY_REF],
        action: 'ALLOW',
        rules: [
          {
            from: [{ source: { requestPrincipals: [`${RSA_ISS}/*`] } }],
            when: [{ key: 'request.auth.claims[groups]', values: ['dev'] }],
          },
        ],
      },
    },
  ];

  /** What the waypoint does per request: authenticate (401), then authorize (403). */
  async function status(headers: Record<string, string>): Promise<number> {
    const authn = await authenticateRequest(standard(), headers);
    if (!authn.ok) return authn.status;
    const d = evaluateL7(compileWaypointPolicies(policies, WAYPOINT, ROOT), {
      source: { principal: 'cluster.local/ns/demo/sa/sleep', ip: '10.0.0.5' },
      destination: { service: ECHO, ip: '10.96.0.10', port: 8080 },
      method: 'GET',
      path: '/',
      host: 'echo',
      headers,
      requestPrincipal: authn.principal,
      requestAuthClaims: authn.claims,
    });
    return d.allow ? 200 : 403;
  }

  it('allows a valid token from the right issuer with the right claim', async () => {
    expect(
      await status(bearer(await token(rsa, { iss: RSA_ISS, sub: 'alice', aud: 'echo', groups: ['dev'] }))),
    ).toBe(200);
  });
  it('denies (403) a valid token without the claim', async () => {
    expect(
      await status(bearer(await token(rsa, { iss: RSA_ISS, sub: 'alice', aud: 'echo', groups: ['ops'] }))),
    ).toBe(403);
  });
  it('denies (403) a valid token from another issuer', async () => {
    expect(await status(bearer(await token(ec, { iss: EC_ISS, sub: 'bob', groups: ['dev'] })))).toBe(403);
  });
  it('denies (403) a request without a token', async () => {
    expect(await status({})).toBe(403);
  });
  it('answers 401 for an invalid token before any policy runs', async () => {
    const t = await token(
      rsa,
      { iss: RSA_ISS, sub: 'alice', aud: 'echo', groups: ['dev'] },
      { exp: Math.floor(Date.now() / 1000) - 3600 },
    );
    expect(await status(bearer(t))).toBe(401);
  });
});
