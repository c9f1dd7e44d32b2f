// What an ext_authz provider is asked (CheckInput) and what it answers (CheckOutcome), shared by
// the HTTP and gRPC clients (ext-authz-http.ts, ext-authz-grpc.ts) and the CUSTOM step that picks
// between them (ext-authz.ts). Types only.
import type { L7Request } from '../routing/types.js';

/** The provider's own answer (before failOpen / statusOnError are applied). */
export type CheckOutcome =
  | {
      kind: 'ok';
      upstreamSet: [string, string][];
      upstreamAppend: [string, string][];
      upstreamRemove: string[];
      downstream: [string, string][];
    }
  | { kind: 'denied'; status: number; body: string; headers: [string, string][] }
  | { kind: 'error'; reason: string };

/** What a provider is told about the request. */
export interface CheckInput {
  req: L7Request;
  /** Normalized path with the query, as forwarded. */
  pathWithQuery: string;
  protocol: 'HTTP/1.1' | 'HTTP/2';
  source: { ip: string; port?: number; principal?: string };
  destination: { ip: string; port: number; principal?: string };
  requestId?: string;
}
