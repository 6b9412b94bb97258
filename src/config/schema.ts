/**
 * The config file's schema: every key, its default and its meaning, in one place.
 *
 * Validation (Ajv), defaults and the README's config reference are all derived from
 * this file (`scripts/gen-config-docs.ts`). Every object is closed
 * (`additionalProperties: false`): a typo must never silently weaken a policy.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';

const closed = { additionalProperties: false } as const;

/** JWS algorithms that may be allowed. `none` and HS* are absent on purpose (RFC 8725 §3.1-3.2). */
export const ASYMMETRIC_ALGS = [
  'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519',
] as const;

const Alg = Type.Union(ASYMMETRIC_ALGS.map((a) => Type.Literal(a)), {
  description: 'An asymmetric JWS algorithm',
});

const Cidr = Type.String({ minLength: 1, description: 'An IPv4/IPv6 address or CIDR block' });
// `hint` words the error when a pattern fails ("must be <hint>").
const HeaderName = Type.String({ pattern: '^[A-Za-z0-9!#$%&\'*+.^_`|~-]+$', hint: 'an HTTP header name (RFC 9110 token)', description: 'An HTTP header name' });
const Url = Type.String({ pattern: '^https?://[^\\s]+$', hint: 'an absolute http:// or https:// URL', description: 'An absolute http(s) URL' });
const Id = (what: string) => Type.String({ pattern: '^[A-Za-z0-9_.-]+$', hint: 'letters, digits, _ . - only', description: `Id used ${what}` });
const AbsPath = (description: string) => Type.String({ pattern: '^/', hint: 'a path starting with /', description });

function obj<T extends Record<string, TSchema>>(props: T, description: string, dflt = true) {
  return Type.Object(props, dflt ? { ...closed, description, default: {} } : { ...closed, description });
}

/** The documented default of `server.redis.url`; resolved against the environment at load time. */
export const REDIS_URL_DEFAULT = '${REDIS_URL:-redis://127.0.0.1:6379}';

const Dpop = obj({
  proofMaxAgeSec: Type.Integer({ minimum: 1, maximum: 3600, default: 60, description: "A DPoP proof's `iat` must be within this of now (plus the issuer's clock tolerance); seen `jti`s are kept this long" }),
  algorithms: Type.Array(Alg, { minItems: 1, default: ['ES256', 'EdDSA', 'RS256', 'PS256'], description: 'Proof signing algorithms accepted (asymmetric only), announced in the `algs` challenge attribute' }),
  nonce: Type.Boolean({ default: false, description: 'Demand server nonces (RFC 9449 §8): stateless HMAC nonces from `nonceSecret`, accepted by every replica sharing it' }),
  nonceSecret: Type.Optional(Type.String({ minLength: 32, description: 'Secret (32+ characters, the same on every replica) nonces are derived from; required when `nonce: true`; use ${ENV}' })),
  replayStore: Type.Union([Type.Literal('memory'), Type.Literal('redis')], { default: 'memory', description: 'memory | redis: where seen proof `jti`s are kept (redis: shared by all replicas; unavailable → 503)' }),
  replayCacheSize: Type.Integer({ minimum: 1, default: 200000, description: 'memory store: most `jti`s remembered at once; when full of unexpired entries, DPoP requests get 503 (never a forgotten `jti`)' }),
}, 'DPoP proof checking (RFC 9449)');

const Redis = obj({
  url: Type.String({ minLength: 1, default: REDIS_URL_DEFAULT, description: 'redis:// or rediss:// URL, used when any store is `redis`; by default `$REDIS_URL`, else redis://127.0.0.1:6379' }),
  commandTimeoutMs: Type.Integer({ minimum: 1, default: 500, description: 'A Redis command not answered by then fails the request (503)' }),
}, 'The Redis shared by replicas (DPoP replay store, introspection cache)');

const ClientCert = obj({
  header: { ...HeaderName, default: 'x-forwarded-client-cert', description: 'Header carrying the client certificate (Envoy XFCC `Hash=`/`Cert=`, or a URL-encoded PEM), set by a TLS-terminating front proxy' },
  trustedProxies: Type.Array(Cidr, { default: ['127.0.0.1/32'], description: 'Peers whose client-certificate header is believed; from anyone else it is removed and ignored' }),
}, 'Client certificates for mTLS-bound tokens (RFC 8705)');

