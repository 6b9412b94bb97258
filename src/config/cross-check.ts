/**
 * Checks that the schema cannot express: unique ids, references between routes and
 * issuers, what each auth mode needs, header names the gateway may not set.
 */
import { HOP_BY_HOP } from '../http/headers.js';
import { isIP } from 'node:net';
import { normalizeTarget } from '../pipeline/path.js';
import { serializeOrigin } from '../pipeline/cors.js';
import { outboundUrlProblem, urlCarriesCredentials } from '../idp/http.js';
import type { Config } from './schema.js';

/** A problem at a key path (segments). */
export interface CrossProblem {
  path: Array<string | number>;
  message: string;
}

/** Headers the gateway never lets a route set: hop-by-hop (RFC 9110 §7.6.1) and framing. */
export const RESERVED_HEADERS: ReadonlySet<string> = new Set([
  ...HOP_BY_HOP, 'host', 'content-length', 'authorization', 'cookie', 'forwarded',
  'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'dpop',
]);

/** Every problem of `config` that the schema does not catch. */
export function crossCheck(config: Config): CrossProblem[] {
  const out: CrossProblem[] = [];
  const issuerIds = new Map<string, number>();
  config.issuers.forEach((iss, i) => {
    if (issuerIds.has(iss.id)) out.push({ path: ['issuers', i, 'id'], message: `duplicates issuers[${issuerIds.get(iss.id)}].id "${iss.id}"` });
    issuerIds.set(iss.id, i);
    if (iss.discovery && iss.jwksUri) out.push({ path: ['issuers', i, 'jwksUri'], message: 'cannot be set together with discovery: true' });
    if (!iss.discovery && !iss.jwksUri && !iss.introspection) {
      out.push({ path: ['issuers', i], message: 'needs jwksUri, discovery: true or an introspection block' });
    }
    if (iss.introspection && !iss.introspection.endpoint && !iss.discovery) {
      out.push({ path: ['issuers', i, 'introspection', 'endpoint'], message: 'is required unless discovery: true' });
    }
    // The outbound policy of idp/http.ts, checked at load time so a refused URL is a config error, not an outage.
    const insecure = config.server.allowInsecureHttpHosts;
    const fetched: Array<[Array<string | number>, string | undefined]> = [
      [['issuers', i, 'jwksUri'], iss.jwksUri],
      [['issuers', i, 'issuer'], iss.discovery ? iss.issuer : undefined],
      [['issuers', i, 'introspection', 'endpoint'], iss.introspection?.endpoint],
    ];
    for (const [path, url] of fetched) {
      const problem = url === undefined ? null : outboundUrlProblem(url, insecure);
      if (problem) out.push({ path, message: problem });
    }
  });

  const routeIds = new Map<string, number>();
  config.routes.forEach((route, r) => {
    const at = (...p: Array<string | number>) => ['routes', r, ...p];
    if (routeIds.has(route.id)) out.push({ path: at('id'), message: `duplicates routes[${routeIds.get(route.id)}].id "${route.id}"` });
    routeIds.set(route.id, r);

    const m = route.match;
    if ((m.path === undefined) === (m.pathPrefix === undefined)) {
      out.push({ path: at('match'), message: 'needs exactly one of path or pathPrefix' });
    }
    // Requests are matched on their normalized path: a config path in any other form would never match.
    for (const key of ['path', 'pathPrefix'] as const) {
      const p = m[key];
      if (p !== undefined && normalizeTarget(p)?.path !== p) {
        out.push({ path: at('match', key), message: `must be a normalized path: no dot-segments, //, ;, ? or escapes of unreserved characters (got "${p}")` });
      }
    }
    if (route.websocket && route.upstreamProtocol === 'h2') {
      out.push({ path: at('websocket'), message: 'WebSocket upgrades are HTTP/1.1: not with upstreamProtocol: h2' });
    }
    if (route.stripPrefix && m.pathPrefix === undefined) {
      out.push({ path: at('stripPrefix'), message: 'needs match.pathPrefix' });
    }
    try {
      const u = new URL(route.upstream);
      if (u.search || u.hash || u.username || u.password) out.push({ path: at('upstream'), message: 'must not carry a query, fragment or credentials' });
      // An empty segment in the base path (`http://u//`) would send `//host/...` upstream: a protocol-relative reference.
      if (u.pathname.includes('//')) out.push({ path: at('upstream'), message: `must not have an empty path segment (//) in its base path (got "${route.upstream}")` });
    } catch {
      out.push({ path: at('upstream'), message: `is not a valid URL (got "${route.upstream}")` });
    }

    const auth = route.auth;
    const names = auth.issuers ?? config.issuers.map((i) => i.id);
    (auth.issuers ?? []).forEach((id, k) => {
      if (!issuerIds.has(id)) out.push({ path: at('auth', 'issuers', k), message: `names issuer "${id}", which is not defined under issuers` });
    });
    const issuers = names.map((id) => config.issuers[issuerIds.get(id) ?? -1]).filter(Boolean);
    if (auth.mode === 'none') {
      const needsToken = auth.issuers || auth.audiences || auth.scopes.allOf.length || auth.scopes.anyOf.length ||
        Object.keys(auth.claims).length || Object.keys(route.forward.headers).length || route.forward.claimsHeader;
      if (needsToken) out.push({ path: at('auth'), message: 'mode: none cannot have issuers, audiences, scopes, claims or forwarded identity' });
    } else {
      if (!issuers.length) out.push({ path: at('auth', 'mode'), message: `${auth.mode} needs at least one issuer` });
      if (auth.mode === 'jwt' && issuers.length && !issuers.some((i) => i.jwksUri || i.discovery)) {
        out.push({ path: at('auth', 'mode'), message: 'jwt needs an issuer with jwksUri or discovery' });
      }
      if ((auth.mode === 'introspection' || auth.mode === 'jwt_or_introspection') && issuers.length && !issuers.some((i) => i.introspection)) {
        out.push({ path: at('auth', 'mode'), message: `${auth.mode} needs an issuer with an introspection block` });
      }
      if (auth.mode === 'jwt_or_introspection' && issuers.length && !issuers.some((i) => i.jwksUri || i.discovery)) {
        out.push({ path: at('auth', 'mode'), message: 'jwt_or_introspection needs an issuer with jwksUri or discovery (for the JWTs)' });
      }
    }
    if (auth.mode === 'none' && auth.binding !== 'allow') {
      out.push({ path: at('auth', 'binding'), message: 'needs a token: mode none cannot require a binding' });
    }
    if (auth.optional) out.push(...optionalProblems(route, at));
    if (route.cors) out.push(...corsProblems(route.cors, (...p) => at('cors', ...p)));
    for (const name of Object.keys(route.forward.headers)) {
      if (RESERVED_HEADERS.has(name.toLowerCase())) {
        out.push({ path: at('forward', 'headers', name), message: 'is a header the gateway does not let a route set' });
      }
    }
    if (route.forward.claimsHeader && RESERVED_HEADERS.has(route.forward.claimsHeader.toLowerCase())) {
      out.push({ path: at('forward', 'claimsHeader'), message: 'is a header the gateway does not let a route set' });
    }
  });

  const s = config.server;
  s.clientCert.trustedProxies.forEach((c, i) => {
    if (!parseCidr(c)) out.push({ path: ['server', 'clientCert', 'trustedProxies', i], message: `is not an IP address or CIDR block (got "${c}")` });
  });
  if (RESERVED_HEADERS.has(s.clientCert.header.toLowerCase())) {
    out.push({ path: ['server', 'clientCert', 'header'], message: 'is a header the gateway reads for another purpose' });
  }
  if (s.tls && s.tls.clientCertificate === 'require' && !s.tls.clientCaFile) {
    out.push({ path: ['server', 'tls', 'clientCertificate'], message: 'require needs clientCaFile (the CAs a client certificate is verified against)' });
  }
  if (s.dpop.nonce && !s.dpop.nonceSecret) {
    out.push({ path: ['server', 'dpop', 'nonceSecret'], message: 'is required when nonce: true (every replica must derive the same nonces)' });
  }
  if (!/^rediss?:\/\/[^\s]+$/.test(s.redis.url)) {
    out.push({ path: ['server', 'redis', 'url'], message: 'must be a redis:// or rediss:// URL' });
  }
  for (const listener of ['decision', 'extAuthz'] as const) {
    config[listener]?.trustedProxies.forEach((c, i) => {
      if (!parseCidr(c)) out.push({ path: [listener, 'trustedProxies', i], message: `is not an IP address or CIDR block (got "${c}")` });
    });
  }
  // A collector's credentials go in tracing.headers (never hashed, never echoed), not in
  // the URL, which is hashed into tokengate_config_info and may be logged.
  if (config.tracing && urlCarriesCredentials(config.tracing.endpoint)) {
    out.push({ path: ['tracing', 'endpoint'], message: 'must not carry credentials: put them in tracing.headers' });
  }
  const batch = config.tracing?.batch;
  if (batch && batch.maxExportBatchSize > batch.maxQueueSize) {
    out.push({ path: ['tracing', 'batch', 'maxExportBatchSize'], message: `must not exceed tracing.batch.maxQueueSize (${batch.maxQueueSize})` });
  }
  return out;
}

