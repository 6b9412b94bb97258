/**
 * Upstream request headers: the identity headers a route sets from verified claims,
 * and the scrubbing of everything a client could use to forge them.
 */
import type { CompiledConfig, CompiledRoute } from '../config/compile.js';
import { GatewayError } from '../errors.js';
import { connectionTokens, HOP_BY_HOP } from '../http/headers.js';
import { readClaim } from './authorize.js';
import type { Principal } from './principal.js';

/**
 * Headers some upstream stacks read to override the request's path or method (IIS and
 * Symfony's `X-Original-URL` / `X-Rewrite-URL`, nginx's `X-Original-URI`, the
 * `X-HTTP-Method-Override` family, `X-Forwarded-Uri`/`-Prefix`): a client sending them
 * could reach another path or method than the one the route authorized. Never forwarded.
 */
export const OVERRIDE_HEADERS = new Set([
  'x-original-url', 'x-original-uri', 'x-rewrite-url', 'x-original-method',
  'x-http-method-override', 'x-http-method', 'x-method-override',
  'x-forwarded-uri', 'x-forwarded-method', 'x-forwarded-prefix', 'x-forwarded-path',
]);

/**
 * Headers in which front proxies and CDNs report the client's address (nginx `X-Real-IP`,
 * Akamai/Cloudflare `True-Client-IP`, `CF-Connecting-IP`, Fastly, ...). An upstream that
 * trusts them for logging, rate limits or IP allow-lists would believe whatever a client
 * wrote: like `X-Forwarded-*` beyond the ones the gateway sets, they pass only with
 * `server.trustProxy` (a trusted front proxy set them).
 */
export const CLIENT_IP_HEADERS = new Set([
  'x-real-ip', 'true-client-ip', 'x-client-ip', 'cf-connecting-ip', 'fastly-client-ip', 'x-cluster-client-ip',
]);

// Control characters (C0, DEL, C1) would split or corrupt a header (RFC 9110 §5.5).
const UNSAFE = /[\u0000-\u001f\u007f-\u009f]/;
const EDGE_SPACE = /^ | $/;

/**
 * JSON.stringify replacer: an integer beyond 2^53 was rounded when the token was parsed
 * (9007199254740993 reads as …992), so its text is not the claim: refuse it.
 */
function exactNumbers(_key: string, x: unknown): unknown {
  if (typeof x === 'number' && Number.isInteger(x) && !Number.isSafeInteger(x)) throw new GatewayError('unsafe_claim');
  return x;
}

/** Objects and arrays nested in a forwarded claim, at most (a header value, not a document). */
const MAX_CLAIM_DEPTH = 32;

function deeperThan(v: unknown, depth: number): boolean {
  if (v === null || typeof v !== 'object') return false;
  if (depth === 0) return true;
  for (const x of Object.values(v)) if (deeperThan(x, depth - 1)) return true;
  return false;
}

/**
 * A claim as JSON text. One nested deeper than {@link MAX_CLAIM_DEPTH} (JSON.stringify with
 * a replacer would run out of stack: a 500) or holding a rounded integer is unsafe.
 */
function claimJson(v: unknown): string {
  if (deeperThan(v, MAX_CLAIM_DEPTH)) throw new GatewayError('unsafe_claim');
  try {
    return JSON.stringify(v, exactNumbers);
  } catch {
    throw new GatewayError('unsafe_claim');
  }
}

/**
 * The header value for a claim: strings as they are (non-ASCII sent as UTF-8 bytes),
 * numbers and booleans as JSON text, arrays of strings joined with `,`, anything else as
 * JSON. Throws 401 `unsafe_claim` for a value with control characters.
 */
export function headerValue(v: unknown, joiner = ','): string | undefined {
  let s: string;
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') {
    // A field value has no leading/trailing whitespace (RFC 9110 §5.5): " admin" would read as "admin".
    if (EDGE_SPACE.test(v)) throw new GatewayError('unsafe_claim');
    s = v;
  } else if (typeof v === 'boolean') s = JSON.stringify(v);
  else if (typeof v === 'number') s = JSON.stringify(v, exactNumbers);
  else if (Array.isArray(v) && v.every((x) => typeof x === 'string')) {
    // An element holding the joiner, or spaces a list parser trims, would read as other elements.
    if (v.some((x) => x.includes(joiner) || EDGE_SPACE.test(x))) throw new GatewayError('unsafe_claim');
    s = v.join(joiner);
  } else s = claimJson(v);
  if (UNSAFE.test(s)) throw new GatewayError('unsafe_claim');
  // Node writes header strings as latin1: send UTF-8 bytes for non-ASCII text.
  // eslint-disable-next-line no-control-regex
  return /[^\x00-\x7f]/.test(s) ? Buffer.from(s, 'utf8').toString('latin1') : s;
}