const Tls = Type.Object({
  certFile: Type.String({ minLength: 1, description: 'PEM certificate chain served on the proxy port; re-read when it changes (a Kubernetes Secret or cert-manager symlink swap), without dropping open connections; a pair that does not load is logged and the previous one keeps serving' }),
  keyFile: Type.String({ minLength: 1, description: 'PEM private key for certFile' }),
  minVersion: Type.Union([Type.Literal('TLSv1.2'), Type.Literal('TLSv1.3')], { default: 'TLSv1.2', description: 'Oldest TLS version accepted' }),
  clientCaFile: Type.Optional(Type.String({ minLength: 1, description: 'PEM CA bundle: ask clients for a certificate and verify it against these CAs; a verified certificate binds tokens by RFC 8705 (`cnf["x5t#S256"]`) with no header (`clientCert.header` is then ignored on this listener)' })),
  clientCertificate: Type.Union([Type.Literal('request'), Type.Literal('require')], { default: 'request', description: 'request: a client without a certificate (or with one the CA does not verify) still connects, unbound; require: the TLS handshake fails without a verified certificate. Only with clientCaFile' }),
}, { ...closed, description: 'Optional: terminate TLS on the proxy port (TLS 1.2+; ALPN h2 and http/1.1 with http2)' });

const Server = obj({
  host: Type.String({ default: '0.0.0.0', description: 'Proxy listen address' }),
  port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080, description: 'Proxy listen port (0: any free port)' }),
  trustProxy: Type.Boolean({ default: false, description: 'Honour X-Forwarded-For/-Proto/-Host from the peer (only behind a trusted front proxy)' }),
  maxTokenBytes: Type.Integer({ minimum: 64, default: 8192, description: 'Longer bearer tokens are refused (401 invalid_token) without being parsed' }),
  identityHeaderPrefix: Type.String({ default: 'x-auth-', pattern: '^[A-Za-z0-9_-]*$', hint: 'a header-name prefix', description: 'Every incoming header with this prefix (any case, `_` or `-`) is removed before forwarding; empty string disables the prefix rule' }),
  upstreamTimeoutMs: Type.Integer({ minimum: 1, default: 30000, description: 'No response headers from the upstream by then: 504' }),
  shutdownGraceSec: Type.Number({ minimum: 0, default: 30, description: 'On SIGTERM, how long in-flight requests may take to finish' }),
  logLevel: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)), { default: 'info', description: 'pino log level; `info` writes one access line per request' }),
  tokenCacheSize: Type.Integer({ minimum: 0, default: 10000, description: 'Verified-JWT cache entries (0 disables); entries expire at the token `exp` and when their key leaves the JWKS' }),
  maxHeaderBytes: Type.Integer({ minimum: 1024, default: 16384, description: 'Largest request header section accepted (431 beyond)' }),
  requestTimeoutMs: Type.Integer({ minimum: 0, default: 300000, description: 'Whole-request receive timeout (Node `requestTimeout`; 0 disables)' }),
  headersTimeoutMs: Type.Integer({ minimum: 1, default: 20000, description: 'Time allowed to receive the request headers (slowloris guard)' }),
  keepAliveTimeoutMs: Type.Integer({ minimum: 1, default: 72000, description: 'Idle keep-alive time for client connections' }),
  bodyLimitBytes: Type.Integer({ minimum: 0, default: 1048576, description: 'Largest form-encoded body read (they are scanned for `access_token`); other bodies stream without limit' }),
  upstreamConnections: Type.Integer({ minimum: 1, default: 128, description: 'Maximum concurrent connections per upstream origin; further requests queue until one is free (bounded by upstreamTimeoutMs)' }),
  allowInsecureHttpHosts: Type.Array(Type.String({ minLength: 1 }), { default: ['127.0.0.1', 'localhost', '::1'], description: 'Hosts that IdP fetches (discovery, JWKS, introspection) may reach over plain http; every other IdP URL must be https. Default: loopback only' }),
  workers: Type.Integer({ minimum: 0, maximum: 4, default: 0, why: 'each worker keeps its own key and token caches, so the IdP sees one JWKS fetch and one introspection call per worker; scale out with replicas', description: 'Gateway processes sharing the proxy port (node:cluster), at most 4. 0: one per CPU the process may use (a cgroup CPU quota such as a Kubernetes CPU limit caps it, rounded down), at least 1 and at most 4; 1: a single process. Each worker keeps its own key and token caches (the IdP sees up to one JWKS fetch per refresh and one introspection call per token per worker); a primary process serves the admin port (readiness of all workers, summed metrics), holds the DPoP proof ids of a memory replay store and forwards SIGHUP/SIGTERM; restart-only' }),
  http2: Type.Boolean({ default: false, description: 'Serve HTTP/2 on the proxy port beside HTTP/1.1: h2c with prior knowledge on a cleartext port (the connection preface decides, per connection), ALPN h2 with tls. An HTTP/1.1 `Upgrade: h2c` is always served as HTTP/1.1' }),
  maxConcurrentStreams: Type.Integer({ minimum: 1, maximum: 1000, default: 100, description: 'HTTP/2: most streams a client may have open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS); more are refused by the protocol' }),
  tls: Type.Optional(Tls),
  dpop: Dpop,
  redis: Redis,
  clientCert: ClientCert,
}, 'The proxy listener');

