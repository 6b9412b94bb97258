/**
 * The Redis connection shared by the stores that use it (DPoP replay store, introspection
 * cache). Configured to fail fast rather than wait: no offline queue (a command while
 * disconnected fails at once), a per-command timeout, one attempt per command, and
 * reconnection in the background with a capped backoff. Every caller turns a failure
 * into a 503, never into an accept.
 */
import { Redis } from 'ioredis';
import type { Logger } from 'pino';

/** Options of {@link createRedis}. */
export interface RedisOptions {
  url: string;
  commandTimeoutMs: number;
  logger: Logger;
}

/** Opens a client on `url` (connects in the background). Errors are logged at most every 10 s, never with the URL. */
export function createRedis(opts: RedisOptions): Redis {
  const client = new Redis(opts.url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: opts.commandTimeoutMs,
    connectTimeout: Math.max(opts.commandTimeoutMs, 1000),
    retryStrategy: (times) => Math.min(100 * times, 2000),
    lazyConnect: false,
    // On close, a socket that does not end promptly (e.g. a server already gone) is destroyed.
    disconnectTimeout: 200,
  });
  let lastLog = 0;
  client.on('error', (err: NodeJS.ErrnoException) => {
    const now = Date.now();
    if (now - lastLog < 10_000) return;
    lastLog = now;
    opts.logger.warn({ code: err.code }, 'redis unavailable');
  });
  return client;
}

/** Closes `client` without waiting for a server that may be gone. */
export async function closeRedis(client: Redis): Promise<void> {
  client.disconnect(false);
}
