// Fuzz target: HBONE CONNECT request validation as hbone/server.ts applies it (method CONNECT,
// :authority parsed by common/addr.ts parseSocketAddr, mesh ports refused, the pod's own IP
// only). The validation steps are inline in HboneServer.onStream; this target runs the same
// exported pieces in the same order. A throw, or an accepted target that is not an IP literal of
// this pod on a non-mesh port 1–65535, is a finding.
import net from 'node:net';
import { parseSocketAddr } from '../../dist/common/addr.js';
import { FORBIDDEN_TARGET_PORTS } from '../../dist/common/ports.js';

const POD_IP = '127.0.180.12';
const METHODS = ['CONNECT', 'GET', 'connect', 'POST', ''];

function validate(method, authority) {
  if (method !== 'CONNECT') return { status: 400 };
  const target = typeof authority === 'string' ? parseSocketAddr(authority) : undefined;
  if (!target) return { status: 400 };
  if (FORBIDDEN_TARGET_PORTS.has(target.port)) return { status: 400 };
  if (target.host !== POD_IP) return { status: 400 };
  return { target };
}

export function fuzz(data) {
  const buf = Buffer.from(data);
  const method = METHODS[(buf[0] ?? 0) % METHODS.length];
  const authority = buf.subarray(1).toString('latin1');
  const r = validate(method, authority);
  if (!r.target) return;
  const { host, port } = r.target;
  if (net.isIP(host) === 0 || host !== POD_IP)
    throw new Error(`accepted host ${JSON.stringify(host)} from ${JSON.stringify(authority)}`);
  if (!(port >= 1 && port <= 65535) || FORBIDDEN_TARGET_PORTS.has(port))
    throw new Error(`accepted port ${port}`);
  if (![`${host}:${port}`, `[${host}]:${port}`].some((a) => parseSocketAddr(a)?.port === port))
    throw new Error(`target ${host}:${port} does not format back`);
}

export const seeds = [
  Buffer.from('\x00127.0.180.12:8080', 'latin1'),
  Buffer.from('\x00127.0.180.12:15080', 'latin1'),
  Buffer.from('\x00[::1]:80', 'latin1'),
  Buffer.from('\x00127.0.180.12:08080', 'latin1'),
];
