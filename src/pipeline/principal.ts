/**
 * The verified caller: what authentication proved, read by authorization and header
 * building. Claims come only from a verified JWT or an active introspection answer.
 */

/** A verified caller. */
export interface Principal {
  issuerId: string;
  /** Verified claims (JWT payload, or the introspection answer). */
  claims: Readonly<Record<string, unknown>>;
  /** Scopes from `scope` (space-separated) or `scp` (array or string). */
  scopes: readonly string[];
  source: 'jwt' | 'introspection';
}

/**
 * Scopes of a claim set: `scope` (RFC 8693 §4.2, space-separated) or, only when there is no
 * `scope` member at all, `scp` (array or string). A `scope` that is present but not a
 * string — `null` included — grants nothing: it does not fall back to `scp` (two claims
 * that disagree are a doubt, and doubt denies). `scp` array members that are not scope
 * tokens (not strings, empty, or with a space) are left out.
 */
export function scopesOf(claims: Readonly<Record<string, unknown>>): string[] {
  if (Object.prototype.hasOwnProperty.call(claims, 'scope')) {
    // RFC 8693 §4.2 / RFC 7662 §2.2: `scope` is a space-separated string; any other shape (an array
    // included) grants nothing, as the README says.
    return typeof claims.scope === 'string' ? claims.scope.split(' ').filter(Boolean) : [];
  }
  const s = claims.scp;
  if (typeof s === 'string') return s.split(' ').filter(Boolean);
  // RFC 6749 §3.3: a scope token has no space. An element with one is dropped, not split: it
  // would grant nothing here, but joined into the forwarded scope header it would read as several.
  if (Array.isArray(s)) return s.filter((x): x is string => typeof x === 'string' && x !== '' && !x.includes(' '));
  return [];
}
