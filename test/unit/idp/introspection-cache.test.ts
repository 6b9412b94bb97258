import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  cacheTtlMs, IntrospectionCache, introspectionCacheKey, MemoryIntrospectionStore, type IntrospectionStore,
} from '../../../src/idp/introspection-cache.js';
import type { IntrospectionAnswer } from '../../../src/idp/introspection-client.js';

const T0 = 1_800_000_000_000; // ms
const policy = { cacheTtlSec: 60, negativeCacheTtlSec: 5 };
const active = (exp?: unknown): IntrospectionAnswer => Object.freeze({ active: true, ...(exp === undefined ? {} : { exp }) }) as IntrospectionAnswer;

function clock(start = T0) {
  const c = { t: start, now: () => c.t };
  return c;
}

test('TTL math: active answers live min(cacheTtlSec, exp - now)', () => {
  assert.equal(cacheTtlMs(active(T0 / 1000 + 3600), policy, T0), 60_000);
  assert.equal(cacheTtlMs(active(T0 / 1000 + 10), policy, T0), 10_000);
  assert.equal(cacheTtlMs(active(T0 / 1000 + 10), policy, T0 + 250), 9_750);
  assert.equal(cacheTtlMs(active(T0 / 1000 - 1), policy, T0), 0, 'already expired: not cached');
  assert.equal(cacheTtlMs(active(T0 / 1000 + 60), policy, T0), 60_000);
  assert.equal(cacheTtlMs(active(), policy, T0), 0, 'no exp: not cached');
  assert.equal(cacheTtlMs(active('soon'), policy, T0), 0, 'non-numeric exp: not cached');
  assert.equal(cacheTtlMs(active(Infinity), policy, T0), 0);
  assert.equal(cacheTtlMs(active(T0 / 1000 + 3600), { ...policy, cacheTtlSec: 0 }, T0), 0, 'cacheTtlSec 0 disables positive caching');
});

test('TTL math: inactive answers live negativeCacheTtlSec, whatever their exp', () => {
  const inactive = { active: false, exp: T0 / 1000 + 3600 } as IntrospectionAnswer;
  assert.equal(cacheTtlMs(inactive, policy, T0), 5_000);
  assert.equal(cacheTtlMs(inactive, { ...policy, negativeCacheTtlSec: 0 }, T0), 0);
});

