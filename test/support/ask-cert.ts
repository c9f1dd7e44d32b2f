// A certificate asked of a running control plane the way a node proxy asks for one (its CA client
// with a projected token), for the tests of who may be issued which identity.
import { CONTROL_PLANE_SERVER_NAME } from '../../src/controlplane/server.js';
import { CaClient } from '../../src/identity/ca-client.js';
import { createCsr } from '../../src/identity/csr.js';
import { generateKeyPair } from '../../src/identity/keys.js';

/**
 * Asks the control plane at `host`:15012 (trusting `rootPem`, presenting `token`) to sign a fresh
 * key for namespace/serviceAccount, as a node proxy's CA client does; resolves with the chain.
 */
export async function askCert(
  host: string,
  rootPem: string,
  token: string,
  namespace: string,
  serviceAccount: string,
  ttlSeconds = 600,
): Promise<string[]> {
  const ca = new CaClient({
    address: `${host}:15012`,
    rootCertPem: rootPem,
    token,
    serverName: CONTROL_PLANE_SERVER_NAME,
  });
  try {
    const keys = await generateKeyPair('ECDSA_P256');
    const csr = await createCsr({ trustDomain: 'cluster.local', namespace, serviceAccount }, keys);
    return await ca.createCertificate(csr, ttlSeconds);
  } finally {
    ca.close();
  }
}
