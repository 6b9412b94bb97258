/**
 * The bench table as an SVG chart: per scenario, requests/s and the gateway's CPU time
 * per request side by side (the first panel), and p99 latency (the second). Plain SVG
 * text with fixed fonts and no scripts, so it renders the same on GitHub, in a browser
 * and in an image viewer; written by `npm run bench` next to its table.
 */
import type { BenchReport, ScenarioResult } from './harness.js';

const ROW = 22;
const BAR = 14;
const LABEL_W = 190;
const COL_W = 250;
const GAP = 40;
const PAD = 16;
const HEAD = 44;
const COLORS = { rps: '#3b6fb6', cpu: '#d9822b', p99: '#6a9f3a' } as const;

/** One bar column: a title, and one value per row (null: no bar, shown as "–"). */
interface Column {
  title: string;
  values: Array<number | null>;
  color: string;
  digits: number;
}

/** Text safe inside an SVG element or attribute. */
function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** `12345.6` -> `12 346`: thousands apart, as in the README's tables. */
function num(n: number, digits: number): string {
  const [int, frac] = n.toFixed(digits).split('.');
  const grouped = int.replace(/\B(?=(\d{3})+(?!\d))/g, '\u2009');
  return frac === undefined ? grouped : `${grouped}.${frac}`;
}

/** SVG elements of one column of horizontal bars, at (x, y), scaled to its own maximum. */
function column(col: Column, x: number, y: number): string[] {
  const max = Math.max(0, ...col.values.map((v) => v ?? 0));
  const out = [`<text x="${x}" y="${y - 8}" class="col">${esc(col.title)}</text>`];
  col.values.forEach((v, i) => {
    const top = y + i * ROW + (ROW - BAR) / 2;
    if (v === null || !Number.isFinite(v)) {
      out.push(`<text x="${x}" y="${top + BAR - 3}" class="val">–</text>`);
      return;
    }
    // The label needs ~60 px to the right of the longest bar.
    const w = max > 0 ? Math.max(1, (v / max) * (COL_W - 64)) : 1;
    out.push(`<rect x="${x}" y="${top}" width="${w.toFixed(1)}" height="${BAR}" fill="${col.color}"/>`);
    out.push(`<text x="${(x + w + 4).toFixed(1)}" y="${top + BAR - 3}" class="val">${num(v, col.digits)}</text>`);
  });
  return out;
}

/** A panel: a title, the scenario labels, and its bar columns side by side. */
function panel(title: string, labels: string[], cols: Column[], y: number): { svg: string[]; height: number } {
  const svg = [`<text x="${PAD}" y="${y + 16}" class="panel">${esc(title)}</text>`];
  const top = y + HEAD;
  labels.forEach((l, i) => {
    const ty = top + i * ROW + ROW / 2 + 4;
    svg.push(`<text x="${PAD + LABEL_W - 8}" y="${ty}" class="label" text-anchor="end">${esc(l)}</text>`);
    if (i % 2 === 0) svg.unshift(`<rect x="${PAD}" y="${top + i * ROW}" width="${LABEL_W + cols.length * (COL_W + GAP)}" height="${ROW}" fill="#f4f6f8"/>`);
  });
  cols.forEach((c, i) => svg.push(...column(c, PAD + LABEL_W + i * (COL_W + GAP), top)));
  return { svg, height: HEAD + labels.length * ROW + 12 };
}

/**
 * The chart of a bench report's load scenarios (skipped ones left out; a baseline run's
 * rows are labelled as such). `subtitle` says when and how it was measured.
 */
export function benchChart(rep: BenchReport, subtitle: string): string {
  const rows: ScenarioResult[] = rep.scenarios.filter((s) => !s.skipped);
  const labels = rows.map((s) => (s.variant === 'baseline' ? `${s.name} (baseline)` : s.name));
  const first = panel('Throughput and gateway CPU per request', labels, [
    { title: 'requests/s (more is better)', values: rows.map((s) => s.rps), color: COLORS.rps, digits: 0 },
    { title: 'CPU µs per request (less is better)', values: rows.map((s) => s.cpuUsPerRequest), color: COLORS.cpu, digits: 1 },
  ], 40);
  const second = panel('Latency', labels, [
    { title: 'p99 ms (less is better)', values: rows.map((s) => s.p99), color: COLORS.p99, digits: 1 },
  ], 40 + first.height + 8);
  const width = PAD * 2 + LABEL_W + 2 * (COL_W + GAP);
  const height = 40 + first.height + 8 + second.height + PAD;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">`,
    '<style>.title{font-size:16px;font-weight:bold}.sub{font-size:11px;fill:#555}.panel{font-size:13px;font-weight:bold}.col{font-size:11px;fill:#333}.label{font-size:11px}.val{font-size:10px;fill:#222}</style>',
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${PAD}" y="22" class="title">tokengate bench</text>`,
    `<text x="${PAD}" y="36" class="sub">${esc(subtitle)}</text>`,
    ...first.svg,
    ...second.svg,
    '</svg>',
    '',
  ].join('\n');
}