const Admin = obj({
  host: Type.String({ default: '0.0.0.0', description: 'Admin listen address' }),
  port: Type.Integer({ minimum: 0, maximum: 65535, default: 9090, description: '/healthz /readyz /metrics; never served on the proxy port' }),
}, 'The admin listener');

const Decision = obj({
  host: Type.String({ default: '0.0.0.0', description: 'Decision listen address' }),
  port: Type.Integer({ minimum: 0, maximum: 65535, default: 8081, description: 'Forward-auth port (nginx auth_request, Traefik ForwardAuth, Envoy ext_authz HTTP)' }),
  trustedProxies: Type.Array(Cidr, { default: ['127.0.0.1/32'], description: 'Peers whose X-Forwarded-*/X-Original-* headers are believed; anyone else gets 403' }),
}, 'Optional forward-auth decision listener; absent: no such listener', false);

const ExtAuthz = obj({
  host: Type.String({ default: '0.0.0.0', description: 'ext_authz listen address' }),
  port: Type.Integer({ minimum: 0, maximum: 65535, default: 9191, description: 'gRPC port (h2c) serving envoy.service.auth.v3.Authorization/Check and grpc.health.v1.Health (Envoy ext_authz, Istio CUSTOM AuthorizationPolicy, Envoy Gateway, Contour)' }),
  trustedProxies: Type.Array(Cidr, { default: ['127.0.0.1/32'], description: 'Peers (the Envoys) allowed to ask; anyone else gets PERMISSION_DENIED' }),
}, 'Optional Envoy external-authorization listener over gRPC; absent: no such listener', false);

const TracingBatch = obj({
  scheduledDelayMs: Type.Integer({ minimum: 1, default: 5000, description: 'Spans are sent at least this often (OTel BatchSpanProcessor `scheduledDelayMillis`)' }),
  maxExportBatchSize: Type.Integer({ minimum: 1, default: 512, description: 'Most spans in one export request; a full batch is sent at once' }),
  maxQueueSize: Type.Integer({ minimum: 1, default: 2048, description: 'Most spans waiting for export; beyond it new spans are dropped (a collector that is down never holds memory or requests)' }),
}, 'How finished spans are batched for export');

