// Manifests for waypoint tests: the `demo/waypoint` Gateway at a fixed address, and Services in
// `demo` (optionally bound to that waypoint).

/** A waypoint Gateway `demo/waypoint` with the given address. */
export function waypointGateway(address: string): string {
  return `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: demo}
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
