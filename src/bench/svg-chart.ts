/**
 * A small SVG line/bar chart writer for benchmark reports (no chart dependency): axes with
 * "nice" ticks, one polyline per series with point markers, a legend, optional log-2 x
 * axis for batch sizes. Output is standalone SVG 1.1 that browsers and GitHub render.
 */

export interface Series {
  name: string;
  points: { x: number; y: number }[];
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Log-2 x axis (batch sizes 1, 2, 4, ...). */
  logX?: boolean;
  widthPx?: number;
  heightPx?: number;
}

export interface BarChartOptions {
  title: string;
  yLabel: string;
  /** Groups along x (e.g. metrics), each with one bar per series name. */
  groups: { label: string; values: { name: string; value: number }[] }[];
  widthPx?: number;
  heightPx?: number;
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];
const MARGIN = { left: 70, right: 20, top: 40, bottom: 70 };

export function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);
}

/** About `count` round tick values (1, 2, 5 x 10^k steps) covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) hi = lo + (lo === 0 ? 1 : Math.abs(lo));
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks[ticks.length - 1]! < hi) ticks.push(Number((ticks[ticks.length - 1]! + step).toPrecision(12)));
  return ticks;
}

function formatTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e6) return `${(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${(v / 1e3).toPrecision(3)}k`;
  return Number(v.toPrecision(4)).toString();
}

function frame(title: string, w: number, h: number, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="sans-serif" font-size="12">`,
    `<rect x="0" y="0" width="${w}" height="${h}" fill="#ffffff"/>`,
    `<text x="${w / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

export function lineChart(options: LineChartOptions): string {
  const w = options.widthPx ?? 640;
  const h = options.heightPx ?? 400;
  const pw = w - MARGIN.left - MARGIN.right;
  const ph = h - MARGIN.top - MARGIN.bottom;
  const pts = options.series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  const fx = (x: number) => (options.logX ? Math.log2(Math.max(x, 1e-9)) : x);
  const xs = pts.map((p) => fx(p.x));
  const xTicks = options.logX
    ? range(Math.floor(Math.min(...xs, 0)), Math.ceil(Math.max(...xs, 1)))
    : niceTicks(Math.min(...xs, 0), Math.max(...xs, 1));
  const yTicks = niceTicks(0, Math.max(...pts.map((p) => p.y), 0));
  const [x0, x1] = [xTicks[0]!, xTicks[xTicks.length - 1]!];
  const [y0, y1] = [yTicks[0]!, yTicks[yTicks.length - 1]!];
  const sx = (x: number) => MARGIN.left + ((fx(x) - x0) / (x1 - x0 || 1)) * pw;
  const sy = (y: number) => MARGIN.top + ph - ((y - y0) / (y1 - y0 || 1)) * ph;
  const body: string[] = axes(w, h, options.xLabel, options.yLabel);
  for (const t of yTicks) {
    body.push(`<line x1="${MARGIN.left}" y1="${r(sy(t))}" x2="${MARGIN.left + pw}" y2="${r(sy(t))}" stroke="#e0e0e0"/>`);
    body.push(`<text x="${MARGIN.left - 6}" y="${r(sy(t) + 4)}" text-anchor="end">${formatTick(t)}</text>`);
  }
  for (const t of xTicks) {
    const px = MARGIN.left + ((t - x0) / (x1 - x0 || 1)) * pw;
    const label = options.logX ? formatTick(2 ** t) : formatTick(t);
    body.push(`<text x="${r(px)}" y="${MARGIN.top + ph + 18}" text-anchor="middle">${label}</text>`);
  }
  options.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    const ok = s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
    if (ok.length > 1) {
      body.push(
        `<polyline fill="none" stroke="${color}" stroke-width="2" points="${ok.map((p) => `${r(sx(p.x))},${r(sy(p.y))}`).join(' ')}"/>`,
      );
    }
    for (const p of ok) body.push(`<circle cx="${r(sx(p.x))}" cy="${r(sy(p.y))}" r="3" fill="${color}"/>`);
  });
  body.push(
    ...legend(
      options.series.map((s) => s.name),
      w,
      h,
    ),
  );
  return frame(options.title, w, h, body);
}

export function barChart(options: BarChartOptions): string {
  const w = options.widthPx ?? 640;
  const h = options.heightPx ?? 400;
  const pw = w - MARGIN.left - MARGIN.right;
  const ph = h - MARGIN.top - MARGIN.bottom;
  const names = [...new Set(options.groups.flatMap((g) => g.values.map((v) => v.name)))];
  const values = options.groups.flatMap((g) => g.values.map((v) => v.value)).filter(Number.isFinite);
  const yTicks = niceTicks(0, Math.max(...values, 0));
  const y1 = yTicks[yTicks.length - 1]!;
  const sy = (y: number) => MARGIN.top + ph - (y / (y1 || 1)) * ph;
  const body: string[] = axes(w, h, '', options.yLabel);
  for (const t of yTicks) {
    body.push(`<line x1="${MARGIN.left}" y1="${r(sy(t))}" x2="${MARGIN.left + pw}" y2="${r(sy(t))}" stroke="#e0e0e0"/>`);
    body.push(`<text x="${MARGIN.left - 6}" y="${r(sy(t) + 4)}" text-anchor="end">${formatTick(t)}</text>`);
  }
  const groupW = pw / Math.max(options.groups.length, 1);
  const barW = (groupW * 0.8) / Math.max(names.length, 1);
  options.groups.forEach((g, gi) => {
    const gx = MARGIN.left + gi * groupW + groupW * 0.1;
    for (const v of g.values) {
      if (!Number.isFinite(v.value)) continue;
      const ni = names.indexOf(v.name);
      const x = gx + ni * barW;
      body.push(
        `<rect x="${r(x)}" y="${r(sy(v.value))}" width="${r(barW)}" height="${r(sy(0) - sy(v.value))}" fill="${COLORS[ni % COLORS.length]}"><title>${escapeXml(`${g.label} ${v.name}: ${v.value}`)}</title></rect>`,
      );
    }
    body.push(`<text x="${r(gx + groupW * 0.4)}" y="${MARGIN.top + ph + 18}" text-anchor="middle">${escapeXml(g.label)}</text>`);
  });
  body.push(...legend(names, w, h));
  return frame(options.title, w, h, body);
}

function axes(w: number, h: number, xLabel: string, yLabel: string): string[] {
  const ph = h - MARGIN.top - MARGIN.bottom;
  const bottom = MARGIN.top + ph;
  return [
    `<line x1="${MARGIN.left}" y1="${MARGIN.top}" x2="${MARGIN.left}" y2="${bottom}" stroke="#000"/>`,
    `<line x1="${MARGIN.left}" y1="${bottom}" x2="${w - MARGIN.right}" y2="${bottom}" stroke="#000"/>`,
    `<text x="${MARGIN.left + (w - MARGIN.left - MARGIN.right) / 2}" y="${bottom + 36}" text-anchor="middle">${escapeXml(xLabel)}</text>`,
    `<text x="16" y="${MARGIN.top + ph / 2}" text-anchor="middle" transform="rotate(-90 16 ${MARGIN.top + ph / 2})">${escapeXml(yLabel)}</text>`,
  ];
}

function legend(names: string[], w: number, h: number): string[] {
  const out: string[] = [];
  const y = h - 16;
  let x = MARGIN.left;
  names.forEach((name, i) => {
    out.push(`<rect x="${x}" y="${y - 9}" width="10" height="10" fill="${COLORS[i % COLORS.length]}"/>`);
    out.push(`<text x="${x + 14}" y="${y}">${escapeXml(name)}</text>`);
    x += 24 + name.length * 7;
    if (x > w - 80) x = MARGIN.left;
  });
  return out;
}

function range(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let i = lo; i <= hi; i++) out.push(i);
  return out;
}

function r(v: number): string {
  return (Math.round(v * 10) / 10).toString();
}
