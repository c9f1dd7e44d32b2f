// CaClient while the CA is away (issue 12 "slow return"): gRPC's own channel backoff grows
// towards 120 s by default (1 s × 1.6ⁿ: gaps of 4 s and more within 10 s), and while it waits
// every CSR fails fast with UNAVAILABLE, so certificates came back long after the CA did. Capped
// at 2 s, the client tries again at least every ~2.4 s (gRPC adds ±20 % jitter). Measured as the
// gaps between TCP connection attempts at a dead CA address on 127.0.164.1, with the certificate
// manager's pattern of asking again and again.
import net from 'node:net';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MeshCa } from '../../../src/controlplane/ca.js';
import { CaClient } from '../../../src/identity/ca-client.js';

const HOST = '127.0.164.1';

/** A "CA" that accepts TCP and hangs up at once, recording when each attempt came. */
async function deadCa(): Promise<{ server: net.Server; port: number; attempts: number[] }> {
  const attempts: number[] = [];
  const server = net.createServer((s) => {
    attempts.push(Date.now());
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(0, HOST, r));
  return { server, port: (server.address() as net.AddressInfo).port, attempts };
}

describe('CaClient while the CA is unreachable', () => {
  it("keeps trying at least every ~2.4 s (channel backoff capped at 2 s), not at gRPC's growing default", async () => {
    const ca = await MeshCa.loadOrCreate({
      stateDir: await mkdtemp(path.join(tmpdir(), 'ambit-ca-client-')),
      trustDomain: 'cluster.local',
    });
    const dead = await deadCa();
    const client = new CaClient({ address: `${HOST}:${dead.port}`, rootCertPem: ca.rootCertPem, token: 't' });
    const start = Date.now();
    try {
      for (const end = start + 10_000; Date.now() < end;) {
        await client.createCertificate('csr', 60).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      client.close();
      dead.server.close();
    }
    const times = [start, ...dead.attempts, Date.now()];
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    expect(dead.attempts.length).toBeGreaterThanOrEqual(4);
    expect(Math.max(...gaps)).toBeLessThan(3000);
  }, 20_000);
});
