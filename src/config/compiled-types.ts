/**
 * The shapes of a compiled config, as the request path reads them. They live apart from
 * the compiler (`compile.ts`) and from route matching (`pipeline/match.ts`) so that both
 * can depend on them without depending on each other.
 */
import type { AddressMatcher } from './address-matcher.js';
import type { Config, IssuerConfig, RouteConfig } from './schema.js';
import type { CompiledCors } from '../pipeline/cors.js';

/** A dotted claim path, split once; `raw` is also tried as a literal key (`https://x/roles`). */
export interface ClaimPath {
  raw: string;
  segs: readonly string[];
}

/** One header the route sets from a claim. `scope` is the virtual space-joined scope claim. */
export interface HeaderRule {
  name: string;
  claim: ClaimPath | 'scope';
}

/** The auth policy of one route. */
export interface CompiledAuth {
  mode: 'jwt' | 'introspection' | 'jwt_or_introspection' | 'none';
  /** Issuers accepted on this route, by their exact `iss`. */
  issuersByIss: ReadonlyMap<string, IssuerConfig>;
  issuersById: ReadonlyMap<string, IssuerConfig>;
  issuerIds: readonly string[];
  /** Route-level audiences; null: each issuer's own list (or none). */
  audiences: readonly string[] | null;
  scopesAll: readonly string[];
  scopesAny: readonly string[];
  /** The `scope=` value of a 403 challenge: every scope the route names. */
  requiredScopeText: string;
  claims: ReadonlyArray<{ path: ClaimPath; value: string | number | boolean }>;
  /** Sender-constraint policy (RFC 9449 / RFC 8705); bound tokens need their proof whatever it says. Absent: allow. */
  binding?: 'allow' | 'require-dpop' | 'require-mtls' | 'require-any';
  /** A request without an `Authorization` header passes as anonymous (never with scopes, claims or a required binding). Absent: false. */
  optional?: boolean;
}

/** Where client certificates come from (RFC 8705), compiled. */
export interface CompiledClientCert {
  /** Canonical (lower-case, `_`→`-`) header name. */
  header: string;
  /** Whether the header is believed from this peer address. */
  trusted: AddressMatcher;
}

/** A route as the request path uses it. */
export interface CompiledRoute {
  id: string;
  index: number;
  host: string | null;
  exactPath: string | null;
  /** Without trailing slash; '' for `/` (matches everything). */
  prefix: string | null;
  methods: ReadonlySet<string> | null;
  upstreamOrigin: string;
  /** `host[:port]` sent as the upstream Host header. */
  upstreamHost: string;
  /** The origin as node:http(s) request options (WebSocket upgrades): IPv6 without brackets. */
  upstreamTarget: Readonly<{ protocol: string; hostname: string; port: string }>;
  /** Upstream base path without trailing slash ('' for none). */
  upstreamBasePath: string;
  stripPrefix: boolean;
  websocket: boolean;
  /** `upstreamProtocol: h2`: forwarded over pooled HTTP/2 sessions (src/server/h2-upstream.ts). */
  upstreamH2: boolean;
  auth: CompiledAuth;
  headers: readonly HeaderRule[];
  claimsHeader: string | null;
  passAuthorization: boolean;
  /** The route's CORS policy (Fetch standard), or null: the gateway adds no CORS headers and a preflight is an ordinary request. */
  cors: CompiledCors | null;
  source: RouteConfig;
}

/** The whole compiled config. */
export interface CompiledConfig {
  source: Config;
  server: Config['server'];
  admin: Config['admin'];
  decision: Config['decision'] | null;
  /** `decision.trustedProxies`, compiled; null without a decision block. */
  decisionTrusted: AddressMatcher | null;
  extAuthz: Config['extAuthz'] | null;
  /** `extAuthz.trustedProxies`, compiled; null without an extAuthz block. */
  extAuthzTrusted: AddressMatcher | null;
  /** The `tracing` block; null without one (no tracing work at all). */
  tracing: Config['tracing'] | null;
  issuers: ReadonlyMap<string, IssuerConfig>;
  routes: readonly CompiledRoute[];
  /** The routes indexed for matching (`pipeline/match.ts`), first match in file order. */
  routeIndex: RouteIndex;
  /** The routes with `cors`, in file order: where a preflight or a 404 looks for its CORS policy. */
  corsRoutes: readonly CompiledRoute[];
  /** Canonical (lower-case, `_`→`-`) names of every header any route may set. */
  identityHeaders: ReadonlySet<string>;
  /** Canonical identity prefix ('' disables). */
  identityPrefix: string;
  clientCert: CompiledClientCert;
  /** The `algs` attribute of DPoP challenges (RFC 9449 §7.1): the accepted proof algorithms. */
  dpopAlgs: string;
  /** {@link configHash} of `source`: which config runs (the `tokengate_config_info` metric). */
  hash: string;
}

/**
 * Routes indexed by path segment and host, built once per config by `buildRouteIndex`
 * (`pipeline/match.ts`): a trie of the segments of each route's path rule. Each node lists,
 * by host (and for any host), the file positions of the prefix routes that end at it and of
 * the exact-path routes that name it. Read only by `matchRoute`.
 */
export interface RouteIndex {
  /** Every route, in file order. */
  readonly routes: readonly CompiledRoute[];
  readonly root: RouteIndexNode;
}

/** One path segment's node of a {@link RouteIndex}. */
export interface RouteIndexNode {
  readonly children: ReadonlyMap<string, RouteIndexNode>;
  /** Prefix routes ending here: file positions, ascending; by host, and for any host. */
  readonly prefixByHost: ReadonlyMap<string, readonly number[]>;
  readonly prefixAnyHost: readonly number[];
  /** Exact-path routes naming exactly this path, likewise. */
  readonly exactByHost: ReadonlyMap<string, readonly number[]>;
  readonly exactAnyHost: readonly number[];
}
