// The benchmark chart: renders a sample suite result to a PNG and checks that it is a real,
// non-blank picture of the expected size. No pixel-exact comparison: fonts and anti-aliasing
// may differ between renderer versions.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inflateSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
// @ts-expect-error: plain ESM module without type declarations
import { chartSvg, formatValue, renderChart } from './chart.mjs';

const paths = ['direct', 'stunnel pair', 'nghttpx pair', 'ambit'];
const colours = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759'];

function sampleResult() {
  const measurements = [];
  const tests: [string, string, number[]][] = [
    ['bulk 1 stream', 'MiB/s', [2400, 610, 380, 520]],
    ['bulk 8 streams', 'MiB/s', [3100, 900, 450, 700]],
    ['http 50 conns (closed loop)', 'req/s', [52000, 26000, 14000, 24000]],
    ['new connections', 'conn/s', [9000, 1800, 1100, 6200]],
  ];
  for (const [test, unit, vals] of tests)
    for (const [i, p] of paths.entries()) {
      const runs = [vals[i] * 0.95, vals[i], vals[i] * 1.04];
      measurements.push({ path: p, test, unit, runs, median: runs[1], min: runs[0], max: runs[2] });
    }
  const latency = [];
  for (const rate of [500, 1000, 5000])
    for (const [i, p] of paths.entries()) {
      const base = [0.08, 0.2, 0.35, 0.25][i];
      const s = (f: number) => ({ median: base * f, min: base * f * 0.9, max: base * f * 1.2 });
      latency.push({ path: p, test: `http @ ${rate} req/s`, p50: s(1), p90: s(1.6), p99: s(3), p999: s(7) });
    }
  return {
    suite: 'l4',
    started: '2026-11-21T14:03:00.000Z',
    quick: true,
    machine: { cores: 2, cpu: 'Test CPU', node: 'v20.19.5', kernel: '6.1.0' },
    measurements,
    latency,
  };
}

/** Decodes an 8-bit RGB/RGBA, non-interlaced PNG (what resvg writes) into its pixels. */
function decodePng(buf: Buffer) {
  expect(buf.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  let off = 8;
  let width = 0,
    height = 0,
    colourType = 0;
  const idat: Buffer[] = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      expect(data[8]).toBe(8); // bit depth
      colourType = data[9];
      expect(data[12]).toBe(0); // not interlaced
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    off += 12 + len;
  }
  const bpp = colourType === 6 ? 4 : colourType === 2 ? 3 : 0;
  expect(bpp).toBeGreaterThan(0);
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * bpp;
  const px = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    for (let x = 0; x < stride; x++) {
      const v = raw[y * (stride + 1) + 1 + x];
      const a = x >= bpp ? px[y * stride + x - bpp] : 0;
      const b = y > 0 ? px[(y - 1) * stride + x] : 0;
      const c = x >= bpp && y > 0 ? px[(y - 1) * stride + x - bpp] : 0;
      let pred = 0;
      if (filter === 1) pred = a;
      else if (filter === 2) pred = b;
      else if (filter === 3) pred = (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a),
          pb = Math.abs(p - b),
          pc = Math.abs(p - c);
        pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      px[y * stride + x] = (v + pred) & 0xff;
    }
  }
  return { width, height, bpp, px };
}

describe('bench chart', () => {
  let dir = '';
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('formats values for labels', () => {
    expect(formatValue(26412.4)).toBe('26\u2009412');
    expect(formatValue(12.345)).toBe('12.3');
    expect(formatValue(1.234)).toBe('1.23');
    expect(formatValue(0.0834)).toBe('0.083');
    expect(formatValue(undefined)).toBe('–');
  });

  it('draws every test, rate, path and percentile into the SVG', () => {
    const svg: string = chartSvg(sampleResult());
    for (const s of [
      'suite l4',
      '2 cores',
      'bulk 8 streams',
      'new connections',
      'http @ 5000 req/s',
      'p99.9',
      ...paths,
    ])
      expect(svg).toContain(s);
  });

  it('renders a readable PNG of the expected size with the path colours in it', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ambit-chart-'));
    const file = path.join(dir, 'chart.png');
    const ok = await renderChart(sampleResult(), file);
    if (!ok) {
      console.warn('chart renderer unavailable: skipping the PNG checks');
      return;
    }
    const { width, height, bpp, px } = decodePng(await readFile(file));
    expect(width).toBe(1400);
    expect(height).toBeGreaterThan(700);
    expect(height).toBeLessThan(1200);
    const seen = new Map<string, number>();
    for (let i = 0; i < px.length; i += bpp) {
      const key = '#' + [px[i], px[i + 1], px[i + 2]].map((v) => v.toString(16).padStart(2, '0')).join('');
      seen.set(key, (seen.get(key) ?? 0) + 1);
    }
    // Solid bars in each path's colour, a white background, dark text, and anti-aliased glyphs.
    for (const c of colours) expect(seen.get(c) ?? 0, c).toBeGreaterThan(2000);
    expect(seen.get('#ffffff') ?? 0).toBeGreaterThan((width * height) / 4);
    const dark = [...seen].filter(([k]) => parseInt(k.slice(1, 3), 16) < 0x60).reduce((a, [, n]) => a + n, 0);
    expect(dark).toBeGreaterThan(5000); // text was drawn: a font was found
    expect(seen.size).toBeGreaterThan(50);
  });

  it('fails soft (returns false) when the PNG cannot be written', async () => {
    const notADir = path.join(await mkdtemp(path.join(tmpdir(), 'ambit-chart-')), 'file');
    await writeFile(notADir, 'x');
    const ok = await renderChart(sampleResult(), path.join(notADir, 'chart.png'));
    expect(ok).toBe(false);
    await rm(path.dirname(notADir), { recursive: true, force: true });
  });
});
