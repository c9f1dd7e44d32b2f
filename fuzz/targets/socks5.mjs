// Fuzz target: the SOCKS5 request parser (nodeproxy/socks5.ts parseRequest), RFC 1928 §4. Any bytes
// must give 'incomplete', a refusal with a non-success reply code, or a CONNECT target that is an
// IP literal or a plain host name on port 1–65535 within the bytes read; a throw is a finding.
import net from 'node:net';
import { parseRequest, SOCKS_REPLY } from '../../dist/nodeproxy/socks5.js';

const codes = new Set(Object.values(SOCKS_REPLY));

export function fuzz(data) {
  const buf = Buffer.from(data);
  const r = parseRequest(buf);
  if (r === 'incomplete') return;
  if ('error' in r) {
    if (!codes.has(r.reply) || r.reply === SOCKS_REPLY.succeeded)
      throw new Error(`refusal with reply ${r.reply}`);
    return;
  }
  const { target, length } = r;
  if (!(length > 0 && length <= buf.length)) throw new Error(`length ${length} of ${buf.length} bytes`);
  if (buf[1] !== 0x01) throw new Error(`command ${buf[1]} accepted`);
  if (!(target.port >= 1 && target.port <= 65535)) throw new Error(`port ${target.port}`);
  if (target.kind === 'ip' && net.isIP(target.host) === 0) throw new Error(`ip target ${target.host}`);
  if (target.kind === 'name' && !/^[A-Za-z0-9.-]+$/.test(target.host))
    throw new Error(`name ${JSON.stringify(target.host)}`);
}

/** Inputs the random engine mutates (jazzer starts from fuzz/corpus/socks5 when present). */
export const seeds = [
  Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90]),
  Buffer.from([5, 1, 0, 3, 4, ...Buffer.from('echo'), 0x1f, 0x90]),
  Buffer.from([5, 1, 0, 4, ...Array(15).fill(0), 1, 0, 80]),
  Buffer.from([5, 2, 0, 1, 10, 0, 0, 1, 0, 0]),
];