type At = (...p: Array<string | number>) => Array<string | number>;

/**
 * `auth.optional: true` lets a request without any credential through. A policy that asks
 * something of the token (scopes, claims, a sender-constrained binding) would look enforced
 * and be skipped by every caller who simply sends no token: refused, like `mode: none` with
 * scopes.
 */
function optionalProblems(route: Config['routes'][number], at: At): CrossProblem[] {
  const auth = route.auth;
  const path = at('auth', 'optional');
  if (auth.mode === 'none') return [{ path, message: 'applies to jwt, introspection and jwt_or_introspection only: mode none takes no token at all' }];
  const out: CrossProblem[] = [];
  const skipped = 'a request without a token would pass without it; put the paths that need it on a route without optional';
  if (auth.scopes.allOf.length || auth.scopes.anyOf.length) out.push({ path, message: `cannot be combined with auth.scopes: ${skipped}` });
  if (Object.keys(auth.claims).length) out.push({ path, message: `cannot be combined with auth.claims: ${skipped}` });
  if (auth.binding !== 'allow') out.push({ path, message: `cannot be combined with binding: ${auth.binding}: ${skipped}` });
  return out;
}

/**
 * A `cors` block's origins: each exactly an origin (URL standard), listed once; `"*"` alone
 * (with `"null"` at most) and never with credentials — Fetch §3.2.5: a credentialed request
 * cannot be answered with `*`, and echoing any origin with credentials would hand every
 * site on the web the caller's cookies and client certificate.
 */
