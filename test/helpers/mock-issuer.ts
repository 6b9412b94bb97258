/**
 * A hand-signing token issuer for attack and failure-mode tests: it publishes a
 * JWKS you control (keys, outages, hangs, garbage, Cache-Control) and signs any
 * token you ask for with jose.
 *
 * @module
 */
import * as http from 'node:http';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTHeaderParameters } from 'jose';
import { listenLoopback } from './ports.js';

/** Signing algorithms the mock issuer can create keys for. */
export type MockAlg = 'RS256' | 'ES256' | 'EdDSA' | 'PS256';

/** A signing key of the mock issuer. */
export interface MockKey {
  kid: string;
  alg: MockAlg;
  privateKey: CryptoKey;
  /** Public JWK as published in the JWKS (`kty`, key material, `kid`, `alg`, `use: 'sig'`). */
  publicJwk: JWK;
}

/** How the JWKS (and discovery) endpoints behave. */
export type MockIssuerMode = 'up' | 'down' | 'hang' | 'garbage';

/** A running mock issuer. */
export interface MockIssuer {
  /** `http://127.0.0.1:PORT`; default `iss` of signed tokens. */
  issuer: string;
  /** `issuer + '/jwks'`; `issuer + '/.well-known/openid-configuration'` is served too. */
  jwksUri: string;
  /** Count of JWKS GETs received (in every mode). */
  jwksFetches: number;
  /** Keys currently published; each has kid, alg, privateKey, publicJwk. */
  keys: MockKey[];
  /** Creates a key and publishes it; `kid` defaults to `k1`, `k2`, ... */
  addKey(alg: MockAlg, kid?: string): Promise<MockKey>;
  /** Unpublishes a key (the MockKey object can still be passed to `sign`). */
  removeKey(kid: string): void;
  /** 'up' | 'down' (HTTP 500) | 'hang' (never answers) | 'garbage' (200 non-JSON). Applies to JWKS and discovery. */
  mode: MockIssuerMode;
  /** Cache-Control header on JWKS responses (none when undefined). */
  cacheControl?: string;
  /**
   * Signs a JWT. Default claims: `iss`, `aud: 'api'`, `sub: 'user-1'`, `iat` now, `exp` now+300,
   * `scope: 'orders:read'`; default header: `alg`/`kid` from the key (first published key by default).
   * `claims` and `header` overrides merge in; an override whose value is `undefined` deletes that
   * claim / header parameter. Values are not validated (e.g. `exp: 'soon'` is signed as-is), but the
   * header `alg` must still match the key, since jose does the signing.
   */
  sign(opts?: { key?: MockKey; claims?: Record<string, unknown>; header?: Record<string, unknown> }): Promise<string>;
  /** Stops listening and destroys all connections (including hanging ones). */
  close(): Promise<void>;
}

function mergeDefined(base: Record<string, unknown>, over: Record<string, unknown> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over ?? {})) {
    if (v === undefined) delete out[k];
    else out[k] = v;
  }
  return out;
}

/**
 * Starts a mock issuer on 127.0.0.1 (ephemeral port). By default it publishes one RS256 key,
 * kid `k1`; `opts.algs` publishes one key per entry instead (kids `k1`, `k2`, ...).
 */
export async function startMockIssuer(opts: { algs?: Array<'RS256' | 'ES256' | 'EdDSA'> } = {}): Promise<MockIssuer> {
  let seq = 0;

  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const isJwks = path === '/jwks';
    const isDiscovery =
      path === '/.well-known/openid-configuration' || path === '/.well-known/oauth-authorization-server';
    if (!isJwks && !isDiscovery) {
      res.writeHead(404).end();
      return;
    }
    if (isJwks && req.method === 'GET') mock.jwksFetches += 1;
    switch (mock.mode) {
      case 'hang':
        return; // keep the socket open; close() destroys it
      case 'down':
        res.writeHead(500, { 'content-type': 'text/plain' }).end('down');
        return;
      case 'garbage':
        res.writeHead(200, { 'content-type': 'application/json' }).end('<html>not json');
        return;
      default:
        break;
    }
    const body = isJwks
      ? { keys: mock.keys.map((k) => k.publicJwk) }
      : { issuer: mock.issuer, jwks_uri: mock.jwksUri };
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/json' };
    if (isJwks && mock.cacheControl !== undefined) headers['cache-control'] = mock.cacheControl;
    res.writeHead(200, headers).end(JSON.stringify(body));
  });

  const port = await listenLoopback(server);
  const issuer = `http://127.0.0.1:${port}`;

  const mock: MockIssuer = {
    issuer,
    jwksUri: `${issuer}/jwks`,
    jwksFetches: 0,
    keys: [],
    mode: 'up',
    cacheControl: undefined,
    async addKey(alg, kid) {
      const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
      const key: MockKey = {
        kid: kid ?? `k${++seq}`,
        alg,
        privateKey,
        publicJwk: {},
      };
      key.publicJwk = { ...(await exportJWK(publicKey)), kid: key.kid, alg, use: 'sig' };
      mock.keys.push(key);
      return key;
    },
    removeKey(kid) {
      mock.keys = mock.keys.filter((k) => k.kid !== kid);
    },
    async sign({ key, claims, header } = {}) {
      const k = key ?? mock.keys[0];
      if (!k) throw new Error('mock issuer has no key to sign with');
      const now = Math.floor(Date.now() / 1000);
      const payload = mergeDefined(
        { iss: issuer, aud: 'api', sub: 'user-1', iat: now, exp: now + 300, scope: 'orders:read' },
        claims,
      );
      const protectedHeader = mergeDefined({ alg: k.alg, kid: k.kid }, header) as JWTHeaderParameters;
      return new SignJWT(payload).setProtectedHeader(protectedHeader).sign(k.privateKey);
    },
    close() {
      return new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
    },
  };

  for (const alg of opts.algs ?? ['RS256']) await mock.addKey(alg);
  return mock;
}
