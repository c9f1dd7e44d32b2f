// netns mode's address rule: 127.A.B.C → 10.(200+A).B.C, applied to manifest text.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { rewriteManifestText, toNetnsAddress, toNetnsHostPort } from '../../../src/redirect/address-map.js';
import { ManifestMirror, UnmappableAddressError } from '../../../src/redirect/manifest-mirror.js';

describe('netns address map', () => {
  it.each([
    ['127.0.10.2', '10.200.10.2'],
    ['127.0.0.1', '10.200.0.1'],
    ['127.0.1.1', '10.200.1.1'],
    ['127.55.255.254', '10.255.255.254'],
  ])('maps %s to %s', (from, to) => expect(toNetnsAddress(from)).toBe(to));

  it('refuses addresses it cannot map', () => {
    expect(() => toNetnsAddress('127.56.0.1')).toThrow(/at most 55/);
    expect(() => toNetnsAddress('10.0.0.1')).toThrow(/not a 127/);
  });

  it('maps the host of host:port and leaves other hosts alone', () => {
    expect(toNetnsHostPort('127.0.0.1:15012')).toBe('10.200.0.1:15012');
    expect(toNetnsHostPort('10.1.2.3:15012')).toBe('10.1.2.3:15012');
  });

  it('rewrites every address in a manifest, CIDRs of /16 or longer included', () => {
    const yaml = [
      'status: {podIP: 127.0.10.1}',
      'spec: {clusterIP: "127.0.100.1"}',
      'ipBlocks: [127.0.10.0/24, 127.0.0.0/8]',
      'annotations: {ambit.dev/command: "ambit echo --host 127.0.10.3 --port 8080"}',
      'version: 1127.0.0.12', // not an address
    ].join('\n');
    const { text, warnings, errors } = rewriteManifestText(yaml);
    expect(text).toContain('podIP: 10.200.10.1');
    expect(text).toContain('clusterIP: "10.200.100.1"');
    expect(text).toContain('10.200.10.0/24');
    expect(text).toContain('--host 10.200.10.3');
    expect(text).toContain('1127.0.0.12');
    expect(warnings).toEqual([]);
    // A /8 cannot be mapped exactly: an error (netns mode refuses to start), not a warning.
    expect(errors).toEqual([
      'line 3: 127.0.0.0/8: a prefix shorter than /16 cannot be mapped exactly to netns addresses',
    ]);
  });
});

// Issue 13 divergence 11: an address outside the mapped range (127.A.B.C, A > 55) was "left as
// written" with a warning and the mesh reported ready; inside a pod's namespace such a VIP is the
// pod's own loopback, so traffic to it skipped capture. Now it is an error naming the object.
describe('unmappable addresses are errors naming line and object', () => {
  const manifests = `apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  clusterIP: 127.0.100.1
---
apiVersion: v1
kind: Service
metadata: {name: far, namespace: shop}
spec:
  clusterIP: 127.60.0.1
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-loopback
spec:
  rules: [{from: [{source: {ipBlocks: [127.0.0.0/8]}}]}]
`;
  it('reports each, with its line and object, and maps the rest', () => {
    const { text, errors } = rewriteManifestText(manifests);
    expect(text).toContain('clusterIP: 10.200.100.1');
    expect(errors).toEqual([
      'line 13 (Service shop/far): 127.60.0.1: 127.60.0.1: netns mode maps 127.A.B.C to 10.(200+A).B.C, so A must be at most 55',
      'line 20 (AuthorizationPolicy deny-loopback): 127.0.0.0/8: a prefix shorter than /16 cannot be mapped exactly to netns addresses',
    ]);
  });

  it('names an object whose metadata is a block', () => {
    const text =
      'apiVersion: v1\nkind: Pod\nmetadata:\n  labels: {app: a}\n  name: p1\n  namespace: shop\nstatus:\n  podIP: 127.99.0.1\n';
    expect(rewriteManifestText(text).errors).toEqual([
      expect.stringMatching(/^line 8 \(Pod shop\/p1\): 127\.99\.0\.1: /),
    ]);
  });

  it.each([
    ['127.55.0.1', 0],
    ['127.56.0.1', 1],
    ['127.255.0.1', 1],
    ['127.0.0.0/16', 0],
    ['127.0.0.0/15', 1],
  ])('%s → %i errors', (addr, n) => {
    expect(rewriteManifestText(`x: ${addr}`).errors).toHaveLength(n);
  });
});

describe('ManifestMirror with an unmappable address', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ambit-mirror-'));
    await mkdir(path.join(dir, 'src'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const svc = (ip: string) =>
    `apiVersion: v1\nkind: Service\nmetadata: {name: far, namespace: shop}\nspec: {clusterIP: ${ip}}\n`;

  it('refuses to start, naming file, line and object', async () => {
    await writeFile(path.join(dir, 'src', 'services.yaml'), svc('127.60.0.1'));
    const mirror = new ManifestMirror({ sourceDir: path.join(dir, 'src'), mirrorDir: path.join(dir, 'm') });
    const err = await mirror.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    mirror.stop();
    expect(err).toBeInstanceOf(UnmappableAddressError);
    expect((err as UnmappableAddressError).places).toEqual([
      'services.yaml: line 4 (Service shop/far): 127.60.0.1: 127.60.0.1: netns mode maps 127.A.B.C to 10.(200+A).B.C, so A must be at most 55',
    ]);
  });

  it('after the start, keeps the last mapped version of a file that gains one, and says so', async () => {
    await writeFile(path.join(dir, 'src', 'services.yaml'), svc('127.0.60.1'));
    const warnings: string[] = [];
    const mirror = new ManifestMirror({
      sourceDir: path.join(dir, 'src'),
      mirrorDir: path.join(dir, 'm'),
      onWarning: (w) => warnings.push(w),
      debounceMs: 1,
    });
    await mirror.start();
    try {
      await writeFile(path.join(dir, 'src', 'services.yaml'), svc('127.60.0.1'));
      for (let i = 0; i < 100 && warnings.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      await mirror.flush();
      expect(warnings).toEqual([
        expect.stringContaining('services.yaml: line 4 (Service shop/far): 127.60.0.1'),
      ]);
      expect(await readFile(path.join(dir, 'm', 'services.yaml'), 'utf8')).toContain(
        'clusterIP: 10.200.60.1',
      );
    } finally {
      mirror.stop();
    }
  });
});
