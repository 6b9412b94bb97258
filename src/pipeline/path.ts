/**
 * Request-target normalization: the one path that routing matches and the upstream
 * receives. Anything ambiguous is refused (null → 400), never guessed.
 *
 * - only origin-form targets (`/...`, RFC 9112 §3.2.1); absolute-form and `*` are refused;
 * - percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2), other escapes
 *   are kept with upper-case hex (§6.2.2.1); an encoded `/`, `\` or NUL is refused, since
 *   upstreams disagree on whether it separates segments (Envoy CVE-2019-9901);
 * - raw characters outside RFC 3986 `pchar` are refused, and so is `;` (path parameters:
 *   Tomcat-style upstreams drop `;...` and would see another path than the one matched);
 * - `//` is merged into `/`, dot-segments are resolved (§5.2.4), and a path that would
 *   climb above the root is refused;
 * - a segment that starts or ends with `..` without being `..` (`..foo`, `x..`, `...`) is
 *   refused: some upstream stacks read it as traversal, and the proxy library refuses it
 *   too, so refusing it here keeps "what matched is what is forwarded" exact;
 * - escapes that do not decode to valid UTF-8 are refused.
 */

/** The normalized path, and the query string exactly as received (with its `?`, or ''). */
export interface NormalizedTarget {
  path: string;
  search: string;
}

// RFC 3986 pchar minus ';' and '%' (escapes are handled separately): unreserved, sub-delims, ':' '@', and '/'.
const CLEAN = /^[A-Za-z0-9\-._~!$&'()*+,=:@/]*$/;
const HEX = '0123456789ABCDEF';

function isUnreserved(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) ||
    c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e;
}

function hexVal(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/** Normalizes a raw request target; null when it must be refused with 400. */
export function normalizeTarget(target: string): NormalizedTarget | null {
  if (target.charCodeAt(0) !== 0x2f /* / */) return null;
  const q = target.indexOf('?');
  const raw = q === -1 ? target : target.slice(0, q);
  const search = q === -1 ? '' : target.slice(q);
  if (search.includes('#')) return null;
  // Fast path: nothing to decode, merge or resolve.
  if (CLEAN.test(raw) && !raw.includes('//') && !raw.includes('/.') && !raw.includes('..')) return { path: raw, search };
  const decoded = decodeUnreserved(raw);
  if (decoded === null) return null;
  const path = resolveDotSegments(decoded);
  if (path === null || (path.includes('%') && !isUtf8Escapes(path))) return null;
  return { path, search };
}

/** Decodes escapes of unreserved characters; null on a forbidden character or escape. */
function decodeUnreserved(raw: string): string | null {
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i];
    if (ch === '%') {
      const hi = hexVal(raw.charCodeAt(i + 1));
      const lo = hexVal(raw.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) return null;
      const b = hi * 16 + lo;
      if (b === 0x2f || b === 0x5c || b === 0x00) return null;
      out += isUnreserved(b) ? String.fromCharCode(b) : `%${HEX[hi]}${HEX[lo]}`;
      i += 2;
    } else if (CLEAN.test(ch)) {
      out += ch;
    } else {
      return null; // raw '\', ';', NUL, space, non-ASCII, '"', '<', ...
    }
  }
  return out;
}

/** Whether the remaining escapes decode to valid UTF-8 (upstreams decode them as such). */
function isUtf8Escapes(path: string): boolean {
  try {
    decodeURIComponent(path);
    return true;
  } catch {
    return false;
  }
}

/** Merges `//` and resolves `.`/`..` (RFC 3986 §5.2.4); null when `..` climbs above `/`. */
function resolveDotSegments(path: string): string | null {
  const segs = path.split('/');
  const out: string[] = [];
  // segs[0] is '' (the path starts with '/').
  for (let i = 1; i < segs.length; i++) {
    const s = segs[i];
    const last = i === segs.length - 1;
    if (s === '..') {
      if (out.length === 0) return null;
      out.pop();
      if (last) out.push('');
    } else if (s.startsWith('..') || s.endsWith('..')) {
      return null;
    } else if (s === '.' || (s === '' && !last)) {
      if (last) out.push('');
    } else {
      out.push(s);
    }
  }
  // Collapse a trailing '' produced twice (e.g. "/a/./").
  while (out.length > 1 && out[out.length - 1] === '' && out[out.length - 2] === '') out.pop();
  return '/' + out.join('/');
}
