// A scripted protocol adapter (src/waypoint/http/adapter.ts) for unit tests of the request
// pipeline: each try's outcome comes from a script, every call the pipeline makes is written
// to `calls` in order, and the client can be made to leave at a chosen step. No sockets: the
// point is to test what the pipeline asks of a protocol, not the protocol.
import type { Exchange } from '../../src/waypoint/request-record.js';
import type {
  LocalAnswer,
  MirrorTarget,
  Plan,
  ProtocolAdapter,
  UpstreamRequest,
} from '../../src/waypoint/http/adapter.js';
import type { HttpFailure } from '../../src/waypoint/http/failure.js';
import type { AttemptResult } from '../../src/waypoint/resilience/retry.js';

/** An upstream answer in the fake: its name and status. */
export interface FakeAnswer {
  name: string;
  status: number;
}

export interface FakeScript {
  /** One outcome per try, in order (an answer, or an error such as 'connect-failure'). */
  tries: (FakeAnswer | AttemptResult<FakeAnswer>['error'])[];
  /** The body streams through once (HTTP/1.1 chunked): one try, no policy. */
  oneTry?: boolean;
  /** The client is gone from this step on. */
  leaveAt?: 'decided' | 'tries';
  /** `fail` throws (a connection torn down under the adapter). */
  failThrows?: boolean;
}

class FakeUpstream implements UpstreamRequest {
  readonly replayable = true;
  readonly bytes = 0;
  readonly authority = 'fake';
  constructor(readonly oneTry: boolean) {}
  whenBuffered(cb: (body: Buffer) => void): void {
    cb(Buffer.alloc(0));
  }
}

export class FakeProtocolAdapter implements ProtocolAdapter<object, FakeUpstream, FakeAnswer> {
  readonly calls: string[] = [];
  private gone = false;
  private tryIndex = 0;

  constructor(private readonly script: FakeScript) {}

  watch(): AbortSignal {
    this.calls.push('watch');
    const abort = new AbortController();
    return abort.signal;
  }

  closed(): boolean {
    if (this.script.leaveAt === 'decided') this.gone = true;
    return this.gone;
  }

  answer(_down: object, _x: Exchange, a: LocalAnswer): number {
    this.calls.push(`answer ${a.status}`);
    return a.status;
  }

  fail(_down: object, _x: Exchange, f: HttpFailure): number {
    this.calls.push(`fail ${f.status}`);
    if (this.script.failThrows) throw new Error('socket torn down');
    return f.status;
  }

  readBody(_down: object, _x: Exchange, _plan: Plan): Promise<FakeUpstream> {
    this.calls.push('readBody');
    return Promise.resolve(new FakeUpstream(this.script.oneTry ?? false));
  }

  sendTry(): Promise<AttemptResult<FakeAnswer>> {
    const next = this.script.tries[this.tryIndex++];
    if (next === undefined) throw new Error('the script has no more tries');
    this.calls.push(`sendTry ${typeof next === 'string' ? next : next.name}`);
    if (this.script.leaveAt === 'tries') this.gone = true;
    if (typeof next === 'string') return Promise.resolve({ error: next });
    return Promise.resolve({ status: next.status, response: next });
  }

  discard(a: FakeAnswer): void {
    this.calls.push(`discard ${a.name}`);
  }

  abandon(a: FakeAnswer): void {
    this.calls.push(`abandon ${a.name}`);
  }

  relay(_down: object, _x: Exchange, _plan: Plan, a: FakeAnswer): Promise<number> {
    this.calls.push(`relay ${a.name}`);
    return Promise.resolve(a.status);
  }

  mirror(_req: FakeUpstream, m: MirrorTarget): void {
    this.calls.push(`mirror ${m.authority}`);
  }
}
