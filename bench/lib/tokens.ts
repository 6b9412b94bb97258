/**
 * Bench keys and fast token signing. jose's SignJWT goes through WebCrypto (async, one
 * promise per token); pre-generating tens of thousands of tokens is much faster with
 * node:crypto's synchronous `sign`, which produces the same JWS compact serialization
 * (RFC 7515 §7.1; ES256 signatures in the IEEE P1363 r||s form of RFC 7518 §3.4).
 */
import { generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto';

/** Algorithms the bench issuer signs with. */
export type BenchAlg = 'RS256' | 'ES256' | 'EdDSA';

/** A signing key and its published JWK. */
export interface BenchKey {
  alg: BenchAlg;
  kid: string;
  privateKey: KeyObject;
  jwk: Record<string, unknown>;
}

/** Generates one key per algorithm (kids `bench-rs256`, `bench-es256`, `bench-eddsa`). */
export function generateKeys(): Record<BenchAlg, BenchKey> {
  const make = (alg: BenchAlg): BenchKey => {
    const pair = alg === 'RS256'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519');
    const kid = `bench-${alg.toLowerCase()}`;
    const jwk = { ...pair.publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
    return { alg, kid, privateKey: pair.privateKey, jwk };
  };
  return { RS256: make('RS256'), ES256: make('ES256'), EdDSA: make('EdDSA') };
}

const b64u = (s: string | Buffer) => Buffer.from(s).toString('base64url');

/** Claims of a bench token (defaults filled in by {@link signToken}). */
export interface BenchClaims {
  iss: string;
  aud: string;
  sub?: string;
  scope?: string;
  ttlSec?: number;
  [claim: string]: unknown;
}

/** Signs a JWT access token with `key`; `kid` overrides the header's key id. */
export function signToken(key: BenchKey, claims: BenchClaims, kid = key.kid): string {
  const now = Math.floor(Date.now() / 1000);
  const { ttlSec = 3600, ...rest } = claims;
  const payload = { sub: 'bench-user', scope: 'bench:read', iat: now, exp: now + ttlSec, jti: randomUUID(), client_id: 'bench', ...rest };
  const input = `${b64u(JSON.stringify({ alg: key.alg, kid, typ: 'at+jwt' }))}.${b64u(JSON.stringify(payload))}`;
  const data = Buffer.from(input);
  const sig = key.alg === 'RS256'
    ? sign('sha256', data, key.privateKey)
    : key.alg === 'ES256' ? sign('sha256', data, { key: key.privateKey, dsaEncoding: 'ieee-p1363' }) : sign(null, data, key.privateKey);
  return `${input}.${sig.toString('base64url')}`;
}

/** The same token with its signature's first character changed (a bad signature). */
export function tamper(token: string): string {
  const dot = token.lastIndexOf('.') + 1;
  const c = token[dot] === 'A' ? 'B' : 'A';
  return token.slice(0, dot) + c + token.slice(dot + 1);
}
