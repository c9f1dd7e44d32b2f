// Delta xDS end to end: a real grpc-js server carrying DeltaXdsServer and real XdsClients
// (and a raw stream where the wire itself is asserted) on 127.0.30.x, insecure credentials.
import { afterEach, describe, expect, it, vi } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { AmbientIndex } from '../../src/controlplane/ambient-index.js';
import { DeltaXdsServer, XDS_SERVER_OPTIONS } from '../../src/controlplane/xds-server.js';
import { XdsClient } from '../../src/xds/client.js';
import { captureLogger } from '../support/capture-logger.js';
import {
  adsServiceDefinition,
  TYPE_ADDRESS,
  TYPE_AUTHORIZATION,
  type DeltaRequestMsg,
  type DeltaResponseMsg,
} from '../../src/xds/proto.js';
import { decodeAddress, type Address } from '../../src/xds/resources.js';
import {
  objectKey,
  type KubeResource,
  type Namespace,
  type Pod,
  type Service,
} from '../../src/config/types.js';

const HOST = '127.0.30.7';

// ---- fixtures ----

function ns(name: string): Namespace {
  return {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name, labels: { 'istio.io/dataplane-mode': 'ambient' } },
  };
}
function pod(name: string, ip: string, labels: Record<string, string> = { app: 'echo' }): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'demo', labels },
    spec: { nodeName: 'node-1', serviceAccountName: 'echo' },
    status: { podIP: ip, phase: 'Running' },
  };
}
function svc(name: string, ip: string): Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'demo' },
    spec: { clusterIP: ip, selector: { app: 'echo' }, ports: [{ port: 80, targetPort: 8080, name: 'http' }] },
  };
}
const uid = (name: string) => `Kubernetes//Pod/demo/${name}`;
const SVC = 'demo/echo.demo.svc.cluster.local';

function seededIndex(): AmbientIndex {
  const index = new AmbientIndex();
  const objs: KubeResource[] = [
    ns('demo'),
    pod('a', '10.0.0.1'),
    pod('b', '10.0.0.2'),
    pod('c', '10.0.0.3'),
    svc('echo', '10.96.0.1'),
  ];
  index.rebuild({ objects: new Map(objs.map((o) => [objectKey(o), o])) });
  return index;
}

