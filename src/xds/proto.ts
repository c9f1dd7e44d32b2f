// Loads the .proto files in proto/ once and exposes typed encode/decode helpers and the gRPC
// service definitions built on them. We use protobufjs directly (no proto-loader) so that the
// objects on the wire are protobufjs messages with Buffer bytes fields and camelCase names.
import protobuf from 'protobufjs';
import type { ServiceDefinition } from '@grpc/grpc-js';
import { fileURLToPath } from 'node:url';

const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url));

export const TYPE_ADDRESS = 'type.googleapis.com/istio.workload.Address';
export const TYPE_AUTHORIZATION = 'type.googleapis.com/istio.security.Authorization';
/** ambit's own type: L7 configuration objects for waypoints (proto/ambit-config.proto). */
export const TYPE_CONFIG_OBJECT = 'type.googleapis.com/ambit.config.v1.Object';

const root = new protobuf.Root();
// protobufjs serves google/protobuf/* from bundled JSON, where Any's field is spelled `type_url`;
// every other field here is camelCase, and a camelCase `typeUrl` would be silently dropped on the
// wire. Re-register Any with the same field numbers and a camelCase name.
protobuf.common('any', {
  Any: { fields: { typeUrl: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } },
});
root.resolvePath = (_origin, target) => (target.startsWith('google/') ? target : PROTO_DIR + target);
root.loadSync(
  ['discovery.proto', 'workload.proto', 'authorization.proto', 'ca.proto', 'ambit-config.proto'],
  {
    keepCase: false,
  },
);
root.resolveAll();

export const pb = {
  DeltaDiscoveryRequest: root.lookupType('envoy.service.discovery.v3.DeltaDiscoveryRequest'),
  DeltaDiscoveryResponse: root.lookupType('envoy.service.discovery.v3.DeltaDiscoveryResponse'),
  Address: root.lookupType('istio.workload.Address'),
  Authorization: root.lookupType('istio.security.Authorization'),
  ConfigObject: root.lookupType('ambit.config.v1.Object'),
  IstioCertificateRequest: root.lookupType('istio.v1.auth.IstioCertificateRequest'),
  IstioCertificateResponse: root.lookupType('istio.v1.auth.IstioCertificateResponse'),
  Struct: root.lookupType('google.protobuf.Struct'),
};

// ---- wire shapes (protobufjs objects; optional because proto3 omits defaults) ----

export interface AnyMsg {
  typeUrl?: string;
  value?: Uint8Array;
}
export interface StatusMsg {
  code?: number;
  message?: string;
}
export interface NodeMsg {
  id?: string;
  cluster?: string;
  metadata?: unknown;
}
export interface DeltaRequestMsg {
  node?: NodeMsg | null;
  typeUrl?: string;
  resourceNamesSubscribe?: string[];
  resourceNamesUnsubscribe?: string[];
  initialResourceVersions?: Record<string, string>;
  responseNonce?: string;
  errorDetail?: StatusMsg | null;
}
export interface ResourceMsg {
  version?: string;
  resource?: AnyMsg | null;
  name?: string;
  aliases?: string[];
}
export interface DeltaResponseMsg {
  systemVersionInfo?: string;
  resources?: ResourceMsg[];
  typeUrl?: string;
  nonce?: string;
  removedResources?: string[];
}
export interface CertRequestMsg {
  csr?: string;
  validityDuration?: number | { toNumber(): number };
  metadata?: unknown;
}
export interface CertResponseMsg {
  certChain?: string[];
}

function codec<T>(type: protobuf.Type) {
  return {
    serialize: (msg: T): Buffer => Buffer.from(type.encode(type.fromObject(msg as object)).finish()),
    deserialize: (buf: Buffer): T => type.toObject(type.decode(buf), { defaults: false, longs: Number }) as T,
  };
}

const deltaReq = codec<DeltaRequestMsg>(pb.DeltaDiscoveryRequest);
const deltaRes = codec<DeltaResponseMsg>(pb.DeltaDiscoveryResponse);
const certReq = codec<CertRequestMsg>(pb.IstioCertificateRequest);
const certRes = codec<CertResponseMsg>(pb.IstioCertificateResponse);

export const adsServiceDefinition: ServiceDefinition = {
  DeltaAggregatedResources: {
    path: '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources',
    requestStream: true,
    responseStream: true,
    requestSerialize: deltaReq.serialize,
    requestDeserialize: deltaReq.deserialize,
    responseSerialize: deltaRes.serialize,
    responseDeserialize: deltaRes.deserialize,
  },
};

export const caServiceDefinition: ServiceDefinition = {
  CreateCertificate: {
    path: '/istio.v1.auth.IstioCertificateService/CreateCertificate',
    requestStream: false,
    responseStream: false,
    requestSerialize: certReq.serialize,
    requestDeserialize: certReq.deserialize,
    responseSerialize: certRes.serialize,
    responseDeserialize: certRes.deserialize,
  },
};

/** Encodes a plain object as a protobuf message of `type`, for packing into an Any. */
export function encodeMessage(type: protobuf.Type, obj: object): Uint8Array {
  return type.encode(type.fromObject(obj)).finish();
}

/** Decodes bytes to a plain object (enums as strings, bytes as Buffer, 64-bit ints as numbers). */
export function decodeMessage<T>(type: protobuf.Type, bytes: Uint8Array): T {
  return type.toObject(type.decode(bytes), { enums: String, longs: Number, defaults: true }) as T;
}

/** A google.protobuf.Struct from a flat string map (node metadata, CA request metadata). */
export function structFromStrings(map: Record<string, string>): object {
  const fields: Record<string, object> = {};
  for (const [k, v] of Object.entries(map)) fields[k] = { stringValue: v };
  return { fields };
}

/** Reads string fields back out of a decoded google.protobuf.Struct. */
export function stringsFromStruct(struct: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  const fields = (struct as { fields?: Record<string, { stringValue?: string }> } | undefined)?.fields;
  if (!fields) return out;
  for (const [k, v] of Object.entries(fields)) if (typeof v?.stringValue === 'string') out[k] = v.stringValue;
  return out;
}