function corsProblems(cors: NonNullable<Config['routes'][number]['cors']>, at: At): CrossProblem[] {
  const out: CrossProblem[] = [];
  const wildcard = cors.allowOrigins.includes('*');
  const seen = new Map<string, number>();
  cors.allowOrigins.forEach((entry, i) => {
    const path = at('allowOrigins', i);
    if (entry === '*') {
      if (cors.allowCredentials) out.push({ path, message: '"*" cannot be used with allowCredentials: true (browsers refuse a credentialed answer to any origin); list the exact origins' });
      return;
    }
    if (entry === 'null') return;
    const origin = serializeOrigin(entry);
    if (origin === null) {
      out.push({ path, message: `must be an exact origin: http(s)://host[:port], with no path (not even /), query or credentials (got ${JSON.stringify(entry.slice(0, 80))})` });
      return;
    }
    if (wildcard) {
      out.push({ path, message: 'is already allowed by "*" in the same list: list exact origins, or "*" alone' });
      return;
    }
    if (seen.has(origin)) {
      out.push({ path, message: `is the same origin as allowOrigins[${seen.get(origin)}] (${origin})` });
      return;
    }
    seen.set(origin, i);
  });
  return out;
}

/** Parses `addr` or `addr/bits`; null when invalid. */
export function parseCidr(s: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | null {
  const [address, bits, extra] = s.split('/');
  // A zone id (`fe80::1%eth0`) passes isIP, but peers' addresses carry none and BlockList ignores it.
  if (extra !== undefined || address.includes('%')) return null;
  const v = isIP(address);
  if (!v) return null;
  const max = v === 4 ? 32 : 128;
  const prefix = bits === undefined ? max : /^\d+$/.test(bits) ? Number(bits) : NaN;
  if (!(prefix >= 0 && prefix <= max)) return null;
  return { address, prefix, family: v === 4 ? 'ipv4' : 'ipv6' };
}
