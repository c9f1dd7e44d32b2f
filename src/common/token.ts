// Bearer tokens: one that may change while the process runs (Kubernetes projected service-account
// tokens are rotated by the kubelet, so callers read it at each use), and the state directory's
// admin token that guards the admin and debug endpoints (telemetry/admin-guard.ts).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export type TokenSource = string | (() => string);

export const tokenOf = (t: TokenSource): string => (typeof t === 'string' ? t : t());

/**
 * The token in `file`, re-read whenever the file's mtime or size changes (the kubelet replaces
 * it atomically). If the file becomes unreadable the last token read is kept and used.
 */
export function tokenFromFile(file: string): () => string {
  let token = readFileSync(file, 'utf8').trim();
  let stamp = '';
  return () => {
    try {
      const st = statSync(file);
      const now = `${st.mtimeMs}:${st.size}`;
      if (now !== stamp) {
        token = readFileSync(file, 'utf8').trim();
        stamp = now;
      }
    } catch {
      // keep the last token: the next call tries again
    }
    return token;
  };
}

/**
 * The admin token of a state directory: the bearer token every admin and debug endpoint of the
 * run asks for (node proxies' 15000, the control plane's 15014 /debug/*), and that `ambit ctl`
 * and `ambit dashboard` read from the same directory. One per state directory, not one per
 * process: whoever can read the state directory already holds every node token (and so every
 * identity), so a finer split would protect nothing and make `ctl` guess files.
 */
export const ADMIN_TOKEN_FILE = 'admin.token';
/** Overrides the file for `ambit ctl` / `ambit dashboard` (e.g. a token copied off a Kubernetes node). */
export const ADMIN_TOKEN_ENV = 'AMBIT_ADMIN_TOKEN';

const adminTokenPath = (stateDir: string) => path.join(stateDir, ADMIN_TOKEN_FILE);

/**
 * The state directory's admin token, created (random 32 bytes, hex, mode 0600, the directory
 * 0700) by the first process that needs it. Synchronous: it runs once at start-up, before any
 * listener exists. `wx` makes two processes starting together agree on the first one written.
 */
export function ensureAdminToken(stateDir: string): string {
  const existing = readAdminToken(stateDir);
  if (existing) return existing;
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const token = randomBytes(32).toString('hex');
  try {
    writeFileSync(adminTokenPath(stateDir), token + '\n', { mode: 0o600, flag: 'wx' });
    return token;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const winner = readAdminToken(stateDir);
    if (!winner)
      throw new Error(`admin token ${adminTokenPath(stateDir)} exists but is empty`, { cause: err });
    return winner;
  }
}

/** The admin token in `stateDir`, or undefined when there is none (never created, or unreadable). */
export function readAdminToken(stateDir: string): string | undefined {
  try {
    return readFileSync(adminTokenPath(stateDir), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Compares a presented token with the expected one in constant time (digests: equal lengths). */
export function tokenMatches(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b) && expected.length > 0;
}
