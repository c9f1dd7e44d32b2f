// The few bytes of gRPC and protobuf the conformance echo needs: Istio's echo service
// (`proto.EchoTestService/Echo`, EchoRequest and EchoResponse each a string `message`, field 1),
// the one the suite's mesh client calls for grpc:// URLs, and gRPC's length-prefixed message
// framing (grpc/grpc doc/PROTOCOL-HTTP2.md). Hand-written so the echo sees raw HTTP/2 headers.

export const ECHO_METHOD_PATH = '/proto.EchoTestService/Echo';

/** A protobuf message with field 1 (length-delimited) = `text`. */
export function encodeMessage(text: string): Buffer {
  const body = Buffer.from(text, 'utf8');
  return Buffer.concat([Buffer.from([0x0a]), varint(body.length), body]);
}

/** Field 1 of a protobuf message as a string ('' when absent); throws on malformed input. */
export function decodeMessage(b: Buffer): string {
  let i = 0;
  let out = '';
  const readVarint = (): number => {
    let v = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (i >= b.length) throw new Error('protobuf: truncated varint');
      const c = b[i++]!;
      v += (c & 0x7f) * 2 ** shift;
      if (c < 0x80) return v;
    }
    throw new Error('protobuf: varint too long');
  };
  while (i < b.length) {
    const key = readVarint();
    const wire = key & 7;
    if (wire === 0) readVarint();
    else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else if (wire === 2) {
      const len = readVarint();
      if (i + len > b.length) throw new Error('protobuf: truncated field');
      if (key >>> 3 === 1) out = b.subarray(i, i + len).toString('utf8');
      i += len;
    } else throw new Error(`protobuf: wire type ${wire} not supported`);
  }
  return out;
}

/** One gRPC message frame: uncompressed flag, 4-byte big-endian length, message. */
export function frame(message: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}

/** The first message of a gRPC body; throws when it is compressed or incomplete. */
export function unframe(body: Buffer): Buffer {
  if (body.length < 5) throw new Error('grpc: body shorter than a frame header');
  if (body[0] !== 0) throw new Error('grpc: compressed message not supported');
  const len = body.readUInt32BE(1);
  if (body.length < 5 + len) throw new Error('grpc: truncated message');
  return body.subarray(5, 5 + len);
}

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}
