/**
 * CORS at the gateway, as the Fetch standard's "CORS protocol" (§3.2) describes it, for
 * routes with a `cors` block: which origins may read answers, the answer to a preflight,
 * and the response headers every other answer carries.
 *
 * Everything a route's policy says is compiled once ({@link compileCors}): per allowed
 * origin, the finished header sets of its preflight answer and of its other answers. The
 * request path only looks the request's `Origin` up and hands the matching set on; nothing
 * here does I/O, and nothing is built per request but the parse of the preflight's own
 * request headers.
 *
 * @example
 *   const cors = compileCors({ allowOrigins: ['https://app.example.com'], ... });
 *   const pf = preflightRequest(rawHeaders);          // OPTIONS + Origin + ACRM?
 *   const verdict = pf && judgePreflight(cors, pf);   // headers of the 204, or a refusal reason
 */
import type { CorsConfig } from '../config/schema.js';
import { countHeader, findHeader, headerValues } from '../http/headers.js';

/** Response headers (lower-case names) the gateway sets for CORS on one answer. */
export type CorsHeaders = Readonly<Record<string, string>>;

/** The two header sets of one allowed origin. */
export interface CorsOriginAnswers {
  /** On every answer other than a preflight's: `Access-Control-Allow-Origin`, `-Allow-Credentials`, `-Expose-Headers`. */
  readonly actual: CorsHeaders;
  /** On the 204 answer to a preflight: `-Allow-Origin`, `-Allow-Credentials`, `-Allow-Methods`, `-Allow-Headers`, `-Max-Age`, `Vary`. */
  readonly preflight: CorsHeaders;
}

/** A route's `cors` block, compiled. */
export interface CompiledCors {
  /** Listed origins (serialized, ASCII lower case, `"null"` when listed) to their answers. */
  readonly origins: ReadonlyMap<string, CorsOriginAnswers>;
  /** With `"*"`: the answers for every origin not listed, except `null`; otherwise null. */
  readonly any: CorsOriginAnswers | null;
  /** Methods a preflight may ask for (compared case-sensitively, Fetch §4.8 step 7). */
  readonly methods: ReadonlySet<string>;
  /** Request-header names a preflight may ask for, lower case. */
  readonly headers: ReadonlySet<string>;
}

/** Why a preflight is refused: the `reason` of its 403. */
export type PreflightRefusal = 'cors_origin' | 'cors_method' | 'cors_headers';

/** The CORS request headers of a preflight (Fetch §3.2.2): present only when it is one. */
export interface PreflightRequest {
  /** The `Origin` value; null when the header was repeated (no origin can be believed). */
  origin: string | null;
  /** `Access-Control-Request-Method`. */
  method: string;
  /** `Access-Control-Request-Headers`, all lines joined with `,` ('' when absent). */
  headers: string;
}

/** No CORS headers: an answer to a request without an allowed `Origin` on a `cors` route. */
export const NO_CORS_HEADERS: CorsHeaders = Object.freeze({});

/**
 * Response headers the gateway itself sets on its answers (RFC 6750 §3 challenges, RFC
 * 9449 §8 nonces, `Retry-After` on 503): pages may always read them, or a browser app
 * could not tell an expired token from a network error.
 */
const GATEWAY_HEADERS = ['www-authenticate', 'dpop-nonce', 'retry-after'] as const;

/** A preflight's answer varies with these request headers (Fetch §3.2.5, "CORS protocol and HTTP caches"). */
const PREFLIGHT_VARY = 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers';

// RFC 9110 §5.6.2 token: what a method name and a header name are.
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// An Origin value is ASCII (RFC 6454 §7.1, serialized per the URL standard's host parser: punycode).
const PRINTABLE_ASCII = /^[\x21-\x7e]+$/;

/**
 * The serialized origin of a config entry (URL standard: scheme and host lower case,
 * IDNA to punycode, the scheme's default port dropped), or null when `value` is not
 * exactly an http(s) origin: a path other than nothing, a query, a fragment or
 * credentials would name something narrower than an origin, and a browser never sends it.
 */
