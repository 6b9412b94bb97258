/**
 * A refreshed JWKS is read as published: the same key material republished with other
 * metadata (`use: enc`, `key_ops` without `verify`) is no longer a signing key, on a warm
 * gateway exactly as on a cold one, cached verifications included (RFC 7517 §4.2-4.3,
 * SPEC "removal within one JWKS refresh"). The JWKS cache must not keep the metadata of
 * the first fetch just because the key's RFC 7638 thumbprint (kty + key material) is
 * unchanged.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { JwksCache } from '../../src/idp/jwks-cache.js';
import type { GatewayError } from '../../src/errors.js';
import { startMockIssuer } from '../helpers/mock-issuer.js';
import { assertDenied, CHALLENGE, DESC, issuerYaml, startFixture, testClock, type Fixture } from '../helpers/fixture.js';

const POLICY = { cacheTtlSec: 60, cooldownSec: 10, timeoutMs: 1000, maxStaleSec: 3600, maxBytes: 100_000 };
const reason = async (p: Promise<unknown>) => {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return (e as GatewayError).reason ?? `thrown: ${String(e)}`;
  }
};

describe('JWKS key metadata on refresh', { concurrency: true }, () => {
  test('JwksCache: a key republished as use:enc or without verify in key_ops is unusable after the refresh, as on a cold cache', async () => {
    const iss = await startMockIssuer({ algs: ['ES256'] });
    try {
      const original = iss.keys[0].publicJwk;
      for (const changed of [{ use: 'enc' }, { key_ops: ['encrypt'] }]) {
        iss.keys[0].publicJwk = original;
        let now = 1_000_000;
        const warm = new JwksCache({ issuerId: 't', resolveUri: async () => iss.jwksUri, policy: POLICY, now: () => now });
        const { id } = await warm.getKey('k1', 'ES256');
        iss.keys[0].publicJwk = { ...original, ...changed };
        now += POLICY.cacheTtlSec * 1000; // one TTL: the next lookup refreshes
        const cold = new JwksCache({ issuerId: 't', resolveUri: async () => iss.jwksUri, policy: POLICY, now: () => now });
        assert.equal(await reason(cold.getKey('k1', 'ES256')), 'unknown_kid', `cold ${JSON.stringify(changed)}`);
        assert.equal(await reason(warm.getKey('k1', 'ES256')), 'unknown_kid', `warm ${JSON.stringify(changed)}: metadata of the first fetch kept`);
        assert.equal(warm.hasKey(id), false, `warm ${JSON.stringify(changed)}: no longer vouched for (token cache)`);
      }
    } finally {
      await iss.close();
    }
  });

  test('JwksCache: a key republished with another alg or kid no longer vouches for verifications cached under it; unchanged, it does', async () => {
    const iss = await startMockIssuer({ algs: ['ES256'] });
    try {
      const original = iss.keys[0].publicJwk;
      for (const changed of [{ alg: 'ES384' }, { kid: 'renamed' }, {}]) {
        iss.keys[0].publicJwk = original;
        let now = 1_000_000;
        const warm = new JwksCache({ issuerId: 't', resolveUri: async () => iss.jwksUri, policy: POLICY, now: () => now });
        const { id } = await warm.getKey('k1', 'ES256');
        iss.keys[0].publicJwk = { ...original, ...changed };
        now += POLICY.cacheTtlSec * 1000;
        await reason(warm.getKey(undefined, 'ES256')); // refreshes
        assert.equal(warm.hasKey(id), Object.keys(changed).length === 0, `republished with ${JSON.stringify(changed)}`);
      }
    } finally {
      await iss.close();
    }
  });

  test('JwksCache: garbage key metadata (key_ops not an array) makes that key unusable, not an exception', async () => {
    const iss = await startMockIssuer({ algs: ['ES256'] });
    try {
      iss.keys[0].publicJwk = { ...iss.keys[0].publicJwk, key_ops: 5 as unknown as string[] };
      const cache = new JwksCache({ issuerId: 't', resolveUri: async () => iss.jwksUri, policy: POLICY, now: () => 1_000_000 });
      assert.equal(await reason(cache.getKey('k1', 'ES256')), 'unknown_kid');
      assert.equal(await reason(cache.getKey(undefined, 'ES256')), 'unknown_kid');
    } finally {
      await iss.close();
    }
  });

  test('gateway: after the refresh, neither a cached nor a fresh token signed with the key republished as use:enc passes', async () => {
    const clock = testClock();
    const f: Fixture = await startFixture((iss, up) => `
${issuerYaml(iss)}    clockToleranceSec: 0
    jwks: { cooldownSec: 30, cacheTtlSec: 60 }
routes:
  - { id: api, match: { pathPrefix: /api }, upstream: ${up.url}, auth: { mode: jwt } }
`, { now: clock.now });
    try {
      const exp = Math.floor(Date.now() / 1000) + 3600;
      const t1 = await f.iss.sign({ claims: { exp } });
      const r = await f.bearer('/api/x', t1);
      await r.text();
      assert.equal(r.status, 200);
      f.up.reset();
      f.iss.keys[0].publicJwk = { ...f.iss.keys[0].publicJwk, use: 'enc' };
      clock.advance(60_000); // one TTL: the next use refreshes
      await assertDenied(await f.bearer('/api/x', t1), f.up, 401, CHALLENGE.invalid(DESC.unknown_kid), 'invalid_token', 'cached token, key now use:enc');
      await assertDenied(await f.bearer('/api/x', await f.iss.sign({ claims: { exp, jti: 'fresh' } })), f.up, 401, CHALLENGE.invalid(DESC.unknown_kid), 'invalid_token', 'fresh token, key now use:enc');
    } finally {
      await f.close();
    }
  });
});
