import { describe, expect, it } from 'vitest';
import { parseManifests } from '../../../src/config/load.js';

const ra = (spec: string) => `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: demo}
spec:
${spec}`;

describe('RequestAuthentication manifests', () => {
  it('loads a policy bound to a waypoint with inline JWKS and header locations', () => {
    const r = parseManifests(
      ra(`  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}]
  jwtRules:
    - issuer: https://issuer.example
      audiences: [echo]
      jwks: '{"keys": []}'
      fromHeaders: [{name: x-jwt, prefix: "Bearer "}]
      forwardOriginalToken: true`),
      'ra.yaml',
    );
    expect(r.errors.map(String)).toEqual([]);
    expect(r.objects[0]).toMatchObject({
      kind: 'RequestAuthentication',
      metadata: { name: 'jwt', namespace: 'demo' },
    });
  });

  it.each([
    ['a rule without issuer', `  jwtRules: [{audiences: [a]}]`, /ra\.yaml:5: spec\.jwtRules\[0\]\.issuer: /],
    [
      'jwks that is not JSON',
      `  jwtRules: [{issuer: i, jwks: "not json"}]`,
      /spec\.jwtRules\[0\]\.jwks: must be a JSON Web Key Set/,
    ],
    [
      'both jwks and jwksUri',
      `  jwtRules: [{issuer: i, jwks: '{"keys":[]}', jwksUri: file:///k.json}]`,
      /set jwks or jwksUri, not both/,
    ],
    [
      'selector together with targetRefs',
      `  selector: {matchLabels: {app: a}}\n  targetRefs: [{kind: Service, name: s}]`,
      /cannot be used together with selector/,
    ],
  ])('rejects %s with file, line and field', (_name, spec, message) => {
    const r = parseManifests(ra(spec), 'ra.yaml');
    expect(r.objects).toHaveLength(0);
    expect(r.errors.map(String).join('\n')).toMatch(message);
  });
});
