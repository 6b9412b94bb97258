/**
 * A DPoP client for tests (RFC 9449 §4): holds a key pair and signs proofs, with knobs
 * to produce every kind of bad proof (other method/URL, stale `iat`, missing or wrong
 * `ath`, another signing key, a private key in `jwk`, wrong `typ`, ...).
 */
import { createHash, randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';

/** Overrides for one proof. */
export interface ProofOptions {
  htm: string;
  htu: string;
  /** The access token (sets `ath`); omit for token-endpoint proofs. */
  token?: string;
  /** Replace `ath` (null: leave it out even with a token). */
  ath?: string | null;
  /** Seconds since the epoch (default now). */
  iat?: number;
  jti?: string;
  nonce?: string;
  typ?: string;
  /** The `jwk` header (default: this client's public key). */
  jwk?: JWK;
  /** Sign with another key (the header still names this client's public key unless `jwk` is set). */
  signWith?: CryptoKey;
}

/** A DPoP key holder. */
export interface DpopClient {
  publicJwk: JWK;
  privateJwk: JWK;
  privateKey: CryptoKey;
  /** RFC 7638 thumbprint of the public key (`cnf.jkt` of tokens bound to it). */
  jkt: string;
  proof(o: ProofOptions): Promise<string>;
}

/** base64url SHA-256 of a token: the `ath` claim. */
export function ath(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

/** A fresh ES256 (default) DPoP key and a proof signer. */
export async function dpopClient(alg: 'ES256' | 'EdDSA' | 'RS256' | 'PS256' = 'ES256'): Promise<DpopClient> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  const privateJwk = await exportJWK(privateKey);
  const jkt = await calculateJwkThumbprint(publicJwk, 'sha256');
  return {
    publicJwk,
    privateJwk,
    privateKey,
    jkt,
    async proof(o) {
      const payload: Record<string, unknown> = { htm: o.htm, htu: o.htu, jti: o.jti ?? randomUUID(), iat: o.iat ?? Math.floor(Date.now() / 1000) };
      if (o.token !== undefined && o.ath !== null) payload.ath = o.ath ?? ath(o.token);
      else if (typeof o.ath === 'string') payload.ath = o.ath;
      if (o.nonce !== undefined) payload.nonce = o.nonce;
      return new SignJWT(payload)
        .setProtectedHeader({ alg, typ: o.typ ?? 'dpop+jwt', jwk: o.jwk ?? publicJwk })
        .sign(o.signWith ?? privateKey);
    },
  };
}
