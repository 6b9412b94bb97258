/**
 * A real OpenID Provider (the `oidc-provider` package) for end-to-end tests.
 *
 * It issues client-credentials access tokens for four resource indicators:
 * three produce RFC 9068 JWT access tokens (`typ: at+jwt`), each signed with a
 * different algorithm, and one produces opaque tokens that can only be checked
 * through the introspection endpoint. Everything listens on 127.0.0.1.
 *
 * @module
 */
import * as http from 'node:http';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { listenLoopback } from './ports.js';

/** Resource indicators the test IdP knows, and how it issues tokens for each. */
export const IDP_RESOURCES = {
  /** JWT access token signed with RS256, `aud` = this value. */
  rs256: 'urn:tokengate:rs256',
  /** JWT access token signed with ES256 (P-256), `aud` = this value. */
  es256: 'urn:tokengate:es256',
  /** JWT access token signed with EdDSA (Ed25519), `aud` = this value. */
  eddsa: 'urn:tokengate:eddsa',
  /** Opaque access token; only introspection can tell what it means. */
  opaque: 'urn:tokengate:opaque',
} as const;

/** Scopes every resource accepts; the `app` client may request any of them. */
export const IDP_SCOPES = ['orders:read', 'orders:write', 'admin'] as const;

/** `kid` of each signing key in the IdP's keystore (also in its JWKS). */
export const IDP_KIDS = { RS256: 'idp-rs256', ES256: 'idp-es256', EdDSA: 'idp-eddsa' } as const;

/** Access-token lifetime, in seconds, for every resource. */
export const IDP_TOKEN_TTL = 300;

/** Confidential client the gateway uses for introspection (`client_secret_basic`). */
export const IDP_CLIENT = {
  clientId: 'tokengate',
  clientSecret: 'tokengate-introspection-secret',
} as const;

/** The same gateway role, registered with `client_secret_post` (credentials in the form body). */
export const IDP_CLIENT_POST = {
  clientId: 'tokengate-post',
  clientSecret: 'tokengate-introspection-secret',
} as const;

/** The client that obtains tokens (`client_credentials`, `client_secret_basic`). */
export const IDP_APP_CLIENT = {
  clientId: 'app',
  clientSecret: 'app-secret',
} as const;

/**
 * A client whose access tokens are bound to its TLS client certificate (RFC 8705 §3,
 * `tls_client_certificate_bound_access_tokens`). The IdP reads the certificate from the
 * {@link IDP_CLIENT_CERT_HEADER} request header (a URL-encoded PEM), as it would behind
 * a TLS-terminating proxy.
 */
export const IDP_MTLS_CLIENT = {
  clientId: 'app-mtls',
  clientSecret: 'app-mtls-secret',
} as const;

/** Header from which the test IdP reads the client certificate (URL-encoded PEM). */
export const IDP_CLIENT_CERT_HEADER = 'x-test-client-cert';

/** A running test IdP. */
export interface TestIdp {
  /** Issuer identifier, e.g. `http://127.0.0.1:PORT`: exact `iss` of tokens and discovery `issuer`. */
  issuer: string;
  /** `issuer + '/jwks'`. */
  jwksUri: string;
  /** `issuer + '/token/introspection'`. */
  introspectionEndpoint: string;
  /** `issuer + '/token/revocation'`. */
  revocationEndpoint: string;
  /** `issuer + '/token'`. */
  tokenEndpoint: string;
  /**
   * Client-credentials grant (client `app`) with a resource indicator; returns the access token string.
   * `dpop` signs a proof for the token request (RFC 9449 §5): the token is then bound to its key
   * (`cnf.jkt`). `clientCertPem` uses client {@link IDP_MTLS_CLIENT} and binds the token to that
   * certificate (`cnf["x5t#S256"]`, RFC 8705 §3).
   */
  token(opts: { resource: string; scope?: string; dpop?: (htm: string, htu: string) => Promise<string>; clientCertPem?: string }): Promise<string>;
  /** Revokes an opaque token (as client `app`); throws unless the endpoint answers 200. */
  revoke(token: string): Promise<void>;
  /** Counters of HTTP requests that reached the provider, by path (e.g. `/jwks`, `/token/introspection`). */
  hits: Map<string, number>;
  /** Stops listening and destroys open (keep-alive) connections. */
  close(): Promise<void>;
}

