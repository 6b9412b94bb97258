/**
 * Authorization: the route's scope and claim policy against a verified principal.
 * Failures are 403 `insufficient_scope` with the route's scopes in the challenge
 * (RFC 6750 §3.1).
 */
import type { ClaimPath, CompiledAuth } from '../config/compile.js';
import { GatewayError } from '../errors.js';
import type { Principal } from './principal.js';

/** The value at `segs` below `claims` (own members only, never through arrays); undefined when absent. */
function walk(claims: Readonly<Record<string, unknown>>, segs: readonly string[]): unknown {
  let v: unknown = claims;
  for (const seg of segs) {
    if (v === null || typeof v !== 'object' || Array.isArray(v) || !Object.prototype.hasOwnProperty.call(v, seg)) return undefined;
    v = (v as Record<string, unknown>)[seg];
  }
  return v;
}

/**
 * Reads a claim by dotted path, or by a literal member name containing dots (namespaced
 * claims such as `https://x/roles`) when the token has no nested path of that spelling. A
 * token that has both is ambiguous: nothing is read (a doubt denies).
 */
export function readClaim(claims: Readonly<Record<string, unknown>>, path: ClaimPath): unknown {
  const nested = walk(claims, path.segs);
  if (path.segs.length === 1 || !Object.prototype.hasOwnProperty.call(claims, path.raw)) return nested;
  return nested === undefined ? claims[path.raw] : undefined;
}

/** Throws 403 unless `principal` satisfies the route's scopes and claims. */
export function authorize(principal: Principal, auth: CompiledAuth): void {
  const scopes = principal.scopes;
  for (const s of auth.scopesAll) {
    if (!scopes.includes(s)) throw new GatewayError('scope', { scope: auth.requiredScopeText });
  }
  if (auth.scopesAny.length && !auth.scopesAny.some((s) => scopes.includes(s))) {
    throw new GatewayError('scope', { scope: auth.requiredScopeText });
  }
  for (const { path, value } of auth.claims) {
    const actual = readClaim(principal.claims, path);
    const ok = Array.isArray(actual) ? actual.includes(value) : actual === value;
    if (!ok) throw new GatewayError('claim', { scope: auth.requiredScopeText || undefined });
  }
}
