// PNG chart of one suite's result: throughput bars per test (one colour per path, min–max
// whiskers, value labels) and fixed-rate latency percentiles (p50/p90/p99/p99.9) per rate.
//
// The chart is drawn as SVG and rasterised by @resvg/resvg-js (a prebuilt Rust binary shipped as
// an npm package; no C compiler, no download at install time). Text uses DejaVu Sans from the
// `dejavu-fonts-ttf` npm package, so it does not depend on the machine's fonts; the system fonts
// are used when that package is missing. Both are devDependencies: when the renderer cannot be
// loaded, renderChart prints why and returns false, and the benchmark goes on without a chart.
import { writeFile, mkdir, access } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);

// Tableau 10: distinct on screen and in greyscale print.
const PALETTE = [
  '#4e79a7',
  '#f28e2b',
  '#59a14f',
  '#e15759',
  '#76b7b2',
  '#edc948',
  '#b07aa1',
  '#ff9da7',
  '#9c755f',
  '#bab0ac',
];
const FONT = 'DejaVu Sans';
// Value labels get a light outline so that a neighbour's whisker does not cross them unreadably.
const HALO = 'fill="#222" stroke="#fafafa" stroke-width="3" stroke-linejoin="round" paint-order="stroke"';
const W = 1400;
const MARGIN = 30;
const PERCENTILES = [
  ['p50', 'p50'],
  ['p90', 'p90'],
  ['p99', 'p99'],
  ['p999', 'p99.9'],
];

const esc = (s) =>
  String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);

/** Rough width of a DejaVu Sans string in px (average advance ≈ 0.58 em; digits are 0.636 em). */
const textWidth = (s, size) => String(s).length * size * 0.6;

const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** A value label: 3 significant digits below 100, whole numbers with thin-space groups above. */
export function formatValue(v) {
  if (num(v) === undefined) return '–';
  const a = Math.abs(v);
  if (a >= 100) return Math.round(v).toLocaleString('en-US').replace(/,/g, '\u2009');
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  if (a === 0) return '0';
  return v.toPrecision(2);
}

/** Axis ticks: a "nice" step so that about 5 ticks cover [0, max]. */
function niceTicks(max) {
  if (!(max > 0)) return { top: 1, step: 0.2 };
  const rough = max / 5;
  const mag = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= rough) ?? 10 * mag;
  return { top: Math.ceil(max / step - 1e-9) * step, step };
}

