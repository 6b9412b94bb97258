/**
 * One issuer's signing keys: fetched once, cached, refreshed when they expire
 * (`cacheTtlSec`, or a shorter `Cache-Control: max-age`) and on an unknown `kid`, with
 * every fetch coalesced (single flight), and the last good keys kept for `maxStaleSec`
 * past their expiry while the IdP is down.
 *
 * Two intervals bound the requests to the IdP, as in Envoy's JWKS fetcher: the refresh of
 * an expired set is due at its expiry (never sooner than {@link MIN_REFETCH_MS} after the
 * previous fetch), so a removed key stops working within one lifetime of the set even when
 * that is shorter than the cooldown; `cooldownSec` (opened by any fetch, the first
 * included) limits only the extra fetches an unknown `kid` triggers, so a flood of random
 * `kid`s cannot turn into a storm. After a failed fetch the next try comes at the set's own
 * refresh interval, or after the cooldown if that is sooner.
 *
 * jose's `createRemoteJWKSet` throws instead of serving stale keys, so the policy lives
 * here and jose only imports the keys.
 *
 * @example
 *   const cache = new JwksCache({ issuerId: 'corp', resolveUri: async () => url, policy, now: Date.now });
 *   const { key, id } = await cache.getKey(header.kid, header.alg);
 */
import { createHash, KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, importJWK, type JWK } from 'jose';
import { keyFitsAlg } from '../pipeline/jws.js';
import { GatewayError } from '../errors.js';
import { fetchJson, maxAgeOf, type FetchOptions } from './http.js';
import type { OutboundTracer } from '../tracing/outbound.js';

/** The cache policy (the issuer's `jwks` block). */
export interface JwksPolicy {
  cacheTtlSec: number;
  cooldownSec: number;
  timeoutMs: number;
  maxStaleSec: number;
  maxBytes: number;
}

/** Observers for metrics and logs. */
export interface JwksEvents {
  /** A fetch ended. */
  onFetch?(result: 'success' | 'failure', reason?: string): void;
}

/** A usable public key and its identity as published. */
export interface SelectedKey {
  /** A `KeyObject` from this cache; a `CryptoKey` is accepted too (the verifier unwraps it). */
  key: KeyObject | CryptoKey;
  /** RFC 7638 thumbprint plus a hash of the JWK: stable across refreshes while the key is republished unchanged. */
  id: string;
}

interface KeyEntry {
  jwk: JWK;
  /**
   * The key as published: its thumbprint and a hash of the whole JWK, so that a key
   * republished with another `kid`, `alg`, `use` or `key_ops` is another key (its cached
   * verifications end, its imports are redone).
   */
  id: string;
  /**
   * The key imported per `alg` (jose's importJWK checks the JWK against the algorithm), kept
   * as the `KeyObject` that `node:crypto` verifies with: once per key and algorithm for as
   * long as the key stays published unchanged, never per request.
   */
  imported: Map<string, Promise<KeyObject>>;
}

interface KeySet {
  keys: KeyEntry[];
  ids: Set<string>;
  fetchedAt: number;
  expiresAt: number;
}

/** The shortest time between two fetches of one key set, whatever its `max-age` says. */
export const MIN_REFETCH_MS = 1000;

/** Which JWK `kty`/`crv` can verify a JWS `alg` (RFC 7518 §3, RFC 8037). */
function keyFits(jwk: JWK, alg: string): boolean {
  if (jwk.use !== undefined && jwk.use !== 'sig') return false;
  if (jwk.alg !== undefined && jwk.alg !== alg && !(alg === 'EdDSA' && jwk.alg === 'Ed25519') && !(alg === 'Ed25519' && jwk.alg === 'EdDSA')) return false;
  if (jwk.key_ops !== undefined && !jwk.key_ops.includes('verify')) return false;
  switch (alg) {
    case 'RS256': case 'RS384': case 'RS512': case 'PS256': case 'PS384': case 'PS512':
      return jwk.kty === 'RSA';
    case 'ES256': return jwk.kty === 'EC' && jwk.crv === 'P-256';
    case 'ES384': return jwk.kty === 'EC' && jwk.crv === 'P-384';
    case 'ES512': return jwk.kty === 'EC' && jwk.crv === 'P-521';
    case 'EdDSA': return jwk.kty === 'OKP' && (jwk.crv === 'Ed25519' || jwk.crv === 'Ed448');
    case 'Ed25519': return jwk.kty === 'OKP' && jwk.crv === 'Ed25519';
    default: return false;
  }
}

