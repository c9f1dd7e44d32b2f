// Coded errors: a stable `code` that tests and callers can match on, and a message that names
// the values involved and the likely cause.

export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'CONFIG_YAML'
  | 'CA_UNAUTHENTICATED'
  | 'CA_PERMISSION_DENIED'
  | 'CA_BAD_CSR'
  | 'CERT_INVALID'
  | 'XDS_INVALID_RESOURCE'
  | 'HBONE_IDENTITY_MISMATCH'
  | 'HBONE_TLS_FAILURE'
  | 'HBONE_CONNECT_REFUSED'
  | 'HBONE_BAD_REQUEST'
  | 'HBONE_POLICY_DENIED'
  | 'HBONE_UPSTREAM_FAILED'
  | 'HBONE_TIMEOUT'
  | 'SOCKS_PROTOCOL'
  | 'ROUTE_NO_ENDPOINT'
  | 'ROUTE_UNKNOWN_HOST'
  | 'NO_CERTIFICATE'
  /** A spliced connection was cut on the upstream side mid-transfer (tunnel reset, peer proxy gone). */
  | 'UPSTREAM_RESET'
  /** A spliced connection was cut on the downstream side mid-transfer (the app or the peer reset it). */
  | 'DOWNSTREAM_RESET';

export class AmbitError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'AmbitError';
  }
}

export function isAmbitError(err: unknown, code?: ErrorCode): err is AmbitError {
  return err instanceof AmbitError && (code === undefined || err.code === code);
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
