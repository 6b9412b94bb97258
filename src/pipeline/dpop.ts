/**
 * DPoP proof checking at a resource server (RFC 9449 §4.3 and §7.1): exactly one proof,
 * `typ` dpop+jwt, an allowed asymmetric `alg`, a public `jwk`, a valid signature, `htm`,
 * `htu`, the server nonce when required (§8), `iat` freshness, `ath`, the key thumbprint
 * against the token's `cnf.jkt`, and finally a never-seen `jti` (§11.1). Each failed
 * check has its own reason. Remembering the `jti` is the only I/O, done through the
 * injected {@link ReplayStore}.
 */
import type { OutboundTracer } from '../tracing/outbound.js';
import { normalizeTyp } from '../http/headers.js';
import { createHash } from 'node:crypto';
import { decodeProtectedHeader, errors as joseErrors, importJWK, jwtVerify, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { LRUCache } from 'lru-cache';
import type { DpopConfig } from '../config/schema.js';
import { GatewayError, type Reason } from '../errors.js';
import type { NonceSource } from '../dpop/nonce.js';
import type { ReplayStore } from '../dpop/replay-store.js';
import { normalizeTarget } from './path.js';

/** JWK members that only a private (or symmetric) key has (RFC 7518 §6.2.2, §6.3.2, §6.4.1; RFC 8037 §2). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;

/** Longest `jti` accepted (RFC 9449 §4.2 asks for 96 bits of randomness; this is generous). */
const MAX_JTI = 256;

/** RFC 7638 §3.2: the required members, in lexicographic order, per key type. */
const THUMBPRINT_MEMBERS: Record<string, readonly string[]> = { EC: ['crv', 'kty', 'x', 'y'], OKP: ['crv', 'kty', 'x'], RSA: ['e', 'kty', 'n'] };

/**
 * The RFC 7638 JWK thumbprint (SHA-256, base64url) of a public key, or null when the key
 * type is not one a proof may use or a required member is missing. Synchronous, so it can
 * key the imported-key cache before any import.
 */
export function jwkThumbprint(jwk: JWK): string | null {
  // Own members only: `__proto__`, `constructor`, ... are not key types.
  const members = typeof jwk.kty === 'string' && Object.hasOwn(THUMBPRINT_MEMBERS, jwk.kty) ? THUMBPRINT_MEMBERS[jwk.kty] : undefined;
  if (!members) return null;
  const parts: string[] = [];
  for (const m of members) {
    const v = (jwk as Record<string, unknown>)[m];
    if (typeof v !== 'string') return null;
    parts.push(`${JSON.stringify(m)}:${JSON.stringify(v)}`);
  }
  return createHash('sha256').update(`{${parts.join(',')}}`).digest('base64url');
}

/** What the request says, against which a proof is checked. */
export interface ProofRequest {
  /** Values of every `DPoP` header received (must be exactly one). */
  proofs: readonly string[];
  method: string;
  /** The request's origin, `scheme://host[:port]` normalized by the URL parser; null if unknown. */
  origin: string | null;
  /** The normalized request path (what the route matched). */
  path: string;
  /** The access token the proof must be bound to (`ath`). */
  token: string;
  /** The token's `cnf.jkt` (RFC 9449 §6.1). */
  jkt: string;
  /** The token issuer's clock tolerance, applied to `iat`. */
  toleranceSec: number;
  /** Longest proof accepted (the token size cap). */
  maxBytes: number;
}

/** Outcome of a valid proof. */
export interface ProofResult {
  /** A fresh nonce to send in `DPoP-Nonce` when the client used the previous one (RFC 9449 §8.2). */
  nextNonce: string | null;
}

/** Options of {@link ProofChecker}. */
export interface ProofCheckerOptions {
  /** Milliseconds since the epoch. */
  now?: () => number;
  /** The replay store in use (it may change on reload). */
  replayStore(): ReplayStore;
  /** The nonce source for a config (null when nonces are off). */
  nonces(dpop: DpopConfig): NonceSource | null;
  /** Called after each replay-store call with its duration and whether it answered. */
  onStore?(kind: string, seconds: number, ok: boolean): void;
  /** Replay-store calls run as `tokengate.dpop.replay_store` spans of the request; default untraced. */
  tracer?: OutboundTracer;
}

/** The origin of `scheme://host` as the URL parser normalizes it (lower case, default port dropped); null if invalid. */
export function normalizeOrigin(scheme: string, host: string | undefined): string | null {
  if (!host || (scheme !== 'http' && scheme !== 'https')) return null;
  try {
    const u = new URL(`${scheme}://${host}`);
    return u.pathname === '/' && !u.username && !u.password && !u.search && !u.hash ? u.origin : null;
  } catch {
    return null;
  }
}

/** base64url(SHA-256(ASCII token)): the `ath` value (RFC 9449 §4.2). */
export function accessTokenHash(token: string): string {
  return createHash('sha256').update(token, 'ascii').digest('base64url');
}

/** Checks DPoP proofs for the pipeline. */
export class ProofChecker {
  private readonly now: () => number;
  private readonly opts: ProofCheckerOptions;
  /** Imported public keys by `alg.thumbprint`: a client reuses its key, importing costs as much as verifying. */
  private readonly keys = new LRUCache<string, CryptoKey>({ max: 10_000 });

  constructor(opts: ProofCheckerOptions) {
    this.opts = opts;
    this.now = opts.now ?? Date.now;
  }

  /** Checks the request's proof; throws a {@link GatewayError} naming the failed check. */
  async check(dpop: DpopConfig, req: ProofRequest): Promise<ProofResult> {
    if (req.proofs.length === 0) throw new GatewayError('dpop_proof_missing');
    if (req.proofs.length > 1) throw new GatewayError('dpop_proof_multiple');
    const proof = req.proofs[0];
    if (proof.length > req.maxBytes || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(proof)) {
      throw new GatewayError('dpop_proof_malformed');
    }
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(proof);
    } catch {
      throw new GatewayError('dpop_proof_malformed');
    }
    if (typeof header.typ !== 'string' || normalizeTyp(header.typ) !== 'dpop+jwt') {
      throw new GatewayError('dpop_proof_typ');
    }
    const alg = header.alg;
    if (typeof alg !== 'string' || !(dpop.algorithms as readonly string[]).includes(alg)) throw new GatewayError('dpop_proof_alg');
    const jwk = header.jwk as JWK | undefined;
    if (!jwk || typeof jwk !== 'object' || Array.isArray(jwk) || typeof jwk.kty !== 'string') throw new GatewayError('dpop_proof_jwk');
    // RFC 9449 §4.3 step 7: the jwk must not contain a private key.
    for (const m of PRIVATE_MEMBERS) if (m in jwk) throw new GatewayError('dpop_proof_jwk');

    const thumbprint = jwkThumbprint(jwk);
    if (!thumbprint) throw new GatewayError('dpop_proof_jwk');
    const cacheKey = `${alg}.${thumbprint}`;
    let key = this.keys.get(cacheKey);
    if (!key) {
      let imported: Awaited<ReturnType<typeof importJWK>>;
      try {
        imported = await importJWK(jwk, alg);
      } catch {
        throw new GatewayError('dpop_proof_jwk');
      }
      if (imported instanceof Uint8Array || imported.type !== 'public') throw new GatewayError('dpop_proof_jwk');
      key = imported;
      this.keys.set(cacheKey, key);
    }
    const nowMs = this.now();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(proof, key, { algorithms: [alg], currentDate: new Date(nowMs), clockTolerance: req.toleranceSec }));
    } catch (e) {
      throw new GatewayError(proofReason(e));
    }

    const { jti, htm, htu, iat } = payload as { jti?: unknown; htm?: unknown; htu?: unknown; iat?: unknown };
    if (typeof jti !== 'string' || jti.length === 0 || jti.length > MAX_JTI || typeof htm !== 'string' ||
      typeof htu !== 'string' || typeof iat !== 'number' || !Number.isFinite(iat)) {
      throw new GatewayError('dpop_proof_malformed');
    }
    // §4.3 step 8: htm matches the method (case-sensitive, as methods are).
    if (htm !== req.method) throw new GatewayError('dpop_proof_htm');
    // §4.3 step 9: htu matches the request URI without query and fragment, after
    // syntax- and scheme-based normalization (RFC 3986 §6.2.2-6.2.3).
    if (!htuMatches(htu, req.origin, req.path)) throw new GatewayError('dpop_proof_htu');

    // §8: server nonce, when demanded; a client without the current one is told it.
    let nextNonce: string | null = null;
    const nonces = this.opts.nonces(dpop);
    if (nonces) {
      const state = nonces.check((payload as { nonce?: unknown }).nonce);
      if (state === 'invalid') throw new GatewayError('dpop_nonce', { dpop: { algs: dpop.algorithms.join(' '), nonce: nonces.current() } });
      if (state === 'previous') nextNonce = nonces.current();
    }

    // §4.3 step 11: iat within the acceptable window (nonces are the other freshness tool).
    const nowSec = nowMs / 1000;
    if (iat < nowSec - dpop.proofMaxAgeSec - req.toleranceSec || iat > nowSec + req.toleranceSec) {
      throw new GatewayError('dpop_proof_iat');
    }
    // §4.3 step 12 / §7.1: ath is the hash of the token presented with the proof.
    const ath = (payload as { ath?: unknown }).ath;
    if (typeof ath !== 'string' || ath !== accessTokenHash(req.token)) throw new GatewayError('dpop_proof_ath');
    // §6.1: the proof key is the key the token is bound to (RFC 7638 thumbprint = cnf.jkt).
    if (thumbprint !== req.jkt) throw new GatewayError('dpop_key_mismatch');

    // §11.1: a jti is accepted once while its proof could pass the iat check
    // (iat may be up to `tolerance` ahead and is accepted until maxAge + tolerance behind).
    const ttlMs = (dpop.proofMaxAgeSec + 2 * req.toleranceSec) * 1000 + 1000;
    const replayKey = createHash('sha256').update(`${thumbprint}.${jti}`).digest('base64url');
    const store = this.opts.replayStore();
    const t0 = performance.now();
    let fresh: boolean;
    try {
      fresh = this.opts.tracer === undefined
        ? await store.remember(replayKey, ttlMs)
        : await this.opts.tracer.run('tokengate.dpop.replay_store', { 'tokengate.store': store.kind }, () => store.remember(replayKey, ttlMs));
    } catch (e) {
      this.opts.onStore?.(store.kind, (performance.now() - t0) / 1000, false);
      throw e instanceof GatewayError ? e : new GatewayError('replay_store_unavailable');
    }
    this.opts.onStore?.(store.kind, (performance.now() - t0) / 1000, true);
    if (!fresh) throw new GatewayError('dpop_proof_replay');
    return { nextNonce };
  }
}

function htuMatches(htu: string, origin: string | null, path: string): boolean {
  if (!origin) return false;
  let u: URL;
  try {
    u = new URL(htu);
  } catch {
    return false;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return false;
  if (u.username || u.password || u.origin !== origin) return false;
  // The htu path goes through the same normalization as the request path did.
  const normalized = normalizeTarget(u.pathname);
  return normalized !== null && normalized.path === path;
}

/** Maps jose's errors on a proof (never their messages) to reasons. */
function proofReason(e: unknown): Reason {
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) return 'dpop_proof_signature';
  if (e instanceof joseErrors.JOSEAlgNotAllowed) return 'dpop_proof_alg';
  if (e instanceof joseErrors.JWTExpired || e instanceof joseErrors.JWTClaimValidationFailed) return 'dpop_proof_iat';
  return 'dpop_proof_malformed';
}
