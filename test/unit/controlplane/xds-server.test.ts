// DeltaXdsServer against an in-memory stand-in for a grpc-js duplex call, where a write's
// completion is under the test's control: the way to observe serialisation and coalescing.
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { AmbientIndex } from '../../../src/controlplane/ambient-index.js';
import { DeltaXdsServer } from '../../../src/controlplane/xds-server.js';
import { objectKey, type KubeResource, type Pod } from '../../../src/config/types.js';
import { TYPE_ADDRESS, type DeltaRequestMsg, type DeltaResponseMsg } from '../../../src/xds/proto.js';

class FakeCall extends EventEmitter {
  readonly metadata = new grpc.Metadata();
  readonly written: DeltaResponseMsg[] = [];
  readonly callbacks: (() => void)[] = [];
  getPeer(): string {
    return 'fake:1';
  }
  write(msg: DeltaResponseMsg, cb: () => void): boolean {
    this.written.push(msg);
    this.callbacks.push(cb);
    return true;
  }
  end(): void {}
  send(req: DeltaRequestMsg): void {
    this.emit('data', req);
  }
  /** Lets the socket "take" the oldest outstanding write. */
  drain(): void {
    this.callbacks.shift()?.();
  }
}

function pod(name: string, version: string): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'demo', labels: { app: 'echo', version } },
    spec: { nodeName: 'n1' },
    status: { podIP: name === 'a' ? '10.0.0.1' : '10.0.0.2' },
  };
}

const tick = () => new Promise<void>((r) => setImmediate(r));
const uid = (n: string) => `Kubernetes//Pod/demo/${n}`;

function setup() {
  const index = new AmbientIndex();
  const objs: KubeResource[] = [pod('a', 'v1'), pod('b', 'v1')];
  index.rebuild({ objects: new Map(objs.map((o) => [objectKey(o), o])) });
  const server = new DeltaXdsServer({ index, logger: pino({ level: 'silent' }) });
  const call = new FakeCall();
  (server.handlers().DeltaAggregatedResources as (c: unknown) => void)(call);
  return { index, server, call };
}

describe('DeltaXdsServer stream writes', () => {
  it('has one write in flight per stream and coalesces changes made meanwhile', async () => {
    const { index, call } = setup();
    call.send({ node: { id: 'n' }, typeUrl: TYPE_ADDRESS });
    await tick();
    expect(call.written).toHaveLength(1);

    // The client is slow: the first response is still being written while a changes three times.
    for (const v of ['v2', 'v3', 'v4']) index.apply({ upserted: [pod('a', v)], deleted: [] });
    index.apply({ upserted: [pod('b', 'v2')], deleted: [] });
    await tick();
    expect(call.written).toHaveLength(1);

    call.drain();
    await tick();
    expect(call.written).toHaveLength(2);
    const second = call.written[1]!;
    expect(second.resources!.map((r) => r.name).sort()).toEqual([uid('a'), uid('b')]);
    expect(second.resources!.find((r) => r.name === uid('a'))!.version).toBe(
      index.resources(TYPE_ADDRESS).get(uid('a'))!.version,
    );
  });

  it('drops a change that was undone before it could be written', async () => {
    const { index, call } = setup();
    call.send({ node: { id: 'n' }, typeUrl: TYPE_ADDRESS });
    await tick();
    index.apply({ upserted: [pod('a', 'v2')], deleted: [] });
    index.apply({ upserted: [pod('a', 'v1')], deleted: [] });
    call.drain();
    await tick();
    expect(call.written).toHaveLength(1);
  });

  it('does not resend after a NACK and records it', async () => {
    const { server, call } = setup();
    call.send({ node: { id: 'n' }, typeUrl: TYPE_ADDRESS });
    await tick();
    call.drain();
    call.send({
      typeUrl: TYPE_ADDRESS,
      responseNonce: call.written[0]!.nonce!,
      errorDetail: { code: 3, message: 'bad a' },
    });
    await tick();
    expect(call.written).toHaveLength(1);
    expect(server.connections()[0]!.types[0]).toMatchObject({ lastNack: 'bad a', lastAckedNonce: '' });
  });

  it('forgets a stream that was cancelled', async () => {
    const { index, server, call } = setup();
    call.send({ node: { id: 'n' }, typeUrl: TYPE_ADDRESS });
    await tick();
    call.emit('cancelled');
    expect(server.connections()).toEqual([]);
    index.apply({ upserted: [pod('a', 'v2')], deleted: [] });
    call.drain();
    await tick();
    expect(call.written).toHaveLength(1);
  });
});
