import { mkdtemp, rm, writeFile, rename, utimes, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ensureAdminToken,
  readAdminToken,
  tokenFromFile,
  tokenMatches,
  tokenOf,
} from '../../../src/common/token.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('tokenFromFile', () => {
  it('re-reads a token replaced on disk (as the kubelet rotates projected tokens) and keeps the last on error', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'ambit-token-'));
    dirs.push(dir);
    const file = path.join(dir, 'token');
    await writeFile(file, 'first\n');
    const token = tokenFromFile(file);
    expect(token()).toBe('first');
    // Atomic replacement, as the kubelet does it, with a later mtime.
    await writeFile(path.join(dir, 'next'), 'second-token\n');
    await rename(path.join(dir, 'next'), file);
    const later = new Date(Date.now() + 5000);
    await utimes(file, later, later);
    expect(token()).toBe('second-token');
    await rm(file);
    expect(token()).toBe('second-token');
    expect(tokenOf(token)).toBe('second-token');
    expect(tokenOf('fixed')).toBe('fixed');
  });

  it('fails at once when the file cannot be read at start', () => {
    expect(() => tokenFromFile('/nonexistent/ambit/token')).toThrow(/ENOENT/);
  });
});

describe('admin token', () => {
  it('is created once per state directory, random, mode 0600, and read back by every process', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'ambit-admin-token-'));
    dirs.push(dir);
    const state = path.join(dir, 'state');
    expect(readAdminToken(state)).toBeUndefined();
    const first = ensureAdminToken(state);
    expect(first).toMatch(/^[0-9a-f]{64}$/);
    expect(ensureAdminToken(state)).toBe(first);
    expect(readAdminToken(state)).toBe(first);
    expect((await stat(path.join(state, 'admin.token'))).mode & 0o777).toBe(0o600);
    const other = path.join(dir, 'other');
    expect(ensureAdminToken(other)).not.toBe(first);
  });

  it('matches only the exact token', () => {
    expect(tokenMatches('abc', 'abc')).toBe(true);
    expect(tokenMatches('abd', 'abc')).toBe(false);
    expect(tokenMatches('abc ', 'abc')).toBe(false);
    expect(tokenMatches('', '')).toBe(false);
  });
});
