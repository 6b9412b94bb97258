/**
 * A development token issuer for `npm run dev` and local trials: in-memory RS256, ES256
 * and EdDSA keys, OIDC discovery, a JWKS and a client-credentials token endpoint that
 * issues RFC 9068 JWT access tokens with the scopes asked for. Not for production:
 * any client id is accepted.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';

/** Signing algorithms the dev issuer offers. */
export type DevAlg = 'RS256' | 'ES256' | 'EdDSA';

/** A running dev issuer. */
export interface DevIssuer {
  issuer: string;
  jwksUri: string;
  tokenEndpoint: string;
  /** Issues a token directly (what the token endpoint does). */
  issue(opts: { scope: string; audience: string; alg?: DevAlg; sub?: string; ttlSec?: number }): Promise<string>;
  close(): Promise<void>;
}

/** Starts the dev issuer on `host:port` (0: any free port). */
export async function startDevIssuer(opts: { host?: string; port?: number } = {}): Promise<DevIssuer> {
  const algs: DevAlg[] = ['RS256', 'ES256', 'EdDSA'];
  const keys = await Promise.all(algs.map(async (alg) => {
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
    const jwk: JWK = { ...(await exportJWK(publicKey)), kid: `dev-${alg.toLowerCase()}`, alg, use: 'sig' };
    return { alg, privateKey, jwk };
  }));
  let issuer = '';
  const issue: DevIssuer['issue'] = async ({ scope, audience, alg = 'RS256', sub = 'dev-user', ttlSec = 3600 }) => {
    const key = keys.find((k) => k.alg === alg) ?? keys[0];
    return new SignJWT({ scope, client_id: 'dev-client' })
      .setProtectedHeader({ alg: key.alg, kid: key.jwk.kid, typ: 'at+jwt' })
      .setIssuer(issuer).setAudience(audience).setSubject(sub)
      .setIssuedAt().setExpirationTime(`${ttlSec}s`).setJti(crypto.randomUUID())
      .sign(key.privateKey);
  };

  const server: Server = createServer((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(body));
    };
    const url = new URL(req.url ?? '/', issuer);
    if (req.method === 'GET' && url.pathname === '/.well-known/openid-configuration') {
      return send(200, {
        issuer, jwks_uri: `${issuer}/jwks`, token_endpoint: `${issuer}/token`,
        grant_types_supported: ['client_credentials'], id_token_signing_alg_values_supported: algs,
      });
    }
    if (req.method === 'GET' && url.pathname === '/jwks') {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=300' });
      return res.end(JSON.stringify({ keys: keys.map((k) => k.jwk) }));
    }
    if (req.method === 'POST' && url.pathname === '/token') {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => { if (body.length < 65536) body += c; });
      req.on('end', () => {
        const form = new URLSearchParams(body);
        if (form.get('grant_type') !== 'client_credentials') return send(400, { error: 'unsupported_grant_type' });
        const alg = (form.get('alg') ?? 'RS256') as DevAlg;
        if (!algs.includes(alg)) return send(400, { error: 'invalid_request', error_description: 'alg must be RS256, ES256 or EdDSA' });
        const scope = form.get('scope') ?? '';
        const audience = form.get('audience') ?? form.get('resource') ?? 'demo-api';
        issue({ scope, audience, alg, sub: form.get('client_id') ?? 'dev-client' }).then(
          (token) => send(200, { access_token: token, token_type: 'Bearer', expires_in: 3600, scope }),
          () => send(500, { error: 'server_error' }),
        );
      });
      return;
    }
    send(404, { error: 'not_found' });
  });
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', resolve));
  const addr = server.address() as AddressInfo;
  issuer = `http://${opts.host ?? '127.0.0.1'}:${addr.port}`;
  return {
    issuer, jwksUri: `${issuer}/jwks`, tokenEndpoint: `${issuer}/token`, issue,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}
