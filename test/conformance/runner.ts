// Runs one MeshTest against the running mesh the way the suite does: apply its manifests (here:
// write them into the folder the mesh watches, hot reload), then for each case send the request
// until the expected answer comes back RequiredConsecutiveSuccesses times in a row (the suite's
// AwaitConvergence, conformance/utils/http/http.go), the weights check (conformance/utils/weight:
// 500 requests, every answer from an expected backend, each share within ±0.05, up to 10
// tries), then remove the manifests. The suite's 30 s MaxTimeToConsistency is shortened to what a
// local mesh needs.
import { copyFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type { MeshCase, MeshTest, WeightCheck } from './case-types.js';
import { compareAnswer } from './compare.js';
import type { ClientAnswer, MeshClient } from './echo-client.js';
import { MANIFESTS_DIR } from './topology.js';

export const TIMING = {
  /**
   * The suite's default is 30 s. A local mesh applies a file in well under a second (about 20 ms
   * measured); 15 s leaves room for a loaded CI machine and keeps a failing run bounded.
   */
  maxTimeToConsistencyMs: 15_000,
  requiredConsecutiveSuccesses: 3,
  pollIntervalMs: 100,
};
const WEIGHT_REQUESTS = 500;
const WEIGHT_TOLERANCE = 0.05;
const WEIGHT_TRIES = 10;
const WEIGHT_CONCURRENCY = 10;

export interface RunContext {
  configDir: string;
  client(c: MeshCase): MeshClient;
  /** Fills `{echo-v2.podIP}`-style placeholders of a case. */
  resolveHost(host: string | undefined): string | undefined;
  log(line: string): void;
}

/** Applies the test's manifests; returns the function that removes them. */
export async function applyManifests(ctx: RunContext, test: MeshTest): Promise<() => Promise<void>> {
  const written: string[] = [];
  for (const f of test.manifests) {
    const to = path.join(ctx.configDir, `conformance-${f}`);
    await copyFile(path.join(MANIFESTS_DIR, 'tests', 'mesh', f), to);
    written.push(to);
  }
  return async () => {
    for (const f of written) await rm(f, { force: true });
  };
}

/** Resolves when the case converged; throws with the last mismatch when it did not in time. */
export async function awaitCase(ctx: RunContext, c: MeshCase): Promise<void> {
  const req = { ...c.request, host: ctx.resolveHost(c.request.host) };
  const client = ctx.client(c);
  const start = Date.now();
  let successes = 0;
  let attempts = 0;
  let last = '';
  for (;;) {
    attempts++;
    let why: string | undefined;
    try {
      why = compareAnswer(c, await client.send(req));
    } catch (err) {
      why = `request failed: ${(err as Error).message}`;
    }
    if (why === undefined) {
      if (++successes >= TIMING.requiredConsecutiveSuccesses) return;
      continue;
    }
    successes = 0;
    if (why !== last) ctx.log(`  ${c.name}: not yet (${Date.now() - start} ms): ${why}`);
    last = why;
    if (Date.now() - start > TIMING.maxTimeToConsistencyMs) {
      throw new Error(
        `${c.name}: no consistent answer after ${attempts} attempts in ${Date.now() - start} ms: ${why}`,
      );
    }
    await new Promise((r) => setTimeout(r, TIMING.pollIntervalMs));
  }
}

/** The suite's TestWeightedDistributionBatch, retried as the suite does; throws the last error. */
export async function checkWeights(ctx: RunContext, client: MeshClient, w: WeightCheck): Promise<string> {
  const req = { ...w.request, host: ctx.resolveHost(w.request.host) };
  let lastError = '';
  for (let attempt = 1; attempt <= WEIGHT_TRIES; attempt++) {
    const names = await sendMany(client, req, WEIGHT_REQUESTS);
    const err = weightError(names, w.weights);
    if (!err) return `${attempt} round(s): ${shares(names)}`;
    lastError = err;
    ctx.log(`  weights, try ${attempt}/${WEIGHT_TRIES}: ${err}`);
  }
  throw new Error(`weighted distribution: ${lastError}`);
}

async function sendMany(client: MeshClient, req: WeightCheck['request'], n: number): Promise<string[]> {
  const names: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      const a: ClientAnswer = await client.send(req);
      if (a.status !== 200) throw new Error(`status ${a.status} during the weighted batch`);
      names.push(a.echo.hostname ?? '');
    }
  };
  await Promise.all(Array.from({ length: WEIGHT_CONCURRENCY }, worker));
  return names;
}

/** The suite's extractBackendName: a pod name without its last two dash-separated parts. */
export function backendOf(pod: string): string {
  const parts = pod.split('-');
  return parts.length < 3 ? pod : parts.slice(0, -2).join('-');
}

export function weightError(pods: string[], weights: Record<string, number>): string | undefined {
  const seen = new Map<string, number>();
  for (const p of pods) {
    const b = backendOf(p);
    if (!(b in weights)) return `answered by unexpected pod ${p} (backend ${b})`;
    seen.set(b, (seen.get(b) ?? 0) + 1);
  }
  const active = Object.values(weights).filter((w) => w > 0).length;
  const errs: string[] = [];
  if (seen.size !== active) errs.push(`${seen.size} backends got traffic, want ${active}`);
  for (const [b, want] of Object.entries(weights)) {
    const got = (seen.get(b) ?? 0) / pods.length;
    if (Math.abs(got - want) > WEIGHT_TOLERANCE)
      errs.push(`${b} got ${got}, want ${want} ±${WEIGHT_TOLERANCE}`);
  }
  return errs.length ? errs.sort().join('; ') : undefined;
}

function shares(pods: string[]): string {
  const seen = new Map<string, number>();
  for (const p of pods) seen.set(backendOf(p), (seen.get(backendOf(p)) ?? 0) + 1);
  return [...seen].map(([b, n]) => `${b} ${n}/${pods.length}`).join(', ');
}
