/**
 * The verified-token cache of JwtVerifier, with an injected clock and key source:
 * expiry re-checked on every hit with the clock tolerance, eviction when the key leaves
 * the JWKS, the route's own audience/scope/claim policy applied after a hit (a decision
 * is never reused across routes), the size bound, and exact-token keying.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair, SignJWT } from 'jose';
import { compileConfig } from '../../../src/config/compile.js';
import { parseConfig } from '../../../src/config/load.js';
import { GatewayError } from '../../../src/errors.js';
import { decide, newContext } from '../../../src/pipeline/run.js';
import { JwtVerifier, type KeySource } from '../../../src/pipeline/verify-jwt.js';

const config = compileConfig(parseConfig(`
issuers:
  - { id: a, issuer: https://a.test, jwksUri: https://a.test/jwks, audiences: [api], clockToleranceSec: 10 }
routes:
  - { id: read, match: { pathPrefix: /read }, upstream: http://u.test, auth: { mode: jwt, scopes: { allOf: [orders:read] } } }
  - { id: write, match: { pathPrefix: /write }, upstream: http://u.test, auth: { mode: jwt, scopes: { allOf: [orders:write] } } }
  - { id: acme, match: { pathPrefix: /acme }, upstream: http://u.test, auth: { mode: jwt, claims: { tenant: acme } } }
  - { id: other-aud, match: { pathPrefix: /other }, upstream: http://u.test, auth: { mode: jwt, audiences: [other] } }
`, 'cache-test.yaml', {}));
const auth = config.routes[0].auth;
const T0 = 1_800_000_000_000;

async function setup(cacheSize = 100) {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  let nowMs = T0;
  const published = new Set(['thumb-1']);
  let keyLookups = 0;
  const keys: KeySource = {
    async getKey(_issuerId, kid) {
      keyLookups++;
      if (kid !== 'k1' || !published.has('thumb-1')) throw new GatewayError('unknown_kid');
      return { key: publicKey, id: 'thumb-1' };
    },
    hasKey: (_issuerId, id) => published.has(id),
  };
  const events: string[] = [];
  const verifier = new JwtVerifier({ keys, now: () => nowMs, cacheSize, onCache: (r) => events.push(r) });
  const sign = (claims: Record<string, unknown> = {}) => {
    const s = Math.floor(nowMs / 1000);
    return new SignJWT({ iss: 'https://a.test', aud: 'api', sub: 'u1', scope: 'orders:read', iat: s, exp: s + 60, ...claims })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' }).sign(privateKey);
  };
  return {
    verifier, sign, published, events,
    lookups: () => keyLookups,
    advance(ms: number) { nowMs += ms; },
  };
}

async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    if (e instanceof GatewayError) return e.reason;
    throw e;
  }
}

test('expiry is re-checked on every hit, with the issuer clock tolerance (exp + 10 s)', async () => {
  const s = await setup();
  const t = await s.sign(); // exp = T0 + 60 s
  assert.equal(await outcome(s.verifier.verify(t, auth)), 'ok');
  s.advance(69_999);
  assert.equal(await outcome(s.verifier.verify(t, auth)), 'ok', 'exp + tolerance not reached');
  s.advance(1);
  assert.equal(await outcome(s.verifier.verify(t, auth)), 'expired', 'exactly exp + tolerance: expired');
  assert.deepEqual(s.events, ['miss', 'hit', 'hit'], 'the expired lookup still counts as a hit');
  assert.equal(s.lookups(), 1, 'hits never touch the key source');
  // The entry left the cache with its token's expiry: the next lookup is a miss, refused as
  // expired before any key lookup.
  assert.equal(await outcome(s.verifier.verify(t, auth)), 'expired');
  assert.deepEqual(s.events, ['miss', 'hit', 'hit', 'miss']);
  assert.equal(s.lookups(), 1, 'an expired token is refused without a key lookup');
});

test('an expired token is refused before the key lookup: no signature check, no JWKS refresh for its kid', async () => {
  const s = await setup();
  const exp = Math.floor(T0 / 1000) - 11; // past exp + the 10 s tolerance
  const expired = await s.sign({ iat: exp - 60, exp });
  const mid = expired.lastIndexOf('.') + 10; // a signature character (not the last, whose low bits are fixed)
  const tampered = expired.slice(0, mid) + (expired[mid] === 'A' ? 'B' : 'A') + expired.slice(mid + 1);
  const [, payload] = expired.split('.');
  const unknownKid = `${Buffer.from(JSON.stringify({ alg: 'ES256', kid: 'made-up' })).toString('base64url')}.${payload}.${expired.split('.')[2]}`;
  for (const t of [expired, tampered, unknownKid]) assert.equal(await outcome(s.verifier.verify(t, auth)), 'expired');
  assert.equal(s.lookups(), 0, 'the key source was never asked');
  // Within the tolerance it is still verified (and its key looked up).
  const inTolerance = await s.sign({ iat: exp - 60, exp: exp + 2 });
  assert.equal(await outcome(s.verifier.verify(inTolerance, auth)), 'ok');
  assert.equal(s.lookups(), 1);
});

test('a key that leaves the JWKS evicts the entry: the token is verified afresh, and fails', async () => {
  const s = await setup();
  const t = await s.sign();
  assert.equal(await outcome(s.verifier.verify(t, auth)), 'ok');
  assert.equal(await outcome(s.verifier.verify(t, auth)), 'ok');
  assert.equal(s.lookups(), 1);
  s.published.delete('thumb-1');
  assert.equal(await outcome(s.verifier.verify(t, auth)), 'unknown_kid');
  assert.equal(s.lookups(), 2, 'went back to the key source');
  // Published again: the old entry is gone (a miss), then cached anew (a hit).
  s.published.add('thumb-1');
  assert.equal(await outcome(s.verifier.verify(t, auth)), 'ok');
  assert.equal(await outcome(s.verifier.verify(t, auth)), 'ok');
  assert.deepEqual(s.events, ['miss', 'hit', 'miss', 'miss', 'hit']);
});

test('after a hit, each route applies its own audience, scopes and claims (no decision reused across routes)', async () => {
  const s = await setup();
  const t = await s.sign({ tenant: 'globex' });
  const run = async (path: string) => {
    const ctx = newContext();
    return outcome(decide(config, { method: 'GET', target: path, host: 'gw.test', rawHeaders: ['Authorization', `Bearer ${t}`] }, { jwt: s.verifier }, ctx));
  };
  assert.equal(await run('/read/1'), 'ok');
  assert.equal(await run('/write/1'), 'scope', 'cached token, other route: its scope is required');
  assert.equal(await run('/acme/1'), 'claim', 'cached token, other route: its claim is required');
  assert.equal(await run('/other/1'), 'audience', 'cached token, other route: its audience is required');
  assert.equal(await run('/read/2'), 'ok');
  assert.deepEqual(s.events, ['miss', 'hit', 'hit', 'hit', 'hit'], 'every later decision was a cache hit');
  assert.equal(s.lookups(), 1);
});

test('the cache holds at most tokenCacheSize entries (least recently used goes first)', async () => {
  const s = await setup(3);
  const tokens = await Promise.all([1, 2, 3, 4].map((i) => s.sign({ sub: `u${i}` })));
  for (const t of tokens) assert.equal(await outcome(s.verifier.verify(t, auth)), 'ok');
  assert.equal(s.lookups(), 4);
  assert.equal(await outcome(s.verifier.verify(tokens[3], auth)), 'ok');
  assert.equal(s.lookups(), 4, 'the newest entry is a hit');
  assert.equal(await outcome(s.verifier.verify(tokens[0], auth)), 'ok');
  assert.equal(s.lookups(), 5, 'the oldest was evicted: verified again');
  assert.deepEqual(s.events, ['miss', 'miss', 'miss', 'miss', 'hit', 'miss']);
});

test('tokenCacheSize 0 disables the cache', async () => {
  const s = await setup(0);
  const t = await s.sign();
  for (let i = 0; i < 3; i++) assert.equal(await outcome(s.verifier.verify(t, auth)), 'ok');
  assert.equal(s.lookups(), 3);
  assert.deepEqual(s.events, ['miss', 'miss', 'miss']);
});

test('entries are keyed by the exact token: one changed signature character is never a hit', async () => {
  const s = await setup();
  const t = await s.sign();
  assert.equal(await outcome(s.verifier.verify(t, auth)), 'ok');
  const dot = t.lastIndexOf('.') + 1;
  const tampered = t.slice(0, dot) + (t[dot] === 'A' ? 'B' : 'A') + t.slice(dot + 1);
  assert.equal(await outcome(s.verifier.verify(tampered, auth)), 'bad_signature');
  assert.deepEqual(s.events, ['miss', 'miss']);
  // A failed verification is not cached either.
  assert.equal(await outcome(s.verifier.verify(tampered, auth)), 'bad_signature');
  assert.equal(s.lookups(), 3);
});
