// The L7 configuration objects a waypoint compiles itself (HTTPRoute, GRPCRoute, VirtualService,
// DestinationRule, targetRefs AuthorizationPolicy, RequestAuthentication, and `MeshConfig`: the
// settings of Istio's mesh ConfigMap, config/mesh-config.ts), carried over xDS as
// ambit.config.v1.Object: kind, namespace, name and the validated object as JSON. The control plane
// encodes them; waypoints decode and check them here (a bad one is NACKed, the last good kept).
import { AmbitError } from '../common/errors.js';
import { decodeMessage, encodeMessage, pb } from './proto.js';
import { checkMeshSettings, MESH_CONFIG_KIND } from '../config/mesh-config.js';

/** Kinds sent to waypoints. */
export const CONFIG_OBJECT_KINDS: ReadonlySet<string> = new Set([
  'HTTPRoute',
  'GRPCRoute',
  'VirtualService',
  'DestinationRule',
  'AuthorizationPolicy',
  'RequestAuthentication',
  MESH_CONFIG_KIND,
]);

/** A configuration object as a waypoint receives it: the Kubernetes shape, already validated upstream. */
export interface ConfigObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec: Record<string, unknown>;
}

/** xDS name of a config object: "Kind/namespace/name". */
export function configObjectName(o: {
  kind: string;
  metadata: { name: string; namespace?: string };
}): string {
  return `${o.kind}/${o.metadata.namespace ?? 'default'}/${o.metadata.name}`;
}

export function encodeConfigObject(o: ConfigObject): Uint8Array {
  return encodeMessage(pb.ConfigObject, {
    kind: o.kind,
    namespace: o.metadata.namespace,
    name: o.metadata.name,
    json: JSON.stringify(o),
  });
}

interface WireObject {
  kind: string;
  namespace: string;
  name: string;
  json: string;
}

function invalid(name: string, why: string): AmbitError {
  return new AmbitError('XDS_INVALID_RESOURCE', `resource ${JSON.stringify(name)}: ${why}`);
}

/** Decodes one config object; throws XDS_INVALID_RESOURCE naming what is wrong. */
export function decodeConfigObject(name: string, bytes: Uint8Array): ConfigObject {
  let msg: WireObject;
  try {
    msg = decodeMessage<WireObject>(pb.ConfigObject, bytes);
  } catch (err) {
    throw invalid(name, `undecodable protobuf (${(err as Error).message})`);
  }
  if (!CONFIG_OBJECT_KINDS.has(msg.kind))
    throw invalid(name, `kind ${JSON.stringify(msg.kind)} is not a waypoint kind`);
  let obj: unknown;
  try {
    obj = JSON.parse(msg.json);
  } catch (err) {
    throw invalid(name, `json is not valid JSON (${(err as Error).message})`);
  }
  const o = obj as Partial<ConfigObject> | null;
  if (!o || typeof o !== 'object' || Array.isArray(o)) throw invalid(name, 'json is not an object');
  if (o.kind !== msg.kind)
    throw invalid(name, `json kind ${JSON.stringify(o.kind)} differs from ${msg.kind}`);
  if (!o.metadata || o.metadata.name !== msg.name || (o.metadata.namespace ?? 'default') !== msg.namespace)
    throw invalid(name, `json metadata does not name ${msg.namespace}/${msg.name}`);
  if (!o.spec || typeof o.spec !== 'object' || Array.isArray(o.spec))
    throw invalid(name, 'json has no spec object');
  if (msg.kind === MESH_CONFIG_KIND) {
    // Checked here, at the edge, so a bad MeshConfig is NACKed and the last good one stays.
    try {
      checkMeshSettings(o.spec);
    } catch (err) {
      throw invalid(name, `MeshConfig: ${(err as Error).message}`);
    }
  }
  return {
    apiVersion: String(o.apiVersion ?? ''),
    kind: msg.kind,
    metadata: { ...o.metadata, namespace: msg.namespace },
    spec: o.spec,
  };
}
