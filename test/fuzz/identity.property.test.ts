// "No identity from an unverified chain", as properties: the SPIFFE id of a TLS peer exists only
// when the chain verified against the mesh root (src/hbone/tls.ts peerSpiffeId, with a real
// handshake over loopback), SPIFFE parsing is exact (no normalization that could make two
// strings one identity: SPIFFE-ID §2), and certificate text of any shape yields an id or
// nothing, never a throw (src/identity/spiffe.ts).
import tls from 'node:tls';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { test, fc } from '@fast-check/vitest';
import { afterAll, beforeAll, expect } from 'vitest';
import { peerSpiffeId } from '../../src/hbone/tls.js';
import * as spiffe from '../../src/identity/spiffe.js';
import { formatSpiffeId, parseSpiffeId, spiffeIdFromCert } from '../../src/identity/spiffe.js';
import { foreignCert, type TestCert } from '../support/certs.js';
import { runs } from './runs.js';

const ID = { trustDomain: 'cluster.local', namespace: 'demo', serviceAccount: 'a' };
let mesh: TestCert;
let other: TestCert; // same identity, same trust domain, another root: the attacker's own CA
let server: tls.Server;
const seen: (string | undefined)[] = [];

beforeAll(async () => {
  [mesh, other] = await Promise.all([foreignCert(ID), foreignCert(ID)]);
  // rejectUnauthorized false on purpose: the property is that the identity code itself refuses an
  // unverified peer, not only that the handshake setting does.
  server = tls.createServer(
    {
      key: mesh.keyPem,
      cert: mesh.certChainPem.join('\n'),
      ca: mesh.rootPem,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.3',
    },
    (s) => {
      seen.push(peerSpiffeId(s));
      s.end();
    },
  );
  server.listen(0, '127.0.180.1');
  await once(server, 'listening');
});
afterAll(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

test.prop([fc.constantFrom('mesh', 'other', 'none')], runs(0.05))(
  'a TLS peer has a SPIFFE id only when its chain verifies against the mesh root',
  async (which) => {
    const c = which === 'mesh' ? mesh : which === 'other' ? other : undefined;
    const before = seen.length;
    const s = tls.connect({
      host: '127.0.180.1',
      port: (server.address() as AddressInfo).port,
      ...(c ? { key: c.keyPem, cert: c.certChainPem.join('\n') } : {}),
      rejectUnauthorized: false,
      minVersion: 'TLSv1.3',
    });
    s.on('error', () => {});
    s.resume();
    await once(s, 'close');
    while (seen.length === before) await new Promise((r) => setTimeout(r, 5));
    expect(seen[before]).toBe(which === 'mesh' ? mesh.spiffeId : undefined);
  },
);

const segment = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9._-]{1,12}$/),
  fc.constantFrom('', '.', '..', 'a/b', 'A', '%2e', 'x?y', 'x#y'),
);
const uriish = fc.oneof(
  fc.string({ maxLength: 80 }),
  fc
    .tuple(
      fc.constantFrom('spiffe://', 'SPIFFE://', 'spiffe:/', 'spiffe:///'),
      segment,
      fc.constantFrom('ns', 'NS', 'sa'),
      segment,
      fc.constantFrom('sa', 'ns'),
      segment,
      fc.constantFrom('', '/', '/x', ':443'),
    )
    .map(([s, td, k1, ns, k2, sa, tail]) => `${s}${td.toLowerCase()}/${k1}/${ns}/${k2}/${sa}${tail}`),
);

test.prop([uriish], runs())('a SPIFFE id parses only when it is already its one canonical spelling', (u) => {
  const id = parseSpiffeId(u);
  if (id) expect(formatSpiffeId(id)).toBe(u);
});

test.prop(
  [
    fc.oneof(
      fc.string({ maxLength: 200 }),
      fc
        .uint8Array({ maxLength: 200 })
        .map(
          (b) =>
            `-----BEGIN CERTIFICATE-----\n${Buffer.from(b).toString('base64')}\n-----END CERTIFICATE-----\n`,
        ),
    ),
  ],
  runs(0.5),
)('certificate input of any shape gives an id or nothing, never a throw', (text) => {
  expect(spiffeIdFromCert(text)).toBeUndefined();
});

// H5's DER reader of URI SANs (certUriSans), when present: bytes of any shape give a list or
// undefined, never a throw. Looked up by name so this file runs before and after it lands.
const certUriSans = (spiffe as Record<string, unknown>).certUriSans as
  ((der: Uint8Array) => string[] | undefined) | undefined;
test.prop([fc.uint8Array({ maxLength: 600 })], runs())(
  'DER of any shape gives URI SANs or nothing, never a throw',
  (der) => {
    if (!certUriSans) return;
    const r = certUriSans(der);
    if (r !== undefined) expect(Array.isArray(r)).toBe(true);
  },
);
