/**
 * JWT access-token verification (RFC 7519, RFC 8725, RFC 9068), per issuer:
 * the issuer is chosen by the exact `iss` among the route's issuers, the key by `kid`
 * from that issuer's JWKS only (a header's `jku`, `x5u`, `jwk` and `x5c` are never read),
 * the algorithm from the issuer's allow-list. Cheap checks run before any key lookup.
 * Verified tokens are cached (exact token → claims) until `exp` and while their key is
 * still published; audience and policy are re-applied per route on every hit.
 */
import { normalizeTyp } from '../http/headers.js';
import { decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import { LRUCache } from 'lru-cache';
import type { CompiledAuth } from '../config/compile.js';
import type { IssuerConfig } from '../config/schema.js';
import { GatewayError, type Reason } from '../errors.js';
import type { SelectedKey } from '../idp/jwks-cache.js';
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

    // Cheap structural checks before any key lookup.
    if (!looksLikeJwtShape(token)) throw new GatewayError('malformed');
    let header: ReturnType<typeof decodeProtectedHeader>;
    let unverified: JWTPayload;
    try {
      header = decodeProtectedHeader(token);
      unverified = decodeJwt(token);
    } catch {
      throw new GatewayError('malformed');
    }
    if (typeof unverified.iss !== 'string') throw new GatewayError('issuer');
    const issuer = auth.issuersByIss.get(unverified.iss);
    if (!issuer || !(issuer.jwksUri || issuer.discovery)) throw new GatewayError('issuer');
    const alg = header.alg;
    if (typeof alg !== 'string' || !(issuer.algorithms as readonly string[]).includes(alg)) throw new GatewayError('algorithm');
    if (header.kid !== undefined && typeof header.kid !== 'string') throw new GatewayError('malformed');
    // RFC 7515 §4.1.11: we implement no JWS extension (jose would honour `b64`), so any `crit` fails.
    if (header.crit !== undefined) throw new GatewayError('malformed');
    if (issuer.requireTyp !== undefined && !typMatches(header.typ, issuer.requireTyp)) throw new GatewayError('token_type');

    // An `exp` already past is refused before the key lookup and the signature check: the
    // answer is a refusal whoever signed it, and an expired token (or a flood of them with
    // made-up `kid`s) costs neither a signature check nor a JWKS refresh.
    if (typeof unverified.exp === 'number' && pastExp(unverified.exp, issuer.clockToleranceSec, nowSec)) throw new GatewayError('expired');

    const selected = await this.keys.getKey(issuer.id, header.kid, alg);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, selected.key, {
        algorithms: [alg],
        issuer: issuer.issuer,
        clockTolerance: issuer.clockToleranceSec,
        requiredClaims: ['exp'],
        currentDate: new Date(nowSec * 1000),
      }));
    } catch (e) {
      throw new GatewayError(reasonOf(e));
    }
    // RFC 7519 §2 NumericDate: a JSON number too large for a double (1e400) parses as ±Infinity;
    // such an `exp` would never expire, such an `nbf`/`iat` could never be compared.
    if (!Number.isFinite(payload.exp)) throw new GatewayError('missing_exp');
    if ((payload.nbf !== undefined && !Number.isFinite(payload.nbf)) || (payload.iat !== undefined && !Number.isFinite(payload.iat))) {
      throw new GatewayError('claims_invalid');
    }
    // RFC 8725 §3.10 / RFC 7519 §4.1.6: an `iat` in the future is not acceptable.
    if (payload.iat !== undefined && payload.iat - issuer.clockToleranceSec > nowSec) throw new GatewayError('issued_in_future');
    const principal: Principal = Object.freeze({
      issuerId: issuer.id,
      claims: Object.freeze(payload as Record<string, unknown>),
      scopes: Object.freeze(scopesOf(payload as Record<string, unknown>)),
      source: 'jwt' as const,
    });
    this.cache?.set(token, { issuer, keyId: selected.id, exp: payload.exp as number, nbf: payload.nbf, principal });
    checkAudience(principal.claims, auth, issuer);
    return principal;
  }
}

/** Whether a token with this `exp` is expired at `nowSec`, tolerance included (jose's rule: expired at exp + tolerance). */
function pastExp(exp: number, toleranceSec: number, nowSec: number): boolean {
  return exp + toleranceSec <= nowSec;
}

/**
 * JWS compact serialization (RFC 7515 §7.1): three non-empty parts of canonical base64url
 * (§2: no padding, no `+`/`/`, unused trailing bits zero). Lenient decoders map several
 * texts to one signature; refusing the variants keeps one token text per signature.
 */
function looksLikeJwtShape(token: string): boolean {
  const a = token.indexOf('.');
  const b = a === -1 ? -1 : token.indexOf('.', a + 1);
  if (!(a > 0 && b > a + 1 && b < token.length - 1 && token.indexOf('.', b + 1) === -1)) return false;
  return isCanonicalB64url(token, 0, a) && isCanonicalB64url(token, a + 1, b) && isCanonicalB64url(token, b + 1, token.length);
}

const B64URL_VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) B64URL_VALUE['ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.charCodeAt(i)] = i;

/** Whether `s[start, end)` is canonical unpadded base64url (RFC 4648 §5, §3.5). */
function isCanonicalB64url(s: string, start: number, end: number): boolean {
  const rem = (end - start) % 4;
  if (rem === 1) return false;
  let v = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    v = c < 128 ? B64URL_VALUE[c] : -1;
    if (v < 0) return false;
  }
  // The last character carries 4 (rem 2) or 2 (rem 3) unused low bits: they must be zero.
  return rem === 0 || (v & (rem === 2 ? 0x0f : 0x03)) === 0;
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

/** Maps jose's error codes (never its messages) to our reasons. */
function reasonOf(e: unknown): Reason {
  if (e instanceof joseErrors.JWTExpired) return 'expired';
  if (e instanceof joseErrors.JWTClaimValidationFailed) {
    switch (e.claim) {
      case 'iss': return 'issuer';
      case 'aud': return 'audience';
      case 'nbf': return e.reason === 'check_failed' ? 'not_yet_valid' : 'claims_invalid';
      case 'exp': return 'missing_exp';
      case 'iat': return 'claims_invalid';
      default: return 'claims_invalid';
    }
  }
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) return 'bad_signature';
  if (e instanceof joseErrors.JOSEAlgNotAllowed) return 'algorithm';
  if (e instanceof joseErrors.JOSENotSupported) return 'malformed'; // e.g. an unknown `crit` (RFC 7515 §4.1.11)
  return 'malformed';
}
