import { describe, expect, it } from 'vitest';
import { parseRequest, SOCKS_REPLY } from '../../../src/nodeproxy/socks5.js';

const req = (...bytes: number[]) => Buffer.from(bytes);
const domain = (name: string, port: number) =>
  Buffer.concat([
    Buffer.from([5, 1, 0, 3, name.length]),
    Buffer.from(name),
    Buffer.from([port >> 8, port & 255]),
  ]);

describe('SOCKS5 request parsing', () => {
  it.each([
    [
      'IPv4 CONNECT',
      req(5, 1, 0, 1, 127, 0, 10, 2, 0x1f, 0x90),
      { kind: 'ip', host: '127.0.10.2', port: 8080 },
      10,
    ],
    ['domain CONNECT', domain('echo.demo', 8080), { kind: 'name', host: 'echo.demo', port: 8080 }, 7 + 9],
    [
      'IPv6 CONNECT',
      req(5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80),
      { kind: 'ip', host: '::1', port: 80 },
      22,
    ],
  ])('parses %s', (_name, buf, target, length) => {
    expect(parseRequest(buf)).toEqual({ target, length });
  });

  it.each([
    ['a partial header', req(5, 1, 0)],
    ['a partial IPv4 address', req(5, 1, 0, 1, 127, 0)],
    ['a domain without its port', Buffer.concat([Buffer.from([5, 1, 0, 3, 4]), Buffer.from('echo')])],
  ])('waits for more bytes on %s', (_name, buf) => {
    expect(parseRequest(buf)).toBe('incomplete');
  });

  it.each([
    ['BIND', req(5, 2, 0, 1, 127, 0, 0, 1, 0, 80), SOCKS_REPLY.commandNotSupported],
    ['UDP ASSOCIATE', req(5, 3, 0, 1, 127, 0, 0, 1, 0, 80), SOCKS_REPLY.commandNotSupported],
    ['an unknown address type', req(5, 1, 0, 9, 1, 2, 3, 4, 0, 80), SOCKS_REPLY.addressTypeNotSupported],
    ['a wrong version', req(4, 1, 0, 1, 127, 0, 0, 1, 0, 80), SOCKS_REPLY.generalFailure],
    ['port 0', req(5, 1, 0, 1, 127, 0, 0, 1, 0, 0), SOCKS_REPLY.generalFailure],
    ['a domain with bad characters', domain('a b', 80), SOCKS_REPLY.hostUnreachable],
    ['an empty domain', domain('', 80), SOCKS_REPLY.hostUnreachable],
  ])('rejects %s with the right reply code', (_name, buf, reply) => {
    const r = parseRequest(buf);
    expect(r).toMatchObject({ reply });
  });
});
