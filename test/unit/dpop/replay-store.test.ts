import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryReplayStore, RedisReplayStore } from '../../../src/dpop/replay-store.js';
import { NonceSource } from '../../../src/dpop/nonce.js';
import { GatewayError } from '../../../src/errors.js';
import type { Redis } from 'ioredis';

test('memory store: once per key until the ttl passes', async () => {
  let now = 1000;
  const s = new MemoryReplayStore(10, () => now);
  assert.equal(await s.remember('a', 100), true);
  assert.equal(await s.remember('a', 100), false);
  now = 1099;
  assert.equal(await s.remember('a', 100), false);
  now = 1100;
  assert.equal(await s.remember('a', 100), true);
});

test('memory store: full of live ids → 503 rather than forgetting one; expired ids make room', async () => {
  let now = 0;
  const s = new MemoryReplayStore(3, () => now);
  for (const k of ['a', 'b', 'c']) assert.equal(await s.remember(k, 1000), true);
  await assert.rejects(s.remember('d', 1000), (e: unknown) => e instanceof GatewayError && e.reason === 'replay_store_unavailable' && e.status === 503);
  assert.equal(await s.remember('a', 1000), false, 'still remembered');
  now = 1000;
  assert.equal(await s.remember('d', 1000), true);
  assert.ok(s.size <= 3);
});

test('redis store: SET NX PX, OK → fresh, null → replay, error → 503', async () => {
  const calls: unknown[][] = [];
  let answer: string | null | Error = 'OK';
  const fake = { set: async (...args: unknown[]) => { calls.push(args); if (answer instanceof Error) throw answer; return answer; } } as unknown as Redis;
  const s = new RedisReplayStore(fake);
  assert.equal(await s.remember('k', 5000), true);
  answer = null;
  assert.equal(await s.remember('k', 5000), false);
  answer = new Error('Connection is closed.');
  await assert.rejects(s.remember('k', 5000), (e: unknown) => e instanceof GatewayError && e.reason === 'replay_store_unavailable');
  assert.deepEqual(calls[0], ['tokengate:dpop:k', '1', 'PX', 5000, 'NX']);
});

test('nonces: deterministic per secret and window, current + previous accepted', () => {
  let now = 0;
  const a = new NonceSource('x'.repeat(32), 60, () => now);
  const b = new NonceSource('x'.repeat(32), 60, () => now);
  const c = new NonceSource('y'.repeat(32), 60, () => now);
  assert.equal(a.current(), b.current(), 'replicas sharing the secret agree');
  assert.notEqual(a.current(), c.current());
  const n0 = a.current();
  assert.equal(b.check(n0), 'current');
  now = 60_000;
  assert.equal(b.check(n0), 'previous');
  now = 120_000;
  assert.equal(b.check(n0), 'invalid');
  assert.equal(b.check(undefined), 'invalid');
  assert.equal(b.check(c.current()), 'invalid');
});

test('primary-held store (cluster workers): a closed channel, no answer in time or an error answer → 503, never "fresh"', async () => {
  const { PrimaryReplayStore } = await import('../../../src/cluster/worker.js');
  const { Channel } = await import('../../../src/cluster/channel.js');
  const { EventEmitter } = await import('node:events');
  /** A Worker-like IPC end whose messages go to `peer`. */
  const end = (connected: () => boolean) => Object.assign(new EventEmitter(), {
    peer: null as InstanceType<typeof EventEmitter> | null,
    isConnected: connected,
    send(m: unknown) { setImmediate(() => this.peer?.emit('message', m)); return true; },
  });
  const isUnavailable = (e: unknown) => e instanceof GatewayError && e.reason === 'replay_store_unavailable' && e.status === 503;
  // Closed: refused at once.
  await assert.rejects(new PrimaryReplayStore(new Channel(end(() => false) as never), 50).remember('k', 1000), isUnavailable);
  // Open, but nobody answers: the timeout refuses.
  const t0 = Date.now();
  await assert.rejects(new PrimaryReplayStore(new Channel(end(() => true) as never), 50).remember('k', 1000), isUnavailable);
  assert.ok(Date.now() - t0 >= 45, 'refused by the timeout, not at once');
  // Open, and the primary's store fails: an error answer, refused (not left to time out).
  const a = end(() => true);
  const b = end(() => true);
  a.peer = b;
  b.peer = a;
  new Channel(b as never).serve({ replay: () => { throw new Error('store full'); } });
  const t1 = Date.now();
  await assert.rejects(new PrimaryReplayStore(new Channel(a as never), 5000).remember('k', 1000), isUnavailable);
  assert.ok(Date.now() - t1 < 1000, 'the error answer came back, no timeout');
  // And a working primary: the first use is fresh, the second a replay.
  const c = end(() => true);
  const d = end(() => true);
  c.peer = d;
  d.peer = c;
  const { MemoryReplayStore } = await import('../../../src/dpop/replay-store.js');
  const store = new MemoryReplayStore(100);
  new Channel(d as never).serve({ replay: ({ key, ttlMs }) => store.remember(key, ttlMs) });
  const remote = new PrimaryReplayStore(new Channel(c as never), 1000);
  assert.equal(await remote.remember('jti-1', 60_000), true);
  assert.equal(await remote.remember('jti-1', 60_000), false);
});
