/**
 * Compiles a validated {@link Config} into the frozen structure the request path reads:
 * precomputed matchers, claim paths, header names and the set of headers to strip.
 * Nothing on the request path parses or validates config.
 */
import { createHash } from 'node:crypto';
import { hostOnly } from '../pipeline/host.js';
import { buildRouteIndex } from '../pipeline/match.js';
import type { Config, IssuerConfig, RouteConfig } from './schema.js';
import { addressMatcher } from './address-matcher.js';
import { compileCors } from '../pipeline/cors.js';
import type { ClaimPath, CompiledAuth, CompiledConfig, CompiledRoute } from './compiled-types.js';

export type {
  ClaimPath, HeaderRule, CompiledAuth, CompiledClientCert, CompiledRoute, CompiledConfig, RouteIndex,
} from './compiled-types.js';

/** Keys whose values are secrets: left out of {@link configHash}. */
const SECRET_KEYS = new Set(['clientSecret', 'nonceSecret']);

/**
 * A short hash of a config as it runs (defaults filled in), for telling which config each
 * process serves. Secrets are left out — `clientSecret`, `nonceSecret`, a Redis URL's
 * credentials, `tracing.headers` — so that the hash, which is published as a metric label, says nothing of them.
 */
export function configHash(config: Config): string {
  const text = JSON.stringify(config, function (this: unknown, key: string, v: unknown) {
    if (SECRET_KEYS.has(key)) return undefined;
    // A collector's headers carry its credentials.
    if (key === 'headers' && this === config.tracing) return undefined;
    if (key === 'url' && typeof v === 'string' && /^rediss?:/i.test(v)) {
      try {
        const u = new URL(v);
        u.username = '';
        u.password = '';
        return u.href;
      } catch {
        return undefined;
      }
    }
    return v;
  });
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/** Lower-case with `_` read as `-`: the one spelling used to compare header names. */
export function canonicalHeader(name: string): string {
  const lower = name.toLowerCase();
  return lower.includes('_') ? lower.replace(/_/g, '-') : lower;
}

function claimPath(raw: string): ClaimPath {
  return Object.freeze({ raw, segs: Object.freeze(raw.split('.')) });
}

function compileRoute(route: RouteConfig, index: number, config: Config, issuerById: ReadonlyMap<string, IssuerConfig>): CompiledRoute {
  const m = route.match;
  const auth = route.auth;
  const ids = auth.mode === 'none' ? [] : auth.issuers ?? config.issuers.map((i) => i.id);
  const issuersByIss = new Map<string, IssuerConfig>();
  const issuersById = new Map<string, IssuerConfig>();
  for (const id of ids) {
    const iss = issuerById.get(id);
    if (!iss) continue;
    issuersByIss.set(iss.issuer, iss);
    issuersById.set(id, iss);
  }
  const up = new URL(route.upstream);
  const required = [...auth.scopes.allOf, ...auth.scopes.anyOf.filter((s) => !auth.scopes.allOf.includes(s))];
  let prefix: string | null = null;
  if (m.pathPrefix !== undefined) prefix = m.pathPrefix.endsWith('/') ? m.pathPrefix.slice(0, -1) : m.pathPrefix;
  return Object.freeze({
    id: route.id,
    index,
    // Compared like the request's Host: lower case, port ignored (a port in the config would never match).
    host: m.host ? hostOnly(m.host) : null,
    exactPath: m.path ?? null,
    prefix,
    methods: m.methods ? new Set(m.methods) : null,
    upstreamOrigin: up.origin,
    upstreamHost: up.host,
    upstreamTarget: Object.freeze({ protocol: up.protocol, hostname: up.hostname.replace(/^\[(.*)\]$/, '$1'), port: up.port }),
    upstreamBasePath: up.pathname === '/' ? '' : up.pathname.replace(/\/$/, ''),
    stripPrefix: route.stripPrefix,
    websocket: route.websocket,
    upstreamH2: route.upstreamProtocol === 'h2',
    auth: Object.freeze({
      mode: auth.mode as CompiledAuth['mode'],
      issuersByIss,
      // From the ids, not from issuersByIss: two issuers may share an `iss` (e.g. two introspection clients).
      issuersById,
      issuerIds: Object.freeze(ids),
      audiences: auth.audiences ? Object.freeze([...auth.audiences]) : null,
      scopesAll: Object.freeze([...auth.scopes.allOf]),
      scopesAny: Object.freeze([...auth.scopes.anyOf]),
      requiredScopeText: required.join(' '),
      claims: Object.freeze(Object.entries(auth.claims).map(([p, value]) => Object.freeze({ path: claimPath(p), value }))),
      binding: auth.binding as CompiledAuth['binding'],
      optional: auth.optional,
    }),
    headers: Object.freeze(Object.entries(route.forward.headers).map(([name, claim]) => Object.freeze({
      name: name.toLowerCase(),
      claim: claim === 'scope' ? ('scope' as const) : claimPath(claim),
    }))),
    claimsHeader: route.forward.claimsHeader?.toLowerCase() ?? null,
    passAuthorization: route.forward.authorization === 'pass',
    cors: route.cors ? compileCors(route.cors) : null,
    source: route,
  });
}

/** Compiles and deep-freezes `config`. */
export function compileConfig(config: Config): CompiledConfig {
  // Ids are unique (cross-check); the first of a duplicate would win, as a search would find it.
  const issuerById = new Map<string, IssuerConfig>();
  for (const i of config.issuers) if (!issuerById.has(i.id)) issuerById.set(i.id, i);
  const routes = config.routes.map((r, i) => compileRoute(r, i, config, issuerById));
  const identityHeaders = new Set<string>();
  for (const r of routes) {
    for (const h of r.headers) identityHeaders.add(canonicalHeader(h.name));
    if (r.claimsHeader) identityHeaders.add(canonicalHeader(r.claimsHeader));
  }
  return Object.freeze({
    source: deepFreeze(config),
    server: config.server,
    admin: config.admin,
    decision: config.decision ?? null,
    decisionTrusted: config.decision ? addressMatcher(config.decision.trustedProxies) : null,
    extAuthz: config.extAuthz ?? null,
    extAuthzTrusted: config.extAuthz ? addressMatcher(config.extAuthz.trustedProxies) : null,
    tracing: config.tracing ?? null,
    issuers: new Map(config.issuers.map((i) => [i.id, i])),
    routes: Object.freeze(routes),
    routeIndex: buildRouteIndex(routes),
    corsRoutes: Object.freeze(routes.filter((r) => r.cors !== null)),
    identityHeaders,
    identityPrefix: canonicalHeader(config.server.identityHeaderPrefix),
    clientCert: Object.freeze({
      header: canonicalHeader(config.server.clientCert.header),
      trusted: addressMatcher(config.server.clientCert.trustedProxies),
    }),
    dpopAlgs: config.server.dpop.algorithms.join(' '),
    hash: configHash(config),
  });
}

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k]);
  }
  return v;
}
