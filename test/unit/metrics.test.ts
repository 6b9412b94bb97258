/**
 * The per-request metrics skip prom-client's per-call label hashing (src/metrics.ts):
 * RequestHistogram must expose exactly what prom-client's own Histogram exposes for the
 * same observations (text format and worker aggregation), and request counts kept in
 * plain cells must appear in full at every scrape.
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { AggregatorRegistry, Histogram, Registry } from 'prom-client';
import { Metrics, RequestHistogram, statusClass } from '../../src/metrics.js';

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
    for (let i = 0; i < 5; i++) m.countRequest('orders', 'allowed', 'ok', 200);
    m.countRequest('orders', 'denied', 'invalid_token', 401);
    let text = await m.registry.metrics();
    assert.match(text, /tokengate_requests_total\{route="orders",outcome="allowed",reason="ok",status_class="2xx"\} 5\n/);
    assert.match(text, /tokengate_requests_total\{route="orders",outcome="denied",reason="invalid_token",status_class="4xx"\} 1\n/);
    for (let i = 0; i < 3; i++) m.countRequest('orders', 'allowed', 'ok', 204);
    text = await m.registry.metrics();
    assert.match(text, /tokengate_requests_total\{route="orders",outcome="allowed",reason="ok",status_class="2xx"\} 8\n/);
    text = await m.registry.metrics();
    assert.match(text, /tokengate_requests_total\{route="orders",outcome="allowed",reason="ok",status_class="2xx"\} 8\n/, 'a scrape does not add twice');
  });

  it('an allowed request the upstream answered 5xx is counted apart from the 2xx ones (the error rate)', async () => {
    const m = new Metrics();
    m.countRequest('orders', 'allowed', 'ok', 200);
    m.countRequest('orders', 'allowed', 'ok', 500);
    m.countRequest('orders', 'allowed', 'ok', 503);
    m.countRequest('orders', 'allowed', 'ok', 302);
    m.countRequest('chat', 'allowed', 'ok', 101);
    const lines = (await m.registry.metrics()).split('\n').filter((l) => l.startsWith('tokengate_requests_total{')).sort();
    assert.deepEqual(lines, [
      'tokengate_requests_total{route="chat",outcome="allowed",reason="ok",status_class="1xx"} 1',
      'tokengate_requests_total{route="orders",outcome="allowed",reason="ok",status_class="2xx"} 1',
      'tokengate_requests_total{route="orders",outcome="allowed",reason="ok",status_class="3xx"} 1',
      'tokengate_requests_total{route="orders",outcome="allowed",reason="ok",status_class="5xx"} 2',
    ]);
  });

  it('label sets that share a route, an outcome or a reason are counted apart', async () => {
    const m = new Metrics();
    const sets: Array<[string, 'allowed' | 'denied' | 'error', string, number]> = [
      ['a', 'allowed', 'ok', 3], ['b', 'allowed', 'ok', 1], ['a', 'denied', 'ok', 2], ['a', 'denied', 'missing_token', 4],
      ['b', 'denied', 'missing_token', 5], ['a', 'error', 'upstream_unavailable', 6], ['(none)', 'denied', 'no_route', 7],
    ];
    for (const [route, outcome, reason, n] of sets) for (let i = 0; i < n; i++) m.countRequest(route, outcome, reason, 403);
    const lines = (await m.registry.metrics()).split('\n').filter((l) => l.startsWith('tokengate_requests_total{')).sort();
    assert.deepEqual(lines, sets.map(([route, outcome, reason, n]) => `tokengate_requests_total{route="${route}",outcome="${outcome}",reason="${reason}",status_class="4xx"} ${n}`).sort());
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

describe('statusClass', () => {
  it('maps statuses to their class; out-of-range ones count as 5xx', () => {
    assert.deepEqual([101, 200, 299, 304, 400, 499, 500, 599, 0, 600].map(statusClass), ['1xx', '2xx', '2xx', '3xx', '4xx', '4xx', '5xx', '5xx', '5xx', '5xx']);
  });
});

describe('Metrics: names', () => {
  it('process metrics carry the standard process_/nodejs_ names, not a doubled tokengate prefix', async () => {
    const names = (await new Metrics().registry.getMetricsAsJSON()).map((m) => m.name);
    for (const n of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_start_time_seconds', 'nodejs_eventloop_lag_seconds']) {
      assert.ok(names.includes(n), `${n} missing`);
    }
    assert.deepEqual(names.filter((n) => n.startsWith('tokengate_process') || n.startsWith('tokengate_nodejs')), []);
  });

  it('auth and end-to-end durations are histograms by route', async () => {
    const m = new Metrics();
    m.observeAuth('orders', performance.now() - 2);
    m.observeAuth(undefined, performance.now());
    m.requestDuration.labels('orders').observe(0.02);
    const text = await m.registry.metrics();
    assert.match(text, /^tokengate_auth_duration_seconds_count\{route="orders"\} 1$/m);
    assert.match(text, /^tokengate_auth_duration_seconds_count\{route="\(none\)"\} 1$/m);
    assert.match(text, /^tokengate_auth_duration_seconds_bucket\{le="0.001",route="orders"\} 0$/m, '2 ms is above the 1 ms bucket');
    assert.match(text, /^tokengate_request_duration_seconds_bucket\{le="0.025",route="orders"\} 1$/m);
    assert.match(text, /^tokengate_request_duration_seconds_bucket\{le="0.01",route="orders"\} 0$/m);
  });
});
