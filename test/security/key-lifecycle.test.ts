/**
 * JWKS lifecycle under attack and failure, with the gateway's clock moved by the test:
 * key rotation picked up after the cooldown, key removal effective within one refresh
 * even for cached verifications, IdP outage served from last good keys for maxStaleSec
 * then 503 + Retry-After, and a flood of random kids costing at most one (coalesced)
 * JWKS fetch per cooldown.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertDenied, CHALLENGE, DESC, signRaw, startFixture, testClock, type Fixture, type TestClock, issuerYaml } from '../helpers/fixture.js';

async function start(jwks: string): Promise<Fixture & { clock: TestClock }> {
  const clock = testClock();
  const f = await startFixture((iss, up) => `
${issuerYaml(iss)}    clockToleranceSec: 0
    jwks: ${jwks}
routes:
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt }
`, { now: clock.now });
  return Object.assign(f, { clock });
}

async function status(f: Fixture, token: string): Promise<number> {
  const r = await f.bearer('/api/x', token);
  await r.text();
  f.up.reset();
  return r.status;
}

describe('key lifecycle', { concurrency: true }, () => {
  test('rotation: a new kid is refused inside the cooldown window, accepted after it with one fetch', async () => {
    const f = await start('{ cooldownSec: 30, cacheTtlSec: 600 }');
    try {
      const k2 = await f.iss.addKey('ES256', 'k2');
      const t2 = await f.iss.sign({ key: k2, claims: { exp: Math.floor(Date.now() / 1000) + 3600 } });
      const before = f.iss.jwksFetches;
      await assertDenied(await f.bearer('/api/x', t2), f.up, 401, CHALLENGE.invalid(DESC.unknown_kid), 'invalid_token', 'inside cooldown');
      assert.equal(f.iss.jwksFetches, before, 'the first fetch opened the cooldown window');
      f.clock.advance(20_000); // real time passes too: keep a margin below the window
      assert.equal(await status(f, t2), 401, 'still inside the window');
      f.clock.advance(10_000);
      assert.equal(await status(f, t2), 200);
      assert.equal(f.iss.jwksFetches, before + 1);
      assert.equal(await status(f, await f.iss.sign({ claims: { exp: Math.floor(Date.now() / 1000) + 3600 } })), 200, 'the old key still works');
    } finally {
      await f.close();
    }
  });

  test('removal: a removed key stops validating within one refresh, cached verifications included', async () => {
    const f = await start('{ cooldownSec: 30, cacheTtlSec: 60 }');
    try {
      const exp = Math.floor(Date.now() / 1000) + 3600;
      const t1 = await f.iss.sign({ claims: { exp } });
      assert.equal(await status(f, t1), 200);
      assert.equal(await status(f, t1), 200, 'second use is a cache hit');
      const k2 = await f.iss.addKey('RS256', 'k2');
      const removed = f.iss.keys[0];
      f.iss.removeKey('k1');
      f.clock.advance(45_000); // real time passes too: keep a margin below the TTL
      assert.equal(await status(f, t1), 200, 'before the refresh the key is still the published one');
      f.clock.advance(15_000); // one TTL: the next use refreshes
      await assertDenied(await f.bearer('/api/x', t1), f.up, 401, CHALLENGE.invalid(DESC.unknown_kid), 'invalid_token', 'removed key, cached token');
      await assertDenied(await f.bearer('/api/x', await f.iss.sign({ key: removed, claims: { exp } })), f.up, 401, CHALLENGE.invalid(DESC.unknown_kid), 'invalid_token', 'new token, removed key');
      assert.equal(await status(f, await f.iss.sign({ key: k2, claims: { exp } })), 200, 'k2 works');
    } finally {
      await f.close();
    }
  });

  test('outage: last good keys serve within maxStaleSec, then 503 with Retry-After (cached tokens too)', async () => {
    const f = await start('{ cooldownSec: 10, cacheTtlSec: 60, maxStaleSec: 120, timeoutMs: 500 }');
    try {
      const exp = Math.floor(Date.now() / 1000) + 3600;
      const cached = await f.iss.sign({ claims: { sub: 'cached', exp } });
      assert.equal(await status(f, cached), 200);
      f.iss.mode = 'down';
      f.clock.advance(61_000); // keys expired, IdP down: stale keys serve
      assert.equal(await status(f, await f.iss.sign({ claims: { sub: 'fresh', exp } })), 200, 'stale keys serve within maxStaleSec');
      assert.equal(await status(f, cached), 200);
      f.clock.advance(120_000); // past expiry + maxStaleSec
      for (const t of [cached, await f.iss.sign({ claims: { sub: 'late', exp } })]) {
        const r = await f.bearer('/api/x', t);
        const body = JSON.parse(await r.text()) as { error: string };
        assert.equal(r.status, 503);
        assert.equal(r.headers.get('www-authenticate'), null);
        assert.match(r.headers.get('retry-after') ?? '', /^([1-9]|10)$/);
        assert.equal(body.error, 'temporarily_unavailable');
        assert.equal(f.up.requests.length, 0);
      }
      f.iss.mode = 'up';
      f.clock.advance(10_000);
      assert.equal(await status(f, cached), 200, 'recovers once the IdP is back');
    } finally {
      await f.close();
    }
  });

  test('flood of random kids: 50 concurrent unknown kids cost one coalesced fetch per cooldown', async () => {
    const f = await start('{ cooldownSec: 30, cacheTtlSec: 600 }');
    try {
      const key = f.iss.keys[0];
      const claims = { iss: f.iss.issuer, aud: 'api', exp: Math.floor(Date.now() / 1000) + 3600 };
      const tokens = await Promise.all(Array.from({ length: 150 }, () => signRaw(key, { alg: 'RS256', kid: crypto.randomUUID() }, claims)));
      const flood = (part: number) => Promise.all(tokens.slice(part * 50, part * 50 + 50).map((t) => status(f, t)));
      const before = f.iss.jwksFetches;
      assert.deepEqual(new Set(await flood(0)), new Set([401]));
      assert.equal(f.iss.jwksFetches, before, 'inside the first window: no fetch');
      f.clock.advance(30_000);
      assert.deepEqual(new Set(await flood(1)), new Set([401]));
      assert.equal(f.iss.jwksFetches, before + 1, 'after the window: exactly one fetch for 50 kids');
      assert.deepEqual(new Set(await flood(2)), new Set([401]));
      assert.equal(f.iss.jwksFetches, before + 1, 'and none in the next window');
    } finally {
      await f.close();
    }
  });
});
