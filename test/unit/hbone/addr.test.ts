import { describe, expect, it } from 'vitest';
import { ipFromBytes, ipToBytes, parseSocketAddr } from '../../../src/common/addr.js';

describe('socket address parsing', () => {
  it.each([
    ['127.0.0.1:80', { host: '127.0.0.1', port: 80 }],
    ['[::1]:8080', { host: '::1', port: 8080 }],
    ['10.1.2.3:65535', { host: '10.1.2.3', port: 65535 }],
  ])('parses %s', (s, want) => expect(parseSocketAddr(s)).toEqual(want));

  it.each([
    '',
    'echo:80',
    '127.0.0.1',
    '127.0.0.1:0',
    '127.0.0.1:65536',
    '127.0.0.1:8o',
    '::1:80',
    '[::1]80',
    '1.2.3.4:80:90',
    '[zz]:1',
  ])('rejects %j', (s) => expect(parseSocketAddr(s)).toBeUndefined());
});

describe('IP bytes', () => {
  it.each(['127.0.10.2', '::1', 'fd00::1:2', '2001:db8::', '1:2:3:4:5:6:7:8'])('round-trips %s', (ip) => {
    expect(ipFromBytes(ipToBytes(ip))).toBe(ip);
  });
  it('rejects other lengths', () => expect(ipFromBytes(Buffer.alloc(5))).toBeUndefined());
});
