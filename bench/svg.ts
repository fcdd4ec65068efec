/**
 * The chart, as hand-written SVG (no dependency): output tokens/s against
 * closed-loop concurrency per variant on top; below, one panel per
 * concurrency with each variant's inter-token-latency distribution as a
 * cumulative curve on a log time axis.
 *
 * @module
 */
import type { BenchResult } from './result.js';
import { fmt } from './report.js';

const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#b07aa1', '#76b7b2', '#edc948', '#9c755f'];
const WIDTH = 960;
const FAMILY = 'font-family="system-ui, sans-serif"';
const FONT = `${FAMILY} font-size="12"`;

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** A round step giving about `count` ticks up to `max`. */
function niceStep(max: number, count: number): number {
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? power * 10;
}

interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

function frame(box: Box, title: string): string {
  return `<rect x="${box.x}" y="${box.y}" width="${box.w}" height="${box.h}" fill="none" stroke="#999"/>
<text x="${box.x + box.w / 2}" y="${box.y - 8}" text-anchor="middle" ${FONT} font-weight="bold">${esc(title)}</text>`;
}

function throughputPanel(result: BenchResult, box: Box, color: (variant: string) => string): string {
  const levels = result.loads.flatMap((l) => (l.mode === 'closed' ? [l.concurrency] : []));
  if (levels.length === 0) return '';
  const series = result.variants.map((v) => ({
    id: v.id,
    points: levels.map((c) => {
      const p = result.points.find((q) => q.variant === v.id && q.load.mode === 'closed' && q.load.concurrency === c);
      return { c, y: p?.median.outputTokensPerSecond ?? null };
    }),
  }));
  const maxY = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p.y ?? 0)));
  const step = niceStep(maxY, 5);
  const top = Math.ceil((maxY * 1.05) / step) * step;
  const lo = Math.log2(Math.min(...levels));
  const hi = Math.log2(Math.max(...levels));
  const px = (c: number) => box.x + (hi === lo ? box.w / 2 : 30 + ((Math.log2(c) - lo) / (hi - lo)) * (box.w - 60));
  const py = (y: number) => box.y + box.h - (y / top) * box.h;
  const out = [frame(box, 'Output tokens/s against concurrency (closed loop, medians)')];
  for (let y = 0; y <= top + 1e-9; y += step) {
    out.push(`<line x1="${box.x}" x2="${box.x + box.w}" y1="${py(y)}" y2="${py(y)}" stroke="#eee"/>`);
    out.push(`<text x="${box.x - 6}" y="${py(y) + 4}" text-anchor="end" ${FONT}>${fmt(y)}</text>`);
  }
  for (const c of levels) out.push(`<text x="${px(c)}" y="${box.y + box.h + 16}" text-anchor="middle" ${FONT}>${c}</text>`);
  out.push(`<text x="${box.x + box.w / 2}" y="${box.y + box.h + 34}" text-anchor="middle" ${FONT}>concurrent clients</text>`);
  for (const s of series) {
    const pts = s.points.filter((p): p is { c: number; y: number } => p.y !== null);
    if (pts.length > 1)
      out.push(
        `<polyline fill="none" stroke="${color(s.id)}" stroke-width="2" points="${pts.map((p) => `${px(p.c).toFixed(1)},${py(p.y).toFixed(1)}`).join(' ')}"/>`,
      );
    for (const p of pts)
      out.push(
        `<circle cx="${px(p.c).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="3.5" fill="${color(s.id)}"><title>${esc(s.id)} c=${p.c}: ${fmt(p.y)} tokens/s</title></circle>`,
      );
  }
  return out.join('\n');
}