const tickLabel = (v, step) => {
  if (step >= 1) return Math.round(v).toLocaleString('en-US').replace(/,/g, '\u2009');
  const decimals = Math.min(4, Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
  return v.toFixed(decimals + (Math.round(step * 10 ** decimals) % 1 ? 1 : 0));
};

/**
 * One bar panel: `groups` along x, each with one bar per series. Bars: { value, min, max }.
 * Returns SVG markup.
 */
function panel({ x, y, w, h, title, unit, groups, series, colour, showGroupLabels }) {
  const out = [];
  // The title on one line, or on two (split at a space) when it does not fit at 15 px.
  const unitText = unit ? `\u00a0(${unit})` : '';
  const fits = (str, size) => textWidth(str, size) * 0.92 <= w - 16;
  let lines = [[title, unitText]];
  if (!fits(title + unitText, 15)) {
    const words = title.split(' ');
    let best = 1;
    for (let i = 1; i < words.length; i++) if (textWidth(words.slice(0, i).join(' '), 15) <= w - 16) best = i;
    lines = [
      [words.slice(0, best).join(' '), ''],
      [words.slice(best).join(' '), unitText],
    ];
  }
  const longestLine = Math.max(...lines.map(([a, b]) => (a + b).length));
  const titleSize = Math.max(10, Math.min(16, (w - 16) / (0.62 * longestLine)));
  const titleH = 8 + lines.length * (titleSize + 4);
  const axisW = 62;
  const bottomH = showGroupLabels ? 30 : 12;
  const px = x + axisW;
  const pw = w - axisW - 8;
  const py = y + titleH + 8;
  const ph = h - titleH - 8 - bottomH;
  out.push(`<rect x="${x}" y="${y}" width="${w}" height="${h}" rx="6" fill="#fafafa" stroke="#dddddd"/>`);
  lines.forEach(([main, u], i) =>
    out.push(
      `<text x="${x + w / 2}" y="${y + 4 + (i + 1) * (titleSize + 4) - 3}" font-size="${titleSize.toFixed(1)}" font-weight="bold" text-anchor="middle" fill="#222">${esc(main)}<tspan font-weight="normal" fill="#555">${esc(u)}</tspan></text>`,
    ),
  );

  const nBars = series.length;
  const groupW = pw / Math.max(1, groups.length);
  const barW = Math.max(4, Math.min(70, (groupW * 0.8) / Math.max(1, nBars)));
  const labelSize = barW >= 36 ? 13 : 12;
  const values = groups.flatMap((g) =>
    g.bars.map((b) => b && num(b.max ?? b.value)).filter((v) => v !== undefined),
  );
  // One stray run (a GC pause, a noisy neighbour) can make a whisker ten times the bars; scale
  // to the bars then, and draw such whiskers clipped, with an arrow and their value.
  const medians = groups.flatMap((g) => g.bars.map((b) => b && num(b.value)).filter((v) => v !== undefined));
  const maxMedian = Math.max(0, ...medians);
  const maxWhisker = Math.max(0, ...values);
  const maxV = maxWhisker > 2.5 * maxMedian ? maxMedian * 1.6 : maxWhisker;
  const labels = groups.flatMap((g) => g.bars.filter(Boolean).map((b) => formatValue(b.value)));
  const longest = Math.max(0, ...labels.map((l) => textWidth(l, labelSize)));
  const rotate = longest > barW + 6;
  // Leave room above the tallest whisker for its label.
  const labelRoom = (rotate ? longest : labelSize) + 8;
  const scaleMax = maxV > 0 ? (maxV * ph) / Math.max(ph * 0.5, ph - labelRoom) : 1;
  const { top, step } = niceTicks(scaleMax);
  const Y = (v) => py + ph - (Math.min(top, Math.max(0, v)) / top) * ph;

  for (let t = 0; t <= top + step / 2; t += step) {
    const ty = Y(t);
    out.push(
      `<line x1="${px}" y1="${ty}" x2="${px + pw}" y2="${ty}" stroke="${t === 0 ? '#888' : '#e4e4e4'}" stroke-width="1"/>`,
    );
    out.push(
      `<text x="${px - 6}" y="${ty + 4}" font-size="12" text-anchor="end" fill="#555">${esc(tickLabel(t, step))}</text>`,
    );
  }
  out.push(`<line x1="${px}" y1="${py}" x2="${px}" y2="${py + ph}" stroke="#888" stroke-width="1"/>`);

  groups.forEach((g, gi) => {
    const gx = px + gi * groupW + (groupW - barW * nBars) / 2;
    if (showGroupLabels)
      out.push(
        `<text x="${px + gi * groupW + groupW / 2}" y="${py + ph + 20}" font-size="14" text-anchor="middle" fill="#222">${esc(g.label)}</text>`,
      );
    g.bars.forEach((b, si) => {
      const bx = gx + si * barW;
      const cx = bx + barW / 2;
      const v = b && num(b.value);
      if (v === undefined) {
        out.push(
          `<text x="${cx}" y="${py + ph - 4}" font-size="11" text-anchor="middle" fill="#999">n/a</text>`,
        );
        return;
      }
      const inner = Math.max(2, barW - (nBars > 1 ? 3 : 0));
      out.push(
        `<rect x="${bx + (barW - inner) / 2}" y="${Y(v)}" width="${inner}" height="${Math.max(0.5, py + ph - Y(v))}" fill="${colour(series[si])}"/>`,
      );
      let topY = Y(v);
      const lo = num(b.min);
      const hi = num(b.max);
      if (lo !== undefined && hi !== undefined && hi > lo) {
        const cap = Math.min(10, inner / 3);
        topY = Math.min(topY, Y(hi));
        const clipped = hi > top;
        out.push(
          `<path d="M${cx} ${Y(lo)}V${Y(hi)}M${cx - cap} ${Y(lo)}H${cx + cap}${clipped ? `M${cx - 4} ${Y(hi) + 6}L${cx} ${Y(hi)}L${cx + 4} ${Y(hi) + 6}` : `M${cx - cap} ${Y(hi)}H${cx + cap}`}" stroke="#222" stroke-width="1.5" fill="none"/>`,
        );
        if (clipped)
          out.push(
            `<text x="${cx + 6}" y="${Y(hi) + 10}" font-size="10" fill="#666">max ${esc(formatValue(hi))}</text>`,
          );
      }
      const text = esc(formatValue(v));
      // Keep the label inside the plot (a clipped whisker reaches its top edge): it must not run
      // into the panel's title.
      const labelY = Math.max(topY - 5, py + (rotate ? textWidth(formatValue(v), labelSize) : labelSize));
      if (rotate)
        out.push(
          `<text transform="translate(${cx + labelSize * 0.35} ${labelY}) rotate(-90)" font-size="${labelSize}" ${HALO}>${text}</text>`,
        );
      else
        out.push(
          `<text x="${cx}" y="${labelY}" font-size="${labelSize}" text-anchor="middle" ${HALO}>${text}</text>`,
        );
    });
  });
  return out.join('\n');
}

function grid(items, cols, { x, y, w, rowH, gap }) {
  const cellW = (w - gap * (cols - 1)) / cols;
  return items.map((item, i) => ({
    ...item,
    x: x + (i % cols) * (cellW + gap),
    y: y + Math.floor(i / cols) * (rowH + gap),
    w: cellW,
    h: rowH,
  }));
}

function fmtDate(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso ?? '');
  return `${d.toISOString().slice(0, 10)} ${d.toISOString().slice(11, 16)} UTC`;
}

