// Local-mode node authentication. In Kubernetes a node proxy proves who it is with a projected
// service-account token checked by TokenReview; on a laptop there is no API server, so `ambit up`
// writes one random token per node into the state directory and the node proxy presents it as
// `authorization: Bearer <token>`. Whoever can read the state directory can act as any node,
// which is the same trust a local user already has over every process of the run.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Metadata } from '@grpc/grpc-js';

const TOKEN_SUFFIX = '.token';
/** Node names become file names: allow Kubernetes object names only, so no `..` or `/`. */
const NODE_NAME_RE = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const RELOAD_INTERVAL_MS = 1000;

function tokenFile(stateDir: string, nodeName: string): string {
  if (!NODE_NAME_RE.test(nodeName)) throw new RangeError(`invalid node name ${JSON.stringify(nodeName)}`);
  return path.join(stateDir, 'nodes', nodeName + TOKEN_SUFFIX);
}

/** Returns the node's token, creating `<stateDir>/nodes/<node>.token` (mode 0600) the first time. */
export async function ensureNodeToken(stateDir: string, nodeName: string): Promise<string> {
  const file = tokenFile(stateDir, nodeName);
  const existing = await readNodeToken(stateDir, nodeName);
  if (existing) return existing;
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const token = randomBytes(32).toString('hex');
  try {
    // 'wx': if two starters race, the first token written wins and both return it. No trailing
    // newline, as a Kubernetes token file: ztunnel sends AUTH_TOKEN's bytes verbatim after
    // "Bearer " (its identity/auth.rs), and a newline is not allowed in a header value.
    await writeFile(file, token, { mode: 0o600, flag: 'wx' });
    return token;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const winner = await readNodeToken(stateDir, nodeName);
    if (!winner) throw new Error(`node token ${file} exists but is empty`, { cause: err });
    return winner;
  }
}

/** The node's token, or undefined when it has none yet. */
export async function readNodeToken(stateDir: string, nodeName: string): Promise<string | undefined> {
  try {
    const token = (await readFile(tokenFile(stateDir, nodeName), 'utf8')).trim();
    return token || undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

interface KnownToken {
  node: string;
  /** SHA-256 of the token: fixed length, so comparing never reveals a token's length. */
  digest: Buffer;
}

/** Maps `authorization: Bearer <token>` to a node name using the tokens in `<stateDir>/nodes/`. */
export class LocalNodeAuthenticator {
  private readonly dir: string;
  private tokens: KnownToken[] = [];
  private loadedAt = -Infinity;

  constructor(stateDir: string) {
    this.dir = path.join(stateDir, 'nodes');
    this.reload();
  }

  /** The authenticated node's name, or undefined for a missing, malformed or unknown token. */
  authenticate(metadata: Metadata): string | undefined {
    const token = bearerToken(metadata);
    if (!token) return undefined;
    const digest = createHash('sha256').update(token).digest();
    const node = this.match(digest);
    if (node !== undefined) return node;
    // A node started after us has a token we have not read yet. Re-reading at most once per
    // second keeps a flood of bad tokens from turning into a flood of directory scans.
    if (Date.now() - this.loadedAt < RELOAD_INTERVAL_MS) return undefined;
    this.reload();
    return this.match(digest);
  }

  /** Compares against every known token, without stopping early, so timing reveals nothing. */
  private match(digest: Buffer): string | undefined {
    let found: string | undefined;
    for (const t of this.tokens) if (timingSafeEqual(t.digest, digest) && found === undefined) found = t.node;
    return found;
  }

  // Synchronous on purpose: authenticate() is called from a gRPC handler that must answer with a
  // node name, the directory holds one small file per node, and reloads are rate limited.
  private reload(): void {
    this.loadedAt = Date.now();
    let names: string[];
    try {
      names = readdirSync(this.dir).filter((f) => f.endsWith(TOKEN_SUFFIX));
    } catch {
      names = []; // no nodes yet
    }
    const tokens: KnownToken[] = [];
    for (const name of names) {
      try {
        const token = readFileSync(path.join(this.dir, name), 'utf8').trim();
        if (token) {
          tokens.push({
            node: name.slice(0, -TOKEN_SUFFIX.length),
            digest: createHash('sha256').update(token).digest(),
          });
        }
      } catch {
        // a file removed between readdir and read: that node is gone
      }
    }
    this.tokens = tokens;
  }
}

function bearerToken(metadata: Metadata): string | undefined {
  const values = metadata.get('authorization');
  if (values.length !== 1) return undefined;
  const value = values[0];
  if (typeof value !== 'string') return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(value);
  return m?.[1];
}

/** The header ztunnel sends beside its token (ztunnel identity/auth.rs; istiod's `clusterIDMeta`). */
export const CLUSTER_ID_HEADER = 'clusterid';

/**
 * Why a caller's `clusterid` header disqualifies it, or undefined. istiod
 * (security/pkg/server/ca/authenticate/kubeauth/kube_jwt.go, getKubeClient) checks a token against
 * the cluster the caller names, and refuses a cluster it does not know ("client claims to be in
 * cluster X, but we only know about local cluster Y"); no header means the local cluster. ambit
 * knows one cluster, so a token is only ever valid for it: a caller naming another is refused
 * before its token is looked at. Unlike istiod, more than one value is refused too (istiod reads
 * them as no header): a caller that sends two cluster names is not one we understand.
 */
export function clusterIdRefusal(metadata: Metadata, clusterId: string): string | undefined {
  const values = metadata.get(CLUSTER_ID_HEADER);
  if (values.length === 0) return undefined;
  if (values.length > 1) return `${values.length} ${CLUSTER_ID_HEADER} headers`;
  const claimed = values[0];
  if (typeof claimed !== 'string') return `${CLUSTER_ID_HEADER} header is not text`;
  // istiod reads an empty value as no claim (getKubeClient: `clusterID == ""`).
  if (claimed === clusterId || claimed === '') return undefined;
  return `client claims to be in cluster ${JSON.stringify(claimed)}, but this control plane serves cluster ${JSON.stringify(clusterId)}`;
}