/** The per-issuer key cache. */
export class JwksCache {
  readonly issuerId: string;
  private readonly resolveUri: () => Promise<string>;
  private readonly policy: JwksPolicy;
  private readonly now: () => number;
  private readonly events: JwksEvents;
  private set: KeySet | null = null;
  private lastAttemptAt = -Infinity;
  /** The last fetch failed: the next one waits {@link retryMs}. */
  private lastFailed = false;
  /** The lifetime of the last key set fetched (its refresh interval). */
  private lifetimeMs: number;
  private inflight: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly allowInsecureHttpHosts?: readonly string[];
  private readonly trace: FetchOptions['trace'];

  constructor(opts: {
    issuerId: string; resolveUri: () => Promise<string>; policy: JwksPolicy; now?: () => number; events?: JwksEvents;
    /** Outbound policy (`server.allowInsecureHttpHosts`); default loopback only. */
    allowInsecureHttpHosts?: readonly string[];
    /** Fetches run as `tokengate.jwks.fetch` spans of the request that needed them. */
    tracer?: OutboundTracer;
  }) {
    this.allowInsecureHttpHosts = opts.allowInsecureHttpHosts;
    this.trace = opts.tracer ? { tracer: opts.tracer, span: 'tokengate.jwks.fetch', attributes: { 'tokengate.issuer': opts.issuerId } } : undefined;
    this.issuerId = opts.issuerId;
    this.resolveUri = opts.resolveUri;
    this.policy = opts.policy;
    this.now = opts.now ?? Date.now;
    this.events = opts.events ?? {};
    this.lifetimeMs = this.policy.cacheTtlSec * 1000;
  }

  /** How long after a failed fetch the next one may go. */
  private get retryMs(): number {
    return Math.min(this.policy.cooldownSec * 1000, this.lifetimeMs);
  }

  /** True once a key set has been fetched (readiness). */
  get ready(): boolean {
    return this.set !== null;
  }

  /** Seconds since the current keys were fetched; null before the first fetch. */
  ageSec(): number | null {
    return this.set ? (this.now() - this.set.fetchedAt) / 1000 : null;
  }

  /**
   * Whether the key with this id is published, unchanged, in a fresh key set (used by the
   * token cache). Once the set has expired the answer is false, so a cached verification
   * goes back through {@link getKey}, which refreshes (or serves stale keys within
   * `maxStaleSec`): a removed key cannot outlive one refresh through the cache.
   */
  hasKey(id: string): boolean {
    const s = this.set;
    return s !== null && s.ids.has(id) && this.now() < s.expiresAt;
  }

  /** Starts the first fetch and keeps the keys fresh in the background (timer is unref'd). */
  start(): void {
    this.stopped = false;
    void this.refresh().finally(() => this.schedule());
  }

  /** Stops background refreshes. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** The next background refresh: when the set expires, or {@link retryMs} after a failed fetch. */
  private schedule(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    const now = this.now();
    const due = this.lastFailed || !this.set ? this.lastAttemptAt + this.retryMs : this.set.expiresAt;
    const wait = Math.max(due, this.lastAttemptAt + MIN_REFETCH_MS) - now;
    this.timer = setTimeout(() => void this.refresh().finally(() => this.schedule()), Math.max(0, wait));
    this.timer.unref();
  }

  /**
   * Whether a request may fetch now. An expired (or absent) set is due for its refresh
   * ({@link retryMs} after a failure); an unknown `kid` in a fresh set waits for the cooldown.
   */
  private mayFetch(now: number, fresh: boolean): boolean {
    const since = now - this.lastAttemptAt;
    if (since < MIN_REFETCH_MS) return false;
    if (fresh) return since >= this.policy.cooldownSec * 1000;
    return !this.lastFailed || since >= this.retryMs;
  }

  /**
   * The key for a token header. Throws `unknown_kid` (401) when no published key fits,
   * `jwks_unavailable` (503) when no usable keys can be had now.
   */
  async getKey(kid: string | undefined, alg: string): Promise<SelectedKey> {
    let now = this.now();
    let s = this.set;
    const fresh = s !== null && now < s.expiresAt;
    let entry = fresh ? this.select(s as KeySet, kid, alg) : null;
    if (!entry) {
      // Expired, never fetched, or an unknown kid: fetch, if it is due (see mayFetch).
      if (this.inflight) await this.inflight;
      else if (this.mayFetch(now, fresh)) await this.refresh();
      now = this.now();
      s = this.set;
      if (!s || now >= s.expiresAt + this.policy.maxStaleSec * 1000) {
        const retry = Math.max(1, Math.ceil((this.lastAttemptAt + this.retryMs - now) / 1000));
        throw new GatewayError('jwks_unavailable', { retryAfterSec: retry });
      }
      entry = this.select(s, kid, alg);
      if (!entry) throw new GatewayError('unknown_kid');
    }
    let imported = entry.imported.get(alg);
    if (!imported) {
      imported = importKeyObject(entry.jwk, alg);
      entry.imported.set(alg, imported);
    }
    try {
      return { key: await imported, id: entry.id };
    } catch {
      throw new GatewayError('unknown_kid'); // a published key that cannot be used for this alg
    }
  }

