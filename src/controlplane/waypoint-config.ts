// What the waypoints are sent of the L7 configuration: each HTTPRoute, GRPCRoute, VirtualService,
// DestinationRule, RequestAuthentication and targetRefs AuthorizationPolicy as a TYPE_CONFIG_OBJECT
// resource, and Istio's mesh ConfigMap as the MeshConfig object (config/mesh-config.ts). Pure: the
// ambient index records the object and stores what this returns. Split from ambient-index.ts
// (issue 14).
import type { ConfigMap, KubeResource, ObjectMeta } from '../config/types.js';
import {
  isMeshConfigMap,
  meshConfigObject,
  meshSettingsOfConfigMap,
  MESH_CONFIG_KIND,
  MESH_CONFIG_OBJECT_NAME,
} from '../config/mesh-config.js';
import {
  CONFIG_OBJECT_KINDS,
  configObjectName,
  encodeConfigObject,
  type ConfigObject,
} from '../xds/config-objects.js';

/** AuthorizationPolicies with targetRef(s) belong to waypoints (as in Istio); the others to node proxies. */
export const hasTargetRefs = (o: KubeResource) =>
  o.kind === 'AuthorizationPolicy' && (o.spec.targetRef !== undefined || o.spec.targetRefs !== undefined);

/** Whether the waypoints' config resource is made from objects of this kind (the mesh ConfigMap too). */
export const isWaypointConfigKind = (o: { kind: string; metadata: ObjectMeta }) =>
  o.kind === 'ConfigMap' ? isMeshConfigMap(o) : CONFIG_OBJECT_KINDS.has(o.kind);

/**
 * The waypoints' resource for object `o` now that it is `obj` (undefined: deleted): its name and
 * encoded bytes (undefined bytes: withdraw it), or undefined to leave the resource as it is — a
 * mesh ConfigMap that does not parse (validated at load; should it still fail, waypoints keep what
 * they had, never a half one). Call only for objects isWaypointConfigKind accepts.
 */
export function waypointConfigResource(
  o: { kind: string; metadata: ObjectMeta },
  obj: KubeResource | undefined,
): { name: string; bytes: Uint8Array | undefined } | undefined {
  if (o.kind === 'ConfigMap') {
    const parsed = obj ? meshSettingsOfConfigMap(obj as ConfigMap) : undefined;
    if (parsed && !parsed.ok) return undefined;
    const mesh = parsed?.ok ? (meshConfigObject(parsed.settings) as unknown as ConfigObject) : undefined;
    return { name: `${MESH_CONFIG_KIND}/istio-system/${MESH_CONFIG_OBJECT_NAME}`, bytes: encode(mesh) };
  }
  const forWaypoints = obj && (obj.kind !== 'AuthorizationPolicy' || hasTargetRefs(obj));
  return {
    name: configObjectName(o),
    bytes: encode(forWaypoints ? (obj as unknown as ConfigObject) : undefined),
  };
}

function encode(obj: ConfigObject | undefined): Uint8Array | undefined {
  return (
    obj &&
    encodeConfigObject({
      ...obj,
      metadata: { ...obj.metadata, namespace: obj.metadata.namespace ?? 'default' },
    })
  );
}
