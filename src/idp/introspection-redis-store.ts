/**
 * The shared introspection cache (`introspection.cacheStore: redis`): the same
 * {@link IntrospectionStore} as the in-memory one, on the gateway's Redis connection, so
 * every replica reuses an answer any of them obtained. Keys are the cache key (a SHA-256
 * of issuer id and token, never the token); values the answer as JSON; TTLs are the ones
 * the cache computes (`min(cacheTtlSec, exp − now)`, or `negativeCacheTtlSec`), set with
 * `PX` so Redis drops the entry on time. A Redis failure throws, which the cache treats
 * as a miss (get) or ignores (set): an outage costs introspection calls, never a decision.
 */
import type { Redis } from 'ioredis';
import type { IntrospectionStore } from './introspection-cache.js';
import type { IntrospectionAnswer } from './introspection-client.js';

/** Prefix of every introspection entry in Redis. */
export const INTROSPECTION_KEY_PREFIX = 'tokengate:introspection:';

/** Introspection answers in Redis. */
export class RedisIntrospectionStore implements IntrospectionStore {
  private readonly redis: () => Redis | null;

  /** `redis` returns the gateway's current connection (it may be replaced on reload). */
  constructor(redis: () => Redis | null) {
    this.redis = redis;
  }

  private client(): Redis {
    const c = this.redis();
    if (!c) throw new Error('no redis connection');
    return c;
  }

  /** The stored answer, or undefined when missing, expired or not a valid answer. */
  async get(key: string): Promise<IntrospectionAnswer | undefined> {
    const raw = await this.client().get(INTROSPECTION_KEY_PREFIX + key);
    if (raw === null) return undefined;
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch {
      return undefined;
    }
    if (!v || typeof v !== 'object' || Array.isArray(v) || typeof (v as { active?: unknown }).active !== 'boolean') return undefined;
    return Object.freeze(v) as IntrospectionAnswer;
  }

  /** Keeps `value` for `ttlMs` (`SET key json PX ttl`). */
  async set(key: string, value: IntrospectionAnswer, ttlMs: number): Promise<void> {
    if (ttlMs <= 0) return;
    await this.client().set(INTROSPECTION_KEY_PREFIX + key, JSON.stringify(value), 'PX', Math.ceil(ttlMs));
  }
}
