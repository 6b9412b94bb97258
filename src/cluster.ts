/**
 * `server.workers`: several gateway processes sharing the proxy (and decision) port
 * through node:cluster, to use more than one core of a pod.
 *
 * The primary process serves no traffic. It forks the workers, owns the admin listener
 * (`/readyz` is 200 only when every worker is ready; `/metrics` sums the workers'
 * registries with prom-client's AggregatorRegistry), forwards SIGHUP to every worker
 * (each also watches the config file itself), and on SIGTERM turns `/readyz` 503,
 * forwards SIGTERM (each worker drains within `shutdownGraceSec`) and exits 0 once all
 * have exited. A worker that dies otherwise is replaced. It also holds what must be one
 * per pod rather than one per worker: the requests to the IdP (discovery, JWKS,
 * introspection; answers shared while they may be cached) and, with
 * `dpop.replayStore: memory`, the used DPoP proof ids.
 */
import cluster, { type Worker } from 'node:cluster';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import Fastify, { LogController, type FastifyBaseLogger } from 'fastify';
import pino from 'pino';
import { LRUCache } from 'lru-cache';
import { AggregatorRegistry } from 'prom-client';
import type { CompiledConfig } from './config/compile.js';
import type { Gateway } from './gateway.js';
import { GatewayError } from './errors.js';
import { FetchError, fetchJsonDirect, setIdpTransport, type FetchOptions } from './idp/http.js';
import { MemoryReplayStore, type ReplayStore } from './dpop/replay-store.js';
import type { ConfigProblem } from './config/index.js';
import { createLogger } from './logger.js';
import { BatchedLineWriter } from './log-sink.js';

const STARTED = 'tokengate:started';
/** Primary → worker: drain now (sent with SIGTERM). */
export const DRAIN = 'tokengate:drain';
const ASK = 'tokengate:ask';
const ANSWER = 'tokengate:answer';

interface Question { type: typeof ASK; id: number; kind: string; payload: unknown }
interface Answer { type: typeof ANSWER; id: number; answer: unknown }

/** One end of the IPC channel between a worker and the primary: `process` in a worker, a `Worker` in the primary. */
type Channel = NodeJS.Process | Worker;
/** What both ends offer (their typings differ in overloads, not in these). */
interface Endpoint { send(message: unknown): unknown; on(event: 'message', listener: (message: never) => void): unknown }

function isOpen(ch: Channel): boolean {
  return 'isConnected' in ch ? ch.isConnected() : ch.connected && ch.send !== undefined;
}

/** Questions sent and not yet answered, per channel. */
const pending = new WeakMap<Channel, Map<number, { resolve(answer: unknown): void; timer: NodeJS.Timeout }>>();
let askSeq = 0;

/**
 * Asks the other end of `ch` a question of `kind` (answered there by {@link serveQuestions}).
 * Resolves null when the channel is closed or no answer comes within `timeoutMs`: callers
 * fail closed. A `false` from `send` only means "queued behind others".
 */
function ask<A>(ch: Channel, kind: string, payload: unknown, timeoutMs: number): Promise<A | null> {
  let waiting = pending.get(ch);
  if (!waiting) {
    const w = (waiting = new Map());
    pending.set(ch, w);
    (ch as unknown as Endpoint).on('message', (m: Answer) => {
      if (m?.type !== ANSWER) return;
      const p = w.get(m.id);
      if (!p) return;
      w.delete(m.id);
      clearTimeout(p.timer);
      p.resolve(m.answer);
    });
  }
  const id = ++askSeq;
  return new Promise((resolve) => {
    if (!isOpen(ch)) return resolve(null);
    const timer = setTimeout(() => {
      waiting.delete(id);
      resolve(null);
    }, timeoutMs);
    waiting.set(id, { resolve: resolve as (a: unknown) => void, timer });
    (ch as unknown as Endpoint).send({ type: ASK, id, kind, payload } satisfies Question);
  });
}

/** Answers the questions that come over `ch`, one handler per kind, in message order. */
function serveQuestions(ch: Channel, handlers: Record<string, (payload: never) => Promise<unknown>>): void {
  (ch as unknown as Endpoint).on('message', (m: Question) => {
    if (m?.type !== ASK) return;
    const handler = handlers[m.kind];
    if (!handler) return;
    void handler(m.payload as never).then((answer) => {
      if (isOpen(ch)) (ch as unknown as Endpoint).send({ type: ANSWER, id: m.id, answer } satisfies Answer);
    });
  });
}

interface ReplayQuestion { key: string; ttlMs: number }
interface ReplayAnswer { fresh?: boolean; full?: boolean }