const Tracing = obj({
  endpoint: { ...Url, description: 'OTLP/HTTP traces endpoint, the full URL (a collector usually listens on http://HOST:4318/v1/traces)' },
  protocol: Type.Union([Type.Literal('http/protobuf'), Type.Literal('http/json')], { default: 'http/protobuf', description: 'OTLP encoding: http/protobuf | http/json' }),
  sampleRatio: Type.Number({ minimum: 0, maximum: 1, default: 1, description: 'Share of new traces recorded (0 to 1). A request whose `traceparent` says sampled is always recorded, one that says not sampled never (parent-based sampling)' }),
  serviceName: Type.String({ minLength: 1, default: 'tokengate', description: '`service.name` of the spans' }),
  headers: Type.Record(HeaderName, Type.String(), { default: {}, description: "Headers sent with every export (a vendor's API key: use ${ENV}); never logged, left out of the config hash" }),
  timeoutMs: Type.Integer({ minimum: 1, default: 10000, description: 'One export (retries included) gives up after this; its spans are dropped and counted in tokengate_trace_export_failures_total' }),
  batch: TracingBatch,
}, 'Optional OpenTelemetry tracing over OTLP/HTTP; absent: no tracing work at all', false);

const Jwks = obj({
  cacheTtlSec: Type.Integer({ minimum: 1, default: 600, description: 'Re-fetch the JWKS when it is this old (a shorter Cache-Control max-age wins; never more often than once a second), whatever cooldownSec says: a removed key stops working within this time' }),
  cooldownSec: Type.Integer({ minimum: 0, default: 30, description: 'At most one extra fetch for an unknown `kid` per this interval (any fetch, the first included, opens it): unknown `kid`s cannot storm the IdP. After a failed fetch the next try comes at the smaller of this and the key set\'s lifetime' }),
  timeoutMs: Type.Integer({ minimum: 1, default: 3000, description: 'Fetch timeout (connect to last byte)' }),
  maxStaleSec: Type.Integer({ minimum: 0, default: 86400, description: 'Keep using the last good keys this long while the IdP is down' }),
  maxBytes: Type.Integer({ minimum: 1024, default: 1048576, description: 'Largest JWKS/discovery document accepted' }),
}, 'JWKS cache policy');

const Introspection = obj({
  endpoint: Type.Optional({ ...Url, description: 'RFC 7662 introspection endpoint (default: `introspection_endpoint` from discovery)' }),
  clientId: Type.String({ minLength: 1, description: 'Client id for introspection client authentication' }),
  clientSecret: Type.String({ minLength: 1, description: 'Client secret; use ${ENV} substitution, never a literal' }),
  authMethod: Type.Union([Type.Literal('client_secret_basic'), Type.Literal('client_secret_post')], { default: 'client_secret_basic', description: 'RFC 7662 client authentication' }),
  cacheTtlSec: Type.Integer({ minimum: 0, default: 60, description: 'Active answers cached this long, never beyond the token `exp` (0: no positive cache, revocation seen at once)' }),
  negativeCacheTtlSec: Type.Integer({ minimum: 0, default: 5, description: 'Inactive answers cached this long (0: not cached)' }),
  cacheStore: Type.Union([Type.Literal('memory'), Type.Literal('redis')], { default: 'memory', description: 'Where answers are cached: memory (per process) or redis (shared by replicas, on server.redis; keyed by the token hash, same TTLs)' }),
  cacheSize: Type.Integer({ minimum: 1, default: 10000, description: 'In-memory cache entries (LRU), per issuer' }),
  timeoutMs: Type.Integer({ minimum: 1, default: 3000, description: 'Introspection call timeout (connect to last byte); past it: 503' }),
}, 'RFC 7662 introspection for opaque tokens', false);

const Issuer = Type.Object({
  id: Id('by routes and in metric labels'),
  issuer: Type.String({ minLength: 1, description: 'Exact `iss` value' }),
  discovery: Type.Boolean({ default: false, description: 'Read jwks_uri / introspection_endpoint from OIDC discovery (the document `issuer` must equal `issuer`)' }),
  jwksUri: Type.Optional({ ...Url, description: 'JWKS URL (instead of discovery)' }),
  discoveryOrigins: Type.Array(Type.String({ pattern: '^https?://[^/\\s]+$', hint: 'an origin (scheme://host[:port])' }), { default: [], description: "Origins besides the issuer's own that discovery-provided URLs (jwks_uri, introspection_endpoint) may point to; any other is refused" }),
  algorithms: Type.Array(Alg, { minItems: 1, default: ['RS256', 'PS256', 'ES256', 'EdDSA'], description: 'Algorithm allow-list; `none` and HS* are never accepted' }),
  audiences: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1, description: 'Accepted `aud` values (any one must match); a route may override' })),
  clockToleranceSec: Type.Integer({ minimum: 0, maximum: 300, default: 30, description: 'Leeway for exp/nbf/iat' }),
  requireTyp: Type.Optional(Type.String({ minLength: 1, description: 'Required JWT `typ` header, e.g. at+jwt (RFC 9068)' })),
  jwks: Jwks,
  introspection: Type.Optional(Introspection),
}, { ...closed, description: 'A token issuer' });

