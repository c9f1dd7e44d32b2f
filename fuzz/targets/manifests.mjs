// Fuzz target: manifest loading (config/load.ts parseManifests), which promises never to throw:
// every problem comes back as a ConfigError naming the file and document. Any text in, a throw
// (or an error that is not a ConfigError) is a finding.
import { parseManifests } from '../../dist/config/load.js';
import { ConfigError } from '../../dist/config/config-error.js';

export function fuzz(data) {
  const r = parseManifests(Buffer.from(data).toString('utf8'), 'fuzz.yaml');
  for (const e of r.errors)
    if (!(e instanceof ConfigError)) throw new Error(`error that is not a ConfigError: ${String(e)}`);
}

export const seeds = [
  `apiVersion: v1
kind: Pod
metadata: {name: a, namespace: demo, labels: {app: a}}
spec: {nodeName: node-1, serviceAccountName: a}
status: {podIP: 127.0.180.10}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: demo}
spec:
  selector: {matchLabels: {app: a}}
  action: ALLOW
  rules: [{from: [{source: {principals: [cluster.local/ns/demo/sa/b]}}], to: [{operation: {ports: ['8080']}}]}]
`,
  `apiVersion: v1
kind: Service
metadata: {name: s, namespace: demo, labels: {istio.io/use-waypoint: waypoint}}
spec: {clusterIP: 127.0.180.100, selector: {app: a}, ports: [{name: http, port: 8080}]}
`,
  `a: &x [*x, *x]
<<: *x
`,
].map((s) => Buffer.from(s));