// Minimal local view of the untyped `oidc-provider` module (no @types package is installed).
interface OidcToken {
  clientId?: string;
}
interface OidcClient {
  clientId: string;
  clientAuthMethod: string;
}
interface OidcProvider {
  callback(): http.RequestListener;
}
interface OidcProviderModule {
  default: new (issuer: string, configuration: Record<string, unknown>) => OidcProvider;
  errors: { InvalidTarget: new (description?: string) => Error };
}

let modulePromise: Promise<OidcProviderModule> | undefined;

/** Runs `fn` with oidc-provider's own console notices (prefix `oidc-provider `) suppressed. */
async function withoutProviderNotices<T>(fn: () => T | Promise<T>): Promise<T> {
  const { warn, info } = console;
  const filter =
    (orig: (...args: unknown[]) => void) =>
    (...args: unknown[]): void => {
      if (typeof args[0] === 'string' && args[0].includes('oidc-provider ')) return;
      orig.apply(console, args);
    };
  console.warn = filter(warn);
  console.info = filter(info);
  try {
    return await fn();
  } finally {
    console.warn = warn;
    console.info = info;
  }
}

/** Loads oidc-provider once; its import prints an "Unsupported runtime" warning on Node 20, which we drop. */
function loadProvider(): Promise<OidcProviderModule> {
  // A non-literal specifier keeps TypeScript from demanding declarations for the untyped package.
  const specifier: string = 'oidc-provider';
  modulePromise ??= withoutProviderNotices(() => import(specifier) as Promise<OidcProviderModule>);
  return modulePromise;
}

async function signingJwk(alg: 'RS256' | 'ES256' | 'EdDSA', kid: string): Promise<JWK> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  return { ...(await exportJWK(privateKey)), kid, alg, use: 'sig' };
}

function basic(clientId: string, clientSecret: string): string {
  const enc = (s: string) => encodeURIComponent(s);
  return 'Basic ' + Buffer.from(`${enc(clientId)}:${enc(clientSecret)}`).toString('base64');
}

/**
 * Starts a real oidc-provider on 127.0.0.1 (ephemeral port unless `opts.port` is given).
 * Features on: clientCredentials, resourceIndicators, introspection, revocation; in-memory storage;
 * fresh RS256 / ES256 / EdDSA keys each start. `extraClaims` are added to every JWT access token
 * (oidc-provider's `extraTokenClaims`; registered claims cannot be overridden). Takes about 0.1–0.4 s (RSA key generation varies); the
 * first call in a process adds ~0.3 s to load oidc-provider.
 */
