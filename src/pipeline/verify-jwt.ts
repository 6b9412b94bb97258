/**
 * JWT access-token verification (RFC 7519, RFC 8725, RFC 9068), per issuer:
 * the issuer is chosen by the exact `iss` among the route's issuers, the key by `kid`
 * from that issuer's JWKS only (a header's `jku`, `x5u`, `jwk` and `x5c` are never read),
 * the algorithm from the issuer's allow-list. The token is parsed once (`jws.ts`), every
 * check that needs no key (issuer, algorithm, `crit`, `typ`, time claims) runs before the
 * key lookup, and the signature is checked synchronously with `node:crypto`.
 * Verified tokens are cached (exact token → claims) until `exp` and while their key is
 * still published; audience and policy are re-applied per route on every hit.
 */
import { normalizeTyp } from '../http/headers.js';
import { KeyObject } from 'node:crypto';
import { decodeProtectedHeader } from 'jose';
import { LRUCache } from 'lru-cache';
import type { CompiledAuth } from '../config/compile.js';
import type { IssuerConfig } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import type { SelectedKey } from '../idp/jwks-cache.js';
import { keyFitsAlg, parseJws, verifyJwsSignature, type HeaderMemo } from './jws.js';
import { scopesOf, type Principal } from './principal.js';

/** Where keys come from, per issuer id (the gateway's JWKS caches). */
export interface KeySource {
  getKey(issuerId: string, kid: string | undefined, alg: string): Promise<SelectedKey>;
  hasKey(issuerId: string, keyId: string): boolean;
}

interface CachedToken {
  /** The issuer settings it was verified under (compared by identity: a reload makes new ones). */
  issuer: IssuerConfig;
  keyId: string;
  exp: number;
  nbf: number | undefined;
  principal: Principal;
}

/** Options of the verifier. */
export interface JwtVerifierOptions {
  keys: KeySource;
  /** Milliseconds since the epoch (injected in tests). */
  now?: () => number;
  /** Verified-token cache entries; 0 disables. */
  cacheSize: number;
  onCache?(result: 'hit' | 'miss'): void;
}

/** Counts of the three parts a JWS compact serialization has (RFC 7515 §7.1). */
export function looksLikeJwt(token: string): boolean {
  const a = token.indexOf('.');
  if (a <= 0) return false;
  const b = token.indexOf('.', a + 1);
  if (b === -1 || token.indexOf('.', b + 1) !== -1) return false;
  try {
    return typeof decodeProtectedHeader(token).alg === 'string';
  } catch {
    return false;
  }
}

/** Verifies JWT access tokens for routes. */
export class JwtVerifier {
  private readonly keys: KeySource;
  private readonly now: () => number;
  private readonly cache: LRUCache<string, CachedToken> | null;
  private readonly onCache?: (result: 'hit' | 'miss') => void;
  /** The last header decoded: a miss of a token from the same issuer and key skips its decode. */
  private readonly headerMemo: HeaderMemo = { text: null, header: null };

  constructor(opts: JwtVerifierOptions) {
    this.keys = opts.keys;
    this.now = opts.now ?? Date.now;
    this.cache = opts.cacheSize > 0 ? new LRUCache({ max: opts.cacheSize }) : null;
    this.onCache = opts.onCache;
  }

