// Manifests for waypoint tests: a waypoint Gateway in `demo` at a fixed address, Services in
// `demo` (optionally bound to the `waypoint` one) and L7 AuthorizationPolicies targeting them.

/** A waypoint Gateway `demo/<name>` (default `demo/waypoint`) with the given address. */
export function waypointGateway(address: string, name = 'waypoint'): string {
  return `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ${name}, namespace: demo}
spec:
  gatewayClassName: istio-waypoint
  addresses: [{type: IPAddress, value: ${address}}]
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
`;
}

/** A Service in `demo`; `ports` is YAML flow (`[{name: http, port: 8080}]`). */
export function demoService(
  name: string,
  vip: string,
  selector: Record<string, string>,
  ports: string,
  boundToWaypoint = false,
): string {
  const labels = boundToWaypoint ? '{"istio.io/use-waypoint": waypoint}' : '{}';
  return `
apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: demo, labels: ${labels}}
spec:
  clusterIP: ${vip}
  selector: ${JSON.stringify(selector)}
  ports: ${ports}
`;
}

/**
 * An AuthorizationPolicy in `demo` targeting the Service `service` (enforced at its waypoint);
 * `rules` is the YAML after `rules:`, flow (` [{...}]`) or a block indented by four spaces.
 */
export function serviceAuthorizationPolicy(
  name: string,
  service: string,
  action: 'ALLOW' | 'DENY',
  rules: string,
): string {
  return `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ${name}, namespace: demo}
spec:
  targetRefs: [{kind: Service, group: "", name: ${service}}]
  action: ${action}
  rules:${rules}
`;
}

/** A pod of namespace demo on node-2, labelled app=<app> and running as service account <app>. */
export function demoPod(name: string, address: string, app: string): string {
  return `
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: demo, labels: {app: ${app}}}
spec: {nodeName: node-2, serviceAccountName: ${app}}
status: {podIP: ${address}}
`;
}
