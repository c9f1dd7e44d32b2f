// A test gRPC ext_authz provider: Envoy's Authorization/Check service (proto/ext-authz.proto, as
// src/waypoint/policy/ext-authz-grpc.ts speaks it) added to a grpc-js server, with the test's own
// answer. Shared by the unit test of the gRPC call and the adversarial mesh test.
import type * as grpc from '@grpc/grpc-js';
import { CHECK_METHOD_PATH, extAuthzPb } from '../../src/waypoint/policy/ext-authz-grpc.js';

type Message = Record<string, unknown>;

const codec = (t: typeof extAuthzPb.CheckRequest) => ({
  serialize: (o: Message) => Buffer.from(t.encode(t.fromObject(o)).finish()),
  deserialize: (b: Buffer) => t.toObject(t.decode(b), { longs: Number }) as Message,
});

/** Adds Check to `server`; `check` sees each CheckRequest as a plain object and answers with `cb`. */
export function addExtAuthzService(
  server: grpc.Server,
  check: (request: Message, cb: grpc.sendUnaryData<Message>) => void,
): void {
  const req = codec(extAuthzPb.CheckRequest);
  const res = codec(extAuthzPb.CheckResponse);
  server.addService(
    {
      Check: {
        path: CHECK_METHOD_PATH,
        requestStream: false,
        responseStream: false,
        requestSerialize: req.serialize,
        requestDeserialize: req.deserialize,
        responseSerialize: res.serialize,
        responseDeserialize: res.deserialize,
      },
    },
    {
      Check: (call: grpc.ServerUnaryCall<Message, Message>, cb: grpc.sendUnaryData<Message>) =>
        check(call.request, cb),
    },
  );
}