const Scopes = obj({
  allOf: Type.Array(Type.String({ minLength: 1 }), { default: [], description: 'Every one of these scopes is required' }),
  anyOf: Type.Array(Type.String({ minLength: 1 }), { default: [], description: 'At least one of these scopes is required (when non-empty)' }),
}, 'Required scopes, read from `scope` (space-separated) or, when the token has no `scope` member at all, `scp` (array or space-separated string); a `scope` that is not a string grants none');

const ClaimValue = Type.Union([Type.String(), Type.Number(), Type.Boolean()]);

const Auth = Type.Object({
  mode: Type.Union(['jwt', 'introspection', 'jwt_or_introspection', 'none'].map((m) => Type.Literal(m)), { description: 'jwt | introspection | jwt_or_introspection | none (required: deny by default)' }),
  issuers: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1, description: 'Issuer ids accepted on this route (default: every issuer)' })),
  audiences: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1, description: "Accepted `aud` values; overrides the issuers' lists" })),
  scopes: Scopes,
  claims: Type.Record(Type.String({ minLength: 1 }), ClaimValue, { default: {}, description: 'Dotted claim path -> required value (equality; membership when the claim is an array). A claim named with dots (`https://example.com/roles`) is read by that name when the token has no nested path of the same spelling; a token with both fails the rule' }),
  binding: Type.Union(['allow', 'require-dpop', 'require-mtls', 'require-any'].map((m) => Type.Literal(m)), { default: 'allow', description: 'allow | require-dpop | require-mtls | require-any: refuse tokens not bound to a DPoP key / client certificate (bound tokens always need their proof)' }),
  optional: Type.Boolean({ default: false, description: 'true (jwt, introspection, jwt_or_introspection): a request without an `Authorization` header passes as anonymous, with no identity headers (outcome `allowed`, reason `anonymous`); one with a credential is judged as if this were false (an invalid token is 401, never anonymous). Cannot be combined with scopes, claims or `binding: require-*`' }),
}, { ...closed, description: 'Who may pass' });

const Forward = obj({
  headers: Type.Record(HeaderName, Type.String({ minLength: 1 }), { default: {}, description: 'Upstream header <- claim (dotted path); `scope` is the space-joined scopes from `scope` or `scp`' }),
  claimsHeader: Type.Optional({ ...HeaderName, description: 'Header carrying all verified claims as base64url JSON' }),
  authorization: Type.Union([Type.Literal('strip'), Type.Literal('pass')], { default: 'strip', description: 'Forward the caller\'s Authorization header upstream (pass) or not (strip)' }),
}, 'What the upstream is told about the caller');

const Method = Type.String({ pattern: '^[A-Z]+$', hint: 'an upper-case method name' });

const Match = Type.Object({
  host: Type.Optional(Type.String({ minLength: 1, description: 'Exact Host (case-insensitive, port and trailing dots ignored: `Host: api.example.com.` is `api.example.com`)' })),
  pathPrefix: Type.Optional(AbsPath('Matches the prefix itself and anything below it at a segment boundary (/orders, /orders/..., never /ordersX)')),
  path: Type.Optional(AbsPath('Exact path')),
  methods: Type.Optional(Type.Array(Method, { minItems: 1, description: 'Allowed methods (default all). A CORS preflight is matched by the method it asks for (`Access-Control-Request-Method`) on routes with `cors`' })),
}, { ...closed, description: 'Which requests this route takes; exactly one of path / pathPrefix' });

