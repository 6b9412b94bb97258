/**
 * The benchmark harness behind `npm run bench`: an upstream (plain node:http, tiny body),
 * the bench issuer (JWKS + introspection), the real gateway as a child process (the CLI on
 * a generated config) and autocannon in its own process, all on 127.0.0.1. Scenarios run
 * interleaved, round after round, so that every figure of one run shares the machine's
 * state; ratios to the `mode: none` route are the numbers to compare across machines.
 */
import { spawn, spawnSync, fork, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { INTROSPECTION_CLIENT, startBenchIssuer, type BenchIssuer } from './lib/issuer.js';
import type { LoadJob, LoadResult } from './lib/load.js';
import { signToken, tamper } from './lib/tokens.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const AUDIENCE = 'bench-api';

/** Every scenario name, in run order (`BENCH_SCENARIOS` filters by substring). */
export const SCENARIOS = [
  'upstream-direct', 'none', 'none-bearer', 'none-bearer-distinct', 'jwt-rs256', 'jwt-es256', 'jwt-eddsa', 'jwt-rs256-distinct', 'jwt-es256-distinct',
  'jwt-eddsa-distinct', 'jwt-rs256-tampered',
  'introspection-warm', 'kid-flood', 'memory',
] as const;
/** A scenario name. */
export type ScenarioName = (typeof SCENARIOS)[number];

/** Harness options (see bench/run.ts for the environment knobs that set them). */
export interface BenchOptions {
  durationSec: number;
  warmupSec: number;
  rounds: number;
  connections: number;
  /**
   * Requests per second at most in every load scenario (0 or absent: as fast as it goes). CPU
   * per request depends on the load (fewer requests per event-loop turn share less of its
   * fixed work), so scenarios that run at different speeds compare best at one rate.
   */
  rate?: number;
  scenarios: readonly ScenarioName[];
  /** Verified-token cache of the measured gateway (the distinct scenario cycles through 3× this many tokens). */
  cacheSize: number;
  /** Distinct valid tokens the memory check sends, and the cache size it runs with. */
  memoryTokens: number;
  memoryCacheSize: number;
  logLevel: string;
  /** `dist`: bin/tokengate.js (rebuilt when src/ is newer); `src`: src/cli.ts through tsx. */
  gatewayFrom: 'dist' | 'src';
  /** Extra node flags for the gateway (e.g. `--cpu-prof`). */
  nodeFlags: string[];
  /** Extra `server:` keys for the measured gateway (YAML flow-map entries). */
  serverExtra: Record<string, string | number | boolean>;
  /** Another tokengate checkout (built): its gateway runs beside this one, interleaved, for a before/after in one run. */
  baseline?: string;
  /** `server:` keys for the baseline gateway instead of `serverExtra` (to compare settings of one checkout). */
  baselineServerExtra?: Record<string, string | number | boolean>;
  log?: (line: string) => void;
}

/** One scenario's figures, over all rounds. */
export interface ScenarioResult {
  name: ScenarioName;
  /** `baseline`: the same scenario against the `baseline` checkout's gateway. */
  variant: 'current' | 'baseline';
  skipped?: string;
  expectedStatus: number;
  rps: number;
  p50: number;
  p99: number;
  total: number;
  /** Responses whose status was not the expected one, plus socket errors. */
  unexpected: number;
  statusCodes: Record<string, number>;
  /** Verified-token / introspection cache hit ratio during the measured rounds (null: n/a). */
  cacheHitRatio: number | null;
  /**
   * CPU time the gateway's processes spent per request, in µs (median over rounds): its
   * cost independent of how much of the machine the load generator and upstream took.
   * Null for `upstream-direct` and where /proc is not available.
   */
  cpuUsPerRequest: number | null;
  /**
   * Median over rounds of (this rps / the same variant's `none` rps in that round), and of
   * (this rps / the baseline's in that round): robust to the machine's load drifting
   * between rounds. Null when there is nothing to compare with.
   */
  vsNone: number | null;
  vsBaseline: number | null;
  note?: string;
}

/** The memory check's samples. */
export interface MemoryResult {
  cacheSize: number;
  samples: Array<{ tokens: number; rssMb: number }>;
  baselineRssMb: number;
  unexpected: number;
}

/** Everything a run measured. */
export interface BenchReport {
  options: Omit<BenchOptions, 'log'>;
  scenarios: ScenarioResult[];
  flood: { requests: number; durationSec: number; jwksFetches: number; cooldownSec: number; unexpected: number } | null;
  memory: MemoryResult | null;
}

/** A free loopback port (closed again before use; the gateway binds it right after). */
async function freePort(): Promise<number> {
  const srv = createNetServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** The upstream: 200 with a 2-byte body for every request, keep-alive. */
async function startUpstream(): Promise<{ url: string; server: Server }> {
  const server = createHttpServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
    res.end('ok');
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

function newestMtime(dir: string): number {
  let max = 0;
  for (const name of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, name.name);
    max = Math.max(max, name.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return max;
}

/** Rebuilds dist/ when any file under src/ is newer than dist/cli.js. */
function ensureBuilt(log: (l: string) => void): void {
  const cli = join(ROOT, 'dist', 'cli.js');
  let built = 0;
  try {
    built = statSync(cli).mtimeMs;
  } catch { /* not built yet */ }
  if (built >= newestMtime(join(ROOT, 'src'))) return;
  log('building dist/ (src/ is newer) ...');
  const r = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.build.json')], { stdio: 'inherit', timeout: 180_000 });
  if (r.status !== 0) throw new Error('build failed');
}

/** A gateway child process. */
interface GatewayChild {
  url: string;
  adminUrl: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

async function startGatewayChild(yaml: string, dir: string, name: string, opts: BenchOptions, checkout = ROOT): Promise<GatewayChild> {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, yaml);
  const out = openSync(join(dir, `${name}.log`), 'w');
  const entry = opts.gatewayFrom === 'dist' || checkout !== ROOT ? [join(checkout, 'bin', 'tokengate.js')] : ['--import', 'tsx', join(checkout, 'src', 'cli.ts')];
  const proc = spawn(process.execPath, [...opts.nodeFlags, ...entry, '--config', file], { cwd: checkout, stdio: ['ignore', out, out] });
  closeSync(out);
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const port = /port: (\d+)/.exec(yaml)![1];
  const adminPort = /admin: \{ host: 127\.0\.0\.1, port: (\d+)/.exec(yaml)![1];
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const until = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`gateway ${name} exited (${proc.exitCode}); see ${join(dir, `${name}.log`)}`);
    try {
      if ((await fetch(`${adminUrl}/readyz`)).status === 200) break;
    } catch { /* not listening yet */ }
    if (Date.now() > until) {
      proc.kill('SIGKILL');
      throw new Error(`gateway ${name} not ready within 60 s`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    adminUrl,
    proc,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    },
  };
}

function gatewayYaml(p: { port: number; adminPort: number; upstream: string; iss: BenchIssuer; cacheSize: number; logLevel: string; introspection: boolean; extra: Record<string, string | number | boolean> }): string {
  const extra = Object.entries(p.extra).map(([k, v]) => `, ${k}: ${v}`).join('');
  return `# generated by bench/harness.ts
server: { host: 127.0.0.1, port: ${p.port}, tokenCacheSize: ${p.cacheSize}, logLevel: ${p.logLevel}${extra} }
admin: { host: 127.0.0.1, port: ${p.adminPort} }
issuers:
  - id: bench
    issuer: ${p.iss.issuer}
    jwksUri: ${p.iss.jwksUri}
    algorithms: [RS256, ES256, EdDSA]
    audiences: [${AUDIENCE}]
    jwks: { cooldownSec: 30 }
${p.introspection ? `    introspection: { endpoint: ${p.iss.introspectionEndpoint}, clientId: ${INTROSPECTION_CLIENT.id}, clientSecret: ${INTROSPECTION_CLIENT.secret} }\n` : ''}routes:
  - id: none
    match: { pathPrefix: /none }
    upstream: ${p.upstream}
    auth: { mode: none }
  - id: jwt
    match: { pathPrefix: /jwt }
    upstream: ${p.upstream}
    auth: { mode: jwt, scopes: { allOf: [bench:read] } }
    forward: { headers: { x-auth-subject: sub, x-auth-scopes: scope } }
${p.introspection ? `  - id: introspection
    match: { pathPrefix: /introspect }
    upstream: ${p.upstream}
    auth: { mode: introspection, scopes: { allOf: [bench:read] } }
    forward: { headers: { x-auth-subject: sub, x-auth-scopes: scope } }
` : ''}`;
}

/** The forked load generator. */
class Loader {
  private readonly child: ChildProcess;
  constructor() {
    this.child = fork(join(ROOT, 'bench', 'lib', 'load.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  }
  run(job: LoadJob): Promise<LoadResult> {
    return new Promise((resolveJob, reject) => {
      const onExit = () => reject(new Error('load generator exited'));
      this.child.once('exit', onExit);
      this.child.once('message', (m: { ok: boolean; result?: LoadResult; error?: string }) => {
        this.child.off('exit', onExit);
        if (m.ok) resolveJob(m.result!);
        else reject(new Error(m.error));
      });
      this.child.send(job);
    });
  }
  close(): Promise<void> {
    if (this.child.exitCode !== null) return Promise.resolve();
    const done = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.disconnect();
    return done;
  }
}

/** Sums of `tokengate_cache_requests_total` by `cache/result`. */
async function cacheCounters(adminUrl: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^tokengate_cache_requests_total\{([^}]*)\} (\S+)$/gm)) {
    const cache = /cache="([^"]*)"/.exec(m[1])?.[1];
    const result = /result="([^"]*)"/.exec(m[1])?.[1];
    out.set(`${cache}/${result}`, (out.get(`${cache}/${result}`) ?? 0) + Number(m[2]));
  }
  return out;
}

