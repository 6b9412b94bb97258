/**
 * One issuer's introspection, as the pipeline sees it: cache lookup, single-flight call,
 * metrics events, and the fail-closed mapping of every failure to
 * `introspection_unavailable` (503 with Retry-After). Answers are returned unchecked:
 * judging them (`exp`, `iss`, `aud`, ...) is the verifier's job.
 */
import type { OutboundTracer } from '../tracing/outbound.js';
import type { IntrospectionConfig } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import { IntrospectionCache, introspectionCacheKey, MemoryIntrospectionStore, type CacheResult, type IntrospectionStore } from './introspection-cache.js';
import { IntrospectionClient, IntrospectionFailure, type IntrospectionAnswer } from './introspection-client.js';

/** Seconds a client is told to wait (`Retry-After`) when introspection is unavailable. */
export const INTROSPECTION_RETRY_AFTER_SEC = 2;

/** What an {@link Introspector} reports (to metrics and logs); never the token. */
export interface IntrospectorEvents {
  /** One call to the endpoint finished. */
  onCall?(result: 'active' | 'inactive' | 'error', seconds: number, failure?: IntrospectionFailure): void;
  onCache?(result: CacheResult): void;
}

/** Options of an {@link Introspector}. */
export interface IntrospectorOptions {
  issuerId: string;
  /** The issuer's exact identifier (`issuers[].issuer`): part of the cache key's scope. */
  issuer: string;
  policy: IntrospectionConfig;
  /** The endpoint: `policy.endpoint`, else discovery's `introspection_endpoint`. */
  endpoint: () => Promise<string>;
  /** Milliseconds since the epoch. */
  now?: () => number;
  events?: IntrospectorEvents;
  /** Where decisions are cached; default: an in-memory LRU of `policy.cacheSize` entries. */
  store?: IntrospectionStore;
  /** Outbound policy (`server.allowInsecureHttpHosts`); default loopback only. */
  allowInsecureHttpHosts?: readonly string[];
  /** Calls run as spans of the request that needed them. */
  tracer?: OutboundTracer;
}

/** Cached RFC 7662 introspection at one issuer. */
export class Introspector {
  readonly issuerId: string;
  private readonly client: IntrospectionClient;
  private readonly cache: IntrospectionCache;
  private readonly events: IntrospectorEvents;
  /** Who answers (issuer, endpoint, client): cached answers are found only under the same. */
  private readonly keyScope: string;

  constructor(opts: IntrospectorOptions) {
    const now = opts.now ?? Date.now;
    if (!opts.store && opts.policy.cacheStore !== 'memory') {
      // Refused at config load (cross-check); kept here so no path silently falls back.
      throw new Error(`introspection cacheStore ${opts.policy.cacheStore} is not supported`);
    }
    this.issuerId = opts.issuerId;
    this.events = opts.events ?? {};
    this.keyScope = JSON.stringify([opts.issuer, opts.policy.endpoint ?? null, opts.policy.clientId]);
    this.client = new IntrospectionClient({
      policy: opts.policy, endpoint: opts.endpoint, allowInsecureHttpHosts: opts.allowInsecureHttpHosts, tracer: opts.tracer, issuerId: opts.issuerId,
    });
    this.cache = new IntrospectionCache({
      store: opts.store ?? new MemoryIntrospectionStore(opts.policy.cacheSize, now),
      policy: opts.policy,
      now,
    });
  }

  /**
   * The (possibly cached) answer for `token`. Throws `introspection_unavailable` when the
   * endpoint gives no valid answer: fail closed, and never cached, so the next request asks
   * again (RFC 7662 §4: an unverifiable token must not be accepted).
   */
  async introspect(token: string): Promise<IntrospectionAnswer> {
    const key = introspectionCacheKey(this.issuerId, token, this.keyScope);
    try {
      const { answer, result } = await this.cache.resolve(key, () => this.call(token));
      this.events.onCache?.(result);
      return answer;
    } catch (e) {
      this.events.onCache?.('miss');
      if (e instanceof IntrospectionFailure) {
        throw new GatewayError('introspection_unavailable', { retryAfterSec: INTROSPECTION_RETRY_AFTER_SEC });
      }
      throw e;
    }
  }

  private async call(token: string): Promise<IntrospectionAnswer> {
    const start = performance.now();
    try {
      const answer = await this.client.introspect(token);
      this.events.onCall?.(answer.active ? 'active' : 'inactive', (performance.now() - start) / 1000);
      return answer;
    } catch (e) {
      const failure = e instanceof IntrospectionFailure ? e : new IntrospectionFailure('network', 'request failed');
      this.events.onCall?.('error', (performance.now() - start) / 1000, failure);
      throw failure;
    }
  }
}
