import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { loadNativeAddon, socketFd } from '../../../src/redirect/native.js';

const dirs: string[] = [];
function addonDir(files: Record<string, string> = {}): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'ambit-native-'));
  dirs.push(dir);
  writeFileSync(path.join(dir, 'binding.gyp'), '{}');
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), content);
  }
  return dir;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe.runIf(process.platform === 'linux')('loadNativeAddon when the addon is missing', () => {
  it('names the missing file when the build never ran', () => {
    const dir = addonDir();
    const r = loadNativeAddon(dir);
    expect(r.addon).toBeUndefined();
    expect('reason' in r && r.reason).toMatch(
      /^addon not built: .*build\/Release\/ambit_native\.node is missing/,
    );
  });

  it('gives the reason the install-time build recorded (no C compiler)', () => {
    const dir = addonDir({
      'build/status.json': JSON.stringify({ ok: false, reason: 'no C compiler found (cc)' }),
    });
    const r = loadNativeAddon(dir);
    expect('reason' in r && r.reason).toMatch(/^addon not built: no C compiler found \(cc\)/);
  });

  it('gives the reason when node headers were missing', () => {
    const reason = 'node headers not found (/opt/node/include/node/node_api.h)';
    const dir = addonDir({ 'build/status.json': JSON.stringify({ ok: false, reason }) });
    const r = loadNativeAddon(dir);
    expect('reason' in r && r.reason).toContain(`addon not built: ${reason}`);
  });

  it('reports the load error of a broken addon file instead of crashing', () => {
    const dir = addonDir({ 'build/Release/ambit_native.node': 'not an ELF file' });
    const r = loadNativeAddon(dir);
    expect('reason' in r && r.reason).toMatch(/failed to load: /);
  });
});

describe('the helpers without an addon', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.resetModules();
  });

  it('nativeStatus says what is missing, and every helper throws NATIVE_UNAVAILABLE', async () => {
    vi.stubEnv(
      'AMBIT_NATIVE_DIR',
      addonDir({ 'build/status.json': JSON.stringify({ ok: false, reason: 'no C compiler found (cc)' }) }),
    );
    vi.resetModules();
    const native = await import('../../../src/redirect/native.js');
    const status = native.nativeStatus();
    expect(status.ok).toBe(false);
    if (process.platform === 'linux')
      expect(!status.ok && status.reason).toMatch(/^addon not built: no C compiler found \(cc\)/);
    await expect(native.listenInNetns('/var/run/netns/x', '127.0.50.1', 0)).rejects.toMatchObject({
      code: 'NATIVE_UNAVAILABLE',
      message: expect.stringContaining('native socket helpers unavailable'),
    });
    await expect(native.connectInNetns(null, '127.0.50.1', 1)).rejects.toMatchObject({
      code: 'NATIVE_UNAVAILABLE',
    });
    await expect(native.udpSocketInNetns(null, '127.0.50.1', 0)).rejects.toMatchObject({
      code: 'NATIVE_UNAVAILABLE',
    });
    expect(() => native.originalDst(new net.Socket())).toThrow(
      expect.objectContaining({ code: 'NATIVE_UNAVAILABLE' }),
    );
    expect(() => native.setMark(new net.Socket(), 1)).toThrow(
      expect.objectContaining({ code: 'NATIVE_UNAVAILABLE' }),
    );
  });
});

describe('socketFd', () => {
  it('refuses a socket that has no descriptor', () => {
    expect(() => socketFd(new net.Socket())).toThrow(expect.objectContaining({ code: 'NATIVE_NO_FD' }));
  });

  it('reads the descriptor of a listening server', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.50.1', r));
    try {
      if (process.platform !== 'win32') expect(socketFd(server)).toBeGreaterThanOrEqual(0);
    } finally {
      server.close();
    }
  });
});