/** Clock ticks per second of /proc/PID/stat's utime and stime (USER_HZ). */
const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return Number.isInteger(n) && n > 0 ? n : 100;
})();

/** Fields of /proc/PID/stat after `comm` (which may hold spaces): index 0 is `state`. */
function procStat(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** The gateway's processes (Linux /proc): its own and, with `server.workers`, the workers it forked. */
function gatewayPids(gw: GatewayChild): number[] {
  const root = gw.proc.pid!;
  const pids = [root];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (Number(procStat(Number(entry))[1]) === root) pids.push(Number(entry));
    } catch { /* the process ended */ }
  }
  return pids;
}

/**
 * CPU seconds (user + system, all threads) the gateway's processes have used so far, or
 * null where /proc is not there. Divided by the requests of a run, it is the gateway's CPU
 * cost per request: steadier than req/s on a shared machine, where the load generator and
 * the upstream take the same cores.
 */
function cpuSeconds(gw: GatewayChild): number | null {
  try {
    let ticks = 0;
    for (const pid of gatewayPids(gw)) {
      const f = procStat(pid);
      ticks += Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15 of stat)
    }
    return Number.isFinite(ticks) ? ticks / CLK_TCK : null;
  } catch {
    return null;
  }
}

/**
 * Resident set size of the gateway: its process and, with `server.workers`, the worker
 * processes it forked (/proc on Linux), else the process metrics the admin port reports
 * (summed over workers by the primary).
 */