/** Cumulative ITL distributions per variant at one load, from the points' log-binned histograms. */
function itlPanel(result: BenchResult, box: Box, concurrency: number, range: { lo: number; hi: number }, color: (variant: string) => string): string {
  const { firstEdgeMs, binsPerDecade } = result.itlHistogram;
  const edge = (bin: number) => firstEdgeMs * 10 ** (bin / binsPerDecade);
  const px = (ms: number) => box.x + ((Math.log10(ms) - range.lo) / (range.hi - range.lo)) * box.w;
  const py = (share: number) => box.y + box.h - share * box.h;
  const out = [frame(box, `ITL distribution, c=${concurrency}`)];
  for (let d = Math.ceil(range.lo); d <= Math.floor(range.hi); d++) {
    out.push(`<line x1="${px(10 ** d)}" x2="${px(10 ** d)}" y1="${box.y}" y2="${box.y + box.h}" stroke="#eee"/>`);
    out.push(`<text x="${px(10 ** d)}" y="${box.y + box.h + 16}" text-anchor="middle" ${FONT}>${Number((10 ** d).toPrecision(1))}</text>`);
  }
  for (const share of [0, 0.5, 0.9, 1]) out.push(`<text x="${box.x - 4}" y="${py(share) + 4}" text-anchor="end" ${FONT}>${share}</text>`);
  out.push(`<text x="${box.x + box.w / 2}" y="${box.y + box.h + 32}" text-anchor="middle" ${FONT}>ms (log)</text>`);
  for (const v of result.variants) {
    const point = result.points.find((p) => p.variant === v.id && p.load.mode === 'closed' && p.load.concurrency === concurrency);
    const counts = point?.itlHistogram ?? [];
    const n = counts.reduce((s, c) => s + c, 0);
    if (n === 0) continue;
    let seen = 0;
    const pts = [`${px(10 ** range.lo).toFixed(1)},${py(0).toFixed(1)}`];
    counts.forEach((count, bin) => {
      if (count === 0) return;
      pts.push(`${px(edge(bin)).toFixed(1)},${py(seen / n).toFixed(1)}`);
      seen += count;
      pts.push(`${px(edge(bin + 1)).toFixed(1)},${py(seen / n).toFixed(1)}`);
    });
    pts.push(`${px(10 ** range.hi).toFixed(1)},${py(1).toFixed(1)}`);
    out.push(`<polyline fill="none" stroke="${color(v.id)}" stroke-width="1.8" points="${pts.join(' ')}"><title>${esc(v.id)}</title></polyline>`);
  }
  return out.join('\n');
}

export function svgChart(result: BenchResult): string {
  const color = (variant: string) =>
    PALETTE[
      Math.max(
        0,
        result.variants.findIndex((v) => v.id === variant),
      ) % PALETTE.length
    ]!;
  const levels = result.loads.flatMap((l) => (l.mode === 'closed' ? [l.concurrency] : []));
  // One shared log range over every ITL histogram, whole decades.
  const { firstEdgeMs, binsPerDecade } = result.itlHistogram;
  let loBin = Infinity;
  let hiBin = -Infinity;
  for (const p of result.points) {
    p.itlHistogram.forEach((count, bin) => {
      if (count === 0) return;
      loBin = Math.min(loBin, bin);
      hiBin = Math.max(hiBin, bin + 1);
    });
  }
  const range = Number.isFinite(loBin)
    ? { lo: Math.floor(Math.log10(firstEdgeMs) + loBin / binsPerDecade), hi: Math.ceil(Math.log10(firstEdgeMs) + hiBin / binsPerDecade) }
    : { lo: -1, hi: 2 };
  if (range.hi <= range.lo) range.hi = range.lo + 1;

  const top: Box = { x: 70, y: 56, w: WIDTH - 280, h: 260 };
  const perRow = Math.min(4, Math.max(1, levels.length));
  const gap = 40;
  const panelW = (WIDTH - 70 - 30 - gap * (perRow - 1)) / perRow;
  const panelH = 180;
  const rows = Math.ceil(levels.length / perRow);
  const height = top.y + top.h + 60 + rows * (panelH + 70) + 24;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="18" ${FAMILY} font-size="14" font-weight="bold">${esc(`offramp bench: ${result.model.name} (${result.date.slice(0, 10)}, ${result.machine.cpus} CPUs, max ${result.config.maxTokens} tokens, temperature ${result.config.temperature})`)}</text>`,
    throughputPanel(result, top, color),
  ];
  result.variants.forEach((v, i) => {
    const y = top.y + 10 + i * 20;
    parts.push(`<rect x="${top.x + top.w + 24}" y="${y}" width="14" height="14" fill="${color(v.id)}"/>`);
    parts.push(`<text x="${top.x + top.w + 44}" y="${y + 11}" ${FONT}>${esc(v.id)}</text>`);
  });
  levels.forEach((c, i) => {
    const box: Box = {
      x: 70 + (i % perRow) * (panelW + gap),
      y: top.y + top.h + 70 + Math.floor(i / perRow) * (panelH + 70),
      w: panelW,
      h: panelH,
    };
    parts.push(itlPanel(result, box, c, range, color));
  });
  if (levels.length > 0) {
    parts.push(
      `<text x="10" y="${height - 8}" ${FAMILY} font-size="11" fill="#555">ITL: gaps between consecutive content chunks of a request, all repeats; gaps under 1 µs (chunks read together) sit at the left edge.</text>`,
    );
  }
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