const Cors = Type.Object({
  allowOrigins: Type.Array(Type.String({ minLength: 1 }), { minItems: 1, description: 'Origins whose pages may call this route: exact `scheme://host[:port]` (normalised as the URL standard does: lower case, default port dropped), `"*"` for any origin (not with allowCredentials; never `null`), or `"null"` (sandboxed frames and local files: any page can send it)' }),
  allowMethods: Type.Array(Method, { minItems: 1, default: ['GET', 'HEAD', 'POST'], description: 'Methods a preflight may ask for (`Access-Control-Request-Method`); announced in `Access-Control-Allow-Methods`' }),
  allowHeaders: Type.Array(HeaderName, { default: ['authorization', 'content-type'], description: 'Request headers a preflight may ask for (every name in `Access-Control-Request-Headers` must be listed; case-insensitive); `authorization` is needed for bearer tokens, `dpop` for DPoP proofs' }),
  exposeHeaders: Type.Array(HeaderName, { default: [], description: 'Response headers pages may read besides the CORS-safelisted ones, e.g. `x-request-id`; `www-authenticate`, `dpop-nonce` and `retry-after`, which the gateway sets on its own answers, are always exposed' }),
  allowCredentials: Type.Boolean({ default: false, description: 'Send `Access-Control-Allow-Credentials: true` (pages calling with `credentials: \'include\'`: cookies, client certificates); not with `"*"`' }),
  maxAgeSec: Type.Integer({ minimum: 0, maximum: 86400, default: 600, description: 'How long a browser may cache a preflight answer (`Access-Control-Max-Age`; browsers cap it, Chromium at 7200)' }),
}, { ...closed, description: 'Optional: the gateway answers CORS for browsers on this route (Fetch standard): preflights are answered here, without a token, and never forwarded; every other answer to an allowed origin, refusals included, carries the CORS headers, replacing the upstream\'s own' });

const Route = Type.Object({
  id: Id('in logs and metric labels'),
  match: Match,
  upstream: { ...Url, description: 'Upstream origin (scheme://host:port), optionally with a base path. `https://` upstreams (requests and WebSocket upgrades) are verified against Node\'s bundled CA list; add a private CA with `NODE_EXTRA_CA_CERTS=/path/ca.pem`. An untrusted certificate is a 502' },
  stripPrefix: Type.Boolean({ default: false, description: 'Remove the matched pathPrefix before forwarding' }),
  upstreamProtocol: Type.Union([Type.Literal('http1'), Type.Literal('h2')], { default: 'http1', description: 'http1 | h2: how the upstream is spoken to. h2 (gRPC services): HTTP/2 with prior knowledge for http://, ALPN h2 (certificate verified as for http1) for https://; pooled sessions, at most upstreamConnections per origin. Either protocol serves HTTP/1.1 and HTTP/2 clients alike' }),
  websocket: Type.Boolean({ default: false, description: 'Proxy WebSocket upgrades (authenticated like any request)' }),
  auth: Auth,
  forward: Forward,
  cors: Type.Optional(Cors),
}, { ...closed, description: 'A route; the first match in file order wins' });

/** The whole config file. */
export const ConfigSchema = Type.Object({
  server: Server,
  admin: Admin,
  decision: Type.Optional(Decision),
  extAuthz: Type.Optional(ExtAuthz),
  tracing: Type.Optional(Tracing),
  issuers: Type.Array(Issuer, { default: [], description: 'Token issuers' }),
  routes: Type.Array(Route, { minItems: 1, description: 'Routes; no match is 404' }),
}, { ...closed, description: 'tokengate configuration' });

/** The validated config, defaults applied (before compilation). */
export type Config = Static<typeof ConfigSchema>;
export type IssuerConfig = Static<typeof Issuer>;
export type RouteConfig = Static<typeof Route>;
export type IntrospectionConfig = Static<typeof Introspection>;
export type DpopConfig = Static<typeof Dpop>;
/** The `tracing` block, defaults applied. */
export type TracingConfig = Static<typeof Tracing>;
/** A route's `cors` block, defaults applied. */
export type CorsConfig = Static<typeof Cors>;