async function rssMb(gw: GatewayChild): Promise<number> {
  try {
    const rssKb = (pid: number): number => Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
    let total = 0;
    for (const pid of gatewayPids(gw)) {
      try {
        total += rssKb(pid);
      } catch { /* the process ended */ }
    }
    if (Number.isFinite(total) && total > 0) return total / 1024;
  } catch { /* not Linux */ }
  const text = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  // Older builds (a BENCH_BASELINE checkout) prefixed the process metrics with tokengate_process_.
  const m = /^(?:tokengate_process_)?process_resident_memory_bytes (\S+)$/m.exec(text);
  return m ? Number(m[1]) / 1048576 : NaN;
}

interface Plan {
  name: ScenarioName;
  variant: 'current' | 'baseline';
  url: string;
  expectedStatus: number;
  cache: 'jwt' | 'introspection' | null;
  job: Omit<LoadJob, 'url' | 'connections'>;
  skipped?: string;
}

/** Median of the per-round ratios a[i].rps / b[i].rps (rounds pair up by index). */
function perRoundRatio(a: LoadResult[], b: LoadResult[] | undefined): number | null {
  if (!b || b.length !== a.length || a.length === 0) return null;
  return median(a.map((r, i) => (b[i].rps > 0 ? r.rps / b[i].rps : NaN)).filter(Number.isFinite));
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

/** Runs the benchmark; resolves with every figure (and prints progress through `opts.log`). */
export async function runBench(opts: BenchOptions): Promise<BenchReport> {
  const log = opts.log ?? (() => {});
  const want = (n: ScenarioName) => opts.scenarios.includes(n) && (n !== 'memory' || opts.memoryTokens > 0);
  if (opts.gatewayFrom === 'dist') ensureBuilt(log);
  const dir = mkdtempSync(join(tmpdir(), 'tokengate-bench-'));
  const iss = await startBenchIssuer();
  const up = await startUpstream();
  const loader = new Loader();
  const gateways: GatewayChild[] = [];
  try {
    const opaque = iss.opaqueToken(AUDIENCE);
    // Introspection is wired only if the checkout implements it (probe with one request).
    const start = async (name: string, checkout: string, extra = opts.serverExtra): Promise<{ gw: GatewayChild; skip?: string }> => {
      const [port, adminPort] = [await freePort(), await freePort()];
      const yamlFor = (introspection: boolean) => gatewayYaml({
        port, adminPort, upstream: up.url, iss, cacheSize: opts.cacheSize, logLevel: opts.logLevel, introspection, extra,
      });
      let g = await startGatewayChild(yamlFor(true), dir, name, opts, checkout);
      gateways.push(g);
      const probe = await fetch(`${g.url}/introspect/x`, { headers: { authorization: `Bearer ${opaque}` } });
      if (probe.status === 200) return { gw: g };
      const body = (await probe.json().catch(() => ({}))) as { error?: string };
      await g.stop();
      g = await startGatewayChild(yamlFor(false), dir, `${name}-nointrospection`, opts, checkout);
      gateways.push(g);
      return { gw: g, skip: `skipped: introspection not available (probe answered ${probe.status} ${body.error ?? ''})`.trim() };
    };
    const { gw, skip: introspectionSkip } = await start('gateway', ROOT);
    const base = opts.baseline ? await start('gateway-baseline', resolve(opts.baseline), opts.baselineServerExtra ?? opts.serverExtra) : null;

    const k = iss.keys;
    const claims = { iss: iss.issuer, aud: AUDIENCE };
    const rs = signToken(k.RS256, claims);
    // One file of distinct tokens per algorithm: every request of those scenarios is a miss.
    const distinctFiles = new Map<string, string>();
    for (const alg of ['RS256', 'ES256', 'EdDSA'] as const) {
      if (!want(`jwt-${alg.toLowerCase()}-distinct` as ScenarioName) && !(alg === 'RS256' && want('none-bearer-distinct'))) continue;
      const n = Math.max(3 * opts.cacheSize, 300);
      log(`signing ${n} distinct ${alg} tokens (3× tokenCacheSize ${opts.cacheSize}: cycling through them never hits the cache) ...`);
      const file = join(dir, `distinct-${alg}.txt`);
      const lines: string[] = [];
      for (let i = 0; i < n; i++) lines.push(signToken(k[alg], claims));
      writeFileSync(file, lines.join('\n'));
      distinctFiles.set(alg, file);
    }
    const bearer = (t: string) => ({ headers: { authorization: `Bearer ${t}` } });
    const es = signToken(k.ES256, claims);
    const ed = signToken(k.EdDSA, claims);
    const gatewayPlans = (g: GatewayChild, variant: Plan['variant'], skip: string | undefined): Plan[] => [
      { name: 'none', variant, url: `${g.url}/none/x`, expectedStatus: 200, cache: null, job: {} },
      // The same request bytes as jwt-rs256 on the mode:none route: separates the cost of
      // carrying an ~800-byte token from the cost of checking it.
      { name: 'none-bearer', variant, url: `${g.url}/none/x`, expectedStatus: 200, cache: null, job: bearer(rs) },
      // The distinct RS256 tokens on the mode:none route: what the load pattern costs (a new
      // Authorization value on every request) without any check, beside jwt-rs256-distinct.
      { name: 'none-bearer-distinct', variant, url: `${g.url}/none/x`, expectedStatus: 200, cache: null, job: { tokensFile: distinctFiles.get('RS256') } },
      { name: 'jwt-rs256', variant, url: `${g.url}/jwt/x`, expectedStatus: 200, cache: 'jwt', job: bearer(rs) },
      { name: 'jwt-es256', variant, url: `${g.url}/jwt/x`, expectedStatus: 200, cache: 'jwt', job: bearer(es) },
      { name: 'jwt-eddsa', variant, url: `${g.url}/jwt/x`, expectedStatus: 200, cache: 'jwt', job: bearer(ed) },
      { name: 'jwt-rs256-distinct', variant, url: `${g.url}/jwt/x`, expectedStatus: 200, cache: 'jwt', job: { tokensFile: distinctFiles.get('RS256') } },
      { name: 'jwt-es256-distinct', variant, url: `${g.url}/jwt/x`, expectedStatus: 200, cache: 'jwt', job: { tokensFile: distinctFiles.get('ES256') } },
      { name: 'jwt-eddsa-distinct', variant, url: `${g.url}/jwt/x`, expectedStatus: 200, cache: 'jwt', job: { tokensFile: distinctFiles.get('EdDSA') } },
      { name: 'jwt-rs256-tampered', variant, url: `${g.url}/jwt/x`, expectedStatus: 401, cache: null, job: bearer(tamper(rs)) },
      { name: 'introspection-warm', variant, url: `${g.url}/introspect/x`, expectedStatus: 200, cache: 'introspection', job: bearer(opaque), skipped: skip },
    ];
    const current = gatewayPlans(gw, 'current', introspectionSkip);
    const baseline = base ? gatewayPlans(base.gw, 'baseline', base.skip) : [];
    // Interleaved: each scenario against this gateway, then against the baseline.
    const plans: Plan[] = [
      { name: 'upstream-direct', variant: 'current', url: `${up.url}/none/x`, expectedStatus: 200, cache: null, job: {} } as Plan,
      ...current.flatMap((p, i) => (baseline[i] ? [p, baseline[i]] : [p])),
    ].filter((p) => want(p.name));
    const gatewayOf = (p: Plan): GatewayChild | null => (p.name === 'upstream-direct' ? null : p.variant === 'baseline' && base ? base.gw : gw);
    const adminOf = (p: Plan) => (p.variant === 'baseline' && base ? base.gw.adminUrl : gw.adminUrl);
    const active = plans.filter((p) => !p.skipped);

    const run = (p: Plan, durationSec: number) => loader.run({ url: p.url, connections: opts.connections, durationSec, rate: opts.rate, ...p.job });
    if (opts.warmupSec > 0) {
      log(`warm-up: ${opts.warmupSec} s per scenario`);
      for (const p of active) await run(p, opts.warmupSec);
    }
    const key = (p: Plan) => `${p.name}/${p.variant}`;
    const perRound = new Map<string, LoadResult[]>();
    const hits = new Map<string, { hit: number; all: number }>();
    const cpuPerRound = new Map<string, number[]>();
    for (let round = 1; round <= opts.rounds; round++) {
      for (const p of active) {
        const before = p.cache ? await cacheCounters(adminOf(p)) : null;
        const g = gatewayOf(p);
        const cpu0 = g ? cpuSeconds(g) : null;
        const r = await run(p, opts.durationSec);
        const cpu1 = g ? cpuSeconds(g) : null;
        let cpuUs: number | null = null;
        if (cpu0 !== null && cpu1 !== null && r.total > 0) {
          cpuUs = ((cpu1 - cpu0) * 1e6) / r.total;
          cpuPerRound.set(key(p), [...(cpuPerRound.get(key(p)) ?? []), cpuUs]);
        }
        if (p.cache && before) {
          const after = await cacheCounters(adminOf(p));
          const d = (key: string) => (after.get(`${p.cache}/${key}`) ?? 0) - (before.get(`${p.cache}/${key}`) ?? 0);
          const h = hits.get(key(p)) ?? { hit: 0, all: 0 };
          h.hit += d('hit');
          h.all += d('hit') + d('miss') + d('negative_hit');
          hits.set(key(p), h);
        }
        perRound.set(key(p), [...(perRound.get(key(p)) ?? []), r]);
        log(`round ${round}/${opts.rounds} ${(p.variant === 'baseline' ? `${p.name} (baseline)` : p.name).padEnd(31)} ${Math.round(r.rps)} req/s p50 ${r.p50} ms p99 ${r.p99} ms${cpuUs !== null ? ` cpu ${cpuUs.toFixed(1)} µs/req` : ''} statuses ${JSON.stringify(r.statusCodes)}${r.errors ? ` errors ${r.errors}` : ''}`);
      }
    }
    const scenarios: ScenarioResult[] = plans.map((p) => {
      const rs2 = perRound.get(key(p)) ?? [];
      const statusCodes: Record<string, number> = {};
      for (const r of rs2) for (const [c, n] of Object.entries(r.statusCodes)) statusCodes[c] = (statusCodes[c] ?? 0) + n;
      const total = rs2.reduce((a, r) => a + r.total, 0);
      const h = hits.get(key(p));
      return {
        name: p.name,
        variant: p.variant,
        skipped: p.skipped,
        expectedStatus: p.expectedStatus,
        rps: rs2.length ? rs2.reduce((a, r) => a + r.rps, 0) / rs2.length : 0,
        p50: rs2.length ? median(rs2.map((r) => r.p50)) : 0,
        p99: rs2.length ? median(rs2.map((r) => r.p99)) : 0,
        total,
        unexpected: total - (statusCodes[String(p.expectedStatus)] ?? 0) + rs2.reduce((a, r) => a + r.errors, 0),
        statusCodes,
        cacheHitRatio: h && h.all > 0 ? h.hit / h.all : null,
        cpuUsPerRequest: cpuPerRound.has(key(p)) ? median(cpuPerRound.get(key(p))!) : null,
        vsNone: perRoundRatio(rs2, perRound.get(`none/${p.name === 'upstream-direct' ? 'current' : p.variant}`)),
        vsBaseline: p.variant === 'current' ? perRoundRatio(rs2, perRound.get(`${p.name}/baseline`)) : null,
      };
    });

    let flood: BenchReport['flood'] = null;
    if (want('kid-flood')) {
      // Every request carries a new random `kid`: each is an unknown key, and each would
      // trigger a JWKS re-fetch were it not for the cooldown (SPEC: at most one per window).
      const fetchesBefore = iss.jwksFetches;
      const r = await loader.run({
        url: `${gw.url}/jwt/x`, connections: opts.connections, durationSec: opts.durationSec,
        sign: { pkcs8: k.EdDSA.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string, alg: 'EdDSA', kid: k.EdDSA.kid, iss: iss.issuer, aud: AUDIENCE, randomKid: true },
      });
      flood = { requests: r.total, durationSec: opts.durationSec, jwksFetches: iss.jwksFetches - fetchesBefore, cooldownSec: 30, unexpected: r.total - (r.statusCodes['401'] ?? 0) + r.errors };
      log(`kid-flood: ${r.total} requests with random kids in ${opts.durationSec} s → ${flood.jwksFetches} JWKS fetch(es); statuses ${JSON.stringify(r.statusCodes)}`);
    }
    await gw.stop();
    await base?.gw.stop();

    let memory: MemoryResult | null = null;
    if (want('memory')) memory = await memoryCheck(opts, dir, up.url, iss, loader, log, gateways);
    return { options: { ...opts, log: undefined } as Omit<BenchOptions, 'log'>, scenarios, flood, memory };
  } finally {
    for (const g of gateways) await g.stop();
    await loader.close();
    up.server.closeAllConnections();
    await new Promise<void>((r) => up.server.close(() => r()));
    await iss.close();
    if (!process.env.BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
    else log(`kept ${dir}`);
  }
}

/**
 * RSS while `memoryTokens` distinct valid tokens (each signed on the fly by the load
 * generator with the EdDSA key) go through a gateway whose cache holds `memoryCacheSize`:
 * once the cache is full, RSS must stop growing with the number of tokens seen.
 */
async function memoryCheck(opts: BenchOptions, dir: string, upstream: string, iss: BenchIssuer, loader: Loader, log: (l: string) => void, gateways: GatewayChild[]): Promise<MemoryResult> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const gw = await startGatewayChild(gatewayYaml({
    port, adminPort, upstream, iss, cacheSize: opts.memoryCacheSize, logLevel: opts.logLevel, introspection: false, extra: opts.serverExtra,
  }), dir, 'gateway-memory', opts);
  gateways.push(gw);
  const k = iss.keys.EdDSA;
  const sign = { pkcs8: k.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string, alg: 'EdDSA' as const, kid: k.kid, iss: iss.issuer, aud: AUDIENCE };
  const baselineRssMb = await rssMb(gw);
  const steps = 8;
  const step = Math.max(1, Math.ceil(opts.memoryTokens / steps));
  const samples: MemoryResult['samples'] = [];
  let sent = 0;
  let unexpected = 0;
  log(`memory: ${opts.memoryTokens} distinct EdDSA tokens, tokenCacheSize ${opts.memoryCacheSize}, baseline RSS ${baselineRssMb.toFixed(1)} MB`);
  while (sent < opts.memoryTokens) {
    const n = Math.min(step, opts.memoryTokens - sent);
    const r = await loader.run({ url: `${gw.url}/jwt/x`, connections: opts.connections, amount: n, sign });
    sent += r.total;
    unexpected += r.total - (r.statusCodes['200'] ?? 0) + r.errors;
    const rss = await rssMb(gw);
    samples.push({ tokens: sent, rssMb: rss });
    log(`memory: ${sent} tokens → RSS ${rss.toFixed(1)} MB`);
    if (r.total === 0) break;
  }
  await gw.stop();
  return { cacheSize: opts.memoryCacheSize, samples, baselineRssMb, unexpected };
}

const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : '-');

