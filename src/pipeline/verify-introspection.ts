/**
 * Opaque access tokens, verified by RFC 7662 introspection at the route's issuers.
 *
 * Issuer selection: an opaque token names no issuer, so the route's issuers that have an
 * `introspection` block are asked in config order (the route's `auth.issuers` order, else
 * the file's); the first `active: true` answer decides: its checks pass (principal) or
 * fail (401), no later issuer is asked. All inactive: 401 `inactive`. No active answer
 * and at least one issuer unavailable: 503 `introspection_unavailable` (fail closed: the
 * silent issuer may be the token's own). Each issuer's answers are cached under its own
 * key, so one issuer's decision is never reused for another.
 *
 * An active answer is still checked (RFC 7662 §4), with the issuer's clock tolerance:
 * `exp` required (as for a JWT; RFC 7662 makes it optional, we fail closed), `nbf` and
 * `iat` honoured when present, `iss` exact when present, `aud` against the route's (else
 * the issuer's) audiences when present, and no refresh token. The answer is the claim set.
 */
import type { CompiledAuth } from '../config/compile.js';
import type { IssuerConfig } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import type { IntrospectionAnswer } from '../idp/introspection-client.js';
import { scopesOf, type Principal } from './principal.js';
import { checkAudience, checkTimes } from './verify-jwt.js';

/** Where answers come from: the gateway's per-issuer introspectors (cached). */
export interface IntrospectionSource {
  /** The answer for `token` at `issuerId`; throws `introspection_unavailable` when there is none. */
  introspect(issuerId: string, token: string): Promise<IntrospectionAnswer>;
}

/** Options of the verifier. */
export interface IntrospectionVerifierOptions {
  source: IntrospectionSource;
  /** Milliseconds since the epoch (injected in tests). */
  now?: () => number;
}

/** `token_type` values (any case) that name a refresh token, never a credential for a resource. */
const REFRESH_TYPES = new Set(['refresh_token', 'refresh', 'urn:ietf:params:oauth:token-type:refresh_token']);

/**
 * Throws the 401 reason that `answer` (active, from `issuer`) earns on a route, if any.
 * `nowSec` is seconds since the epoch.
 */
export function checkIntrospectionAnswer(answer: IntrospectionAnswer, issuer: IssuerConfig, auth: CompiledAuth, nowSec: number): void {
  const { iss, aud } = answer;
  // RFC 7662 §2.2 lists exp/nbf/iat as optional integers; we require exp, like a JWT's (RFC 8725 §3.10 spirit).
  checkTimes(answer, issuer.clockToleranceSec, nowSec);
  // RFC 7662 §2.2 `iss`: when given it must be this issuer's exact identifier.
  if (iss !== undefined && iss !== issuer.issuer) throw new GatewayError('issuer');
  // RFC 7662 §2.2 `aud`: when given, one value must be accepted here (the same rule as for JWTs).
  if (aud !== undefined) checkAudience(answer, auth, issuer);
  // A refresh token is not an access token (RFC 6749 §1.5). Keycloak reports it as `typ: Refresh`.
  const tokenType = answer.token_type;
  if (typeof tokenType === 'string' && REFRESH_TYPES.has(tokenType.toLowerCase())) throw new GatewayError('token_type');
  if (typeof answer.typ === 'string' && answer.typ.toLowerCase() === 'refresh') throw new GatewayError('token_type');
}

/** Verifies opaque tokens for routes by introspection. */
export class IntrospectionVerifier {
  private readonly source: IntrospectionSource;
  private readonly now: () => number;
  /** Per route policy: its introspection-capable issuers, in order (computed once). */
  private readonly capable = new WeakMap<CompiledAuth, readonly IssuerConfig[]>();
  /** Principals built from one (cached, frozen) answer object, per issuer by construction. */
  private readonly principals = new WeakMap<IntrospectionAnswer, Principal>();

  constructor(opts: IntrospectionVerifierOptions) {
    this.source = opts.source;
    this.now = opts.now ?? Date.now;
  }

  /** Verifies `token` for a route's auth policy (authentication only: no scopes/claims). */
  async verify(token: string, auth: CompiledAuth): Promise<Principal> {
    const issuers = this.issuersOf(auth);
    if (!issuers.length) throw new GatewayError('unsupported_token');
    let unavailable: GatewayError | null = null;
    for (const issuer of issuers) {
      let answer: IntrospectionAnswer;
      try {
        answer = await this.source.introspect(issuer.id, token);
      } catch (e) {
        if (e instanceof GatewayError && e.reason === 'introspection_unavailable') {
          unavailable ??= e;
          continue;
        }
        throw e;
      }
      if (!answer.active) continue;
      checkIntrospectionAnswer(answer, issuer, auth, this.now() / 1000);
      return this.principalOf(answer, issuer.id);
    }
    throw unavailable ?? new GatewayError('inactive');
  }

  private issuersOf(auth: CompiledAuth): readonly IssuerConfig[] {
    let list = this.capable.get(auth);
    if (!list) {
      list = Object.freeze(auth.issuerIds.map((id) => auth.issuersById.get(id)).filter((i): i is IssuerConfig => !!i?.introspection));
      this.capable.set(auth, list);
    }
    return list;
  }

  private principalOf(answer: IntrospectionAnswer, issuerId: string): Principal {
    let p = this.principals.get(answer);
    if (!p || p.issuerId !== issuerId) {
      const claims = Object.isFrozen(answer) ? answer : Object.freeze({ ...answer });
      p = Object.freeze({ issuerId, claims, scopes: Object.freeze(scopesOf(claims)), source: 'introspection' as const });
      this.principals.set(answer, p);
    }
    return p;
  }
}
