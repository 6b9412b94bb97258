/**
 * The per-request metrics skip prom-client's per-call label hashing (src/metrics.ts):
 * RequestHistogram must expose exactly what prom-client's own Histogram exposes for the
 * same observations (text format and worker aggregation), and request counts kept in
 * plain cells must appear in full at every scrape.
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { AggregatorRegistry, Histogram, Registry } from 'prom-client';
import { Metrics, RequestHistogram } from '../../src/metrics.js';

const BUCKETS = [0.001, 0.01, 0.1, 1];
// On a bound, between bounds, below all, above all, zero, and a sum that is not a round number.
const VALUES = [0.001, 0.0005, 0.01, 0.05, 0.1, 1, 2.5, 0, 0.3333, 1e-7, 30];

function pair(labelled: boolean): { ours: RequestHistogram; ref: Histogram<string>; rOurs: Registry; rRef: Registry } {
  const rOurs = new Registry();
  const rRef = new Registry();
  const opts = { name: 'x_seconds', help: 'h', buckets: BUCKETS };
  const ours = new RequestHistogram({ ...opts, ...(labelled ? { labelName: 'route' } : {}), registers: [rOurs] });
  const ref = new Histogram({ ...opts, ...(labelled ? { labelNames: ['route'] } : {}), registers: [rRef] });
  return { ours, ref, rOurs, rRef };
}

describe('RequestHistogram', () => {
  it('exposes what prom-client exposes (unlabelled)', async () => {
    const { ours, ref, rOurs, rRef } = pair(false);
    assert.equal(await rOurs.metrics(), await rRef.metrics(), 'empty');
    for (const v of VALUES) {
      ours.observe(v);
      ref.observe(v);
    }
    assert.equal(await rOurs.metrics(), await rRef.metrics());
  });

  it('exposes what prom-client exposes (one label, several values, odd characters)', async () => {
    const { ours, ref, rOurs, rRef } = pair(true);
    const routes = ['orders', 'a"b\\c', 'pub'];
    VALUES.forEach((v, i) => {
      const route = routes[i % routes.length]!;
      ours.labels(route).observe(v);
      ref.labels(route).observe(v);
    });
    const text = await rOurs.metrics();
    assert.equal(text, await rRef.metrics());
    assert.match(text, /x_seconds_bucket\{le="0.01",route="orders"\} \d/);
  });

  it('sums over workers like prom-client (AggregatorRegistry)', async () => {
    const a = pair(true);
    const b = pair(true);
    VALUES.forEach((v, i) => {
      const [x, route] = i % 2 ? [a, 'r1'] : [b, i % 3 ? 'r1' : 'r2'];
      x.ours.labels(route).observe(v);
      x.ref.labels(route).observe(v);
    });
    const ours = AggregatorRegistry.aggregate([await a.rOurs.getMetricsAsJSON(), await b.rOurs.getMetricsAsJSON()]);
    const ref = AggregatorRegistry.aggregate([await a.rRef.getMetricsAsJSON(), await b.rRef.getMetricsAsJSON()]);
    assert.equal(await ours.metrics(), await ref.metrics());
  });

  it('resets with the registry', async () => {
    const { ours, rOurs } = pair(false);
    ours.observe(0.5);
    rOurs.resetMetrics();
    assert.match(await rOurs.metrics(), /x_seconds_count 0/);
  });
});

describe('Metrics.countRequest', () => {
  it('every counted request is in every scrape, per label set', async () => {
    const m = new Metrics();
    for (let i = 0; i < 5; i++) m.countRequest('orders', 'allowed', 'ok');
    m.countRequest('orders', 'denied', 'invalid_token');
    let text = await m.registry.metrics();
    assert.match(text, /tokengate_requests_total\{route="orders",outcome="allowed",reason="ok"\} 5\n/);
    assert.match(text, /tokengate_requests_total\{route="orders",outcome="denied",reason="invalid_token"\} 1\n/);
    for (let i = 0; i < 3; i++) m.countRequest('orders', 'allowed', 'ok');
    text = await m.registry.metrics();
    assert.match(text, /tokengate_requests_total\{route="orders",outcome="allowed",reason="ok"\} 8\n/);
    text = await m.registry.metrics();
    assert.match(text, /tokengate_requests_total\{route="orders",outcome="allowed",reason="ok"\} 8\n/, 'a scrape does not add twice');
  });

  it('label sets that share a route, an outcome or a reason are counted apart', async () => {
    const m = new Metrics();
    const sets: Array<[string, 'allowed' | 'denied' | 'error', string, number]> = [
      ['a', 'allowed', 'ok', 3], ['b', 'allowed', 'ok', 1], ['a', 'denied', 'ok', 2], ['a', 'denied', 'missing_token', 4],
      ['b', 'denied', 'missing_token', 5], ['a', 'error', 'upstream_unavailable', 6], ['(none)', 'denied', 'no_route', 7],
    ];
    for (const [route, outcome, reason, n] of sets) for (let i = 0; i < n; i++) m.countRequest(route, outcome, reason);
    const lines = (await m.registry.metrics()).split('\n').filter((l) => l.startsWith('tokengate_requests_total{')).sort();
    assert.deepEqual(lines, sets.map(([route, outcome, reason, n]) => `tokengate_requests_total{route="${route}",outcome="${outcome}",reason="${reason}"} ${n}`).sort());
  });
});

describe('Metrics.cacheCounter', () => {
  it('cache lookups counted in cells appear in full at every scrape, one series per label set', async () => {
    const m = new Metrics();
    const hit = m.cacheCounter('jwt', 'hit');
    for (let i = 0; i < 4; i++) hit.inc();
    // A second handle on the same label set (an issuer runtime rebuilt on reload) shares the series.
    m.cacheCounter('jwt', 'hit').inc();
    m.cacheCounter('introspection', 'negative_hit').inc();
    const text = await m.registry.metrics();
    assert.match(text, /^tokengate_cache_requests_total\{cache="jwt",result="hit"\} 5$/m);
    assert.match(text, /^tokengate_cache_requests_total\{cache="introspection",result="negative_hit"\} 1$/m);
    const cacheLines = (t: string) => t.split('\n').filter((l) => l.startsWith('tokengate_cache_requests_total'));
    assert.deepEqual(cacheLines(await m.registry.metrics()), cacheLines(text), 'a second scrape adds nothing');
  });
});