/** The identity headers of `route` for `principal`, as [name, value] pairs (lower-case names). */
export function identityHeaders(route: CompiledRoute, principal: Principal | null, encoder?: ClaimsHeaderEncoder): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  if (!principal) return out;
  for (const rule of route.headers) {
    const v = rule.claim === 'scope' ? headerValue(principal.scopes, ' ') : headerValue(readClaim(principal.claims, rule.claim));
    if (v !== undefined && v !== '') out.push([rule.name, v]);
  }
  if (route.claimsHeader) out.push([route.claimsHeader, encoder ? encoder.encode(principal.claims) : encodeClaims(principal.claims)]);
  return out;
}

/**
 * Every verified claim as base64url JSON, under the same rules as one forwarded claim: an
 * integer beyond 2^53 anywhere, or nesting past {@link MAX_CLAIM_DEPTH}, is `unsafe_claim`.
 */
function encodeClaims(claims: Readonly<Record<string, unknown>>): string {
  return Buffer.from(claimJson(claims)).toString('base64url');
}

/**
 * Whether a header name, in canonical spelling (lower case, `_` read as `-`), is in the
 * identity namespace: a name some route sets, or one with `server.identityHeaderPrefix`.
 * A client's header of that name must never reach an upstream.
 */
export function isIdentityHeader(config: CompiledConfig, canon: string): boolean {
  return config.identityHeaders.has(canon) || (config.identityPrefix !== '' && canon.startsWith(config.identityPrefix));
}

/**
 * `claimsHeader` values, kept per verified claim set: a cached token's claims are one
 * frozen object shared by all its requests, so each is encoded once. Refusals are not
 * remembered (they are recomputed, and cost no upstream request). One per gateway.
 */
export class ClaimsHeaderEncoder {
  private readonly values = new WeakMap<object, string>();

  /** The header value for `claims`. */
  encode(claims: Readonly<Record<string, unknown>>): string {
    let v = this.values.get(claims);
    if (v === undefined) {
      v = encodeClaims(claims);
      if (Object.isFrozen(claims)) this.values.set(claims, v);
    }
    return v;
  }
}

/**
 * The headers sent upstream: the client's headers minus hop-by-hop ones, minus those the
 * client's `Connection` lists, minus every identity header (any route's names and the
 * identity prefix, compared in canonical spelling so `X_Auth_Subject` counts), minus
 * `Authorization` and `DPoP` unless the route passes them, minus the client-certificate
 * header (`untrustedCertHeader`, canonical) when the peer is not trusted to set it; then the gateway's own headers, which
 * nothing the client sent can remove.
 */
export function upstreamHeaders(
  config: CompiledConfig,
  route: CompiledRoute,
  incoming: Readonly<Record<string, string | string[] | undefined>>,
  own: ReadonlyArray<[string, string]>,
  forwarded: { for: string; proto: string; host: string | undefined },
  connection: string | string[] | undefined,
  untrustedCertHeader?: string,
): Record<string, string | string[]> {
  // The gateway's own headers go first: an upstream that keeps only its first N headers
  // (Node: ~1000) must not lose them to a client padding the request with filler headers.
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of own) out[name] = value;
  out['x-forwarded-for'] = forwarded.for;
  out['x-forwarded-proto'] = forwarded.proto;
  if (forwarded.host) out['x-forwarded-host'] = forwarded.host;
  const listed = connectionTokens(connection);
  for (const name in incoming) {
    const v = incoming[name];
    if (v === undefined || HOP_BY_HOP.has(name) || (listed && listed.has(name))) continue;
    if (name.charCodeAt(0) === 0x3a /* : */) continue; // HTTP/2 pseudo-headers: the forwarder sets its own
    if (name === 'host' || name === 'x-forwarded-for' || name === 'x-forwarded-proto' || name === 'x-forwarded-host' || name === 'forwarded') continue;
    if ((name === 'authorization' || name === 'dpop') && !route.passAuthorization) continue;
    const canon = name.includes('_') ? name.replace(/_/g, '-') : name;
    // RFC 8705: a client-certificate header from a peer outside clientCert.trustedProxies is never forwarded.
    if (untrustedCertHeader !== undefined && canon === untrustedCertHeader) continue;
    if (isIdentityHeader(config, canon)) continue;
    // `_` spellings of what the gateway decides (x-request-id: set by the forwarder after
    // this) would reach a CGI/WSGI upstream as the same variable as the gateway's own.
    if (canon !== name && (HOP_BY_HOP.has(canon) || canon === 'authorization' || canon === 'host' || canon === 'x-request-id' || canon.startsWith('x-forwarded-'))) continue;
    if (OVERRIDE_HEADERS.has(canon)) continue;
    // Other X-Forwarded-* (port, server, ...) and the client-address headers describe the client's request only
    // when a trusted front proxy set them; the client-certificate header (XFCC) was vetted above, per peer.
    if (!config.server.trustProxy && ((canon.startsWith('x-forwarded-') && canon !== config.clientCert.header) || CLIENT_IP_HEADERS.has(canon))) continue;
    if (Object.prototype.hasOwnProperty.call(out, name)) continue; // never replace a header the gateway set
    out[name] = v;
  }
  return out;
}