/** The chart as an SVG string (exported for tests and for anyone who prefers a vector file). */
export function chartSvg(result) {
  const measurements = result.measurements ?? [];
  const latency = result.latency ?? [];
  const paths = [];
  for (const m of [...measurements, ...latency]) if (!paths.includes(m.path)) paths.push(m.path);
  const colourOf = new Map(paths.map((p, i) => [p, PALETTE[i % PALETTE.length]]));
  const colour = (p) => colourOf.get(p) ?? '#999';

  const tests = [];
  for (const m of measurements) if (!tests.includes(m.test)) tests.push(m.test);
  const rates = [];
  for (const l of latency) if (!rates.includes(l.test)) rates.push(l.test);

  const parts = [];
  let y = MARGIN;
  const m = result.machine ?? {};
  const title = `ambit benchmark — suite ${result.suite ?? '?'}${result.quick ? ' (quick run)' : ''} — ${fmtDate(result.started)}`;
  parts.push(
    `<text x="${MARGIN}" y="${y + 22}" font-size="26" font-weight="bold" fill="#111">${esc(title)}</text>`,
  );
  const machine = [
    m.cores !== undefined ? `${m.cores} cores` : undefined,
    m.cpu,
    m.node ? `Node ${m.node}` : undefined,
    m.kernel ? `Linux ${m.kernel}` : undefined,
  ]
    .filter(Boolean)
    .join(' · ');
  parts.push(
    `<text x="${MARGIN}" y="${y + 50}" font-size="15" fill="#444">${esc(machine)} — bars: median of runs, whiskers: min–max</text>`,
  );
  y += 66;

  // Legend: one swatch per path, wrapped.
  let lx = MARGIN;
  let ly = y + 10;
  for (const p of paths) {
    const wItem = 22 + textWidth(p, 15) + 26;
    if (lx + wItem > W - MARGIN) {
      lx = MARGIN;
      ly += 26;
    }
    parts.push(`<rect x="${lx}" y="${ly}" width="16" height="16" rx="2" fill="${colour(p)}"/>`);
    parts.push(`<text x="${lx + 22}" y="${ly + 13}" font-size="15" fill="#222">${esc(p)}</text>`);
    lx += wItem;
  }
  y = ly + 36;

  const section = (label) => {
    parts.push(
      `<text x="${MARGIN}" y="${y + 18}" font-size="19" font-weight="bold" fill="#111">${esc(label)}</text>`,
    );
    y += 30;
  };

  if (tests.length) {
    section('Throughput (higher is better)');
    const cols = Math.min(4, tests.length);
    const rowH = 300;
    const cells = grid(
      tests.map((t) => ({ t })),
      cols,
      { x: MARGIN, y, w: W - 2 * MARGIN, rowH, gap: 16 },
    );
    for (const c of cells) {
      const ms = measurements.filter((x) => x.test === c.t);
      const present = paths.filter((p) => ms.some((x) => x.path === p));
      parts.push(
        panel({
          ...c,
          title: c.t,
          unit: ms[0]?.unit ?? '',
          series: present,
          colour,
          showGroupLabels: false,
          groups: [
            {
              label: c.t,
              bars: present.map((p) => {
                const x = ms.find((q) => q.path === p);
                return x && { value: x.median, min: x.min, max: x.max };
              }),
            },
          ],
        }),
      );
    }
    y += Math.ceil(tests.length / cols) * (rowH + 16) + 8;
  }

  if (rates.length) {
    section('Latency at a fixed request rate (lower is better)');
    const cols = Math.min(3, rates.length);
    const rowH = 340;
    const cells = grid(
      rates.map((t) => ({ t })),
      cols,
      { x: MARGIN, y, w: W - 2 * MARGIN, rowH, gap: 16 },
    );
    for (const c of cells) {
      const ls = latency.filter((x) => x.test === c.t);
      const present = paths.filter((p) => ls.some((x) => x.path === p));
      parts.push(
        panel({
          ...c,
          title: c.t,
          unit: 'ms',
          series: present,
          colour,
          showGroupLabels: true,
          groups: PERCENTILES.map(([key, label]) => ({
            label,
            bars: present.map((p) => {
              const s = ls.find((q) => q.path === p)?.[key];
              return s && { value: s.median, min: s.min, max: s.max };
            }),
          })),
        }),
      );
    }
    y += Math.ceil(rates.length / cols) * (rowH + 16) + 8;
  }

  if (!tests.length && !rates.length) {
    parts.push(`<text x="${MARGIN}" y="${y + 30}" font-size="18" fill="#a00">no measurements</text>`);
    y += 60;
  }

  const H = Math.round(y + MARGIN - 16);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="${FONT}, sans-serif">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    ...parts,
    '</svg>',
  ].join('\n');
}