  /** Verifies `token` for a route's auth policy (authentication only: no scopes/claims). */
  async verify(token: string, auth: CompiledAuth): Promise<Principal> {
    const nowSec = this.now() / 1000;
    const hit = this.cache?.get(token);
    if (hit) {
      // A hit counts only under the very issuer settings it was verified with: another route
      // may accept the same `iss` through another issuer entry (other algorithms, typ,
      // audiences), and a reload compiles new issuer objects, so that a reload that tightens
      // an issuer holds for tokens seen before it. Anything else is verified afresh below
      // (after any reload, every cached token once).
      const issuer = hit.issuer;
      if (auth.issuersById.get(issuer.id) === issuer && this.keys.hasKey(issuer.id, hit.keyId)) {
        this.onCache?.('hit'); // counted before the checks: every lookup is a hit or a miss
        const tol = issuer.clockToleranceSec;
        if (pastExp(hit.exp, tol, nowSec)) {
          // The entry's life ends with the token's: it leaves the cache, and the token is refused.
          this.cache?.delete(token);
          throw new GatewayError('expired');
        }
        if (hit.nbf !== undefined && hit.nbf - tol > nowSec) throw new GatewayError('not_yet_valid');
        checkAudience(hit.principal.claims, auth, issuer);
        return hit.principal;
      }
      if (issuer) this.cache?.delete(token); // key gone from the JWKS (or its set expired): verify again
    }
    this.onCache?.('miss');

    // One parse (RFC 7515 §5.2), then every check that needs no key, cheapest first: a
    // refusal here costs neither a key lookup nor a signature check, and a flood of forged
    // tokens with made-up `kid`s cannot make the JWKS cache refetch.
    const jws = parseJws(token, this.headerMemo);
    if (jws === null) throw new GatewayError('malformed');
    const { header, claims } = jws;
    if (typeof claims.iss !== 'string') throw new GatewayError('issuer');
    const issuer = auth.issuersByIss.get(claims.iss);
    if (!issuer || !(issuer.jwksUri || issuer.discovery)) throw new GatewayError('issuer');
    const alg = header.alg;
    if (typeof alg !== 'string' || !(issuer.algorithms as readonly string[]).includes(alg)) throw new GatewayError('algorithm');
    const kid = header.kid;
    if (kid !== undefined && typeof kid !== 'string') throw new GatewayError('malformed');
    // RFC 7515 §4.1.11: we implement no JWS extension (not even `b64`, RFC 7797), so any `crit`
    // fails; without `crit`, a `b64` member has no meaning and is ignored.
    if (header.crit !== undefined) throw new GatewayError('malformed');
    if (issuer.requireTyp !== undefined && !typMatches(header.typ, issuer.requireTyp)) throw new GatewayError('token_type');
    const exp = checkTimes(claims, issuer.clockToleranceSec, nowSec);

    const selected = await this.keys.getKey(issuer.id, kid, alg);
    const key = selected.key instanceof KeyObject ? selected.key : KeyObject.from(selected.key);
    if (!keyFitsAlg(key, alg)) throw new GatewayError('unknown_kid'); // a published key that cannot be used for this alg
    if (!verifyJwsSignature(token, jws.dot2, alg, key)) throw new GatewayError('bad_signature');

    const principal: Principal = Object.freeze({
      issuerId: issuer.id,
      claims: Object.freeze(claims),
      scopes: Object.freeze(scopesOf(claims)),
      source: 'jwt' as const,
    });
    this.cache?.set(token, { issuer, keyId: selected.id, exp, nbf: claims.nbf as number | undefined, principal });
    checkAudience(principal.claims, auth, issuer);
    return principal;
  }
}

/**
 * Checks the time claims of a token (RFC 7519 §4.1.4-4.1.6), or of an introspection answer
 * (RFC 7662 §2.2), with the issuer's clock tolerance `tol`: `exp` required, and `exp`,
 * `nbf`, `iat` finite numbers when present (RFC 7519 §2 NumericDate: JSON's 1e400 parses as
 * Infinity, an `exp` that would never expire). Throws the refusal; returns `exp`.
 */
export function checkTimes(claims: Readonly<Record<string, unknown>>, tol: number, nowSec: number): number {
  const { exp, nbf, iat } = claims;
  if (typeof exp !== 'number' || !Number.isFinite(exp)) throw new GatewayError('missing_exp');
  if (pastExp(exp, tol, nowSec)) throw new GatewayError('expired');
  if (nbf !== undefined) {
    if (typeof nbf !== 'number' || !Number.isFinite(nbf)) throw new GatewayError('claims_invalid');
    if (nbf - tol > nowSec) throw new GatewayError('not_yet_valid');
  }
  if (iat !== undefined) {
    if (typeof iat !== 'number' || !Number.isFinite(iat)) throw new GatewayError('claims_invalid');
    // RFC 8725 §3.10 / RFC 7519 §4.1.6: an `iat` in the future is not acceptable.
    if (iat - tol > nowSec) throw new GatewayError('issued_in_future');
  }
  return exp;
}

/** Whether a token with this `exp` is expired at `nowSec`, tolerance included (jose's rule: expired at exp + tolerance). */
function pastExp(exp: number, toleranceSec: number, nowSec: number): boolean {
  return exp + toleranceSec <= nowSec;
}

/** RFC 9068 §4: `at+jwt`, compared case-insensitively, with or without `application/`. */
function typMatches(typ: unknown, required: string): boolean {
  return typeof typ === 'string' && normalizeTyp(typ) === normalizeTyp(required);
}

/**
 * `aud` must contain one of the route's audiences (else the issuer's). With neither
 * configured the audience is not checked (`tokengate check` warns about it).
 */
export function checkAudience(claims: Readonly<Record<string, unknown>>, auth: CompiledAuth, issuer: IssuerConfig): void {
  const accepted = auth.audiences ?? issuer.audiences;
  if (!accepted) return;
  const aud = claims.aud;
  if (typeof aud === 'string') {
    if (accepted.includes(aud)) return;
  } else if (Array.isArray(aud)) {
    for (const a of aud) if (typeof a === 'string' && accepted.includes(a)) return;
  }
  throw new GatewayError('audience');
}