/**
 * `dpop.replayStore: memory` with several workers: the used proof ids live in the
 * primary, and each worker asks it. A store per worker would let a proof be replayed once
 * per worker (connections are spread over workers). The primary answers in message
 * order, so two workers asking for one id at once get one `true`. No answer within
 * `timeoutMs` fails closed (503), like an unreachable Redis.
 */
export class PrimaryReplayStore implements ReplayStore {
  readonly kind = 'memory' as const;

  constructor(private readonly timeoutMs = 1000) {}

  /** See {@link ReplayStore.remember}. */
  async remember(key: string, ttlMs: number): Promise<boolean> {
    const a = await ask<ReplayAnswer>(process, 'replay', { key, ttlMs } satisfies ReplayQuestion, this.timeoutMs);
    if (!a || a.full || typeof a.fresh !== 'boolean') throw new GatewayError('replay_store_unavailable', { retryAfterSec: 1 });
    return a.fresh;
  }
}

interface IdpQuestion { url: string; opts: FetchOptions }
type IdpAnswer =
  | { ok: true; status: number; body: unknown; cacheControl: string | null; ageMs: number; reused: boolean }
  | { ok: false; kind: FetchError['kind']; message: string; status?: number; reused: boolean };

/**
 * In a worker: discovery and JWKS GETs, and introspection POSTs, go through the primary,
 * which sends each once and hands the answer to every worker sending the same request
 * within `shareForMs` (JWKS: the issuer's `jwks.cooldownSec`; introspection: as long as
 * an answer may be cached). So `workers: N` keeps the single-process bounds — one JWKS
 * fetch per cooldown, one introspection call per token per cache lifetime — for the whole
 * pod instead of one per worker. No answer from the primary in time is a timeout, like a
 * slow IdP.
 */
export function shareIdpRequestsThroughPrimary(): void {
  setIdpTransport(async (url, opts) => {
    const a = await ask<IdpAnswer>(process, 'idp', { url, opts } satisfies IdpQuestion, opts.timeoutMs + 1000);
    if (!a) throw new FetchError('timeout', `no answer from the primary process within ${opts.timeoutMs + 1000} ms`);
    if (!a.ok) throw new FetchError(a.kind, a.message, a.status, a.reused);
    return { status: a.status, body: a.body, cacheControl: a.cacheControl, ageMs: a.ageMs, reused: a.reused };
  });
}

/** Most IdP requests the primary keeps at once (in flight or shareable); the least recently used is forgotten first. */
export const SHARED_IDP_REQUESTS_MAX = 10_000;

interface SharedRequest { result: Promise<IdpAnswer>; doneAt: number | null }

/**
 * In the primary: one request per URL and options at a time, its answer handed to every
 * worker sending the same request within `shareForMs` of it. Entries are keyed by a hash
 * (an introspection request carries a token and a client secret), expire with their
 * `shareForMs` and are at most `max` (a flood of distinct introspected tokens costs a
 * bounded map, not one entry per token): a forgotten request is simply sent again.
 */
export class SharedIdpRequests {
  private readonly entries: LRUCache<string, SharedRequest>;

  constructor(max = SHARED_IDP_REQUESTS_MAX) {
    this.entries = new LRUCache({ max });
  }

  ask(url: string, opts: FetchOptions): Promise<IdpAnswer> {
    const { shareForMs = 0, ...rest } = opts;
    const key = createHash('sha256').update(JSON.stringify([url, rest])).digest('base64url');
    const e = this.entries.get(key);
    if (e) return e.result.then((r) => ({ ...r, reused: true, ...(r.ok ? { ageMs: Date.now() - (e.doneAt ?? Date.now()) } : {}) }));
    const entry: SharedRequest = { result: null as unknown as Promise<IdpAnswer>, doneAt: null };
    let failed = false;
    entry.result = fetchJsonDirect(url, rest).then(
      (r): IdpAnswer => ({ ok: true, status: r.status, body: r.body, cacheControl: r.cacheControl, ageMs: 0, reused: false }),
      (err: unknown): IdpAnswer => {
        failed = true;
        return err instanceof FetchError
          ? { ok: false, kind: err.kind, message: err.message, status: err.status, reused: false }
          : { ok: false, kind: 'network', message: 'fetch failed', reused: false };
      },
    ).finally(() => {
      entry.doneAt = Date.now();
      if (this.entries.peek(key) !== entry) return; // forgotten meanwhile
      // Shared from now on for shareForMs; a failed POST (introspection) never after the fact: failures are not cached.
      if (shareForMs > 0 && !(failed && rest.method === 'POST')) this.entries.set(key, entry, { ttl: shareForMs });
      else this.entries.delete(key);
    });
    this.entries.set(key, entry); // in flight: joined until done
    return entry.result;
  }
}

