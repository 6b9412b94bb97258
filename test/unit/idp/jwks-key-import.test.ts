/**
 * JwksCache hands out `KeyObject`s (what node:crypto verifies with), imported once per key
 * and algorithm — not per lookup, and not again when a refresh republishes the key
 * unchanged — and never a key the algorithm may not use (RSA under 2048 bits, RFC 7518 §3.3).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, KeyObject } from 'node:crypto';
import type { JWK } from 'jose';
import { JwksCache } from '../../../src/idp/jwks-cache.js';
import type { GatewayError } from '../../../src/errors.js';
import { startMockIssuer, type MockIssuer, type MockKey } from '../../helpers/mock-issuer.js';

let iss: MockIssuer;
before(async () => { iss = await startMockIssuer({ algs: ['ES256', 'RS256'] }); });
after(() => iss?.close());

const POLICY = { cacheTtlSec: 60, cooldownSec: 10, timeoutMs: 1000, maxStaleSec: 3600, maxBytes: 100_000 };
const reason = async (p: Promise<unknown>) => {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return (e as GatewayError).reason;
  }
};

test('getKey gives a public KeyObject, the same one on every lookup and after a refresh that keeps the key', async () => {
  let now = 1_000_000;
  const cache = new JwksCache({ issuerId: 't', resolveUri: async () => iss.jwksUri, policy: POLICY, now: () => now });
  const first = await cache.getKey('k1', 'ES256');
  assert.ok(first.key instanceof KeyObject);
  assert.equal(first.key.type, 'public');
  assert.equal(first.key.asymmetricKeyType, 'ec');
  const again = await cache.getKey('k1', 'ES256');
  assert.equal(again.key, first.key, 'not imported again per lookup');
  const fetches = iss.jwksFetches;
  now += POLICY.cacheTtlSec * 1000; // the set expires: the next lookup refreshes it
  const refreshed = await cache.getKey('k1', 'ES256');
  assert.equal(iss.jwksFetches, fetches + 1, 'a refresh happened');
  assert.equal(refreshed.key, first.key, 'a key republished unchanged is not imported again');
  const rsa = await cache.getKey('k2', 'RS256');
  assert.ok(rsa.key instanceof KeyObject && rsa.key.asymmetricKeyType === 'rsa');
  const ps = await cache.getKey('k2', 'PS256').catch(() => null);
  assert.equal(ps, null, 'k2 is published with alg RS256: not usable for PS256');
});

test('an RSA key under 2048 bits is published but never used: unknown_kid', async () => {
  const small = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const jwk = { ...(small.publicKey.export({ format: 'jwk' }) as JWK), kid: 'small', alg: 'RS256', use: 'sig' };
  iss.keys.push({ kid: 'small', alg: 'RS256', publicJwk: jwk } as unknown as MockKey);
  try {
    const cache = new JwksCache({ issuerId: 't', resolveUri: async () => iss.jwksUri, policy: POLICY, now: () => 2_000_000 });
    assert.equal(await reason(cache.getKey('small', 'RS256')), 'unknown_kid');
    assert.equal(await reason(cache.getKey('k2', 'RS256')), 'ok', 'the other keys of the set still serve');
  } finally {
    iss.removeKey('small');
  }
});
