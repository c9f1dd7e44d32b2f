// Properties of HBONE CONNECT target validation: the :authority parser (src/common/addr.ts
// parseSocketAddr) and the refusal of mesh ports (src/hbone/constants.ts). Any string gives a
// real IP literal and a port 1–65535 or undefined; never a host name, never a throw; and no mesh
// port is ever a tunnel's destination (issue 12, hole 6: CONNECT to a pod's own :15080 laundered
// identity). Istio's list of ports: shared/reference/istio-ambient.md (ztunnel refuses its own
// ports as inbound targets).
import net from 'node:net';
import { test, fc } from '@fast-check/vitest';
import { expect } from 'vitest';
import { formatSocketAddr, parseSocketAddr } from '../../src/common/addr.js';
import { FORBIDDEN_TARGET_PORTS } from '../../src/common/ports.js';
import { runs } from './runs.js';

const MESH_PORTS = [15000, 15001, 15006, 15008, 15020, 15021, 15053, 15080, 15090];

const authorityish = fc.oneof(
  fc.string({ maxLength: 60 }),
  fc
    .tuple(
      fc.oneof(fc.ipV4(), fc.ipV4Extended(), fc.ipV6(), fc.domain()),
      fc.oneof(fc.integer({ min: -5, max: 70000 }).map(String), fc.string({ maxLength: 6 })),
    )
    .chain(([h, p]) => fc.constantFrom(`${h}:${p}`, `[${h}]:${p}`, `${h}`, `[${h}]${p}`, `${h}:${p}:${p}`)),
);

test.prop([authorityish], runs())(
  'any :authority gives an IP literal and a port 1-65535, or undefined',
  (s) => {
    const r = parseSocketAddr(s);
    if (!r) return;
    expect(net.isIP(r.host)).not.toBe(0);
    expect(Number.isInteger(r.port) && r.port >= 1 && r.port <= 65535).toBe(true);
    // What we parsed formats to an authority that parses to the same target (no second reading).
    expect(parseSocketAddr(formatSocketAddr(r.host, r.port))).toEqual(r);
  },
);

test.prop([fc.oneof(fc.ipV4(), fc.ipV6()), fc.integer({ min: 1, max: 65535 })], runs())(
  'every IP and port formats to an authority that parses back to itself',
  (ip, port) => {
    const r = parseSocketAddr(formatSocketAddr(ip, port));
    expect(r?.port).toBe(port);
    expect(r && net.isIP(r.host)).toBe(net.isIP(ip));
  },
);

test.prop([fc.oneof(fc.ipV4(), fc.ipV6()), fc.constantFrom(...MESH_PORTS)], runs(0.2))(
  'no mesh port is ever an accepted CONNECT target (issue 12 hole 6)',
  (ip, port) => {
    const r = parseSocketAddr(formatSocketAddr(ip, port));
    expect(r).toBeDefined();
    expect(FORBIDDEN_TARGET_PORTS.has(r!.port), `port ${port} accepted as a CONNECT target`).toBe(true);
  },
);
