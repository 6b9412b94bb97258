/**
 * JWT verification and its verified-token cache, with an injected clock and key source:
 * expiry is re-checked on a hit, the route's audience re-applied, a removed key evicts,
 * and a hit from another issuer id is verified afresh.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair, SignJWT } from 'jose';
import { JwtVerifier, looksLikeJwt, type KeySource } from '../../../src/pipeline/verify-jwt.js';
import type { GatewayError } from '../../../src/errors.js';
import { compileYaml } from '../../helpers/config.js';

const config = compileYaml(`
issuers:
  - { id: a, issuer: https://a.test, jwksUri: https://a.test/jwks, audiences: [api], clockToleranceSec: 10 }
  - { id: a2, issuer: https://a.test, jwksUri: https://a.test/jwks, audiences: [api2] }
  - { id: b, issuer: https://b.test, jwksUri: https://b.test/jwks, audiences: [api], requireTyp: at+jwt }
routes:
  - { id: ra, match: { pathPrefix: /a }, upstream: http://u, auth: { mode: jwt, issuers: [a] } }
  - { id: ra-other-aud, match: { pathPrefix: /o }, upstream: http://u, auth: { mode: jwt, issuers: [a], audiences: [other] } }
  - { id: ra2, match: { pathPrefix: /a2 }, upstream: http://u, auth: { mode: jwt, issuers: [a2] } }
  - { id: rb, match: { pathPrefix: /b }, upstream: http://u, auth: { mode: jwt, issuers: [b] } }
`);
const auth = (id: string) => config.routes.find((r) => r.id === id)!.auth;

async function setup() {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  let nowMs = 1_800_000_000_000;
  const published = new Set(['thumb-1']);
  const calls: string[] = [];
  const keys: KeySource = {
    async getKey(issuerId, kid) {
      calls.push(`${issuerId}:${kid}`);
      if (kid !== 'k1' || !published.has('thumb-1')) throw Object.assign(new Error('unknown'), { reason: 'unknown_kid' });
      return { key: publicKey, id: 'thumb-1' };
    },
    hasKey: (_issuerId, id) => published.has(id),
  };
  const cacheEvents: string[] = [];
  const v = new JwtVerifier({ keys, now: () => nowMs, cacheSize: 100, onCache: (r) => cacheEvents.push(r) });
  const sign = (claims: Record<string, unknown>, header: Record<string, unknown> = {}) => {
    const s = Math.floor(nowMs / 1000);
    return new SignJWT({ iss: 'https://a.test', aud: 'api', sub: 'u', iat: s, exp: s + 60, ...claims })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1', ...header }).sign(privateKey);
  };
  return { v, sign, published, calls, cacheEvents, advance: (ms: number) => { nowMs += ms; } };
}

const reasonOf = async (p: Promise<unknown>) => {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return (e as GatewayError).reason ?? String(e);
  }
};

test('a cache hit re-checks expiry with the clock tolerance', async () => {
  const s = await setup();
  const t = await s.sign({});
  assert.equal(await reasonOf(s.v.verify(t, auth('ra'))), 'ok');
  assert.equal(await reasonOf(s.v.verify(t, auth('ra'))), 'ok');
  assert.deepEqual(s.cacheEvents, ['miss', 'hit']);
  s.advance(69_000);
  assert.equal(await reasonOf(s.v.verify(t, auth('ra'))), 'ok', 'within exp + tolerance');
  s.advance(1_000);
  assert.equal(await reasonOf(s.v.verify(t, auth('ra'))), 'expired');
  assert.equal(s.calls.length, 1, 'hits do not touch the key source');
});

test('a cache hit re-applies the route audience', async () => {
  const s = await setup();
  const t = await s.sign({});
  assert.equal(await reasonOf(s.v.verify(t, auth('ra'))), 'ok');
  assert.equal(await reasonOf(s.v.verify(t, auth('ra-other-aud'))), 'audience');
  assert.equal(await reasonOf(s.v.verify(await s.sign({ aud: 'other' }), auth('ra-other-aud'))), 'ok');
});

test('a key no longer published evicts the cached verification', async () => {
  const s = await setup();
  const t = await s.sign({});
  assert.equal(await reasonOf(s.v.verify(t, auth('ra'))), 'ok');
  s.published.delete('thumb-1');
  assert.equal(await reasonOf(s.v.verify(t, auth('ra'))), 'unknown_kid');
  assert.deepEqual(s.cacheEvents, ['miss', 'miss']);
});

test('a hit cached under another issuer id is verified afresh against this route issuer', async () => {
  const s = await setup();
  const t = await s.sign({ aud: ['api', 'api2'] });
  assert.equal(await reasonOf(s.v.verify(t, auth('ra'))), 'ok');
  assert.equal(await reasonOf(s.v.verify(t, auth('ra2'))), 'ok', 'same iss, other issuer id: not refused by the cache');
  const p = await s.v.verify(t, auth('ra2'));
  assert.equal(p.issuerId, 'a2');
  assert.equal(await reasonOf(s.v.verify(t, auth('rb'))), 'issuer', 'an issuer the route does not accept');
});

test('nbf in the future is re-checked on a hit; iat in the future refused', async () => {
  const s = await setup();
  const now = Math.floor(1_800_000_000_000 / 1000);
  assert.equal(await reasonOf(s.v.verify(await s.sign({ nbf: now + 11 }), auth('ra'))), 'not_yet_valid');
  assert.equal(await reasonOf(s.v.verify(await s.sign({ iat: now + 11 }), auth('ra'))), 'issued_in_future');
  assert.equal(await reasonOf(s.v.verify(await s.sign({ iat: now + 9 }), auth('ra'))), 'ok');
});

test('requireTyp is checked before any key lookup', async () => {
  const s = await setup();
  const t = await s.sign({ iss: 'https://b.test' }, { typ: 'JWT' });
  assert.equal(await reasonOf(s.v.verify(t, auth('rb'))), 'token_type');
  assert.equal(s.calls.length, 0);
});

test('looksLikeJwt: three parts and a JSON header with alg', () => {
  assert.equal(looksLikeJwt('eyJhbGciOiJSUzI1NiJ9.e30.x'), true);
  assert.equal(looksLikeJwt('eyJ0eXAiOiJKV1QifQ.e30.x'), false);
  assert.equal(looksLikeJwt('a.b.c.d.e'), false);
  assert.equal(looksLikeJwt('opaque-token'), false);
});
