/**
 * Where seen DPoP proof ids are remembered (RFC 9449 §11.1): a proof is accepted only if
 * its key was not present, and the key is kept for the whole time the proof could still
 * pass the `iat` check. Two stores: memory (one replica) and Redis (`SET key NX PX`, one
 * atomic command, shared by every replica). Any store failure fails closed (503).
 */
import type { Redis } from 'ioredis';
import { GatewayError } from '../errors.js';

/** A set of seen proof ids with expiry. */
export interface ReplayStore {
  /**
   * Records `key` for `ttlMs`; resolves true when it was not seen before (the proof may
   * be used), false when it was (a replay). Rejects with 503 `replay_store_unavailable`
   * when the answer cannot be known.
   */
  remember(key: string, ttlMs: number): Promise<boolean>;
  /** Which store this is, for metric labels. */
  readonly kind: 'memory' | 'redis';
}

/**
 * In-process store: a Map of id → expiry, in insertion order (which is expiry order for
 * a fixed window), trimmed from the front as entries expire. Bounded: when it holds `max`
 * unexpired ids it refuses (503) rather than forget one, since a forgotten id could be
 * replayed.
 */
export class MemoryReplayStore implements ReplayStore {
  readonly kind = 'memory' as const;
  private readonly seen = new Map<string, number>();
  /** Most ids held at once (a reload may change it; the ids already held stay). */
  max: number;
  private readonly now: () => number;

  constructor(max: number, now: () => number = Date.now) {
    this.max = max;
    this.now = now;
  }

  /** See {@link ReplayStore.remember}. */
  async remember(key: string, ttlMs: number): Promise<boolean> {
    const now = this.now();
    this.trim(now, 4);
    const until = this.seen.get(key);
    if (until !== undefined && until > now) return false;
    if (this.seen.size >= this.max) {
      for (const [k, u] of this.seen) if (u <= now) this.seen.delete(k);
      if (this.seen.size >= this.max) throw new GatewayError('replay_store_unavailable', { retryAfterSec: 1 });
    }
    this.seen.delete(key); // re-insert at the end, keeping expiry order
    this.seen.set(key, now + ttlMs);
    return true;
  }

  /** Drops up to `budget` expired entries from the front (oldest first). */
  private trim(now: number, budget: number): void {
    for (const [k, until] of this.seen) {
      if (budget-- <= 0 || until > now) break;
      this.seen.delete(k);
    }
  }

  /** Ids currently remembered (expired ones may still count until trimmed). */
  get size(): number {
    return this.seen.size;
  }
}

/** Shared store on Redis: `SET tokengate:dpop:<key> 1 NX PX <ttl>` is the whole check. */
export class RedisReplayStore implements ReplayStore {
  readonly kind = 'redis' as const;
  private readonly redis: Redis;

  constructor(redis: Redis) {
    this.redis = redis;
  }

  /** See {@link ReplayStore.remember}. */
  async remember(key: string, ttlMs: number): Promise<boolean> {
    let answer: string | null;
    try {
      answer = await this.redis.set(`tokengate:dpop:${key}`, '1', 'PX', ttlMs, 'NX');
    } catch {
      throw new GatewayError('replay_store_unavailable', { retryAfterSec: 1 });
    }
    return answer === 'OK';
  }
}