async function fontOptions() {
  try {
    const dir = path.join(path.dirname(require.resolve('dejavu-fonts-ttf/package.json')), 'ttf');
    const files = ['DejaVuSans.ttf', 'DejaVuSans-Bold.ttf'].map((f) => path.join(dir, f));
    await Promise.all(files.map((f) => access(f)));
    return { fontFiles: files, loadSystemFonts: false, defaultFontFamily: FONT };
  } catch {
    // No shipped font: the machine's own fonts (text may be missing if it has none).
    return { loadSystemFonts: true, defaultFontFamily: FONT };
  }
}

/**
 * Renders `result` (the suite result format: measurements + latency) to a PNG at `pngPath`.
 * Returns true when written; false (after printing why) when the renderer is unavailable or
 * fails, so that a missing optional part never fails a benchmark.
 */
export async function renderChart(result, pngPath) {
  let Resvg;
  try {
    ({ Resvg } = await import('@resvg/resvg-js'));
  } catch (err) {
    console.error(`[bench] chart skipped: @resvg/resvg-js not available (${err?.message ?? err})`);
    return false;
  }
  try {
    const svg = chartSvg(result);
    const font = await fontOptions();
    if (font.loadSystemFonts)
      console.error('[bench] chart: dejavu-fonts-ttf not installed, using system fonts');
    const png = new Resvg(svg, { font, fitTo: { mode: 'original' }, background: '#ffffff' }).render().asPng();
    await mkdir(path.dirname(pngPath), { recursive: true });
    await writeFile(pngPath, png);
    return true;
  } catch (err) {
    console.error(`[bench] chart skipped: rendering failed (${err?.stack ?? err})`);
    return false;
  }
}