/** Most workers `server.workers: 0` starts: past a few cores, more replicas serve better than more processes per pod. */
export const AUTO_MAX_WORKERS = 4;

/** How many workers `server.workers` asks for (0: one per CPU the process may use, see {@link usableCpus}, at most {@link AUTO_MAX_WORKERS}). */
export function workerCount(config: CompiledConfig): number {
  return workersFor(config.server.workers);
}

/** The process count a `server.workers` value means, given the CPUs this process may use. */
export function workersFor(setting: number, cpus = usableCpus()): number {
  return setting === 0 ? Math.min(cpus, AUTO_MAX_WORKERS) : setting;
}

/**
 * CPUs this process may use: the CPUs it sees, capped by a cgroup CPU quota (a Kubernetes
 * CPU limit) rounded down, at least 1. Node's `availableParallelism()` does not read the
 * quota, so on a 16-core node a pod limited to 2 CPUs would otherwise fork 16 workers
 * that the quota then throttles. cgroup v2 `cpu.max` first, then v1 `cpu.cfs_quota_us`.
 */
export function usableCpus(root = '/sys/fs/cgroup', cpus = availableParallelism()): number {
  const quota = cgroupCpuQuota(root);
  return Math.max(1, quota === null ? cpus : Math.min(cpus, Math.floor(quota)));
}

/** The CPU quota in CPUs (quota / period), or null when there is none or it cannot be read. */
export function cgroupCpuQuota(root: string): number | null {
  const read = (p: string): string | null => {
    try {
      return readFileSync(join(root, p), 'utf8').trim();
    } catch {
      return null;
    }
  };
  const v2 = read('cpu.max'); // "max 100000" or "200000 100000"
  if (v2 !== null) {
    const [q, p] = v2.split(/\s+/);
    return q === 'max' ? null : ratio(q, p);
  }
  for (const dir of ['cpu', 'cpu,cpuacct', 'cpuacct,cpu']) {
    const q = read(`${dir}/cpu.cfs_quota_us`); // -1: no quota
    if (q !== null) return q === '-1' ? null : ratio(q, read(`${dir}/cpu.cfs_period_us`) ?? undefined);
  }
  return null;
}

function ratio(quota: string | undefined, period: string | undefined): number | null {
  const q = Number(quota);
  const p = Number(period);
  return Number.isFinite(q) && Number.isFinite(p) && q > 0 && p > 0 ? q / p : null;
}

/**
 * A logger for a cluster process (worker or primary): stdout writes of at most 4096 bytes
 * made of whole lines, so the processes' lines never interleave on a shared pipe (POSIX:
 * writes up to PIPE_BUF are atomic).
 */
export function workerLogger(level: string): pino.Logger {
  return createLogger(level, new BatchedLineWriter({ maxBatchBytes: 4096 }));
}

/** In a worker whose listeners are up: tell the primary, answer its readiness questions, expose the registry for aggregation. */
export function serveWorker(gw: Gateway): void {
  // Constructing an AggregatorRegistry installs prom-client's worker-side IPC listener
  // (setRegistries alone does not); the registry aggregated is the gateway's own.
  void new AggregatorRegistry();
  AggregatorRegistry.setRegistries([gw.metrics.registry]);
  serveQuestions(process, { readiness: async (): Promise<Readiness> => gw.readiness() });
  process.send?.({ type: STARTED });
}

interface Readiness { ready: boolean; reason?: string }

/** `tokengate check`'s lint warnings, logged once at start (by the primary with `server.workers`). */
export function logWarnings(log: pino.Logger, warnings: readonly ConfigProblem[]): void {
  for (const w of warnings) log.warn({ file: w.file, line: w.line, key: w.path }, `config warning: ${w.message}`);
}

