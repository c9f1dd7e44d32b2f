// The mesh CA root kept in a Secret in the control plane's namespace, as istiod keeps
// `istio-ca-secret` (keys ca-cert.pem and ca-key.pem, type istio.io/ca-root), so every replica
// signs with the same root and a restart keeps it. The first replica to lead creates it; the
// others wait until it exists and read it. Create is itself exclusive (409 AlreadyExists), so
// even a split-brain moment cannot yield two roots: the loser reads the winner's.
// The PEM files are written to the state directory (0600) and loaded through MeshCa's
// operator-files path, which checks that the certificate is a self-signed CA matching the key.
import { mkdir, readFile, rm, writeFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { isConflict, type KubeClient, type RawObject } from '../config/kube-client.js';
import { SECRET } from '../config/kube-resources.js';
import type { KeyAlgorithm } from '../identity/keys.js';
import { MeshCa } from './ca.js';
import type { LeaderElector } from './kube-leader.js';

export const CA_SECRET_NAME = 'istio-ca-secret';
export const CA_SECRET_TYPE = 'istio.io/ca-root';
const CERT_KEY = 'ca-cert.pem';
const KEY_KEY = 'ca-key.pem';

export interface KubeCaOptions {
  client: KubeClient;
  namespace: string;
  secretName?: string;
  elector: LeaderElector;
  stateDir: string;
  trustDomain: string;
  keyAlgorithm?: KeyAlgorithm;
  /** How often a non-leader looks for the Secret while it waits. Default 1 s. */
  pollMs?: number;
  logger: Logger;
}

/** Loads the root from the Secret, creating it (as leader) when absent; waits while another replica does. */
export async function loadOrCreateCaFromSecret(o: KubeCaOptions): Promise<MeshCa> {
  const name = o.secretName ?? CA_SECRET_NAME;
  let waitingLogged = false;
  for (;;) {
    let secret: RawObject | undefined;
    try {
      secret = await o.client.get(SECRET, o.namespace, name);
    } catch (err) {
      o.logger.warn(
        { err: errorMessage(err), secret: `${o.namespace}/${name}` },
        'cannot read the CA root Secret; retrying',
      );
    }
    if (secret) return loadFromSecret(o, name, secret);
    if (o.elector.isLeader()) {
      const created = await createSecret(o, name).catch((err: unknown) => {
        o.logger.warn({ err: errorMessage(err) }, 'cannot create the CA root Secret; retrying');
        return undefined;
      });
      if (created) return loadFromSecret(o, name, created);
    } else if (!waitingLogged) {
      waitingLogged = true;
      o.logger.info(
        { secret: `${o.namespace}/${name}` },
        'CA root Secret absent; waiting for the leader to create it',
      );
    }
    await new Promise((r) => setTimeout(r, o.pollMs ?? 1000));
  }
}

async function createSecret(o: KubeCaOptions, name: string): Promise<RawObject | undefined> {
  // MeshCa makes a root in a scratch state directory; we lift the PEMs out of it.
  const scratch = path.join(o.stateDir, `ca-new-${randomBytes(4).toString('hex')}`);
  try {
    await MeshCa.loadOrCreate({
      stateDir: scratch,
      trustDomain: o.trustDomain,
      keyAlgorithm: o.keyAlgorithm,
      logger: o.logger,
    });
    const [cert, key] = await Promise.all([
      readFile(path.join(scratch, 'ca', 'root-cert.pem'), 'utf8'),
      readFile(path.join(scratch, 'ca', 'root-key.pem'), 'utf8'),
    ]);
    const body = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace: o.namespace, labels: { 'app.kubernetes.io/managed-by': 'ambit' } },
      type: CA_SECRET_TYPE,
      data: { [CERT_KEY]: b64(cert), [KEY_KEY]: b64(key) },
    };
    try {
      const created = await o.client.create(SECRET, o.namespace, body);
      o.logger.info({ secret: `${o.namespace}/${name}` }, 'created the CA root Secret');
      return created;
    } catch (err) {
      if (isConflict(err)) return o.client.get(SECRET, o.namespace, name); // another replica won
      throw err;
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

async function loadFromSecret(o: KubeCaOptions, name: string, secret: RawObject): Promise<MeshCa> {
  const data = (secret.data ?? {}) as Record<string, string>;
  const cert = data[CERT_KEY];
  const key = data[KEY_KEY];
  if (!cert || !key) {
    throw new Error(
      `Secret ${o.namespace}/${name} lacks ${CERT_KEY} or ${KEY_KEY}; fix or delete it (a new root is made when it is absent)`,
    );
  }
  const dir = path.join(o.stateDir, 'ca-secret');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const certFile = path.join(dir, 'root-cert.pem');
  const keyFile = path.join(dir, 'root-key.pem');
  await writeAtomic(keyFile, Buffer.from(key, 'base64'), 0o600);
  await writeAtomic(certFile, Buffer.from(cert, 'base64'), 0o644);
  return MeshCa.loadOrCreate({
    stateDir: o.stateDir,
    trustDomain: o.trustDomain,
    rootCertFile: certFile,
    rootKeyFile: keyFile,
    logger: o.logger,
  });
}

async function writeAtomic(file: string, data: Buffer, mode: number): Promise<void> {
  await writeFile(`${file}.tmp`, data, { mode });
  await rename(`${file}.tmp`, file);
}

function b64(s: string): string {
  return Buffer.from(s).toString('base64');
}