  /** With a kid: the key with that kid that fits `alg`. Without: the only fitting key. */
  private select(s: KeySet, kid: string | undefined, alg: string): KeyEntry | null {
    if (kid !== undefined) {
      for (const k of s.keys) if (k.jwk.kid === kid && keyFits(k.jwk, alg)) return k;
      return null;
    }
    let found: KeyEntry | null = null;
    for (const k of s.keys) {
      if (!keyFits(k.jwk, alg)) continue;
      if (found) return null; // ambiguous without a kid: refuse rather than try them all
      found = k;
    }
    return found;
  }

  /** One fetch at a time; concurrent callers share it. */
  refresh(): Promise<void> {
    if (this.inflight) return this.inflight;
    this.lastAttemptAt = this.now();
    this.inflight = this.fetchOnce().finally(() => {
      this.inflight = null;
    });
    return this.inflight;
  }

  private async fetchOnce(): Promise<void> {
    try {
      const uri = await this.resolveUri();
      const { body, cacheControl } = await fetchJson(uri, {
        timeoutMs: this.policy.timeoutMs, maxBytes: this.policy.maxBytes, allowInsecureHttpHosts: this.allowInsecureHttpHosts, trace: this.trace,
      });
      const keys = await parseJwks(body);
      const now = this.now();
      const maxAge = maxAgeOf(cacheControl);
      const ttl = maxAge === null ? this.policy.cacheTtlSec : Math.min(maxAge, this.policy.cacheTtlSec);
      // Keep imported CryptoKeys of keys still published exactly as before (same id): a
      // republished `kid`, `alg`, `use` or `key_ops` is read as published now, as a cold
      // cache would read it.
      const previous = new Map((this.set?.keys ?? []).map((k) => [k.id, k]));
      const merged = keys.map((k) => previous.get(k.id) ?? k);
      this.set = { keys: merged, ids: new Set(merged.map((k) => k.id)), fetchedAt: now, expiresAt: now + ttl * 1000 };
      this.lifetimeMs = Math.max(MIN_REFETCH_MS, ttl * 1000);
      this.lastFailed = false;
      this.events.onFetch?.('success');
    } catch (e) {
      this.lastFailed = true;
      this.events.onFetch?.('failure', (e as Error).message);
    }
  }
}

/**
 * Imports a published JWK for `alg` with jose (which checks `kty`, `crv` and key material
 * against the algorithm as WebCrypto does) and unwraps the `KeyObject` beneath the
 * CryptoKey, which `node:crypto` verifies with synchronously. Refuses a key the algorithm
 * may not use (an RSA key under 2048 bits, RFC 7518 §3.3).
 */
async function importKeyObject(jwk: JWK, alg: string): Promise<KeyObject> {
  const key = KeyObject.from((await importJWK(jwk, alg)) as CryptoKey);
  if (!keyFitsAlg(key, alg)) throw new Error('key unusable for this algorithm');
  return key;
}

/** Parses a JWKS body; keys that are not public asymmetric signature keys are dropped. */
async function parseJwks(body: unknown): Promise<KeyEntry[]> {
  const keys = (body as { keys?: unknown })?.keys;
  if (!Array.isArray(keys)) throw new Error('JWKS has no keys array');
  const out: KeyEntry[] = [];
  for (const raw of keys) {
    if (!raw || typeof raw !== 'object') continue;
    const jwk = raw as JWK;
    if (jwk.kty !== 'RSA' && jwk.kty !== 'EC' && jwk.kty !== 'OKP') continue; // never `oct` (RFC 8725 §3.1)
    if (jwk.d !== undefined) continue; // a private key published by mistake is not used
    // RFC 7517 §4.2-4.3: not a signature key (or unreadable metadata): neither selectable nor vouched for.
    if (jwk.use !== undefined && jwk.use !== 'sig') continue;
    if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))) continue;
    try {
      const thumbprint = await calculateJwkThumbprint(jwk, 'sha256');
      const id = `${thumbprint}.${createHash('sha256').update(JSON.stringify(jwk)).digest('base64url')}`;
      out.push({ jwk, id, imported: new Map() });
    } catch {
      // malformed key: skip it, keep the others
    }
  }
  return out;
}
