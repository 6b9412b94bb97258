/**
 * The admin listener: /healthz, /readyz (503 until every JWT issuer's keys were fetched
 * once, and when discovery names another issuer), /metrics (SPEC names and labels; label
 * values never carry a path or a token), and the access log line.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startHandlerUpstream, startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

let iss: MockIssuer; let up: EchoUpstream; let gw: TestGateway;
const logs: string[] = [];
const accessLines = () => logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'access');
before(async () => {
  [iss, up] = await Promise.all([startMockIssuer(), startUpstream()]);
  iss.mode = 'hang';
  gw = await startGateway(`
issuers:
  - id: corp
    issuer: ${iss.issuer}
    jwksUri: ${iss.jwksUri}
    audiences: [api]
    jwks: { cooldownSec: 1, timeoutMs: 200 }
routes:
  - id: orders
    match: { pathPrefix: /orders }
    upstream: ${up.url}
    auth: { mode: jwt, scopes: { allOf: [orders:read] } }
  - id: open
    match: { pathPrefix: /open }
    upstream: ${up.url}
    auth: { mode: none }
`, { logs });
});
after(async () => { await gw?.close(); await up?.close(); await iss?.close(); });

const admin = (p: string) => fetch(gw.adminUrl + p);

test('/healthz is 200; /readyz is 503 until the keys are fetched, then 200; JWT routes 503 meanwhile', async () => {
  assert.equal((await admin('/healthz')).status, 200);
  const notReady = await admin('/readyz');
  assert.equal(notReady.status, 503);
  assert.match(JSON.stringify(await notReady.json()), /corp/);
  const early = await fetch(`${gw.url}/orders/1`, { headers: { authorization: `Bearer ${await iss.sign()}` } });
  assert.equal(early.status, 503);
  assert.match(early.headers.get('retry-after') ?? '', /^\d+$/);
  assert.equal(((await early.json()) as { error: string }).error, 'temporarily_unavailable');
  assert.equal(up.requests.length, 0);
  iss.mode = 'up';
  await gw.ready(5000);
  assert.equal((await admin('/readyz')).status, 200);
});

test('/metrics: SPEC metric names, labels from ids and reasons, never a path or a token', async () => {
  const token = await iss.sign();
  for (let i = 0; i < 2; i++) (await fetch(`${gw.url}/orders/secret-path-${i}`, { headers: { authorization: `Bearer ${token}` } })).body?.cancel();
  await (await fetch(`${gw.url}/orders/secret-path-x`, { headers: { authorization: `Bearer ${await iss.sign({ claims: { scope: 'x' } })}` } })).text();
  await (await fetch(`${gw.url}/orders/secret-path-y`, { headers: { authorization: `Bearer ${token.slice(0, -3)}AAA` } })).text();
  await (await fetch(`${gw.url}/no-such-secret-path`)).text();
  await (await fetch(`${gw.url}/open/secret-path-z`)).text();
  await new Promise((r) => setTimeout(r, 50));
  const m = await admin('/metrics');
  assert.equal(m.status, 200);
  assert.match(m.headers.get('content-type') ?? '', /^text\/plain/);
  const text = await m.text();
  for (const needle of [
    'tokengate_requests_total{route="orders",outcome="allowed",reason="ok",status_class="2xx"} 2',
    'tokengate_requests_total{route="orders",outcome="denied",reason="scope",status_class="4xx"} 1',
    'tokengate_requests_total{route="orders",outcome="denied",reason="bad_signature",status_class="4xx"} 1',
    'tokengate_requests_total{route="orders",outcome="denied",reason="jwks_unavailable",status_class="5xx"} 1',
    'tokengate_requests_total{route="(none)",outcome="denied",reason="no_route",status_class="4xx"} 1',
    'tokengate_requests_total{route="open",outcome="allowed",reason="ok",status_class="2xx"} 1',
    'tokengate_auth_duration_seconds_bucket{le=',
    'tokengate_upstream_duration_seconds_bucket{le="0.0005",route="orders"}',
    'tokengate_jwks_fetches_total{issuer="corp",result="success"} 1',
    'tokengate_jwks_fetches_total{issuer="corp",result="failure"}',
    'tokengate_jwks_age_seconds{issuer="corp"}',
    'tokengate_cache_requests_total{cache="jwt",result="hit"} 1',
    'tokengate_cache_requests_total{cache="jwt",result="miss"}',
    '# TYPE tokengate_introspection_requests_total counter',
    '# TYPE tokengate_config_reloads_total counter',
  ]) assert.ok(text.includes(needle), `metrics lack ${needle}`);
  assert.ok(!text.includes('secret-path'), 'a path leaked into metrics');
  assert.ok(!text.includes(token.slice(0, 20)), 'a token leaked into metrics');
});

test('/metrics: an upstream 5xx is counted allowed with status_class 5xx; request and auth durations by route', async () => {
  const failing = await startHandlerUpstream((_req, res) => res.writeHead(500).end('boom'));
  const g = await startGateway(`
routes:
  - { id: flaky, match: { pathPrefix: /flaky }, upstream: "${failing.url}", auth: { mode: none } }
  - { id: fine, match: { pathPrefix: /fine }, upstream: "${up.url}", auth: { mode: none } }
`);
  try {
    for (let i = 0; i < 3; i++) assert.equal(await (await fetch(`${g.url}/flaky/x`)).text(), 'boom');
    await (await fetch(`${g.url}/fine/x`)).text();
    await (await fetch(`${g.url}/nowhere`)).text();
    await new Promise((r) => setTimeout(r, 50));
    const text = await (await fetch(g.adminUrl + '/metrics')).text();
    const lines = (prefix: string) => text.split('\n').filter((l) => l.startsWith(prefix)).sort();
    assert.deepEqual(lines('tokengate_requests_total{'), [
      'tokengate_requests_total{route="(none)",outcome="denied",reason="no_route",status_class="4xx"} 1',
      'tokengate_requests_total{route="fine",outcome="allowed",reason="ok",status_class="2xx"} 1',
      'tokengate_requests_total{route="flaky",outcome="allowed",reason="ok",status_class="5xx"} 3',
    ]);
    assert.deepEqual(lines('tokengate_request_duration_seconds_count'), [
      'tokengate_request_duration_seconds_count{route="(none)"} 1',
      'tokengate_request_duration_seconds_count{route="fine"} 1',
      'tokengate_request_duration_seconds_count{route="flaky"} 3',
    ]);
    assert.deepEqual(lines('tokengate_auth_duration_seconds_count'), [
      'tokengate_auth_duration_seconds_count{route="(none)"} 1',
      'tokengate_auth_duration_seconds_count{route="fine"} 1',
      'tokengate_auth_duration_seconds_count{route="flaky"} 3',
    ]);
    assert.match(text, /^process_cpu_seconds_total \d/m);
    assert.match(text, /^process_resident_memory_bytes \d/m);
    assert.doesNotMatch(text, /tokengate_process_/);
  } finally {
    await g.close();
    await failing.close();
  }
});

test('one access line per request: route, status, ms, sub, issuer, outcome, reason; never the token', async () => {
  logs.length = 0;
  const token = await iss.sign({ claims: { sub: 'alice' } });
  await (await fetch(`${gw.url}/orders/1`, { headers: { authorization: `Bearer ${token}` } })).text();
  await (await fetch(`${gw.url}/orders/2`, { headers: { authorization: `Bearer ${token.slice(0, -3)}AAA` } })).text();
  await (await fetch(`${gw.url}/orders/3?access_token=${token}`)).text();
  await new Promise((r) => setTimeout(r, 50));
  const access = accessLines();
  assert.equal(access.length, 3, JSON.stringify(logs));
  const [a, b, c] = access;
  assert.deepEqual({ ...a, time: undefined, ms: undefined, pid: undefined, hostname: undefined, request_id: undefined }, {
    level: 'info', service: 'tokengate', msg: 'access', route: 'orders', status: 200, sub: 'alice', issuer: 'corp',
    outcome: 'allowed', reason: 'ok', time: undefined, ms: undefined, pid: undefined, hostname: undefined,
    method: 'GET', client: '127.0.0.1', user_agent: 'node', request_id: undefined,
  });
  assert.match(String(a.request_id), /^[0-9a-f-]{36}$/);
  assert.equal(typeof a.ms, 'number');
  assert.deepEqual([b.route, b.status, b.outcome, b.reason, b.sub], ['orders', 401, 'denied', 'bad_signature', undefined]);
  assert.deepEqual([c.status, c.reason], [400, 'token_in_query']);
  assert.ok(!logs.join('\n').includes(token.slice(10, 60)), 'a token reached the log (at trace level)');
});

test('discovery whose document names another issuer is refused: never ready, JWT routes 503', async () => {
  const liar = http.createServer((req, res) => {
    const self = `http://127.0.0.1:${(liar.address() as AddressInfo).port}`;
    if (req.url === '/.well-known/openid-configuration') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer: 'https://evil.test', jwks_uri: `${self}/jwks` }));
    } else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [iss.keys[0].publicJwk] }));
  });
  await new Promise<void>((r) => liar.listen(0, '127.0.0.1', r));
  const liarUrl = `http://127.0.0.1:${(liar.address() as AddressInfo).port}`;
  const g = await startGateway(`
issuers:
  - { id: liar, issuer: ${liarUrl}, discovery: true, audiences: [api], jwks: { cooldownSec: 1 } }
routes:
  - { id: r, match: { pathPrefix: / }, upstream: ${up.url}, auth: { mode: jwt } }
`);
  try {
    await new Promise((r) => setTimeout(r, 400));
    assert.equal((await fetch(g.adminUrl + '/readyz')).status, 503);
    const token = await iss.sign({ claims: { iss: liarUrl } });
    const r = await fetch(`${g.url}/x`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 503);
    await r.text();
    assert.equal(up.requests.filter((q) => q.url === '/x').length, 0);
  } finally {
    await g.close();
    liar.closeAllConnections();
    await new Promise((r) => liar.close(r));
  }
});
