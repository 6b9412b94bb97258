/**
 * How this process runs its gateway: alone, or as one of a primary's workers. The
 * difference is confined to the {@link ProcessRole} chosen once at start; the gateway
 * itself is the same complete gateway either way.
 */
import cluster from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import type pino from 'pino';
import { compileConfig } from '../config/compile.js';
import type { CheckedConfig, ConfigProblem } from '../config/index.js';
import type { ReplayStore } from '../dpop/replay-store.js';
import { GatewayError } from '../errors.js';
import type { Gateway, GatewayOptions } from '../gateway.js';
import { createLogger } from '../logger.js';
import { BatchedLineWriter } from '../log-sink.js';
import { Channel } from './channel.js';

/**
 * `dpop.replayStore: memory` with several workers: the used proof ids live in the primary,
 * and each worker asks it. A store per worker would let a proof be replayed once per worker
 * (connections are spread over workers). The primary answers in message order, so two
 * workers asking for one id at once get one `true`. No answer in time, or an error answer,
 * fails closed (503), like an unreachable Redis.
 */
export class PrimaryReplayStore implements ReplayStore {
  readonly kind = 'memory' as const;

  constructor(private readonly channel: Channel, private readonly timeoutMs = 1000) {}

  /** See {@link ReplayStore.remember}. */
  async remember(key: string, ttlMs: number): Promise<boolean> {
    try {
      return await this.channel.ask('replay', { key, ttlMs }, this.timeoutMs);
    } catch {
      throw new GatewayError('replay_store_unavailable', { retryAfterSec: 1 });
    }
  }
}

/**
 * A logger for a cluster process (worker or primary): stdout writes of at most 4096 bytes
 * made of whole lines, so the processes' lines never interleave on a shared pipe (POSIX:
 * writes up to PIPE_BUF are atomic).
 */
export function clusterLogger(level: string): pino.Logger {
  return createLogger(level, new BatchedLineWriter({ maxBatchBytes: 4096 }));
}

/** `tokengate check`'s lint warnings, logged once at start (by the primary with `server.workers`). */
export function logWarnings(log: pino.Logger, warnings: readonly ConfigProblem[]): void {
  for (const w of warnings) log.warn({ file: w.file, line: w.line, key: w.path }, `config warning: ${w.message}`);
}

/** Longest a worker waits for the primary's config at start (the primary is idle then: it answers at once). */
const START_CONFIG_TIMEOUT_MS = 30_000;

/** What differs between a gateway process that runs alone and one that is a worker. */
export interface ProcessRole {
  /**
   * The config this process starts on. Alone, `read()` reads the file (null: its problems
   * were printed). The pod's first workers do not read the file: they compile the config
   * the primary read and validated, so all start on the same text, parsed once. A worker
   * that replaces a dead one reads the file (`read()`), like the running workers' reloads.
   */
  startConfig(read: () => CheckedConfig | null): Promise<CheckedConfig | null>;
  /** Options for the {@link Gateway} of this process. */
  gatewayOptions(level: string): GatewayOptions;
  /** The listeners are up: tell whoever supervises this process. */
  started(gw: Gateway): void;
  /** Calls `stop` when the supervisor asks this process to drain (SIGTERM always does). */
  onDrain(stop: () => void): void;
}

/** A process that serves alone: its own admin port and replay store; it logs the config's warnings. */
export function standaloneRole(): ProcessRole {
  let warnings: readonly ConfigProblem[] = [];
  return {
    startConfig: async (read) => {
      const checked = read();
      warnings = checked?.warnings ?? [];
      return checked;
    },
    gatewayOptions: () => ({}),
    started: (gw) => logWarnings(gw.logger, warnings),
    onDrain: () => undefined,
  };
}

/**
 * A cluster worker: the primary serves the admin port (asking each worker for readiness
 * and aggregating their metric registries), holds the DPoP proof ids of a memory store,
 * hands over the config at start and logs its warnings.
 */
export function workerRole(): ProcessRole {
  const channel = new Channel(process);
  return {
    startConfig: async (read) => {
      const given = await channel.ask('config', null, START_CONFIG_TIMEOUT_MS);
      // A replacement for a dead worker: the file, as the running workers have reloaded it.
      if (given === null) return read();
      return { config: compileConfig(given.source), warnings: [], textHash: given.textHash };
    },
    gatewayOptions: (level) => ({ admin: false, logger: clusterLogger(level), memoryReplayStore: new PrimaryReplayStore(channel) }),
    started: (gw) => {
      // Constructing an AggregatorRegistry installs prom-client's worker-side IPC listener
      // (setRegistries alone does not); the registry aggregated is the gateway's own.
      void new AggregatorRegistry();
      AggregatorRegistry.setRegistries([gw.metrics.registry]);
      channel.serve({ readiness: () => gw.readiness() });
      channel.notify('started');
    },
    onDrain: (stop) => channel.onNotice('drain', stop),
  };
}

/** The role of this process: a worker when node:cluster forked it, else alone. */
export function processRole(): ProcessRole {
  return cluster.isWorker ? workerRole() : standaloneRole();
}