test('keys: a hash of issuer, who answers and token, never the token; distinct per issuer and per answerer', () => {
  const token = 'opaque-token-value-1234567890';
  const idp = '["https://a.test/",null,"gw"]';
  const a = introspectionCacheKey('a', token, idp);
  assert.doesNotMatch(a, /opaque/);
  assert.match(a, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(a, introspectionCacheKey('b', token, idp));
  assert.notEqual(a, introspectionCacheKey('a', token, '["https://b.test/",null,"gw"]'), 'another IdP or client: another key');
  assert.notEqual(introspectionCacheKey('a', 'bX', idp), introspectionCacheKey('ab', 'X', idp), 'the separator keeps (issuer, token) pairs apart');
  assert.equal(a, introspectionCacheKey('a', token, idp));
});

test('memory store: entries expire on the injected clock; size bounded', async () => {
  const c = clock();
  const store = new MemoryIntrospectionStore(2, c.now);
  await store.set('k1', active(1), 1000);
  c.t += 999;
  assert.ok(await store.get('k1'));
  c.t += 1;
  assert.equal(await store.get('k1'), undefined, 'gone exactly at its TTL');
  await store.set('k0', active(1), 0);
  assert.equal(await store.get('k0'), undefined, 'ttl 0 is never stored');
  for (const k of ['a', 'b', 'c']) await store.set(k, active(1), 60_000);
  assert.equal(store.size, 2);
  assert.equal(await store.get('a'), undefined, 'least recently used evicted');
});

test('cache: positive entry capped by exp, then a new call', async () => {
  const c = clock();
  const cache = new IntrospectionCache({ store: new MemoryIntrospectionStore(100, c.now), policy, now: c.now });
  let calls = 0;
  const load = async () => { calls++; return active(c.t / 1000 + 2); };
  assert.equal((await cache.resolve('k', load)).result, 'miss');
  c.t += 1_999;
  assert.equal((await cache.resolve('k', load)).result, 'hit');
  assert.equal(calls, 1);
  c.t += 1;
  assert.equal((await cache.resolve('k', load)).result, 'miss', 'the entry did not outlive exp');
  assert.equal(calls, 2);
});

{
  test('cache: positive entry capped by cacheTtlSec, counted from when it was fetched', async () => {
    const c = clock();
    const cache = new IntrospectionCache({ store: new MemoryIntrospectionStore(100, c.now), policy, now: c.now });
    let calls = 0;
    const load = async () => { calls++; return active(c.t / 1000 + 3600); };
    await cache.resolve('k', load);
    c.t += 59_999;
    assert.equal((await cache.resolve('k', load)).result, 'hit');
    c.t += 1;
    assert.equal((await cache.resolve('k', load)).result, 'miss');
    assert.equal(calls, 2);
  });
}

test('cache: negative entries for negativeCacheTtlSec, and only the verdict is kept', async () => {
  const c = clock();
  const cache = new IntrospectionCache({ store: new MemoryIntrospectionStore(100, c.now), policy, now: c.now });
  let calls = 0;
  const load = async () => { calls++; return { active: false, sub: 'leak?' } as IntrospectionAnswer; };
  const first = await cache.resolve('k', load);
  assert.deepEqual(first.answer, { active: false });
  c.t += 4_999;
  const second = await cache.resolve('k', load);
  assert.equal(second.result, 'negative_hit');
  c.t += 1;
  assert.equal((await cache.resolve('k', load)).result, 'miss');
  assert.equal(calls, 2);
});

test('cache: cacheTtlSec 0 calls every time', async () => {
  const c = clock();
  const cache = new IntrospectionCache({ store: new MemoryIntrospectionStore(100, c.now), policy: { cacheTtlSec: 0, negativeCacheTtlSec: 0 }, now: c.now });
  let calls = 0;
  const load = async () => { calls++; return active(c.t / 1000 + 3600); };
  for (let i = 0; i < 3; i++) assert.equal((await cache.resolve('k', load)).result, 'miss');
  assert.equal(calls, 3);
});

test('single-flight: concurrent lookups share one call; failures reach all and are not cached', async () => {
  const c = clock();
  const cache = new IntrospectionCache({ store: new MemoryIntrospectionStore(100, c.now), policy, now: c.now });
  let calls = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  const load = async () => { calls++; await gate; return active(c.t / 1000 + 60); };
  const all = Array.from({ length: 50 }, () => cache.resolve('k', load));
  await new Promise((r) => setImmediate(r));
  release();
  const results = await Promise.all(all);
  assert.equal(calls, 1);
  assert.ok(results.every((r) => r.answer === results[0].answer));
  assert.equal((await cache.resolve('k', load)).result, 'hit');

  let failing = 0;
  const bad = async () => { failing++; await new Promise((r) => setImmediate(r)); throw new Error('down'); };
  const errs = await Promise.allSettled(Array.from({ length: 10 }, () => cache.resolve('x', bad)));
  assert.equal(failing, 1);
  assert.ok(errs.every((e) => e.status === 'rejected'));
  await assert.rejects(cache.resolve('x', bad));
  assert.equal(failing, 2, 'a failure is not cached');
});

test('a failing store costs a call, never a decision', async () => {
  const broken: IntrospectionStore = {
    get: async () => { throw new Error('store down'); },
    set: async () => { throw new Error('store down'); },
  };
  const cache = new IntrospectionCache({ store: broken, policy, now: () => T0 });
  let calls = 0;
  const r = await cache.resolve('k', async () => { calls++; return active(T0 / 1000 + 60); });
  assert.equal(r.result, 'miss');
  assert.equal(r.answer.active, true);
  assert.equal(calls, 1);
});
