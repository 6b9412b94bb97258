/**
 * `npm run bench [-- --quick]`: runs bench/harness.ts and prints the tables.
 *
 * Environment knobs (all optional):
 *   BENCH_DURATION     seconds per scenario per round (5; --quick: 1)
 *   BENCH_WARMUP       warm-up seconds per scenario before round 1 (1; --quick: 0.5)
 *   BENCH_ROUNDS       interleaved rounds (2; --quick: 1)
 *   BENCH_CONNECTIONS  concurrent connections (50)
 *   BENCH_RATE         requests/s at most in every load scenario (0: as fast as it goes); CPU per
 *                      request depends on the load, so compare scenarios at one rate
 *   BENCH_SCENARIOS    comma-separated scenario names, or substrings of names (all)
 *   BENCH_CACHE_SIZE   tokenCacheSize of the measured gateway (1000)
 *   BENCH_MEMORY_TOKENS / BENCH_MEMORY_CACHE   memory check: distinct tokens sent (50000; --quick: 5000)
 *                      and the cache size it runs with (10000, the default)
 *   BENCH_LOG_LEVEL    the gateway's log level (info: one access line per request)
 *   BENCH_GATEWAY      dist (bin/tokengate.js, rebuilt when stale) | src (tsx)
 *   BENCH_NODE_FLAGS   extra node flags for the gateway, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"
 *   BENCH_SERVER       extra server keys, e.g. "upstreamConnections=64,workers=2"
 *   BENCH_BASELINE     another built tokengate checkout: its gateway runs beside this one, interleaved,
 *                      and a "× baseline" column compares them (before/after in one run)
 *   BENCH_BASELINE_SERVER  server keys for the baseline gateway only (BENCH_BASELINE=. compares settings)
 *   BENCH_H2_CLIENTS / BENCH_H2_STREAMS   h2load connections and streams per connection of the
 *                      h2 and gRPC scenarios (10 × 5 = the 50 requests in flight of the HTTP/1.1 ones)
 *   BENCH_NO_INSTALL   do not apt-get install a missing h2load (nghttp2-client) or nginx (nginx-light)
 *   BENCH_JSON         also write the report as JSON to this file
 *   BENCH_SVG          where the chart of the table goes (.bench-out/bench.svg)
 *   BENCH_KEEP         keep the temp dir (configs, gateway logs)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname } from 'node:path';
import { benchChart } from './chart.js';
import { formatReport, runBench, SCENARIOS, type ScenarioName } from './harness.js';
import { workersFor } from '../src/cluster/cpus.js';

const quick = process.argv.includes('--quick');
const env = process.env;
const num = (v: string | undefined, d: number) => (v !== undefined && v !== '' ? Number(v) : d);
const filter = env.BENCH_SCENARIOS?.split(',').map((s) => s.trim()).filter(Boolean);
// An exact scenario name selects that one; anything else selects every name containing it.
const matches = (s: string, f: string) => s === f || (!(SCENARIOS as readonly string[]).includes(f) && s.includes(f));
const scenarios = SCENARIOS.filter((s) => !filter || filter.some((f) => matches(s, f))) as ScenarioName[];
function serverKeys(spec: string | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const kv of (spec ?? '').split(',').filter(Boolean)) {
    const [k, v] = kv.split('=');
    out[k.trim()] = v === 'true' ? true : v === 'false' ? false : Number.isNaN(Number(v)) ? v : Number(v);
  }
  return out;
}
const serverExtra = serverKeys(env.BENCH_SERVER);

const opts = {
  durationSec: num(env.BENCH_DURATION, quick ? 1 : 5),
  warmupSec: num(env.BENCH_WARMUP, quick ? 0.5 : 1),
  rounds: num(env.BENCH_ROUNDS, quick ? 1 : 2),
  connections: num(env.BENCH_CONNECTIONS, 50),
  rate: num(env.BENCH_RATE, 0),
  scenarios,
  cacheSize: num(env.BENCH_CACHE_SIZE, 1000),
  memoryTokens: num(env.BENCH_MEMORY_TOKENS, quick ? 5000 : 50000),
  memoryCacheSize: num(env.BENCH_MEMORY_CACHE, 10000),
  logLevel: env.BENCH_LOG_LEVEL ?? 'info',
  gatewayFrom: (env.BENCH_GATEWAY === 'src' ? 'src' : 'dist') as 'src' | 'dist',
  nodeFlags: (env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean),
  serverExtra,
  baseline: env.BENCH_BASELINE || undefined,
  baselineServerExtra: env.BENCH_BASELINE_SERVER !== undefined ? serverKeys(env.BENCH_BASELINE_SERVER) : undefined,
  h2Clients: num(env.BENCH_H2_CLIENTS, 10),
  h2Streams: num(env.BENCH_H2_STREAMS, 5),
  installPeers: !env.BENCH_NO_INSTALL,
  log: (l: string) => console.error(l),
};
// The measured gateway's process count: `server.workers` from BENCH_SERVER, else the default (0).
const workers = workersFor(typeof serverExtra.workers === 'number' ? serverExtra.workers : 0);
console.error(`tokengate bench: ${opts.connections} connections, ${opts.durationSec} s × ${opts.rounds} round(s) per scenario, ` +
  `node ${process.version}, ${cpus().length} CPU(s); gateway from ${opts.gatewayFrom}, ${workers} worker process(es), log level ${opts.logLevel}`);
const report = await runBench(opts);
console.log(formatReport(report));
if (env.BENCH_JSON) writeFileSync(env.BENCH_JSON, JSON.stringify(report, null, 2));
const svg = env.BENCH_SVG || '.bench-out/bench.svg';
mkdirSync(dirname(svg), { recursive: true });
writeFileSync(svg, benchChart(report, `${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC · node ${process.version} · ${cpus().length} CPU(s) · ` +
  `${workers} gateway worker(s) · ${opts.connections} connections · ${opts.durationSec} s × ${opts.rounds} round(s) per scenario`));
console.error(`bench: chart written to ${svg}`);
// A `failed:` row is a scenario whose one checked request went wrong (the h2 and gRPC ones).
const bad = report.scenarios.some((s) => (!s.skipped && s.unexpected > 0) || s.skipped?.startsWith('failed')) || (report.flood !== null && report.flood.jwksFetches > 1) ||
  (report.memory !== null && report.memory.unexpected > 0);
if (bad) {
  console.error('bench: unexpected statuses, errors, failed checks or JWKS fetches (see the table)');
  process.exitCode = 1;
}
