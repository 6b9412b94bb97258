/**
 * The introspection cache: decisions keyed by a SHA-256 of (issuer id, token), never the
 * token itself; active answers live `min(cacheTtlSec, exp − now)` (RFC 7662 §4: a cached
 * answer must not outlive the token), inactive ones `negativeCacheTtlSec`, failures not at
 * all; concurrent lookups of one key share one introspection call (single-flight).
 *
 * Where entries live is an {@link IntrospectionStore}: {@link MemoryIntrospectionStore} (a
 * size-bounded LRU) here; a shared store (Redis) implements the same two methods.
 * The single-flight map is always per process.
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { IntrospectionConfig } from '../config/schema.js';
import type { IntrospectionAnswer } from './introspection-client.js';

/**
 * Where cached decisions are kept. `get` returns undefined for a missing or expired
 * entry; `set` keeps `value` for `ttlMs` (> 0) milliseconds. A store that fails should
 * throw: a failed `get` counts as a miss (the token is introspected), a failed `set` is
 * ignored (the next request introspects again). Neither ever admits a token.
 */
export interface IntrospectionStore {
  get(key: string): Promise<IntrospectionAnswer | undefined>;
  set(key: string, value: IntrospectionAnswer, ttlMs: number): Promise<void>;
}

/** How a lookup was served: from a cached active answer, a cached inactive one, or a call. */
export type CacheResult = 'hit' | 'negative_hit' | 'miss';

/** The cache-lifetime settings (from the issuer's `introspection` block). */
export type CachePolicy = Pick<IntrospectionConfig, 'cacheTtlSec' | 'negativeCacheTtlSec'>;

/** The one stored form of an inactive answer: nothing else from it is kept. */
const INACTIVE: IntrospectionAnswer = Object.freeze({ active: false });

/**
 * The cache key of `token` at `issuerId`: base64url SHA-256 of `issuerId NUL scope NUL token`.
 * Issuer ids cannot contain NUL, nor can `scope` (JSON text) or a token, so two (issuer,
 * token) pairs never share a key, and a decision cached for one issuer is never found for
 * another. `scope` names who answered (issuer, endpoint, client): an issuer id is only a
 * local name, and a shared store (Redis) outlives reloads and may serve other deployments.
 */
export function introspectionCacheKey(issuerId: string, token: string, scope: string): string {
  return createHash('sha256').update(issuerId).update('\u0000').update(scope).update('\u0000').update(token).digest('base64url');
}

/**
 * How long an answer may be cached, in milliseconds (0: not at all). Active:
 * `min(cacheTtlSec, exp − now)`, and 0 without a numeric `exp` (such an answer is refused
 * anyway); inactive: `negativeCacheTtlSec`.
 */
export function cacheTtlMs(answer: IntrospectionAnswer, policy: CachePolicy, nowMs: number): number {
  if (!answer.active) return policy.negativeCacheTtlSec * 1000;
  const exp = answer.exp;
  if (typeof exp !== 'number' || !Number.isFinite(exp)) return 0;
  return Math.max(0, Math.min(policy.cacheTtlSec * 1000, Math.floor(exp * 1000 - nowMs)));
}

/** An in-process, size-bounded LRU store whose TTLs run on an injectable clock. */
export class MemoryIntrospectionStore implements IntrospectionStore {
  private readonly lru: LRUCache<string, { value: IntrospectionAnswer; expiresAt: number }>;
  private readonly now: () => number;

  /** `max` entries at most; `now` in milliseconds (tests inject a clock). */
  constructor(max: number, now: () => number = Date.now) {
    this.now = now;
    // The LRU's own TTL (same clock; ttlResolution 0: no cached "now", no timer) only frees
    // memory early; `expiresAt` decides, so an entry is gone at its TTL, not 1 ms after.
    this.lru = new LRUCache({ max, ttlResolution: 0, perf: { now } });
  }

  /** The entry, unless missing or expired. */
  async get(key: string): Promise<IntrospectionAnswer | undefined> {
    const e = this.lru.get(key);
    if (!e) return undefined;
    if (this.now() >= e.expiresAt) {
      this.lru.delete(key);
      return undefined;
    }
    return e.value;
  }

  /** Keeps `value` for `ttlMs`. */
  async set(key: string, value: IntrospectionAnswer, ttlMs: number): Promise<void> {
    if (ttlMs > 0) this.lru.set(key, { value, expiresAt: this.now() + ttlMs }, { ttl: ttlMs });
  }

  /** Entries held (expired ones may still count until touched or evicted). */
  get size(): number {
    return this.lru.size;
  }
}

/** Options of an {@link IntrospectionCache}. */
export interface IntrospectionCacheOptions {
  store: IntrospectionStore;
  policy: CachePolicy;
  /** Milliseconds since the epoch. */
  now?: () => number;
}

/** Cached, single-flight introspection decisions for one issuer. */
export class IntrospectionCache {
  private readonly store: IntrospectionStore;
  private readonly policy: CachePolicy;
  private readonly now: () => number;
  private readonly inflight = new Map<string, Promise<IntrospectionAnswer>>();

  constructor(opts: IntrospectionCacheOptions) {
    this.store = opts.store;
    this.policy = opts.policy;
    this.now = opts.now ?? Date.now;
  }

  /**
   * The decision for `key`: a cached one, the pending call for the same key, or the result
   * of `load()` (stored for its TTL before anyone else can miss it). A failed `load()` is
   * thrown to every waiter and never cached.
   */
  async resolve(key: string, load: () => Promise<IntrospectionAnswer>): Promise<{ answer: IntrospectionAnswer; result: CacheResult }> {
    let pending = this.inflight.get(key);
    if (!pending) {
      let cached: IntrospectionAnswer | undefined;
      try {
        cached = await this.store.get(key);
      } catch {
        cached = undefined; // a store outage costs a call, never a decision
      }
      if (cached) return { answer: cached, result: cached.active ? 'hit' : 'negative_hit' };
      pending = this.inflight.get(key) ?? this.start(key, load);
    }
    return { answer: await pending, result: 'miss' };
  }

  private start(key: string, load: () => Promise<IntrospectionAnswer>): Promise<IntrospectionAnswer> {
    const p = (async () => {
      const answer = await load();
      const stored = answer.active ? answer : INACTIVE;
      const ttl = cacheTtlMs(stored, this.policy, this.now());
      if (ttl > 0) await this.store.set(key, stored, ttl).catch(() => undefined);
      return stored;
    })();
    this.inflight.set(key, p);
    // Removed only after the store has the answer, so a later lookup finds one or the other.
    p.then(() => this.inflight.delete(key), () => this.inflight.delete(key));
    return p;
  }
}
