// XdsClient against a scripted control plane (a bare grpc-js handler the test drives), to assert
// exactly what the client sends back: ACKs, NACK reasons, initial_resource_versions on reconnect.
import { afterEach, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import net from 'node:net';
import { pino, type Logger } from 'pino';
import { XdsClient } from '../../../src/xds/client.js';
import {
  adsServiceDefinition,
  type AnyMsg,
  type DeltaRequestMsg,
  type DeltaResponseMsg,
} from '../../../src/xds/proto.js';

const HOST = '127.0.30.11';
const TYPE = 'type.googleapis.com/test.Text';

type Call = grpc.ServerDuplexStream<DeltaRequestMsg, DeltaResponseMsg>;

/** A control plane whose every move is made by the test. */
async function scriptedServer(port = 0) {
  const calls: Call[] = [];
  const requests: DeltaRequestMsg[] = [];
  const waiters: (() => void)[] = [];
  const server = new grpc.Server();
  server.addService(adsServiceDefinition, {
    DeltaAggregatedResources: (call: Call) => {
      calls.push(call);
      call.on('data', (r: DeltaRequestMsg) => {
        requests.push(r);
        waiters.splice(0).forEach((w) => w());
      });
      call.on('error', () => {});
      waiters.splice(0).forEach((w) => w());
    },
  });
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${HOST}:${port}`, grpc.ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  const until = async (pred: () => boolean) => {
    while (!pred()) await new Promise<void>((r) => waiters.push(r));
  };
  return {
    server,
    port: bound,
    calls,
    requests,
    /** The n-th request (0-based) once it has arrived. */
    request: async (n: number) => {
      await until(() => requests.length > n);
      return requests[n]!;
    },
    stream: async (n: number) => {
      await until(() => calls.length > n);
      return calls[n]!;
    },
  };
}

const res = (
  nonce: string,
  resources: DeltaResponseMsg['resources'],
  removed: string[] = [],
): DeltaResponseMsg => ({
  typeUrl: TYPE,
  nonce,
  resources,
  removedResources: removed,
});
const text = (name: string, version: string, value: string, typeUrl = TYPE) => ({
  name,
  version,
  resource: { typeUrl, type_url: typeUrl, value: Buffer.from(value) } as AnyMsg,
});

const cleanups: (() => void)[] = [];
afterEach(() => cleanups.splice(0).forEach((c) => c()));

function textClient(
  port: number,
  opts: { failApply?: boolean; logger?: Logger; defaultBackoff?: boolean } = {},
) {
  const state = new Map<string, string>();
  const applied: { upserted: string[]; removed: string[] }[] = [];
  const client = new XdsClient({
    address: `${HOST}:${port}`,
    credentials: grpc.credentials.createInsecure(),
    node: { id: 'test-node', metadata: { NODE_NAME: 'n1' } },
    types: [
      {
        typeUrl: TYPE,
        decode: (name: string, bytes: Uint8Array) => {
          const s = Buffer.from(bytes).toString();
          if (s.startsWith('bad')) throw new Error(`text ${JSON.stringify(s)} is refused`);
          return s;
        },
        apply: (upserted: Map<string, string>, removed: string[]) => {
          if (opts.failApply) throw new Error('boom');
          for (const [k, v] of upserted) state.set(k, v);
          for (const k of removed) state.delete(k);
          applied.push({ upserted: [...upserted.keys()], removed });
        },
      },
    ],
    logger: opts.logger ?? pino({ level: 'silent' }),
    ...(opts.defaultBackoff ? {} : { backoff: { initialMs: 10, maxMs: 50 } }),
  });
  client.start();
  cleanups.push(() => client.stop());
  return { client, state, applied };
}

describe('XdsClient', () => {
  it('subscribes wildcard with its node, and ACKs a good response after one apply call', async () => {
    const cp = await scriptedServer();
    cleanups.push(() => cp.server.forceShutdown());
    const { client, state, applied } = textClient(cp.port);
    const first = await cp.request(0);
    expect(first).toMatchObject({ typeUrl: TYPE, resourceNamesSubscribe: ['*'], node: { id: 'test-node' } });
    (await cp.stream(0)).write(res('n1', [text('x', '1', 'hello'), text('y', '1', 'world')]));
    await client.ready();
    expect(applied).toEqual([{ upserted: ['x', 'y'], removed: [] }]);
    expect(state.get('x')).toBe('hello');
    expect(await cp.request(1)).toEqual({ typeUrl: TYPE, responseNonce: 'n1' });
  });

  it('NACKs naming every bad resource, applies the rest, and keeps the last good version', async () => {
    const cp = await scriptedServer();
    cleanups.push(() => cp.server.forceShutdown());
    const { client, state, applied } = textClient(cp.port);
    const stream = await cp.stream(0);
    stream.write(res('n1', [text('x', '1', 'hello')]));
    await client.ready();
    stream.write(
      res('n2', [
        text('x', '2', 'bad x'),
        text('y', '1', 'fine'),
        text('z', '1', 'wrong type', 'type.googleapis.com/other'),
        text('', '1', 'nameless'),
      ]),
    );
    const nack = await cp.request(2);
    expect(nack.responseNonce).toBe('n2');
    expect(nack.errorDetail!.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(nack.errorDetail!.message).toContain('"x": text "bad x" is refused');
    expect(nack.errorDetail!.message).toContain('"z": carries type.googleapis.com/other');
    expect(nack.errorDetail!.message).toContain('resource without a name');
    expect(applied[1]).toEqual({ upserted: ['y'], removed: [] });
    expect(state.get('x')).toBe('hello');
  });

  it('NACKs when applying throws and does not record the versions', async () => {
    const cp = await scriptedServer();
    cleanups.push(() => cp.server.forceShutdown());
    textClient(cp.port, { failApply: true });
    (await cp.stream(0)).write(res('n1', [text('x', '1', 'hello')]));
    expect((await cp.request(1)).errorDetail!.message).toBe('apply failed: boom');
  });

  it('keeps its state across a lost stream and resumes with the versions it holds', async () => {
    const cp = await scriptedServer();
    cleanups.push(() => cp.server.forceShutdown());
    const { client, state } = textClient(cp.port);
    const stream = await cp.stream(0);
    stream.write(res('n1', [text('x', '1', 'hello'), text('y', '1', 'world'), text('z', '1', 'bad z')]));
    await client.ready();
    stream.write(res('n2', [], ['y']));
    await cp.request(2);
    const disconnected = new Promise<string>((r) => client.once('disconnected', r));
    stream.emit('error', { code: grpc.status.UNAVAILABLE, details: 'control plane restarting' });
    expect(await disconnected).toBe('UNAVAILABLE: control plane restarting');
    expect(client.isConnected()).toBe(false);
    expect(state).toEqual(new Map([['x', 'hello']]));

    const resumed = await cp.request(3);
    expect(resumed).toMatchObject({
      typeUrl: TYPE,
      resourceNamesSubscribe: ['*'],
      initialResourceVersions: { x: '1' },
    });
    const connected = new Promise<void>((r) => client.once('connected', () => r()));
    (await cp.stream(1)).write(res('n3', []));
    await connected;
    expect(client.isConnected()).toBe(true);
  });

  it('keeps retrying while nothing listens, then connects', async () => {
    const probe = await scriptedServer();
    const port = probe.port;
    probe.server.forceShutdown();
    const logged: Record<string, unknown>[] = [];
    let onLog: (() => void) | undefined;
    const logger = pino(
      { level: 'info' },
      {
        write: (line: string) => {
          logged.push(JSON.parse(line) as Record<string, unknown>);
          onLog?.();
        },
      },
    );
    const { client } = textClient(port, { logger });
    while (!logged.some((l) => l.msg === 'xDS stream down, reconnecting'))
      await new Promise<void>((r) => (onLog = r));
    expect(logged.find((l) => l.msg === 'xDS stream down, reconnecting')).toMatchObject({
      level: 40,
      attempt: 1,
    });
    expect(client.isConnected()).toBe(false);
    const cp = await scriptedServer(port);
    cleanups.push(() => cp.server.forceShutdown());
    (await cp.stream(0)).write(res('n1', []));
    await client.ready();
    expect(client.isConnected()).toBe(true);
  });

  it('rejects ready() when stopped before the first response', async () => {
    const cp = await scriptedServer();
    cleanups.push(() => cp.server.forceShutdown());
    const { client } = textClient(cp.port);
    await cp.request(0);
    client.stop();
    await expect(client.ready()).rejects.toThrow(/stopped/);
  });

  // Issue 12: after a 30 s outage proxies came back 11–15 s after the control plane (the backoff
  // had grown towards its 15 s cap). With the default pacing (cap 2 s, waits in [cap/2, cap]) the
  // client tries again at least every 2 s however long the control plane is away; with the old
  // cap the waits reach 3.2–6.4 s and then 6.4–12.8 s within 14 s. Measured as the gaps between TCP connection
  // attempts at a dead address.
  it('keeps retrying at least every ~2 s while the control plane is away (default backoff)', async () => {
    const attempts: number[] = [];
    const dead = net.createServer((s) => {
      attempts.push(Date.now());
      s.destroy();
    });
    await new Promise<void>((r) => dead.listen(0, HOST, r));
    cleanups.push(() => dead.close());
    const start = Date.now();
    textClient((dead.address() as net.AddressInfo).port, { defaultBackoff: true });
    await new Promise((r) => setTimeout(r, 14_000));
    const times = [start, ...attempts, Date.now()];
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    expect(attempts.length).toBeGreaterThanOrEqual(5);
    expect(Math.max(...gaps)).toBeLessThan(3000); // measured: ≤ 2.2 s now, 4 s and more with the 15 s cap
  }, 25_000);
});