// ---- harness ----

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startServer(
  index: AmbientIndex,
  port = 0,
  authenticate?: (md: grpc.Metadata) => string | undefined,
): Promise<{ xds: DeltaXdsServer; server: grpc.Server; port: number; logs: Record<string, unknown>[] }> {
  const { logger, lines } = captureLogger();
  const xds = new DeltaXdsServer({ index, logger, authenticate });
  const server = new grpc.Server(XDS_SERVER_OPTIONS);
  server.addService(adsServiceDefinition, xds.handlers());
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${HOST}:${port}`, grpc.ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  cleanups.push(() => {
    xds.close();
    server.forceShutdown();
  });
  return { xds, server, port: bound, logs: lines };
}

interface ApplyCall {
  upserted: string[];
  removed: string[];
}

/** An XdsClient whose Address handler keeps a name → Address map and records every apply call. */
function startClient(
  port: number,
  opts: { token?: string; reject?: (a: Address) => string | undefined; id?: string } = {},
) {
  const state = new Map<string, Address>();
  const calls: ApplyCall[] = [];
  const waiters: (() => void)[] = [];
  const { logger, lines } = captureLogger();
  const client = new XdsClient({
    address: `${HOST}:${port}`,
    credentials: grpc.credentials.createInsecure(),
    metadata: () => {
      const md = new grpc.Metadata();
      if (opts.token) md.set('authorization', `Bearer ${opts.token}`);
      return md;
    },
    node: { id: opts.id ?? 'ambit~127.0.30.9~node-1~cluster.local', metadata: { NODE_NAME: 'node-1' } },
    types: [
      {
        typeUrl: TYPE_ADDRESS,
        decode: (name: string, bytes: Uint8Array) => {
          const a = decodeAddress(name, bytes);
          const why = opts.reject?.(a);
          if (why) throw new Error(why);
          return a;
        },
        apply: (upserted: Map<string, Address>, removed: string[]) => {
          for (const [k, v] of upserted) state.set(k, v);
          for (const k of removed) state.delete(k);
          calls.push({ upserted: [...upserted.keys()].sort(), removed: [...removed].sort() });
          waiters.splice(0).forEach((w) => w());
        },
      },
      { typeUrl: TYPE_AUTHORIZATION, decode: () => null, apply: () => {} },
    ],
    logger,
    backoff: { initialMs: 20, maxMs: 200 },
  });
  client.start();
  cleanups.push(() => client.stop());
  /** Resolves with the next apply call after `from` (default: the next one to come). */
  const nextApply = async (from = calls.length): Promise<ApplyCall> => {
    while (calls.length <= from) await new Promise<void>((r) => waiters.push(r));
    return calls[from]!;
  };
  return { client, state, calls, nextApply, logs: lines };
}

/** A raw ADS stream for asserting the wire: queued responses and the final status. */
function rawStream(port: number, md = new grpc.Metadata()) {
  const def = adsServiceDefinition.DeltaAggregatedResources!;
  const c = new grpc.Client(`${HOST}:${port}`, grpc.credentials.createInsecure());
  const call = c.makeBidiStreamRequest<DeltaRequestMsg, DeltaResponseMsg>(
    def.path,
    def.requestSerialize,
    def.responseDeserialize,
    md,
  );
  const queue: DeltaResponseMsg[] = [];
  let wake: (() => void) | undefined;
  call.on('data', (r: DeltaResponseMsg) => {
    queue.push(r);
    wake?.();
  });
  call.on('error', () => {});
  const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  cleanups.push(() => {
    call.cancel();
    c.close();
  });
  return {
    call,
    status,
    send: (req: DeltaRequestMsg) => call.write(req),
    next: async (): Promise<DeltaResponseMsg> => {
      while (queue.length === 0) await new Promise<void>((r) => (wake = r));
      return queue.shift()!;
    },
    pending: () => queue.length,
  };
}

const names = (r: DeltaResponseMsg) => (r.resources ?? []).map((x) => x.name!).sort();

// ---- tests ----

describe('Delta xDS between DeltaXdsServer and XdsClient', () => {
  it('a client receives the full state and becomes ready', async () => {
    const index = seededIndex();
    const { port, xds } = await startServer(index);
    const { client, state } = startClient(port);
    await client.ready();
    expect([...state.keys()].sort()).toEqual([SVC, uid('a'), uid('b'), uid('c')].sort());
    const a = state.get(uid('a'))!;
    expect('workload' in a && a.workload.tunnelProtocol).toBe('HBONE');
    expect(client.isConnected()).toBe(true);
    await vi.waitFor(() =>
      expect(xds.connections()[0]?.types.every((t) => t.lastAckedNonce !== '')).toBe(true),
    );
    const conn = xds.connections()[0]!;
    expect(conn).toMatchObject({ nodeId: 'ambit~127.0.30.9~node-1~cluster.local', nodeName: 'node-1' });
    expect(conn.types.find((t) => t.typeUrl === TYPE_ADDRESS)!.resourceCount).toBe(4);
    // Only the static STRICT policy istiod always offers (PeerAuthentication).
    expect(conn.types.find((t) => t.typeUrl === TYPE_AUTHORIZATION)!.resourceCount).toBe(1);
  });

  it('one pod change delivers only that resource, a removal arrives as removed', async () => {
    const index = seededIndex();
    const { port } = await startServer(index);
    const { client, state, calls, nextApply } = startClient(port);
    await client.ready();
    const n = calls.length;
    index.apply({ upserted: [pod('a', '10.0.0.1', { app: 'echo', version: 'v2' })], deleted: [] });
    expect(await nextApply(n)).toEqual({ upserted: [uid('a')], removed: [] });
    const a = state.get(uid('a'))!;
    expect('workload' in a && a.workload.canonicalRevision).toBe('v2');

    index.apply({ upserted: [], deleted: [{ kind: 'Pod', metadata: { name: 'c', namespace: 'demo' } }] });
    expect(await nextApply(n + 1)).toEqual({ upserted: [], removed: [uid('c')] });
    expect(state.has(uid('c'))).toBe(false);
  });

  it('a resource that fails decode is NACKed while the others apply, keeping its old version', async () => {
    const index = seededIndex();
    const { port, xds, logs } = await startServer(index);
    const poison = (a: Address) =>
      'workload' in a && a.workload.canonicalName === 'poison'
        ? 'canonical name poison is refused'
        : undefined;
    const { client, state, calls, nextApply, logs: clientLogs } = startClient(port, { reject: poison });
    await client.ready();
    const n = calls.length;
    index.apply({
      upserted: [
        pod('a', '10.0.0.1', { app: 'poison' }),
        pod('b', '10.0.0.2', { app: 'echo', version: 'v3' }),
      ],
      deleted: [],
    });
    expect(await nextApply(n)).toEqual({ upserted: [uid('b')], removed: [] });
    const a = state.get(uid('a'))!;
    expect('workload' in a && a.workload.canonicalName).toBe('echo');

    await vi.waitFor(() => {
      const t = xds.connections()[0]!.types.find((x) => x.typeUrl === TYPE_ADDRESS)!;
      expect(t.lastNack).toContain(uid('a'));
      expect(t.lastNack).toContain('canonical name poison is refused');
    });
    const nackLog = logs.find((l) => l.msg === 'xDS NACK')!;
    expect(nackLog).toMatchObject({ level: 40, 'node.id': 'ambit~127.0.30.9~node-1~cluster.local' });
    expect(clientLogs.some((l) => l.level === 40 && String(l.err).includes(uid('a')))).toBe(true);

    // The next good version of the same resource is accepted and acknowledged.
    index.apply({ upserted: [pod('a', '10.0.0.1', { app: 'echo', version: 'v4' })], deleted: [] });
    expect(await nextApply(n + 1)).toEqual({ upserted: [uid('a')], removed: [] });
    await vi.waitFor(() =>
      expect(xds.connections()[0]!.types.find((x) => x.typeUrl === TYPE_ADDRESS)!.lastNack).toBeUndefined(),
    );
  });

  it('keeps its state while the server is gone and resumes with only what changed meanwhile', async () => {
    const index = seededIndex();
    const first = await startServer(index);
    const { client, state, calls, nextApply } = startClient(first.port);
    await client.ready();
    const before = new Map(state);
    const disconnected = new Promise<string>((r) => client.once('disconnected', r));
    first.xds.close();
    first.server.forceShutdown();
    expect(await disconnected).toMatch(/UNAVAILABLE|CANCELLED|INTERNAL/);
    expect(client.isConnected()).toBe(false);
    expect(state).toEqual(before);

    // Meanwhile: one pod changes, one goes away, one appears; the service and pod b stay the same.
    index.apply({
      upserted: [pod('a', '10.0.0.1', { app: 'echo', version: 'v9' }), pod('d', '10.0.0.4')],
      deleted: [{ kind: 'Pod', metadata: { name: 'c', namespace: 'demo' } }],
    });
    const n = calls.length;
    const connected = new Promise<void>((r) => client.once('connected', () => r()));
    const second = await startServer(index, first.port);
    await connected;
    expect(await nextApply(n)).toEqual({ upserted: [uid('a'), uid('d')], removed: [uid('c')] });
    expect([...state.keys()].sort()).toEqual([SVC, uid('a'), uid('b'), uid('d')].sort());
    // The server knows the client holds all four and sent only the two that differ.
    await vi.waitFor(() =>
      expect(second.xds.connections()[0]!.types.find((t) => t.typeUrl === TYPE_ADDRESS)!.resourceCount).toBe(
        4,
      ),
    );
    expect(calls.length).toBe(n + 1);
  });

  it('two clients both get a change', async () => {
    const index = seededIndex();
    const { port, xds } = await startServer(index);
    const one = startClient(port, { id: 'one' });
    const two = startClient(port, { id: 'two' });
    await Promise.all([one.client.ready(), two.client.ready()]);
    const [n1, n2] = [one.calls.length, two.calls.length];
    index.apply({ upserted: [pod('e', '10.0.0.5')], deleted: [] });
    expect(await one.nextApply(n1)).toEqual({ upserted: [uid('e')], removed: [] });
    expect(await two.nextApply(n2)).toEqual({ upserted: [uid('e')], removed: [] });
    expect(
      xds
        .connections()
        .map((c) => c.nodeId)
        .sort(),
    ).toEqual(['one', 'two']);
  });

  it('refuses a client with a bad token when authenticate is set', async () => {
    const index = seededIndex();
    const authenticate = (md: grpc.Metadata) =>
      md.get('authorization')[0] === 'Bearer good' ? 'node-1' : undefined;
    const { port, xds, logs } = await startServer(index, 0, authenticate);
    const raw = rawStream(
      port,
      (() => {
        const md = new grpc.Metadata();
        md.set('authorization', 'Bearer bad');
        return md;
      })(),
    );
    raw.send({ typeUrl: TYPE_ADDRESS, node: { id: 'intruder' } });
    expect((await raw.status).code).toBe(grpc.status.UNAUTHENTICATED);
    expect(raw.pending()).toBe(0);
    expect(logs.some((l) => l.msg === 'xDS client refused: not authenticated')).toBe(true);

    const good = startClient(port, { token: 'good' });
    await good.client.ready();
    expect(xds.connections().map((c) => c.nodeName)).toEqual(['node-1']);
  });
});

describe('Delta xDS wire behaviour', () => {
  it('answers initial_resource_versions with only what differs and removals for names gone', async () => {
    const index = seededIndex();
    const { port } = await startServer(index);
    const res = index.resources(TYPE_ADDRESS);
    const raw = rawStream(port);
    raw.send({
      node: { id: 'raw' },
      typeUrl: TYPE_ADDRESS,
      resourceNamesSubscribe: ['*'],
      initialResourceVersions: {
        [uid('a')]: res.get(uid('a'))!.version,
        [uid('b')]: 'stale',
        [uid('gone')]: 'x',
      },
    });
    const r = await raw.next();
    expect(names(r)).toEqual([SVC, uid('b'), uid('c')].sort());
    expect(r.removedResources).toEqual([uid('gone')]);
    expect(r.nonce).toBeTruthy();
    expect(r.systemVersionInfo).toBe(index.version());
    const b = r.resources!.find((x) => x.name === uid('b'))!;
    expect(b.aliases).toEqual(['/10.0.0.2']);
    expect(b.resource!.typeUrl).toBe(TYPE_ADDRESS);
  });

  it('honours explicit subscriptions and unsubscriptions and ignores unknown names', async () => {
    const index = seededIndex();
    const { port } = await startServer(index);
    const raw = rawStream(port);
    raw.send({
      node: { id: 'raw' },
      typeUrl: TYPE_ADDRESS,
      resourceNamesSubscribe: [uid('a'), 'demo/later.demo.svc.cluster.local'],
    });
    const first = await raw.next();
    expect(names(first)).toEqual([uid('a')]);
    raw.send({ typeUrl: TYPE_ADDRESS, responseNonce: first.nonce! });

    index.apply({ upserted: [pod('b', '10.0.0.2', { app: 'echo', version: 'v2' })], deleted: [] });
    raw.send({
      typeUrl: TYPE_ADDRESS,
      resourceNamesSubscribe: [uid('c')],
      resourceNamesUnsubscribe: [uid('a')],
    });
    const second = await raw.next();
    expect(names(second)).toEqual([uid('c')]); // not b: not subscribed
    expect(second.nonce).not.toBe(first.nonce);

    index.apply({ upserted: [pod('a', '10.0.0.1', { app: 'echo', version: 'v2' })], deleted: [] });
    index.apply({ upserted: [pod('c', '10.0.0.3', { app: 'echo', version: 'v2' })], deleted: [] });
    expect(names(await raw.next())).toEqual([uid('c')]);

    // A subscribed name that appears later is sent then (with c, which the new service selects;
    // a and b, also selected, are not subscribed).
    index.apply({ upserted: [svc('later', '10.96.0.2')], deleted: [] });
    expect(names(await raw.next())).toEqual(['demo/later.demo.svc.cluster.local', uid('c')].sort());
  });

  it('answers an Authorization subscription with the policies (only static STRICT without any)', async () => {
    const { port } = await startServer(seededIndex());
    const raw = rawStream(port);
    raw.send({ node: { id: 'raw' }, typeUrl: TYPE_AUTHORIZATION, resourceNamesSubscribe: ['*'] });
    const r = await raw.next();
    expect(r.typeUrl).toBe(TYPE_AUTHORIZATION);
    expect((r.resources ?? []).map((x) => x.name)).toEqual(['istio-system/istio_converted_static_strict']);
  });

  it('survives a client that sends garbage and keeps serving others', async () => {
    const index = seededIndex();
    const { port } = await startServer(index);
    const def = adsServiceDefinition.DeltaAggregatedResources!;
    const c = new grpc.Client(`${HOST}:${port}`, grpc.credentials.createInsecure());
    cleanups.push(() => c.close());
    const bad = c.makeBidiStreamRequest<Buffer, Buffer>(
      def.path,
      (b) => b,
      (b) => b,
    );
    bad.on('error', () => {});
    const status = new Promise<grpc.StatusObject>((r) => bad.on('status', r));
    bad.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
    expect((await status).code).not.toBe(grpc.status.OK);

    const nonsense = rawStream(port);
    nonsense.send({ typeUrl: 'type.googleapis.com/nope', node: { id: 'n' } });
    nonsense.send({ typeUrl: TYPE_ADDRESS, responseNonce: 'never-sent' });
    expect(names(await nonsense.next()).length).toBe(4);

    const ok = startClient(port);
    await ok.client.ready();
    expect(ok.state.size).toBe(4);
  });
});
