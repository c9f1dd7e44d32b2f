// What the waypoint answers downstream when the upstream gave no response: Envoy's statuses,
// bodies and response flags, so users and tests see familiar text. One place for the mapping
// (the waypoint's access log takes the flag from here too).
import type { UpstreamError } from './types.js';

export interface FailureAnswer {
  status: 503 | 504;
  body: string;
  /** Envoy response flag for the access log (UF connect failure, UC termination, UT timeout, UO overflow, UR refused stream). */
  responseFlag: 'UF' | 'UC' | 'UT' | 'UO' | 'UR';
  headers: Record<string, string>;
}

const RESET_PREFIX = 'upstream connect error or disconnect/reset before headers. reset reason: ';

export function failureAnswer(error: UpstreamError): FailureAnswer {
  const headers = { 'content-type': 'text/plain' };
  switch (error) {
    case 'timeout':
      return { status: 504, body: 'upstream request timeout', responseFlag: 'UT', headers };
    case 'connect-failure':
      return { status: 503, body: `${RESET_PREFIX}connection failure`, responseFlag: 'UF', headers };
    case 'reset':
      return { status: 503, body: `${RESET_PREFIX}connection termination`, responseFlag: 'UC', headers };
    case 'refused-stream':
      return { status: 503, body: `${RESET_PREFIX}remote refused stream reset`, responseFlag: 'UR', headers };
    case 'overflow':
      return {
        status: 503,
        body: `${RESET_PREFIX}overflow`,
        responseFlag: 'UO',
        headers: { ...headers, 'x-envoy-overloaded': 'true' },
      };
  }
}