/** The report as Markdown tables (what `npm run bench` prints and the README shows). */
export function formatReport(rep: BenchReport): string {
  const find = (name: ScenarioName, variant: ScenarioResult['variant']) => rep.scenarios.find((s) => s.name === name && s.variant === variant && !s.skipped);
  const withBaseline = rep.scenarios.some((s) => s.variant === 'baseline');
  const lines = [
    `| scenario | req/s | × none | CPU µs/req | p50 ms | p99 ms | responses | unexpected | cache hits |${withBaseline ? ' × baseline |' : ''}`,
    `|---|---:|---:|---:|---:|---:|---:|---:|---:|${withBaseline ? '---:|' : ''}`,
  ];
  for (const s of rep.scenarios) {
    const label = s.variant === 'baseline' ? `${s.name} (baseline)` : s.name;
    if (s.skipped) {
      lines.push(`| ${label} | ${s.skipped} | | | | | | | |${withBaseline ? ' |' : ''}`);
      continue;
    }
    // upstream-direct is compared with this checkout's none route.
    const none = find('none', s.variant);
    const ratio = s.vsNone !== null ? fmt(s.vsNone, 2) : none && none.rps > 0 ? fmt(s.rps / none.rps, 2) : '-';
    const hit = s.cacheHitRatio === null ? '' : `${fmt(s.cacheHitRatio * 100, 1)} %`;
    const vsBase = withBaseline ? ` ${s.vsBaseline !== null ? fmt(s.vsBaseline, 2) : ''} |` : '';
    const cpu = s.cpuUsPerRequest === null ? '' : fmt(s.cpuUsPerRequest, 1);
    lines.push(`| ${label} | ${fmt(s.rps)} | ${ratio} | ${cpu} | ${fmt(s.p50)} | ${fmt(s.p99)} | ${s.total} | ${s.unexpected} | ${hit} |${vsBase}`);
  }
  if (rep.flood) {
    const f = rep.flood;
    lines.push('', `random-kid flood: ${f.requests} requests (all with unknown kids) in ${f.durationSec} s → ${f.jwksFetches} JWKS fetch(es) (bound: ≤ 1 per ${f.cooldownSec} s cooldown); non-401: ${f.unexpected}`);
  }
  if (rep.memory) {
    const m = rep.memory;
    lines.push('', `memory (tokenCacheSize ${m.cacheSize}, baseline RSS ${fmt(m.baselineRssMb, 1)} MB; non-200: ${m.unexpected}):`, '',
      `| distinct tokens seen | RSS MB |`, `|---:|---:|`, ...m.samples.map((s) => `| ${s.tokens} | ${fmt(s.rssMb, 1)} |`));
  }
  return lines.join('\n');
}
