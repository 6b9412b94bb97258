/**
 * The one spelling of a host that routes and requests are compared in. Used by the config
 * compiler (a route's `match.host`), the lint, and the request path (the `Host` header).
 */

/**
 * Lower-cased host without port (`[v6]` kept in brackets) and without the trailing dots of a
 * fully-qualified spelling (`admin.test.` names `admin.test`, RFC 1034 §3.1, and upstreams'
 * virtual hosts read it so: it must meet the same route); '' when absent.
 */
export function hostOnly(hostHeader: string | undefined): string {
  if (!hostHeader) return '';
  const h = hostHeader.toLowerCase();
  if (h.charCodeAt(0) === 0x5b /* [ */) {
    const end = h.indexOf(']');
    return end === -1 ? h : h.slice(0, end + 1);
  }
  const colon = h.indexOf(':');
  let end = colon === -1 ? h.length : colon;
  while (end > 0 && h.charCodeAt(end - 1) === 0x2e /* . */) end--;
  return h.slice(0, end);
}