export function serializeOrigin(value: string): string | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  if (url.username || url.password || url.search || url.hash || value.includes('?') || value.includes('#')) return null;
  // `https://a.test` and `https://a.test/` parse alike; only the bare origin is accepted.
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/]+$/.test(value)) return null;
  // A host the URL parser lets through but no browser can be on (`*.example.com`: origins
  // have no wildcards) would be an entry that silently never matches.
  if (!/^[a-z0-9_.-]+$|^\[[0-9a-f:.]+\]$/.test(url.hostname)) return null;
  return url.origin;
}

function freezeHeaders(h: Record<string, string>): CorsHeaders {
  return Object.freeze(h);
}

function answersFor(allowOrigin: string, cfg: CorsConfig): CorsOriginAnswers {
  const common: Record<string, string> = { 'access-control-allow-origin': allowOrigin };
  // Fetch §3.2.3: only the exact string `true` lets a credentialed request's answer be read.
  if (cfg.allowCredentials) common['access-control-allow-credentials'] = 'true';
  const expose = [...new Set([...GATEWAY_HEADERS, ...cfg.exposeHeaders.map((h) => h.toLowerCase())])];
  const preflight: Record<string, string> = {
    ...common,
    'access-control-allow-methods': [...new Set(cfg.allowMethods)].join(', '),
    'access-control-max-age': String(cfg.maxAgeSec),
    vary: PREFLIGHT_VARY,
  };
  if (cfg.allowHeaders.length) {
    preflight['access-control-allow-headers'] = [...new Set(cfg.allowHeaders.map((h) => h.toLowerCase()))].join(', ');
  }
  return Object.freeze({
    actual: freezeHeaders({ ...common, 'access-control-expose-headers': expose.join(', ') }),
    preflight: freezeHeaders(preflight),
  });
}

/**
 * Compiles a validated `cors` block (config/cross-check.ts has refused every entry that
 * {@link serializeOrigin} rejects, and `"*"` with credentials).
 */
export function compileCors(cfg: CorsConfig): CompiledCors {
  const origins = new Map<string, CorsOriginAnswers>();
  let any: CorsOriginAnswers | null = null;
  for (const entry of cfg.allowOrigins) {
    if (entry === '*') {
      any = answersFor('*', cfg);
    } else if (entry === 'null') {
      // The opaque origin serializes as `null` (HTML "serialization of an origin"); matched only when listed.
      origins.set('null', answersFor('null', cfg));
    } else {
      const origin = serializeOrigin(entry);
      if (origin !== null) origins.set(origin, answersFor(origin, cfg));
    }
  }
  return Object.freeze({
    origins,
    any,
    methods: new Set(cfg.allowMethods),
    headers: new Set(cfg.allowHeaders.map((h) => h.toLowerCase())),
  });
}

/**
 * The answers for the request's `Origin` value, or null when it is not allowed. The value
 * is compared whole, as the serialization it is (RFC 6454 §7, Fetch §3.1): no prefix,
 * suffix or substring of it means anything. Only ASCII case is folded (scheme and host
 * are case-insensitive; browsers send them lower case already); a value with any other
 * byte (space, non-ASCII, control) matches nothing.
 */
export function answersForOrigin(cors: CompiledCors, origin: string | null): CorsOriginAnswers | null {
  if (origin === null || !PRINTABLE_ASCII.test(origin)) return null;
  const key = origin.toLowerCase();
  const listed = cors.origins.get(key);
  if (listed !== undefined) return listed;
  // `*` never admits `null` (sandboxed frames, `file:`, `data:`): any page can send it.
  return cors.any !== null && key !== 'null' ? cors.any : null;
}

/**
 * The `Origin` of a request: its one value, or null when it is absent or repeated (two
 * origins cannot both be believed).
 */
export function requestOrigin(rawHeaders: readonly string[]): string | null {
  const i = findHeader(rawHeaders, 'origin');
  return i !== -1 && findHeader(rawHeaders, 'origin', i + 2) === -1 ? rawHeaders[i + 1] : null;
}

