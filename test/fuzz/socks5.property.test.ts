// Properties of the SOCKS5 request parser (src/nodeproxy/socks5.ts parseRequest), RFC 1928 §4–5:
// any bytes give 'incomplete', a coded refusal or a target, never a throw; a target is always a
// CONNECT to a real IP or a plain host name on a non-zero port, and what a client encodes is read
// back exactly, whatever follows it on the wire.
import net from 'node:net';
import { test, fc } from '@fast-check/vitest';
import { expect } from 'vitest';
import { parseRequest, SOCKS_REPLY } from '../../src/nodeproxy/socks5.js';
import { runs } from './runs.js';

const replyCodes = new Set<number>(Object.values(SOCKS_REPLY));

type Target =
  { kind: 'v4'; octets: number[] } | { kind: 'v6'; groups: number[] } | { kind: 'name'; name: string };

const target: fc.Arbitrary<Target> = fc.oneof(
  fc.record({
    kind: fc.constant('v4' as const),
    octets: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 4, maxLength: 4 }),
  }),
  fc.record({
    kind: fc.constant('v6' as const),
    groups: fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 }),
  }),
  fc.record({
    kind: fc.constant('name' as const),
    name: fc.stringMatching(/^[A-Za-z0-9.-]{1,255}$/),
  }),
);

function encode(cmd: number, t: Target, port: number): Buffer {
  const head = Buffer.from([0x05, cmd, 0x00]);
  let addr: Buffer;
  if (t.kind === 'v4') addr = Buffer.from([0x01, ...t.octets]);
  else if (t.kind === 'v6') {
    addr = Buffer.alloc(17);
    addr[0] = 0x04;
    t.groups.forEach((g, i) => addr.writeUInt16BE(g, 1 + i * 2));
  } else addr = Buffer.concat([Buffer.from([0x03, t.name.length]), Buffer.from(t.name, 'latin1')]);
  const p = Buffer.alloc(2);
  p.writeUInt16BE(port);
  return Buffer.concat([head, addr, p]);
}

test.prop([fc.uint8Array({ maxLength: 300 })], runs())(
  'any bytes: incomplete, a coded refusal or a sane target, never a throw',
  (bytes) => {
    const r = parseRequest(Buffer.from(bytes));
    if (r === 'incomplete') return;
    if ('error' in r) {
      expect(replyCodes.has(r.reply)).toBe(true);
      expect(r.reply).not.toBe(SOCKS_REPLY.succeeded);
      return;
    }
    expect(r.length).toBeLessThanOrEqual(bytes.length);
    expect(bytes[0]).toBe(0x05);
    expect(bytes[1]).toBe(0x01); // CONNECT only
    expect(r.target.port).toBeGreaterThanOrEqual(1);
    expect(r.target.port).toBeLessThanOrEqual(65535);
    if (r.target.kind === 'ip') expect(net.isIP(r.target.host)).not.toBe(0);
    else expect(r.target.host).toMatch(/^[A-Za-z0-9.-]+$/);
  },
);

test.prop([target, fc.integer({ min: 1, max: 65535 }), fc.uint8Array({ maxLength: 64 })], runs())(
  'a well-formed CONNECT reads back exactly, with any trailing bytes left for the tunnel',
  (t, port, trailing) => {
    const req = encode(0x01, t, port);
    const r = parseRequest(Buffer.concat([req, trailing]));
    expect(r).not.toBe('incomplete');
    if (r === 'incomplete' || 'error' in r) throw new Error(`refused: ${JSON.stringify(r)}`);
    expect(r.length).toBe(req.length);
    expect(r.target.port).toBe(port);
    if (t.kind === 'name') expect(r.target).toEqual({ kind: 'name', host: t.name, port });
    else if (t.kind === 'v4') expect(r.target.host).toBe(t.octets.join('.'));
    else {
      // The same 16 bytes, whatever textual form the parser chose.
      const text = t.groups.map((g) => g.toString(16)).join(':');
      expect(net.isIPv6(r.target.host)).toBe(true);
      expect(new URL(`http://[${r.target.host}]/`).hostname).toBe(new URL(`http://[${text}]/`).hostname);
    }
  },
);

test.prop([target, fc.integer({ min: 1, max: 65535 }), fc.nat()], runs())(
  'every strict prefix of a request is incomplete (the parser waits, never guesses)',
  (t, port, cut) => {
    const req = encode(0x01, t, port);
    const prefix = req.subarray(0, cut % req.length);
    expect(parseRequest(prefix)).toBe('incomplete');
  },
);

test.prop(
  [target, fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 0, max: 255 }).filter((c) => c !== 1)],
  runs(),
)('BIND, UDP ASSOCIATE and unknown commands are refused with "command not supported"', (t, port, cmd) => {
  const r = parseRequest(encode(cmd, t, port));
  expect(r).toMatchObject({ reply: SOCKS_REPLY.commandNotSupported });
});
