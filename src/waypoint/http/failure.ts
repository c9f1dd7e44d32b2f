// The one place where what went wrong with a request becomes the waypoint's own answer (as
// linkerd's inbound HTTP server maps errors to responses in one function): a refusal the
// pipeline decided (`HttpFailure`, thrown with its status, reason and body), a thrown error
// (`toFailure`), or tries that produced no response (`failureOf`, Envoy's statuses and bodies
// from resilience/failure-answer.ts). The adapters write the answer in their protocol's form;
// the reason goes to the record.
import { errorMessage, isAmbitError } from '../../common/errors.js';
import { failureAnswer } from '../resilience/failure-answer.js';
import type { RetryStop } from '../resilience/retry.js';
import type { UpstreamError } from '../resilience/types.js';

/** Why a request was answered by the waypoint itself. */
export class HttpFailure extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    readonly body = reason,
    readonly headers: Record<string, string> = {},
  ) {
    super(reason);
  }
}

/** The answer when no try produced a response (Envoy's wording, resilience/failure-answer.ts). */
export function failureOf(error: UpstreamError, stop: RetryStop): HttpFailure {
  const a = failureAnswer(error);
  const why =
    stop === 'budget-exhausted'
      ? ' (retry budget exhausted)'
      : stop === 'attempts-exhausted'
        ? ' (retries exhausted)'
        : '';
  return new HttpFailure(a.status, `${a.body}${why}`, a.body, a.headers);
}

/**
 * Any error met while serving a request, as an answer: an `HttpFailure` as it is; an HBONE
 * error (coded) as 504 for a timeout, else 503 `upstream connect error`; anything else as 503
 * `upstream connect error or disconnect/reset before headers` (Envoy's local reply wording).
 */
export function toFailure(err: unknown): HttpFailure {
  if (err instanceof HttpFailure) return err;
  if (isAmbitError(err)) {
    const status = err.code === 'HBONE_TIMEOUT' ? 504 : 503;
    return new HttpFailure(status, `upstream connect error: ${err.message}`);
  }
  return new HttpFailure(
    503,
    `upstream connect error or disconnect/reset before headers: ${errorMessage(err)}`,
  );
}