/** Runs the primary until every worker has exited after SIGTERM/SIGINT; resolves to the exit code. */
export async function runPrimary(config: CompiledConfig, warnings: readonly ConfigProblem[] = []): Promise<number> {
  const n = workerCount(config);
  // Whole-line writes of at most PIPE_BUF, like the workers': all share one stdout.
  const log = workerLogger(config.server.logLevel).child({ role: 'primary' });
  logWarnings(log, warnings);
  const aggregator = new AggregatorRegistry();
  const workers = new Set<Worker>();
  // DPoP proof ids for every worker (used when dpop.replayStore is memory; size fixed at start).
  const replay = new MemoryReplayStore(config.server.dpop.replayCacheSize);
  // Requests to the IdP for every worker (discovery, JWKS, introspection; answers shared while cacheable).
  const idp = new SharedIdpRequests();
  let draining = false;

  // A worker reports when its listeners are up; the primary opens the admin port only once
  // all have, so `/healthz` 200 means the proxy port accepts, as in a single process.
  const started = new WeakSet<Worker>();
  let startedCount = 0;
  let onStarted = (): void => undefined;
  let onStartFailed = (_e: Error): void => undefined;
  const startup = new Promise<void>((resolve, reject) => {
    onStarted = resolve;
    onStartFailed = reject;
  });

  // Workers accept on the shared socket themselves (SCHED_NONE) rather than through the
  // primary (round-robin, Node's default on Linux): with round-robin, a connection the
  // primary is handing over when the workers stop listening (drain) is never handed to
  // anyone and hangs until the primary exits; with SCHED_NONE the kernel refuses it. The
  // kernel spreads connections less evenly (20/30 to 40/10 of 50 keep-alive connections
  // here), which measured within noise of round-robin on this 2-core machine.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  const fork = () => {
    const w = cluster.fork();
    workers.add(w);
    serveQuestions(w, {
      replay: (q: ReplayQuestion): Promise<ReplayAnswer> => replay.remember(String(q.key), Number(q.ttlMs)).then((fresh) => ({ fresh }), () => ({ full: true })),
      idp: (q: IdpQuestion): Promise<IdpAnswer> => idp.ask(String(q.url), q.opts),
    });
    w.on('message', (m: { type?: string }) => {
      if (m?.type !== STARTED || started.has(w)) return;
      started.add(w);
      if (++startedCount === n) onStarted();
    });
    w.on('exit', (code, signal) => {
      workers.delete(w);
      if (draining) return;
      if (!started.has(w) && startedCount < n) { // still starting up
        // A worker that cannot start (port in use, ...) will not start on a retry either: stop, as one process would.
        onStartFailed(new Error(`worker ${w.process.pid} exited before it started (code ${code}, signal ${signal})`));
        return;
      }
      log.error({ pid: w.process.pid, code, signal }, 'worker exited; starting a new one');
      // A replacement that also dies at once must not spin: wait a second between attempts.
      if (started.has(w)) fork();
      else setTimeout(() => { if (!draining) fork(); }, 1000).unref();
    });
  };
  for (let i = 0; i < n; i++) fork();
  try {
    await startup;
  } catch (e) {
    draining = true;
    log.error({ err: (e as Error).message }, 'tokengate did not start');
    await Promise.all([...workers].map((w) => new Promise<void>((resolve) => {
      w.once('exit', () => resolve());
      w.process.kill('SIGTERM');
    })));
    log.flush?.();
    return 1;
  }

  const askReadiness = async (w: Worker): Promise<Readiness> =>
    (await ask<Readiness>(w, 'readiness', null, 1000)) ?? { ready: false, reason: `worker ${w.process.pid} did not answer` };

  const admin = Fastify({ loggerInstance: log as unknown as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: true }) });
  admin.setErrorHandler((_err, _req, reply) => reply.code(500).send({ error: 'server_error' }));
  admin.get('/healthz', async () => ({ status: 'ok' }));
  admin.get('/readyz', async (_req, reply) => {
    if (draining) return reply.code(503).send({ ready: false, reason: 'shutting down' });
    const live = [...workers];
    if (live.length < n) return reply.code(503).send({ ready: false, reason: `${live.length} of ${n} workers running` });
    const answers = await Promise.all(live.map(askReadiness));
    const notReady = answers.find((a) => !a.ready);
    return reply.code(notReady ? 503 : 200).send(notReady ?? { ready: true, workers: n });
  });
  admin.get('/metrics', async (_req, reply) => {
    const body = await aggregator.clusterMetrics();
    return reply.type(aggregator.contentType).send(body);
  });
  const address = await admin.listen({ host: config.admin.host, port: config.admin.port });
  log.info({ admin: address, workers: n }, 'tokengate primary started');

  const onHup = () => {
    for (const w of workers) w.process.kill('SIGHUP');
  };
  process.on('SIGHUP', onHup);
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      if (draining) return;
      draining = true;
      log.info({ signal, graceSec: config.server.shutdownGraceSec }, 'draining workers');
      if (workers.size === 0) resolve();
      for (const w of workers) {
        w.once('exit', () => { if (workers.size === 0) resolve(); });
        // Over IPC first: it is ordered before any connection the primary hands this worker
        // later, so the worker has stopped accepting by then (a signal could arrive after).
        if (w.isConnected()) w.send({ type: DRAIN });
        w.process.kill('SIGTERM');
      }
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  process.off('SIGHUP', onHup);
  await admin.close();
  log.info('stopped');
  log.flush?.();
  return 0;
}
