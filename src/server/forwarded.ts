/**
 * Reading the client-facing scheme and host a front proxy reports (`X-Forwarded-Proto`,
 * `X-Forwarded-Host`), for DPoP `htu` checks (RFC 9449 §4.3) on every listener.
 */

/** The first entry of a (possibly comma-joined) forwarded header, trimmed: the client-facing value. */
export function firstValue(v: string | string[] | undefined): string | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return undefined;
  const c = s.indexOf(',');
  return (c === -1 ? s : s.slice(0, c)).trim() || undefined;
}

/**
 * The scheme the client used: the first `X-Forwarded-Proto` value when the peer is
 * trusted to say it, else `http` (tokengate's listeners speak plain HTTP).
 */
export function clientScheme(trusted: boolean, xfp: string | string[] | undefined): string {
  return (trusted && firstValue(xfp)?.toLowerCase()) || 'http';
}
