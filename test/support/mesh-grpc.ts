// gRPC into a test mesh: a tiny JSON-message Echo service definition, and a local TCP port that
// enters the mesh as one pod (grpc-js speaks no SOCKS, so it dials this forwarder instead).
import net from 'node:net';
import type * as grpc from '@grpc/grpc-js';
import { socksConnect } from '../../src/cli/socks-client.js';
import { listen } from './mesh.js';

export type EchoMsg = { text: string; pod?: string };

const json = {
  serialize: (o: EchoMsg) => Buffer.from(JSON.stringify(o)),
  deserialize: (b: Buffer) => JSON.parse(b.toString()) as EchoMsg,
};

function method(
  name: string,
  requestStream: boolean,
  responseStream: boolean,
): grpc.MethodDefinition<EchoMsg, EchoMsg> {
  return {
    path: `/ambit.test.Echo/${name}`,
    requestStream,
    responseStream,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  };
}

/** `Unary` and a bidirectional `Chat`. */
export const ECHO_SERVICE: grpc.ServiceDefinition = {
  Unary: method('Unary', false, false),
  Chat: method('Chat', true, true),
};

/** A local TCP port whose connections enter the mesh as the pod at `fromIp`, towards host:port. */
export function socksForwarder(fromIp: string, host: string, port: number): Promise<net.Server> {
  const server = net.createServer((c) => {
    c.pause();
    socksConnect({ host: fromIp, port: 15080 }, host, port).then(
      (s) => {
        c.pipe(s).pipe(c);
        c.resume();
        s.on('error', () => c.destroy());
        c.on('error', () => s.destroy());
      },
      () => c.destroy(),
    );
  });
  return listen(server, '127.0.0.1', 0);
}
