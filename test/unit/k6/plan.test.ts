/**
 * The pure parts of the k6 scripts (k6/lib/plan.js), run under Node: durations as k6 reads
 * them, the 1 % dropped-iterations budget of load.js (of every iteration offered, not of one
 * second of one scenario), and one VU's share of the all-distinct tokens (fetched on first
 * use, cycled, renewed before `exp`, never more than the share).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DistinctTokens, droppedIterationsBudget, durationSec } from '../../../k6/lib/plan.js';

test('durationSec: h, m, s, ms in any combination; anything else throws', () => {
  assert.equal(durationSec('2m'), 120);
  assert.equal(durationSec('90s'), 90);
  assert.equal(durationSec('1h30m'), 5400);
  assert.equal(durationSec('1.5h'), 5400);
  assert.equal(durationSec('4h'), 14_400);
  assert.equal(durationSec('1m500ms'), 60.5);
  for (const bad of ['', '2', 'm', '2 m', '2min', '-1m', '1d']) assert.throws(() => durationSec(bad), bad);
});

test('the dropped-iterations budget is 1 % of every iteration offered', () => {
  // The README's load run: 200/s in each of 6 scenarios for 2 minutes = 144 000 iterations.
  assert.equal(droppedIterationsBudget(200, '2m', 6, 0.01), 1440);
  assert.equal(droppedIterationsBudget(500, '10m', 3, 0.01), 9000);
  assert.equal(droppedIterationsBudget(1, '10s', 1, 0.01), 0, 'a tiny run may drop none');
});

test('DistinctTokens: the share is fetched one per request, then cycled; a token near exp is renewed', () => {
  let minted = 0;
  const left = new Map<string, number>();
  const d = new DistinctTokens(3, () => { const t = `t${++minted}`; left.set(t, 3600); return t; }, (t) => left.get(t) ?? 0);
  assert.deepEqual([d.take(), d.take(), d.take()], ['t1', 't2', 't3'], 'each first use is a new token');
  assert.deepEqual([d.take(), d.take(), d.take(), d.take()], ['t1', 't2', 't3', 't1'], 'then the share is cycled');
  assert.equal(minted, 3, 'no VU fetches more than its share');
  left.set('t2', 59);
  assert.equal(d.take(), 't4', 'a token with under a minute left is replaced');
  assert.equal(d.take(), 't3');
  assert.equal(d.take(), 't1');
  assert.equal(d.take(), 't4', 'the renewal took its place in the cycle');
  assert.equal(minted, 4);
  // An hour later every token has expired: each is renewed as its turn comes, none is sent expired.
  for (const t of left.keys()) left.set(t, -1);
  const after = [d.take(), d.take(), d.take()];
  assert.deepEqual(after, ['t5', 't6', 't7']);
  assert.ok(after.every((t) => (left.get(t) ?? 0) > 60));
});

test('DistinctTokens: a share of zero still yields a token', () => {
  let minted = 0;
  const d = new DistinctTokens(0, () => `t${++minted}`, () => 3600);
  assert.equal(d.take(), 't1');
  assert.equal(d.take(), 't1');
});
