/**
 * The bench's token issuer on 127.0.0.1: a JWKS (RS256, ES256, EdDSA keys), OIDC
 * discovery, and an RFC 7662 introspection endpoint for opaque tokens. It counts JWKS
 * fetches (the random-`kid` flood check) and introspection calls (the warm-cache check).
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKeys, type BenchAlg, type BenchKey } from './tokens.js';

/** Credentials the gateway uses to call the introspection endpoint. */
export const INTROSPECTION_CLIENT = { id: 'tokengate-bench', secret: 'bench-secret' };

/** A running bench issuer. */
export interface BenchIssuer {
  issuer: string;
  jwksUri: string;
  introspectionEndpoint: string;
  keys: Record<BenchAlg, BenchKey>;
  jwksFetches: number;
  introspections: number;
  /** A new opaque token that introspects as active until `exp`. */
  opaqueToken(audience: string, ttlSec?: number): string;
  close(): Promise<void>;
}

/** Starts the issuer on an ephemeral loopback port. */
export async function startBenchIssuer(): Promise<BenchIssuer> {
  const keys = generateKeys();
  const opaque = new Map<string, { aud: string; exp: number }>();
  const basic = 'Basic ' + Buffer.from(`${INTROSPECTION_CLIENT.id}:${INTROSPECTION_CLIENT.secret}`).toString('base64');
  const server = createServer((req, res) => {
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    };
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/jwks') {
      state.jwksFetches++;
      return send(200, { keys: Object.values(keys).map((k) => k.jwk) });
    }
    if (req.method === 'GET' && path === '/.well-known/openid-configuration') {
      return send(200, { issuer: state.issuer, jwks_uri: state.jwksUri, introspection_endpoint: state.introspectionEndpoint });
    }
    if (req.method === 'POST' && path === '/introspect') {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => { body += c; });
      req.on('end', () => {
        state.introspections++;
        if (req.headers.authorization !== basic) return send(401, { error: 'invalid_client' });
        const token = new URLSearchParams(body).get('token') ?? '';
        const entry = opaque.get(token);
        const now = Math.floor(Date.now() / 1000);
        if (!entry || entry.exp <= now) return send(200, { active: false });
        // RFC 7662 §2.2: the answer for an active token.
        return send(200, {
          active: true, iss: state.issuer, aud: entry.aud, sub: 'bench-user', scope: 'bench:read',
          client_id: 'bench', token_type: 'Bearer', exp: entry.exp, iat: now,
        });
      });
      return;
    }
    send(404, { error: 'not_found' });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const state: BenchIssuer = {
    issuer: origin,
    jwksUri: `${origin}/jwks`,
    introspectionEndpoint: `${origin}/introspect`,
    keys,
    jwksFetches: 0,
    introspections: 0,
    opaqueToken(audience, ttlSec = 3600) {
      const token = randomBytes(24).toString('base64url');
      opaque.set(token, { aud: audience, exp: Math.floor(Date.now() / 1000) + ttlSec });
      return token;
    },
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
  return state;
}
