/**
 * The benchmark harness behind `npm run bench`: an upstream (plain node:http, tiny body),
 * the bench issuer (JWKS + introspection), the real gateway as a child process (the CLI on
 * a generated config) and autocannon in its own process, all on 127.0.0.1. Scenarios run
 * interleaved, round after round, so that every figure of one run shares the machine's
 * state; ratios to the `mode: none` route are the numbers to compare across machines.
 *
 * The h2 and gRPC scenarios (`h2-*`, `grpc-*`) have their own parts: an HTTP/2 upstream
 * (bench/lib/grpc-upstream.ts), a second gateway with `server.http2: true` and
 * `upstreamProtocol: h2` routes, nginx `grpc_pass` with no auth as the C floor, and h2load
 * as the load (bench/lib/peers.ts finds them); their ratios are to the h2 `mode: none`
 * route and to nginx.
 */
import { spawn, spawnSync, fork, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GRPC_REQUEST, GRPC_RESPONSE, h2Probe, startGrpcUpstream, type GrpcUpstream } from './lib/grpc-upstream.js';
import { runH2load, type H2LoadJob } from './lib/h2load.js';
import { INTROSPECTION_CLIENT, startBenchIssuer, type BenchIssuer } from './lib/issuer.js';
import type { LoadJob, LoadResult } from './lib/load.js';
import { findPeers, startNginxGrpc } from './lib/peers.js';
import { signToken, tamper } from './lib/tokens.js';
import { workersFor } from '../src/cluster/cpus.js';
import type { ProxyProcess } from '../test/helpers/proxy-process.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const AUDIENCE = 'bench-api';

/** Every scenario name, in run order (`BENCH_SCENARIOS` filters by substring). */
export const SCENARIOS = [
  'upstream-direct', 'none', 'none-bearer', 'none-bearer-distinct', 'jwt-rs256', 'jwt-es256', 'jwt-eddsa', 'jwt-rs256-distinct', 'jwt-es256-distinct',
  'jwt-eddsa-distinct', 'jwt-rs256-tampered',
  'introspection-warm', 'jwt-es256-traced', 'jwt-es256-traced-1pct',
  'h2-upstream-direct', 'h2-none', 'h2-jwt-rs256', 'grpc-upstream-direct', 'grpc-none', 'grpc-jwt-rs256', 'grpc-nginx',
  'kid-flood', 'memory',
] as const;
/** A scenario name. */
export type ScenarioName = (typeof SCENARIOS)[number];
/** Whether a scenario is one of the HTTP/2 ones (h2load against the h2 gateway, upstream or nginx). */
export const isH2Scenario = (name: ScenarioName): boolean => name.startsWith('h2-') || name.startsWith('grpc-');
/** gRPC paths of the bench's h2 gateway routes (the upstream answers any path). */
const GRPC_OPEN = '/bench.Open/Unary';
const GRPC_GUARDED = '/bench.Guarded/Unary';

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
  /** h2load connections, and concurrent streams on each, of the h2 and gRPC scenarios (10 × 5: the 50 in flight of the HTTP/1.1 ones). */
  h2Clients?: number;
  h2Streams?: number;
  /** Install a missing h2load or nginx with apt-get (as root) before the h2 scenarios. */
  installPeers?: boolean;
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
   * Median over rounds of (this rps / the same variant's `none` rps in that round; `h2-none`
   * for the h2 and gRPC scenarios), and of (this rps / the baseline's in that round): robust to the machine's load drifting
   * between rounds. Null when there is nothing to compare with.
   */
  vsNone: number | null;
  vsBaseline: number | null;
  /** gRPC scenarios: median over rounds of (this rps / nginx `grpc_pass`'s in that round). */
  vsNginx: number | null;
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

/**
 * Routes of the h2 gateway, all `upstreamProtocol: h2` to the HTTP/2 upstream: REST and
 * gRPC, each with `mode: none` and with the same JWT check as the `/jwt` route.
 */
function h2RoutesYaml(upstream: string): string {
  const route = (id: string, prefix: string, jwt: boolean) => `  - id: ${id}
    match: { pathPrefix: ${prefix} }
    upstream: ${upstream}
    upstreamProtocol: h2
${jwt ? `    auth: { mode: jwt, scopes: { allOf: [bench:read] } }
    forward: { headers: { x-auth-subject: sub, x-auth-scopes: scope } }` : '    auth: { mode: none }'}
`;
  return route('h2-none', '/h2none', false) + route('h2-jwt', '/h2jwt', true) +
    route('grpc-none', GRPC_OPEN.slice(0, GRPC_OPEN.lastIndexOf('/') + 1), false) + route('grpc-jwt', GRPC_GUARDED.slice(0, GRPC_GUARDED.lastIndexOf('/') + 1), true);
}

/**
 * An OTLP/HTTP sink for the traced scenarios: answers every export 200 and counts them, so
 * the gateway pays for building, batching and sending its spans, and nothing else.
 */
async function startOtlpSink(): Promise<{ url: string; exports: number; bytes: number; server: Server }> {
  const sink = { url: '', exports: 0, bytes: 0, server: createHttpServer((req, res) => {
    req.on('data', (c: Buffer) => (sink.bytes += c.length));
    req.on('end', () => {
      sink.exports++;
      res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': '0' }).end();
    });
  }) };
  await new Promise<void>((r) => sink.server.listen(0, '127.0.0.1', r));
  sink.url = `http://127.0.0.1:${(sink.server.address() as AddressInfo).port}/v1/traces`;
  return sink;
}

function gatewayYaml(p: { port: number; adminPort: number; upstream: string; iss: BenchIssuer; cacheSize: number; logLevel: string; introspection: boolean; extra: Record<string, string | number | boolean>; h2Upstream?: string; tracing?: string }): string {
  const extra = Object.entries({ ...(p.h2Upstream ? { http2: true } : {}), ...p.extra }).map(([k, v]) => `, ${k}: ${v}`).join('');
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
` : ''}${p.h2Upstream ? h2RoutesYaml(p.h2Upstream) : ''}${p.tracing ? `tracing: ${p.tracing}\n` : ''}`;
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

/** Requests `route` counted with an outcome other than `allowed` (`tokengate_requests_total`): a refused gRPC call is HTTP 200 to h2load. */
async function notAllowed(adminUrl: string, route: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^tokengate_requests_total\{([^}]*)\} (\S+)$/gm)) {
    if (m[1].includes(`route="${route}"`) && !m[1].includes('outcome="allowed"')) n += Number(m[2]);
  }
  return n;
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

