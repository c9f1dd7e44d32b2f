// TokenReviewAuthenticator's caches (issue 12: "TokenReview: a short negative cache"): a refused
// token is not reviewed again for a few seconds, concurrent asks share one review, an API failure
// is not cached, and a good token is cached no longer than its own `exp`. The API server here is a
// counting stand-in for `client.create` (the fake API server cannot mint JWT-shaped tokens); the
// end-to-end flood is in test/adversarial/controlplane.test.ts.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Metadata } from '@grpc/grpc-js';
import { TokenReviewAuthenticator } from '../../../src/controlplane/kube-token-review.js';
import type { KubeClient } from '../../../src/config/kube-client.js';
import { captureLogger } from '../../support/capture-logger.js';

const NODE_USER = {
  username: 'system:serviceaccount:ambit-system:ambit-node',
  extra: {
    'authentication.kubernetes.io/pod-name': ['node-pod'],
    'authentication.kubernetes.io/pod-uid': ['uid-1'],
    'authentication.kubernetes.io/node-name': ['node-1'],
  },
};

function setup(answer: (token: string) => unknown) {
  const calls: string[] = [];
  const client = {
    create: async (_t: unknown, _ns: unknown, body: { spec: { token: string } }) => {
      calls.push(body.spec.token);
      await new Promise((r) => setTimeout(r, 5));
      return answer(body.spec.token);
    },
  } as unknown as KubeClient;
  const { logger, lines } = captureLogger();
  const auth = new TokenReviewAuthenticator({
    client,
    trustedNodeAccounts: ['ambit-system/ambit-node'],
    lookupPod: () => ({ uid: 'uid-1', nodeName: 'node-1', serviceAccountName: 'ambit-node' }),
    logger,
  });
  return { auth, calls, lines };
}

const md = (token: string) => {
  const m = new Metadata();
  m.set('authorization', `Bearer ${token}`);
  return m;
};
const jwt = (exp: number) =>
  ['e30', Buffer.from(JSON.stringify({ exp })).toString('base64url'), 'sig'].join('.');

afterEach(() => vi.useRealTimers());

describe('TokenReview caches', () => {
  it('a refused token is refused from the negative cache for 5 s, then reviewed again', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const { auth, calls, lines } = setup(() => ({ status: { authenticated: false, error: 'bad' } }));
    const results = await Promise.all(Array.from({ length: 50 }, () => auth.authenticate(md('bad'))));
    expect(results.every((r) => r === undefined)).toBe(true);
    expect(calls).toHaveLength(1); // single-flight
    expect(await auth.authenticate(md('bad'))).toBeUndefined();
    expect(calls).toHaveLength(1); // negative cache
    expect(lines.filter((l) => l.msg === 'node authentication refused')).toHaveLength(1);
    vi.setSystemTime(Date.now() + 5_001);
    expect(await auth.authenticate(md('bad'))).toBeUndefined();
    expect(calls).toHaveLength(2);
  });

  it('an API server failure is not cached: the next ask reviews again', async () => {
    let fail = true;
    const { auth, calls } = setup(() => {
      if (fail) throw new Error('connect ECONNREFUSED');
      return { status: { authenticated: true, audiences: ['istio-ca'], user: NODE_USER } };
    });
    expect(await auth.authenticate(md('t'))).toBeUndefined();
    fail = false;
    expect(await auth.authenticate(md('t'))).toBe('node-1');
    expect(calls).toHaveLength(2);
  });

  it('a good token is cached, but never past its exp', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const now = Date.now();
    const token = jwt(Math.floor(now / 1000) + 2); // expires in ~2 s, long before the 30 s cache
    const { auth, calls } = setup(() => ({
      status: { authenticated: true, audiences: ['istio-ca'], user: NODE_USER },
    }));
    expect(await auth.authenticate(md(token))).toBe('node-1');
    expect(await auth.authenticate(md(token))).toBe('node-1');
    expect(calls).toHaveLength(1);
    vi.setSystemTime(now + 3_000);
    expect(await auth.authenticate(md(token))).toBe('node-1');
    expect(calls).toHaveLength(2);
  });
});
