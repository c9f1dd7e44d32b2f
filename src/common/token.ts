// A bearer token that may change while the process runs: Kubernetes projected service-account
// tokens are rotated by the kubelet (they expire), so callers read it at each use.
import { readFileSync, statSync } from 'node:fs';

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
