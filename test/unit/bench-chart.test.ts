/**
 * The bench chart (bench/chart.ts): one row per scenario that ran, bars scaled to each
 * column's maximum, the numbers written beside them, a dash where a figure does not apply
 * (no gateway CPU for upstream-direct), and no text that could break the SVG.
 */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { benchChart } from '../../bench/chart.js';
import type { BenchReport, ScenarioResult } from '../../bench/harness.js';

const row = (name: ScenarioResult['name'], rps: number, cpu: number | null, p99: number, extra: Partial<ScenarioResult> = {}): ScenarioResult => ({
  name, variant: 'current', expectedStatus: 200, rps, p50: p99 / 3, p99, total: rps * 5, unexpected: 0, statusCodes: { 200: rps * 5 },
  cacheHitRatio: null, cpuUsPerRequest: cpu, vsNone: null, vsBaseline: null, vsNginx: null, ...extra,
});

const report = {
  options: {} as BenchReport['options'],
  scenarios: [
    row('upstream-direct', 40000, null, 4.2),
    row('none', 20000, 75.5, 8.1),
    row('jwt-rs256', 18000, 80.2, 9.7),
    row('jwt-rs256-distinct', 5000, 300.25, 31.5),
    row('jwt-es256', 0, null, 0, { skipped: 'not selected' }),
    row('none', 19000, 77, 8.4, { variant: 'baseline' }),
  ],
  flood: null,
  memory: null,
} as BenchReport;

test('bench chart: a row per scenario run, bars scaled per column, values written, skipped rows left out', () => {
  const svg = benchChart(report, 'a <subtitle> & more');
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="\d+" height="\d+"/);
  assert.ok(svg.trimEnd().endsWith('</svg>'));
  assert.ok(svg.includes('a &lt;subtitle&gt; &amp; more'), 'text is escaped');
  const labels = [...svg.matchAll(/class="label" text-anchor="end">([^<]+)</g)].map((m) => m[1]);
  const names = ['upstream-direct', 'none', 'jwt-rs256', 'jwt-rs256-distinct', 'none (baseline)'];
  assert.deepEqual(labels, [...names, ...names], 'both panels list the scenarios that ran, in order');
  const bars = (color: string) => [...svg.matchAll(new RegExp(`width="([\\d.]+)" height="14" fill="${color}"`, 'g'))].map((m) => Number(m[1]));
  const rps = bars('#3b6fb6');
  const cpu = bars('#d9822b');
  const p99 = bars('#6a9f3a');
  assert.equal(rps.length, 5);
  assert.equal(cpu.length, 4, 'no CPU bar for upstream-direct');
  assert.equal(p99.length, 5);
  // Each column is scaled to its own maximum: the ratios of the bars are the ratios of the values.
  assert.ok(Math.abs(rps[1] / rps[0] - 0.5) < 0.01, `none is half of upstream-direct (${rps})`);
  assert.equal(Math.max(...cpu), cpu[2], 'the distinct RS256 row costs the most CPU');
  assert.ok(Math.abs(cpu[0] / cpu[2] - 75.5 / 300.25) < 0.01);
  assert.equal(Math.max(...p99), p99[3]);
  for (const v of ['40\u2009000', '75.5', '300.3', '31.5', '19\u2009000']) assert.ok(svg.includes(`>${v}<`), `value ${v} written`);
  assert.ok(svg.includes('>–<'), 'a dash where there is no figure');
});
