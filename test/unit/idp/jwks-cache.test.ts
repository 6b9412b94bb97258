/**
 * JwksCache with an injected clock and a local HTTP JWKS (the mock issuer): coalescing,
 * cooldown (the first fetch included), TTL and Cache-Control max-age, maxStale, removal,
 * discovery failure, and which published keys are usable.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { JwksCache, type JwksPolicy } from '../../../src/idp/jwks-cache.js';
import type { GatewayError } from '../../../src/errors.js';
import { startMockIssuer, type MockIssuer } from '../../helpers/mock-issuer.js';

let iss: MockIssuer;
before(async () => { iss = await startMockIssuer({ algs: ['ES256'] }); });
after(() => iss?.close());

const POLICY: JwksPolicy = { cacheTtlSec: 600, cooldownSec: 30, timeoutMs: 1000, maxStaleSec: 3600, maxBytes: 100_000 };

function make(policy: Partial<JwksPolicy> = {}, resolveUri: () => Promise<string> = async () => iss.jwksUri) {
  let now = 1_000_000;
  const events: string[] = [];
  const cache = new JwksCache({
    issuerId: 't', resolveUri, policy: { ...POLICY, ...policy }, now: () => now,
    events: { onFetch: (r) => events.push(r) },
  });
  return { cache, events, advance: (ms: number) => { now += ms; } };
}
const reason = async (p: Promise<unknown>) => {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return (e as GatewayError).reason;
  }
};
const reset = () => {
  iss.mode = 'up';
  iss.cacheControl = undefined;
  iss.jwksFetches = 0;
};

test('50 concurrent unknown kids on a cold cache: one fetch; then none inside the cooldown', async () => {
  reset();
  const { cache, events, advance } = make();
  const results = await Promise.all(Array.from({ length: 50 }, (_, i) => reason(cache.getKey(`nope-${i}`, 'ES256'))));
  assert.deepEqual(new Set(results), new Set(['unknown_kid']));
  assert.equal(iss.jwksFetches, 1);
  assert.deepEqual(events, ['success']);
  assert.equal(await reason(cache.getKey('k1', 'ES256')), 'ok');
  advance(29_999);
  await Promise.all(Array.from({ length: 20 }, (_, i) => reason(cache.getKey(`x-${i}`, 'ES256'))));
  assert.equal(iss.jwksFetches, 1, 'inside cooldown');
  advance(1);
  await Promise.all(Array.from({ length: 20 }, (_, i) => reason(cache.getKey(`y-${i}`, 'ES256'))));
  assert.equal(iss.jwksFetches, 2, 'one coalesced fetch after the cooldown');
});

test('TTL: a shorter Cache-Control max-age wins; no-store means refetch after every cooldown', async () => {
  reset();
  iss.cacheControl = 'public, max-age=60';
  const { cache, advance } = make({ cooldownSec: 10 });
  assert.equal(await reason(cache.getKey('k1', 'ES256')), 'ok');
  assert.equal(iss.jwksFetches, 1);
  advance(59_000);
  assert.equal(await reason(cache.getKey('k1', 'ES256')), 'ok');
  assert.equal(iss.jwksFetches, 1);
  assert.equal(cache.hasKey((await cache.getKey('k1', 'ES256')).id), true);
  advance(1_000);
  assert.equal(cache.hasKey((await cache.getKey('k1', 'ES256')).id), true, 'refetched at max-age');
  assert.equal(iss.jwksFetches, 2);
  iss.cacheControl = 'max-age=99999';
  advance(600_000);
  await cache.getKey('k1', 'ES256');
  advance(600_000);
  await cache.getKey('k1', 'ES256');
  assert.equal(iss.jwksFetches, 4, 'cacheTtlSec caps a longer max-age');
});

test('maxStale: last good keys serve while the IdP is down, then 503 jwks_unavailable with Retry-After', async () => {
  reset();
  const { cache, events, advance } = make({ cacheTtlSec: 60, cooldownSec: 10, maxStaleSec: 100 });
  const { id } = await cache.getKey('k1', 'ES256');
  iss.mode = 'down';
  advance(60_000);
  assert.equal(cache.hasKey(id), false, 'an expired set does not vouch for cached tokens');
  assert.equal(await reason(cache.getKey('k1', 'ES256')), 'ok');
  assert.equal(events.at(-1), 'failure');
  advance(99_999);
  assert.equal(await reason(cache.getKey('k1', 'ES256')), 'ok');
  advance(1);
  let err: GatewayError | undefined;
  try {
    await cache.getKey('k1', 'ES256');
  } catch (e) {
    err = e as GatewayError;
  }
  assert.equal(err?.reason, 'jwks_unavailable');
  assert.equal(err?.status, 503);
  assert.ok((err?.retryAfterSec ?? 0) >= 1 && (err?.retryAfterSec ?? 0) <= 10, String(err?.retryAfterSec));
  iss.mode = 'up';
  advance(10_000);
  assert.equal(await reason(cache.getKey('k1', 'ES256')), 'ok', 'recovers');
});

test('removal: a key missing from the refreshed set is unknown and no longer vouched for', async () => {
  reset();
  const k2 = await iss.addKey('ES256', 'rm2');
  const { cache, advance } = make({ cacheTtlSec: 60, cooldownSec: 10 });
  const { id } = await cache.getKey('rm2', 'ES256');
  iss.removeKey('rm2');
  assert.equal(cache.hasKey(id), true);
  advance(60_000);
  assert.equal(await reason(cache.getKey('rm2', 'ES256')), 'unknown_kid');
  assert.equal(cache.hasKey(id), false);
  assert.ok(k2);
});

test('discovery failing: a failed fetch, not ready, 503 until it works', async () => {
  reset();
  let fail = true;
  const { cache, events, advance } = make({ cooldownSec: 5 }, async () => {
    if (fail) throw new Error('discovery document names another issuer');
    return iss.jwksUri;
  });
  assert.equal(await reason(cache.getKey('k1', 'ES256')), 'jwks_unavailable');
  assert.equal(cache.ready, false);
  assert.deepEqual(events, ['failure']);
  fail = false;
  assert.equal(await reason(cache.getKey('k1', 'ES256')), 'jwks_unavailable', 'cooldown applies to failures too');
  advance(5_000);
  assert.equal(await reason(cache.getKey('k1', 'ES256')), 'ok');
  assert.equal(cache.ready, true);
});

test('garbage or hanging JWKS endpoints count as failures within timeoutMs', async () => {
  reset();
  iss.mode = 'garbage';
  const a = make();
  assert.equal(await reason(a.cache.getKey('k1', 'ES256')), 'jwks_unavailable');
  iss.mode = 'hang';
  const b = make({ timeoutMs: 100 });
  const t0 = Date.now();
  assert.equal(await reason(b.cache.getKey('k1', 'ES256')), 'jwks_unavailable');
  assert.ok(Date.now() - t0 < 2000);
  assert.deepEqual([a.events, b.events], [['failure'], ['failure']]);
  reset();
});

test('key selection: kid + alg must fit; without kid only an unambiguous key; alg mismatch is unknown', async () => {
  reset();
  const { cache } = make();
  assert.equal(await reason(cache.getKey('k1', 'RS256')), 'unknown_kid', 'EC key for an RSA alg');
  assert.equal(await reason(cache.getKey('k1', 'ES384')), 'unknown_kid', 'P-256 key for ES384');
  assert.equal(await reason(cache.getKey(undefined, 'ES256')), 'ok', 'one ES256 key: no kid needed');
  await iss.addKey('ES256', 'k-second');
  const fresh = make();
  assert.equal(await reason(fresh.cache.getKey(undefined, 'ES256')), 'unknown_kid', 'two fitting keys and no kid: refused');
  iss.removeKey('k-second');
});