export async function startIdp(opts: { port?: number; extraClaims?: Record<string, unknown> } = {}): Promise<TestIdp> {
  const { default: Provider, errors } = await loadProvider();

  const keys = await Promise.all([
    signingJwk('RS256', IDP_KIDS.RS256),
    signingJwk('ES256', IDP_KIDS.ES256),
    signingJwk('EdDSA', IDP_KIDS.EdDSA),
  ]);

  const hits = new Map<string, number>();
  let handler: http.RequestListener = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    handler(req, res);
  });
  const port = await listenLoopback(server, opts.port);
  const issuer = `http://127.0.0.1:${port}`;

  const resourceAlgs: Record<string, 'RS256' | 'ES256' | 'EdDSA' | undefined> = {
    [IDP_RESOURCES.rs256]: 'RS256',
    [IDP_RESOURCES.es256]: 'ES256',
    [IDP_RESOURCES.eddsa]: 'EdDSA',
    [IDP_RESOURCES.opaque]: undefined,
  };
  const scope = IDP_SCOPES.join(' ');
  const ttl = () => IDP_TOKEN_TTL;

  const configuration: Record<string, unknown> = {
    clients: [
      {
        client_id: IDP_APP_CLIENT.clientId,
        client_secret: IDP_APP_CLIENT.clientSecret,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
        scope,
      },
      {
        client_id: IDP_MTLS_CLIENT.clientId,
        client_secret: IDP_MTLS_CLIENT.clientSecret,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
        tls_client_certificate_bound_access_tokens: true,
        scope,
      },
      {
        client_id: IDP_CLIENT.clientId,
        client_secret: IDP_CLIENT.clientSecret,
        grant_types: [],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        client_id: IDP_CLIENT_POST.clientId,
        client_secret: IDP_CLIENT_POST.clientSecret,
        grant_types: [],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_post',
      },
    ],
    jwks: { keys },
    scopes: [...IDP_SCOPES],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      // RFC 9449: a token request with a DPoP proof yields a token bound to the proof key (cnf.jkt).
      dPoP: { enabled: true },
      // RFC 8705 §3: certificate-bound tokens; the certificate comes from a header, as behind a TLS terminator.
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        getCertificate: (ctx: { get(name: string): string }) => {
          const v = ctx.get(IDP_CLIENT_CERT_HEADER);
          return v ? decodeURIComponent(v) : undefined;
        },
      },
      introspection: {
        enabled: true,
        // Any authenticated confidential client may introspect any token (the gateway introspects `app`'s tokens).
        allowedPolicy: async (_ctx: unknown, client: OidcClient) => client.clientAuthMethod !== 'none',
      },
      revocation: {
        enabled: true,
        // The owning client, or any confidential client, may revoke.
        allowedPolicy: async (_ctx: unknown, client: OidcClient, token: OidcToken) =>
          token.clientId === client.clientId || client.clientAuthMethod !== 'none',
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => undefined,
        useGrantedResource: async () => false,
        getResourceServerInfo: async (_ctx: unknown, resourceIndicator: string) => {
          if (!(resourceIndicator in resourceAlgs)) throw new errors.InvalidTarget();
          const alg = resourceAlgs[resourceIndicator];
          return alg
            ? { scope, audience: resourceIndicator, accessTokenTTL: IDP_TOKEN_TTL, accessTokenFormat: 'jwt', jwt: { sign: { alg } } }
            : { scope, audience: resourceIndicator, accessTokenTTL: IDP_TOKEN_TTL, accessTokenFormat: 'opaque' };
        },
      },
    },
    ttl: {
      AccessToken: ttl,
      ClientCredentials: ttl,
      AuthorizationCode: () => 60,
      IdToken: ttl,
      RefreshToken: () => 3600,
      Interaction: () => 600,
      Session: () => 3600,
      Grant: () => 3600,
      DeviceCode: () => 600,
      BackchannelAuthenticationRequest: () => 600,
    },
    clientBasedCORS: () => false,
    extraTokenClaims: async () => opts.extraClaims,
    findAccount: async () => undefined,
    renderError: async (ctx: { type: string; body: unknown }, out: Record<string, unknown>) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  };

  let provider: OidcProvider;
  try {
    provider = await withoutProviderNotices(() => new Provider(issuer, configuration));
  } catch (err) {
    server.close();
    throw err;
  }
  handler = provider.callback();

  const tokenEndpoint = `${issuer}/token`;
  const revocationEndpoint = `${issuer}/token/revocation`;
  const appAuth = basic(IDP_APP_CLIENT.clientId, IDP_APP_CLIENT.clientSecret);
  const mtlsAuth = basic(IDP_MTLS_CLIENT.clientId, IDP_MTLS_CLIENT.clientSecret);

  return {
    issuer,
    jwksUri: `${issuer}/jwks`,
    introspectionEndpoint: `${issuer}/token/introspection`,
    revocationEndpoint,
    tokenEndpoint,
    hits,
    async token({ resource, scope: wanted, dpop, clientCertPem }) {
      const form = new URLSearchParams({ grant_type: 'client_credentials', resource });
      if (wanted !== undefined) form.set('scope', wanted);
      const headers: Record<string, string> = {
        authorization: clientCertPem ? mtlsAuth : appAuth,
        'content-type': 'application/x-www-form-urlencoded',
      };
      if (dpop) headers.dpop = await dpop('POST', tokenEndpoint);
      if (clientCertPem) headers[IDP_CLIENT_CERT_HEADER] = encodeURIComponent(clientCertPem);
      const res = await fetch(tokenEndpoint, { method: 'POST', headers, body: form });
      const body = (await res.json()) as { access_token?: string };
      if (res.status !== 200 || typeof body.access_token !== 'string') {
        throw new Error(`token request failed: ${res.status} ${JSON.stringify(body)}`);
      }
      return body.access_token;
    },
    async revoke(token) {
      const res = await fetch(revocationEndpoint, {
        method: 'POST',
        headers: { authorization: appAuth, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token }),
      });
      const text = await res.text();
      if (res.status !== 200) throw new Error(`revocation failed: ${res.status} ${text}`);
    },
    close() {
      return new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
    },
  };
}

/** The `issuers:` list entry for this IdP's JWT access tokens (one audience, 5 s clock tolerance), as gateway YAML. */
export function idpIssuerYaml(idp: TestIdp, audience: string = IDP_RESOURCES.es256): string {
  return `  - id: idp
    issuer: ${idp.issuer}
    jwksUri: ${idp.jwksUri}
    audiences: [${audience}]
    clockToleranceSec: 5`;
}
