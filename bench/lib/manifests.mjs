// The Kubernetes objects the benchmark meshes are written from (shared by topology.mjs and
// soak.mjs): a pod, and the two-node mesh every suite starts from (a client pod on node-1, a
// server pod on node-2, in an ambient namespace).

/** One pod in the flow-style YAML the config folder reads. */
export function pod({ name, namespace, app, node, serviceAccount, ip }) {
  return `apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: ${namespace}, labels: {app: ${app}}}
spec: {nodeName: ${node}, serviceAccountName: ${serviceAccount}}
status: {podIP: ${ip}}
`;
}

/** Namespace `namespace` (ambient), node-1 and node-2, and the client and server pods at `addr`. */
export function twoNodeManifests(namespace, addr) {
  const node = (name, address) => `apiVersion: v1
kind: Node
metadata: {name: ${name}}
status: {addresses: [{type: InternalIP, address: ${address}}]}
`;
  return `
apiVersion: v1
kind: Namespace
metadata: {name: ${namespace}, labels: {istio.io/dataplane-mode: ambient}}
---
${[
  node('node-1', addr.node1),
  node('node-2', addr.node2),
  pod({
    name: 'client',
    namespace,
    app: 'client',
    node: 'node-1',
    serviceAccount: 'client',
    ip: addr.client,
  }),
  pod({
    name: 'server',
    namespace,
    app: 'server',
    node: 'node-2',
    serviceAccount: 'server',
    ip: addr.server,
  }),
].join('---\n')}`;
}