/** The CORS headers for a request other than a preflight on a `cors` route. */
export function actualHeaders(cors: CompiledCors, rawHeaders: readonly string[]): CorsHeaders {
  return answersForOrigin(cors, requestOrigin(rawHeaders))?.actual ?? NO_CORS_HEADERS;
}

/**
 * The CORS request headers of `method` + `rawHeaders` when they make a CORS-preflight
 * request (Fetch §3.2.2: `OPTIONS` with `Origin` and `Access-Control-Request-Method`),
 * else null. The method is compared exactly: methods are case-sensitive (RFC 9110 §9.1).
 */
export function preflightRequest(method: string, rawHeaders: readonly string[]): PreflightRequest | null {
  if (method !== 'OPTIONS' || countHeader(rawHeaders, 'origin') === 0) return null;
  const methods = headerValues(rawHeaders, 'access-control-request-method');
  if (methods.length === 0) return null;
  return {
    origin: requestOrigin(rawHeaders),
    // Two methods asked for at once cannot both be answered: read as no valid method.
    method: methods.length === 1 ? methods[0].trim() : '',
    // Repeated lines are one list (RFC 9110 §5.3).
    headers: headerValues(rawHeaders, 'access-control-request-headers').join(','),
  };
}

/**
 * Judges a preflight against a route's policy (Fetch §4.8, CORS-preflight fetch, from the
 * server's side): the origin must be allowed, the requested method listed, and every
 * requested header name listed. Returns the 204's headers, or why it is refused.
 */
export function judgePreflight(cors: CompiledCors, pf: PreflightRequest): CorsHeaders | PreflightRefusal {
  const answers = answersForOrigin(cors, pf.origin);
  if (answers === null) return 'cors_origin';
  if (!TOKEN.test(pf.method) || !cors.methods.has(pf.method)) return 'cors_method';
  // A comma-separated list of field names (Fetch §3.2.2; RFC 9110 §5.6.1 allows OWS and empty items).
  if (pf.headers !== '') {
    for (const part of pf.headers.split(',')) {
      const name = part.trim();
      if (name === '') continue;
      if (!TOKEN.test(name) || !cors.headers.has(name.toLowerCase())) return 'cors_headers';
    }
  }
  return answers.preflight;
}

/** Whether a `Vary` value already lists `Origin` or is `*` (RFC 9110 §12.5.5). */
function variesOnOrigin(vary: string): boolean {
  for (const part of vary.split(',')) {
    const t = part.trim().toLowerCase();
    if (t === 'origin' || t === '*') return true;
  }
  return false;
}

/** `vary` with `Origin` added unless it already varies on it. */
export function varyWithOrigin(vary: string | string[] | undefined): string {
  const v = Array.isArray(vary) ? vary.join(', ') : vary;
  if (v === undefined || v.trim() === '') return 'Origin';
  return variesOnOrigin(v) ? v : `${v}, Origin`;
}

/**
 * Sets a route's CORS answer on the gateway's own response headers (refusals, 502/504):
 * the origin's headers and `Vary: Origin`, since another origin gets another answer
 * (Fetch §3.2.5).
 */
export function decorateOwn(headers: Record<string, string>, cors: CorsHeaders): void {
  for (const name in cors) headers[name] = cors[name];
  headers.vary = varyWithOrigin(headers.vary);
}

/**
 * Replaces the upstream's CORS answer with the route's on a forwarded response: every
 * `Access-Control-*` header the upstream sent is dropped (the two policies must not mix:
 * an upstream `Access-Control-Allow-Credentials: true` beside the gateway's origin would
 * grant what the route does not), the route's are set, and `Origin` joins `Vary`.
 */
export function decorateForwarded(headers: Record<string, string | string[]>, cors: CorsHeaders): void {
  for (const name in headers) {
    if (name.length > 15 && name.startsWith('access-control-')) delete headers[name];
  }
  for (const name in cors) headers[name] = cors[name];
  headers.vary = varyWithOrigin(headers.vary);
}