/** A gateway's processes (Linux /proc): `root` and, with `server.workers`, the workers it forked (nginx: its workers). */
function gatewayPids(root: number): number[] {
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
function cpuSeconds(root: number): number | null {
  try {
    let ticks = 0;
    for (const pid of gatewayPids(root)) {
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
    for (const pid of gatewayPids(gw.proc.pid!)) {
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
  /** Root process whose CPU (with its children's) is counted: the gateway, or nginx; null for an upstream alone. */
  cpuPid: number | null;
  /** The gateway's admin URL (cache counters, refusals), if a gateway serves the plan. */
  admin: string | null;
  /** h2load instead of autocannon, with these headers and body. */
  h2?: Pick<H2LoadJob, 'headers' | 'dataFile'>;
  /** gRPC plans on a gateway: its route, whose requests not `allowed` count as unexpected (a refused call is HTTP 200). */
  grpcRoute?: string;
  /** h2 plans: the body one request must be answered with before the load (and `grpc-status: 0` for gRPC). */
  expect?: Buffer;
  /** Why the plan does not run; `failed: …` when that is an error of the run, not a missing tool. */
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
  // The h2 and gRPC scenarios' parts, started only when one of them is wanted.
  let h2up: GrpcUpstream | null = null;
  let nginx: ProxyProcess | null = null;
  let h2loadBin: string | null = null;
  let sink: Awaited<ReturnType<typeof startOtlpSink>> | null = null;
  try {
    const opaque = iss.opaqueToken(AUDIENCE);
    // Introspection is wired only if the checkout implements it (probe with one request).
    const start = async (name: string, checkout: string, extra = opts.serverExtra, tracing?: string): Promise<{ gw: GatewayChild; skip?: string }> => {
      const [port, adminPort] = [await freePort(), await freePort()];
      const yamlFor = (introspection: boolean) => gatewayYaml({
        port, adminPort, upstream: up.url, iss, cacheSize: opts.cacheSize, logLevel: opts.logLevel, introspection, extra, tracing,
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
    // Traced scenarios: this checkout with a `tracing:` block, exporting every span (or 1 %
    // of new traces) to a sink of the bench's own. Compare with jwt-es256 (no `tracing:`).
    if (want('jwt-es256-traced') || want('jwt-es256-traced-1pct')) sink = await startOtlpSink();
    const traced = (ratio: number) => start(`gateway-traced-${ratio}`, ROOT, opts.serverExtra, `{ endpoint: ${sink!.url}, sampleRatio: ${ratio} }`);
    const traced1 = want('jwt-es256-traced') ? (await traced(1)).gw : null;
    const traced01 = want('jwt-es256-traced-1pct') ? (await traced(0.01)).gw : null;

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
    const at = (g: GatewayChild) => ({ cpuPid: g.proc.pid!, admin: g.adminUrl });
    const gatewayPlans = (g: GatewayChild, variant: Plan['variant'], skip: string | undefined): Plan[] => [
      { name: 'none', variant, url: `${g.url}/none/x`, expectedStatus: 200, cache: null, job: {}, ...at(g) },
      // The same request bytes as jwt-rs256 on the mode:none route: separates the cost of
      // carrying an ~800-byte token from the cost of checking it.
      { name: 'none-bearer', variant, url: `${g.url}/none/x`, expectedStatus: 200, cache: null, job: bearer(rs), ...at(g) },
      // The distinct RS256 tokens on the mode:none route: what the load pattern costs (a new
      // Authorization value on every request) without any check, beside jwt-rs256-distinct.
      { name: 'none-bearer-distinct', variant, url: `${g.url}/none/x`, expectedStatus: 200, cache: null, job: { tokensFile: distinctFiles.get('RS256') }, ...at(g) },
      { name: 'jwt-rs256', variant, url: `${g.url}/jwt/x`, expectedStatus: 200, cache: 'jwt', job: bearer(rs), ...at(g) },
      { name: 'jwt-es256', variant, url: `${g.url}/jwt/x`, expectedStatus: 200, cache: 'jwt', job: bearer(es), ...at(g) },
      { name: 'jwt-eddsa', variant, url: `${g.url}/jwt/x`, expectedStatus: 200, cache: 'jwt', job: bearer(ed), ...at(g) },
      { name: 'jwt-rs256-distinct', variant, url: `${g.url}/jwt/x`, expectedStatus: 200, cache: 'jwt', job: { tokensFile: distinctFiles.get('RS256') }, ...at(g) },
      { name: 'jwt-es256-distinct', variant, url: `${g.url}/jwt/x`, expectedStatus: 200, cache: 'jwt', job: { tokensFile: distinctFiles.get('ES256') }, ...at(g) },
      { name: 'jwt-eddsa-distinct', variant, url: `${g.url}/jwt/x`, expectedStatus: 200, cache: 'jwt', job: { tokensFile: distinctFiles.get('EdDSA') }, ...at(g) },
      { name: 'jwt-rs256-tampered', variant, url: `${g.url}/jwt/x`, expectedStatus: 401, cache: null, job: bearer(tamper(rs)), ...at(g) },
      { name: 'introspection-warm', variant, url: `${g.url}/introspect/x`, expectedStatus: 200, cache: 'introspection', job: bearer(opaque), skipped: skip, ...at(g) },
    ];
    /**
     * The h2 and gRPC plans, in run order, each checked by one request first: the HTTP/2
     * upstream direct, the h2 gateway (and the baseline's, if it starts with
     * `server.http2`), and nginx `grpc_pass`, with as many worker processes as the gateway.
     */
    const h2Setup = async (): Promise<Plan[]> => {
      const peers = findPeers(opts.installPeers ?? false, log);
      h2loadBin = peers.h2load;
      const upstream = await startGrpcUpstream();
      h2up = upstream;
      const grpcBody = join(dir, 'grpc-request.bin');
      writeFileSync(grpcBody, GRPC_REQUEST);
      const startH2 = async (name: string, checkout: string, extra: BenchOptions['serverExtra']) => {
        const [port, adminPort] = [await freePort(), await freePort()];
        const g = await startGatewayChild(gatewayYaml({
          port, adminPort, upstream: up.url, iss, cacheSize: opts.cacheSize, logLevel: opts.logLevel, introspection: false, extra, h2Upstream: upstream.url,
        }), dir, name, opts, checkout);
        gateways.push(g);
        return g;
      };
      const h2gw = await startH2('gateway-h2', ROOT, opts.serverExtra);
      const h2base = opts.baseline
        ? await startH2('gateway-h2-baseline', resolve(opts.baseline), opts.baselineServerExtra ?? opts.serverExtra)
          .catch((e: Error) => `skipped: the baseline gateway did not start with server.http2 (${e.message})`)
        : null;
      let nginxUrl = '';
      let nginxSkip = peers.why.nginx;
      if (peers.nginx !== null && want('grpc-nginx')) {
        const port = await freePort();
        const started = await startNginxGrpc(peers.nginx, port, upstream.port, workersFor(Number(opts.serverExtra.workers ?? 0)));
        if ('skip' in started) nginxSkip = started.skip;
        else [nginx, nginxUrl] = [started, `http://127.0.0.1:${port}`];
      }
      const auth = { authorization: `Bearer ${rs}` };
      const grpc = { 'content-type': 'application/grpc', te: 'trailers' };
      const rest = Buffer.from('ok');
      const common = { expectedStatus: 200, job: {}, skipped: peers.why.h2load };
      const onGateway = (g: GatewayChild | string, variant: Plan['variant']): Plan[] => {
        const on = typeof g === 'string'
          ? { ...common, variant, cpuPid: null, admin: null, skipped: g }
          : { ...common, variant, cpuPid: g.proc.pid!, admin: g.adminUrl };
        const u = typeof g === 'string' ? '' : g.url;
        return [
          { ...on, name: 'h2-none', url: `${u}/h2none/x`, cache: null, h2: {}, expect: rest },
          { ...on, name: 'h2-jwt-rs256', url: `${u}/h2jwt/x`, cache: 'jwt', h2: { headers: auth }, expect: rest },
          { ...on, name: 'grpc-none', url: `${u}${GRPC_OPEN}`, cache: null, h2: { headers: grpc, dataFile: grpcBody }, grpcRoute: 'grpc-none', expect: GRPC_RESPONSE },
          { ...on, name: 'grpc-jwt-rs256', url: `${u}${GRPC_GUARDED}`, cache: 'jwt', h2: { headers: { ...grpc, ...auth }, dataFile: grpcBody }, grpcRoute: 'grpc-jwt', expect: GRPC_RESPONSE },
        ];
      };
      const cur = onGateway(h2gw, 'current');
      const bas = h2base !== null ? onGateway(h2base, 'baseline') : [];
      const direct = { ...common, variant: 'current' as const, cache: null, cpuPid: null, admin: null };
      const plans: Plan[] = [
        { ...direct, name: 'h2-upstream-direct', url: `${upstream.url}/h2none/x`, h2: {}, expect: rest },
        ...cur.slice(0, 2).flatMap((p, i) => (bas[i] ? [p, bas[i]] : [p])),
        { ...direct, name: 'grpc-upstream-direct', url: `${upstream.url}${GRPC_OPEN}`, h2: { headers: grpc, dataFile: grpcBody }, expect: GRPC_RESPONSE },
        ...cur.slice(2).flatMap((p, i) => (bas[i + 2] ? [p, bas[i + 2]] : [p])),
        { ...direct, name: 'grpc-nginx', url: `${nginxUrl}${GRPC_OPEN}`, h2: { headers: grpc, dataFile: grpcBody }, expect: GRPC_RESPONSE,
          cpuPid: nginx?.proc.pid ?? null, skipped: common.skipped ?? nginxSkip },
      ];
      for (const p of plans) {
        if (p.skipped || !want(p.name)) continue;
        const isGrpc = p.h2!.dataFile !== undefined;
        try {
          const r = await h2Probe(p.url, p.h2!.headers ?? {}, isGrpc ? GRPC_REQUEST : undefined);
          if (r.status !== 200 || !r.body.equals(p.expect!) || (isGrpc && r.grpcStatus !== '0')) {
            p.skipped = `failed: one request answered ${r.status}${isGrpc ? ` grpc-status ${r.grpcStatus}` : ''} and ${r.body.length} body bytes`;
          }
        } catch (e) {
          p.skipped = `failed: one request failed (${(e as Error).message})`;
        }
      }
      return plans;
    };
    const current = gatewayPlans(gw, 'current', introspectionSkip);
    const baseline = base ? gatewayPlans(base.gw, 'baseline', base.skip) : [];
    // Interleaved: each scenario against this gateway, then against the baseline.
    const plans: Plan[] = [
      { name: 'upstream-direct' as const, variant: 'current' as const, url: `${up.url}/none/x`, expectedStatus: 200, cache: null, job: {}, cpuPid: null, admin: null },
      ...current.flatMap((p, i) => (baseline[i] ? [p, baseline[i]] : [p])),
      ...(traced1 ? [{ name: 'jwt-es256-traced', variant: 'current', url: `${traced1.url}/jwt/x`, expectedStatus: 200, cache: 'jwt', job: bearer(es), ...at(traced1) } as Plan] : []),
      ...(traced01 ? [{ name: 'jwt-es256-traced-1pct', variant: 'current', url: `${traced01.url}/jwt/x`, expectedStatus: 200, cache: 'jwt', job: bearer(es), ...at(traced01) } as Plan] : []),
      ...(opts.scenarios.some(isH2Scenario) ? await h2Setup() : []),
    ].filter((p) => want(p.name));
    const active = plans.filter((p) => !p.skipped);

    const run = (p: Plan, durationSec: number) => (p.h2
      ? runH2load(h2loadBin!, { url: p.url, clients: opts.h2Clients ?? 10, streams: opts.h2Streams ?? 5, durationSec, ...p.h2 }, join(dir, 'h2load.log'))
      : loader.run({ url: p.url, connections: opts.connections, durationSec, ...p.job }));
    if (opts.warmupSec > 0) {
      log(`warm-up: ${opts.warmupSec} s per scenario`);
      for (const p of active) await run(p, opts.warmupSec);
    }
    const key = (p: Plan) => `${p.name}/${p.variant}`;
    const perRound = new Map<string, LoadResult[]>();
    const hits = new Map<string, { hit: number; all: number }>();
    const cpuPerRound = new Map<string, number[]>();
    const refused = new Map<string, number>();
    // Even rounds run each scenario's baseline before this gateway's: neither always goes
    // first (a machine heating up or calming down between the two would favour one).
    const inOrder = (round: number): Plan[] => {
      if (round % 2 === 1) return active;
      const out: Plan[] = [];
      for (let i = 0; i < active.length; i++) {
        const [p, q] = [active[i], active[i + 1]];
        if (q !== undefined && p.variant === 'current' && q.variant === 'baseline' && q.name === p.name) {
          out.push(q, p);
          i++;
        } else out.push(p);
      }
      return out;
    };
    for (let round = 1; round <= opts.rounds; round++) {
      for (const p of inOrder(round)) {
        const before = p.cache && p.admin ? await cacheCounters(p.admin) : null;
        const refused0 = p.grpcRoute && p.admin ? await notAllowed(p.admin, p.grpcRoute) : 0;
        const cpu0 = p.cpuPid !== null ? cpuSeconds(p.cpuPid) : null;
        const r = await run(p, opts.durationSec);
        const cpu1 = p.cpuPid !== null ? cpuSeconds(p.cpuPid) : null;
        if (p.grpcRoute && p.admin) refused.set(key(p), (refused.get(key(p)) ?? 0) + (await notAllowed(p.admin, p.grpcRoute)) - refused0);
        let cpuUs: number | null = null;
        if (cpu0 !== null && cpu1 !== null && r.total > 0) {
          cpuUs = ((cpu1 - cpu0) * 1e6) / r.total;
          cpuPerRound.set(key(p), [...(cpuPerRound.get(key(p)) ?? []), cpuUs]);
        }
        if (p.cache && before) {
          const after = await cacheCounters(p.admin!);
          const d = (key: string) => (after.get(`${p.cache}/${key}`) ?? 0) - (before.get(`${p.cache}/${key}`) ?? 0);
          const h = hits.get(key(p)) ?? { hit: 0, all: 0 };
          h.hit += d('hit');
          h.all += d('hit') + d('miss') + d('negative_hit');
          hits.set(key(p), h);
        }
        perRound.set(key(p), [...(perRound.get(key(p)) ?? []), r]);
        const grpcRefused = refused.get(key(p));
        log(`round ${round}/${opts.rounds} ${(p.variant === 'baseline' ? `${p.name} (baseline)` : p.name).padEnd(31)} ${Math.round(r.rps)} req/s p50 ${r.p50} ms p99 ${r.p99} ms${cpuUs !== null ? ` cpu ${cpuUs.toFixed(1)} µs/req` : ''} statuses ${JSON.stringify(r.statusCodes)}${r.errors ? ` errors ${r.errors}` : ''}${grpcRefused ? ` gRPC refusals ${grpcRefused}` : ''}`);
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
        unexpected: total - (statusCodes[String(p.expectedStatus)] ?? 0) + rs2.reduce((a, r) => a + r.errors, 0) + (refused.get(key(p)) ?? 0),
        statusCodes,
        cacheHitRatio: h && h.all > 0 ? h.hit / h.all : null,
        cpuUsPerRequest: cpuPerRound.has(key(p)) ? median(cpuPerRound.get(key(p))!) : null,
        vsNone: perRoundRatio(rs2, perRound.get(`${isH2Scenario(p.name) ? 'h2-none' : 'none'}/${p.cpuPid === null || p.name === 'grpc-nginx' ? 'current' : p.variant}`)),
        vsBaseline: p.variant === 'current' ? perRoundRatio(rs2, perRound.get(`${p.name}/baseline`)) : null,
        vsNginx: p.name.startsWith('grpc-') ? perRoundRatio(rs2, perRound.get('grpc-nginx/current')) : null,
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
    if (sink) {
      for (const g of [traced1, traced01]) await g?.stop(); // flushes their last spans
      log(`traced scenarios: the OTLP sink received ${sink.exports} export(s), ${(sink.bytes / 1048576).toFixed(1)} MiB`);
    }

    let memory: MemoryResult | null = null;
    if (want('memory')) memory = await memoryCheck(opts, dir, up.url, iss, loader, log, gateways);
    return { options: { ...opts, log: undefined } as Omit<BenchOptions, 'log'>, scenarios, flood, memory };
  } finally {
    for (const g of gateways) await g.stop();
    await (nginx as ProxyProcess | null)?.stop();
    await (h2up as GrpcUpstream | null)?.close();
    await loader.close();
    up.server.closeAllConnections();
    await new Promise<void>((r) => up.server.close(() => r()));
    sink?.server.closeAllConnections();
    sink?.server.close();
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
  // The HTTP/1.1 scenarios, then the h2 and gRPC ones (ratios to h2-none and to nginx grpc_pass; h2load's latencies to 0.01 ms).
  const table = (rows: ScenarioResult[], h2: boolean): string[] => {
    const noneName: ScenarioName = h2 ? 'h2-none' : 'none';
    const nginx = h2 && rows.some((s) => s.name === 'grpc-nginx');
    const ms = h2 ? 2 : 0;
    const out = [
      `| scenario | req/s | × ${noneName} |${nginx ? ' × nginx grpc_pass |' : ''} CPU µs/req | p50 ms | p99 ms | responses | unexpected | cache hits |${withBaseline ? ' × baseline |' : ''}`,
      `|---|---:|---:|${nginx ? '---:|' : ''}---:|---:|---:|---:|---:|---:|${withBaseline ? '---:|' : ''}`,
    ];
    for (const s of rows) {
      const label = s.variant === 'baseline' ? `${s.name} (baseline)` : s.name;
      if (s.skipped) {
        out.push(`| ${label} | ${s.skipped} | |${nginx ? ' |' : ''} | | | | | |${withBaseline ? ' |' : ''}`);
        continue;
      }
      // upstream-direct is compared with this checkout's none route.
      const none = find(noneName, s.variant);
      const ratio = s.vsNone !== null ? fmt(s.vsNone, 2) : none && none.rps > 0 ? fmt(s.rps / none.rps, 2) : '-';
      const vsNginx = nginx ? ` ${s.vsNginx !== null ? fmt(s.vsNginx, 2) : ''} |` : '';
      const hit = s.cacheHitRatio === null ? '' : `${fmt(s.cacheHitRatio * 100, 1)} %`;
      const vsBase = withBaseline ? ` ${s.vsBaseline !== null ? fmt(s.vsBaseline, 2) : ''} |` : '';
      const cpu = s.cpuUsPerRequest === null ? '' : fmt(s.cpuUsPerRequest, 1);
      out.push(`| ${label} | ${fmt(s.rps)} | ${ratio} |${vsNginx} ${cpu} | ${fmt(s.p50, ms)} | ${fmt(s.p99, ms)} | ${s.total} | ${s.unexpected} | ${hit} |${vsBase}`);
    }
    return out;
  };
  const h1 = rep.scenarios.filter((s) => !isH2Scenario(s.name));
  const h2 = rep.scenarios.filter((s) => isH2Scenario(s.name));
  const lines = h1.length > 0 || h2.length === 0 ? table(h1, false) : [];
  if (h2.length > 0) lines.push(...(lines.length > 0 ? [''] : []), ...table(h2, true));
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
