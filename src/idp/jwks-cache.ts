/**
 * One issuer's signing keys: fetched once, cached, refreshed on expiry and on an unknown
 * `kid`, with every fetch coalesced (single flight) and rate-limited by `cooldownSec`
 * (the first fetch included), and the last good keys kept for `maxStaleSec` past their
 * expiry while the IdP is down.
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
import { FetchError, fetchJson, maxAgeOf } from './http.js';

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
  /** A fetch ended; `reused`: the answer came from another worker's fetch (no request was sent). */
  onFetch?(result: 'success' | 'failure', reason?: string, reused?: boolean): void;
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
  private inflight: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly allowInsecureHttpHosts?: readonly string[];

  constructor(opts: {
    issuerId: string; resolveUri: () => Promise<string>; policy: JwksPolicy; now?: () => number; events?: JwksEvents;
    /** Outbound policy (`server.allowInsecureHttpHosts`); default loopback only. */
    allowInsecureHttpHosts?: readonly string[];
  }) {
    this.allowInsecureHttpHosts = opts.allowInsecureHttpHosts;
    this.issuerId = opts.issuerId;
    this.resolveUri = opts.resolveUri;
    this.policy = opts.policy;
    this.now = opts.now ?? Date.now;
    this.events = opts.events ?? {};
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

  private schedule(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    const now = this.now();
    const cooldown = this.policy.cooldownSec * 1000;
    const due = this.set && this.set.expiresAt > now ? this.set.expiresAt - now : 0;
    const wait = Math.max(due, this.lastAttemptAt + cooldown - now, 1000);
    this.timer = setTimeout(() => void this.refresh().finally(() => this.schedule()), wait);
    this.timer.unref();
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
      // Expired, never fetched, or an unknown kid: fetch, if the cooldown allows it.
      if (this.inflight) await this.inflight;
      else if (now - this.lastAttemptAt >= this.policy.cooldownSec * 1000) await this.refresh();
      now = this.now();
      s = this.set;
      if (!s || now >= s.expiresAt + this.policy.maxStaleSec * 1000) {
        const retry = Math.max(1, Math.ceil((this.lastAttemptAt + this.policy.cooldownSec * 1000 - now) / 1000));
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
    let reused = false;
    try {
      const uri = await this.resolveUri();
      const res = await fetchJson(uri, {
        timeoutMs: this.policy.timeoutMs, maxBytes: this.policy.maxBytes, allowInsecureHttpHosts: this.allowInsecureHttpHosts,
        shareForMs: this.policy.cooldownSec * 1000,
      });
      reused = res.reused === true;
      const { body, cacheControl } = res;
      const keys = await parseJwks(body);
      // A key set another worker fetched earlier expires when it would have there.
      const now = this.now() - (res.ageMs ?? 0);
      const maxAge = maxAgeOf(cacheControl);
      const ttl = maxAge === null ? this.policy.cacheTtlSec : Math.min(maxAge, this.policy.cacheTtlSec);
      // Keep imported CryptoKeys of keys still published exactly as before (same id): a
      // republished `kid`, `alg`, `use` or `key_ops` is read as published now, as a cold
      // cache would read it.
      const previous = new Map((this.set?.keys ?? []).map((k) => [k.id, k]));
      const merged = keys.map((k) => previous.get(k.id) ?? k);
      this.set = { keys: merged, ids: new Set(merged.map((k) => k.id)), fetchedAt: now, expiresAt: now + ttl * 1000 };
      this.events.onFetch?.('success', undefined, reused);
    } catch (e) {
      this.events.onFetch?.('failure', (e as Error).message, reused || (e instanceof FetchError && e.reused));
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
