// netns mode's address rule: 127.A.B.C → 10.(200+A).B.C, applied to manifest text.
import { describe, expect, it } from 'vitest';
import { rewriteManifestText, toNetnsAddress, toNetnsHostPort } from '../../../src/redirect/address-map.js';

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
    const { text, warnings } = rewriteManifestText(yaml);
    expect(text).toContain('podIP: 10.200.10.1');
    expect(text).toContain('clusterIP: "10.200.100.1"');
    expect(text).toContain('10.200.10.0/24');
    expect(text).toContain('127.0.0.0/8'); // left as written
    expect(text).toContain('--host 10.200.10.3');
    expect(text).toContain('1127.0.0.12');
    expect(warnings).toEqual([expect.stringMatching(/127\.0\.0\.0\/8: a prefix shorter than \/16/)]);
  });
});
