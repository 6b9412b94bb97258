/**
 * `server.workers`: several gateway processes sharing the proxy (and decision) port
 * through node:cluster, to use more than one core of a pod.
 *
 * Each worker is a complete gateway with its own key and token caches, like an Envoy
 * worker thread: nothing is asked of another process on a request's way, except the DPoP
 * proof ids of a `memory` replay store, which must be one set per pod. The primary serves
 * no traffic. It forks the workers, owns the admin listener (`/readyz` is 200 only when
 * every worker is ready; `/metrics` sums the workers' registries with prom-client's
 * AggregatorRegistry), holds the pod's DPoP proof ids, forwards SIGHUP to every worker
 * (each also watches the config file itself), and on SIGTERM turns `/readyz` 503, asks
 * every worker to drain within `shutdownGraceSec` and exits 0 once all have exited. A
 * worker that dies otherwise is replaced.
 */
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import type { CompiledConfig } from '../config/compile.js';
import type { CheckedConfig } from '../config/index.js';
import { MemoryReplayStore } from '../dpop/replay-store.js';
import { buildAdmin } from '../server/admin.js';
import { Channel, type Readiness } from './channel.js';
import { workersFor } from './cpus.js';
import { clusterLogger, logWarnings } from './worker.js';

/** Longest wait for a worker's readiness answer. */
const READINESS_TIMEOUT_MS = 1000;

/** How many gateway processes `config` asks for. */
export function workerCount(config: CompiledConfig): number {
  return workersFor(config.server.workers);
}

/** Runs the primary until every worker has exited after SIGTERM/SIGINT; resolves to the exit code. */
export async function runPrimary(checked: CheckedConfig): Promise<number> {
  const { config, warnings, textHash } = checked;
  const n = workerCount(config);
  // What the first workers start on: this read of the file, validated once (a 10 000-route
  // file takes seconds to parse; each worker would otherwise parse it again, and a file
  // changed in between would start the workers on different configs). Once they have
  // started it is withdrawn: a worker that replaces a dead one reads the file itself, as
  // the others have reloaded it since — the start's config may be looser than what runs.
  let startConfig: { source: typeof config.source; textHash: string } | null = { source: config.source, textHash };
  // Whole-line writes of at most PIPE_BUF, like the workers': all share one stdout.
  const log = clusterLogger(config.server.logLevel).child({ role: 'primary' });
  logWarnings(log, warnings);
  const aggregator = new AggregatorRegistry();
  const workers = new Map<Worker, Channel>();
  // DPoP proof ids for every worker (used when dpop.replayStore is memory; size fixed at start).
  const replay = new MemoryReplayStore(config.server.dpop.replayCacheSize);
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
  // anyone and hangs until the primary exits; with SCHED_NONE the kernel refuses it.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  const fork = () => {
    const w = cluster.fork();
    const channel = new Channel(w);
    workers.set(w, channel);
    channel.serve({
      replay: ({ key, ttlMs }) => replay.remember(String(key), Number(ttlMs)),
      config: () => startConfig,
    });
    channel.onNotice('started', () => {
      if (started.has(w)) return;
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
  log.info({ workers: n, routes: config.routes.length }, 'config loaded; starting workers');
  for (let i = 0; i < n; i++) fork();
  try {
    await startup;
    startConfig = null;
  } catch (e) {
    draining = true;
    log.error({ err: (e as Error).message }, 'tokengate did not start');
    await Promise.all([...workers.keys()].map((w) => new Promise<void>((resolve) => {
      w.once('exit', () => resolve());
      w.process.kill('SIGTERM');
    })));
    log.flush?.();
    return 1;
  }

  const readinessOf = (w: Worker, ch: Channel): Promise<Readiness> =>
    ch.ask('readiness', null, READINESS_TIMEOUT_MS).catch((e: Error) => ({ ready: false, reason: `worker ${w.process.pid}: ${e.message}` }));
  const admin = buildAdmin({
    readiness: async () => {
      if (draining) return { ready: false, reason: 'shutting down' };
      if (workers.size < n) return { ready: false, reason: `${workers.size} of ${n} workers running` };
      const answers = await Promise.all([...workers].map(([w, ch]) => readinessOf(w, ch)));
      return answers.find((a) => !a.ready) ?? { ready: true, workers: n };
    },
    metrics: async () => ({ contentType: aggregator.contentType, body: await aggregator.clusterMetrics() }),
  }, log);
  const address = await admin.listen({ host: config.admin.host, port: config.admin.port });
  log.info({ admin: address, workers: n }, 'tokengate primary started');

  const onHup = () => {
    for (const w of workers.keys()) w.process.kill('SIGHUP');
  };
  process.on('SIGHUP', onHup);
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      if (draining) return;
      draining = true;
      log.info({ signal, graceSec: config.server.shutdownGraceSec }, 'draining workers');
      if (workers.size === 0) resolve();
      for (const [w, ch] of workers) {
        w.once('exit', () => { if (workers.size === 0) resolve(); });
        // Over IPC first: it is ordered before any connection the primary hands this worker
        // later, so the worker has stopped accepting by then (a signal could arrive after).
        ch.notify('drain');
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
