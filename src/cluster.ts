/**
 * `server.workers`: several gateway processes sharing the proxy (and decision) port
 * through node:cluster, to use more than one core of a pod.
 *
 * The primary process serves no traffic. It forks the workers, owns the admin listener
 * (`/readyz` is 200 only when every worker is ready; `/metrics` sums the workers'
 * registries with prom-client's AggregatorRegistry), forwards SIGHUP to every worker
 * (each also watches the config file itself), and on SIGTERM turns `/readyz` 503,
 * forwards SIGTERM (each worker drains within `shutdownGraceSec`) and exits 0 once all
 * have exited. A worker that dies otherwise is replaced.
 */
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import Fastify, { LogController, type FastifyBaseLogger } from 'fastify';
import pino from 'pino';
import { AggregatorRegistry } from 'prom-client';
import type { CompiledConfig } from './config/compile.js';
import type { Gateway } from './gateway.js';
import { createLogger } from './logger.js';
import { BatchedLineWriter } from './log-sink.js';

const READINESS_REQ = 'tokengate:readiness?';
const READINESS_RES = 'tokengate:readiness';

/** How many workers `server.workers` asks for (0: one per available CPU). */
export function workerCount(config: CompiledConfig): number {
  const n = config.server.workers;
  return n === 0 ? availableParallelism() : n;
}

/**
 * A logger for a worker: stdout writes of at most 4096 bytes made of whole lines, so the
 * workers' lines never interleave on a shared pipe (POSIX: writes up to PIPE_BUF are atomic).
 */
export function workerLogger(level: string): pino.Logger {
  return createLogger(level, new BatchedLineWriter({ maxBatchBytes: 4096 }));
}

/** In a worker: answer the primary's readiness questions and expose the registry for aggregation. */
export function serveWorker(gw: Gateway): void {
  // Constructing an AggregatorRegistry installs prom-client's worker-side IPC listener
  // (setRegistries alone does not); the registry aggregated is the gateway's own.
  void new AggregatorRegistry();
  AggregatorRegistry.setRegistries([gw.metrics.registry]);
  process.on('message', (m: { type?: string; id?: number }) => {
    if (m?.type !== READINESS_REQ) return;
    process.send?.({ type: READINESS_RES, id: m.id, ...gw.readiness() });
  });
}

interface Readiness { ready: boolean; reason?: string }

/** Runs the primary until every worker has exited after SIGTERM/SIGINT; resolves to the exit code. */
export async function runPrimary(config: CompiledConfig): Promise<number> {
  const n = workerCount(config);
  const log = createLogger(config.server.logLevel).child({ role: 'primary' });
  const aggregator = new AggregatorRegistry();
  const workers = new Set<Worker>();
  let draining = false;
  let seq = 0;

  const fork = () => {
    const w = cluster.fork();
    workers.add(w);
    w.on('exit', (code, signal) => {
      workers.delete(w);
      if (!draining) {
        log.error({ pid: w.process.pid, code, signal }, 'worker exited; starting a new one');
        fork();
      }
    });
  };
  for (let i = 0; i < n; i++) fork();

  const askReadiness = (w: Worker): Promise<Readiness> => new Promise((resolve) => {
    const id = ++seq;
    const timer = setTimeout(() => { w.off('message', onMsg); resolve({ ready: false, reason: `worker ${w.process.pid} did not answer` }); }, 1000);
    const onMsg = (m: { type?: string; id?: number } & Readiness) => {
      if (m?.type !== READINESS_RES || m.id !== id) return;
      clearTimeout(timer);
      w.off('message', onMsg);
      resolve({ ready: m.ready, reason: m.reason });
    };
    w.on('message', onMsg);
    w.send({ type: READINESS_REQ, id });
  });

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
