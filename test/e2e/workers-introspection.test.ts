/**
 * Introspection at `server.workers: 1` and `2`, with the real CLI: one contract at any
 * worker count. Each worker keeps its own cache, so the IdP sees at most one call per
 * token per worker (the documented fetch multiplier); the cache is counted for the pod
 * (hits appear once a worker has the answer); a cached answer never outlives the token's
 * `exp`; `cacheTtlSec: 0` sees a revocation at once; a failing endpoint is never cached.
 * Against the real oidc-provider (opaque tokens) behind a counting relay, and a
 * programmable endpoint where the test must choose the answer (an `exp`, a failure).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { IDP_CLIENT, IDP_RESOURCES, startIdp, type TestIdp } from '../helpers/idp.js';
import { startRelay, type Relay } from '../helpers/relay.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startCliReplica, type CliReplica } from '../helpers/cli.js';
import { startMockIntrospection, type MockIntrospection } from '../helpers/mock-introspection.js';

const INTROSPECT = '/token/introspection';
let idp: TestIdp; let relay: Relay; let up: EchoUpstream;
let expiring: MockIntrospection; let failing: MockIntrospection;
/** When the `/exp` endpoint's token expires (set by its test; the endpoint says inactive after). */
let exp = 0;

before(async () => {
  idp = await startIdp();
  relay = await startRelay(idp.issuer);
  up = await startUpstream();
  expiring = await startMockIntrospection();
  expiring.answer = () => (Date.now() / 1000 < exp
    ? { body: { active: true, exp, aud: IDP_RESOURCES.opaque, iss: idp.issuer, sub: 's' } }
    : { body: { active: false } });
  failing = await startMockIntrospection();
  failing.answer = () => ({ status: 500, body: { error: 'boom' }, delayMs: 300 });
});
after(async () => {
  await up?.close(); await relay?.close(); await idp?.close();
  await expiring?.close(); await failing?.close();
});

/** An issuer entry for the IdP, introspecting at `endpoint` with these cache lifetimes. */
const issuer = (id: string, endpoint: string, cacheTtlSec: number, negativeCacheTtlSec: number) => `
  - id: ${id}
    issuer: ${idp.issuer}
    introspection:
      endpoint: ${endpoint}
      clientId: ${IDP_CLIENT.clientId}
      clientSecret: "${IDP_CLIENT.clientSecret}"
      cacheTtlSec: ${cacheTtlSec}
      negativeCacheTtlSec: ${negativeCacheTtlSec}`;
const route = (id: string, issuerId: string) => `
  - id: ${id}
    match: { pathPrefix: /${id} }
    upstream: ${up.url}
    auth: { mode: introspection, issuers: [${issuerId}], audiences: [${IDP_RESOURCES.opaque}] }`;

/** One gateway per worker count: a route per introspection setup. */
function gateway(workers: number): Promise<CliReplica> {
  return startCliReplica(`
server:
  workers: ${workers}
  shutdownGraceSec: 1
issuers:${issuer('cached', `${relay.url}${INTROSPECT}`, 60, 30)}${issuer('uncached', `${relay.url}${INTROSPECT}`, 0, 0)}${issuer('expiring', expiring.endpoint, 60, 30)}${issuer('failing', failing.endpoint, 60, 30)}
routes:${route('orders', 'cached')}${route('live', 'uncached')}${route('exp', 'expiring')}${route('fail', 'failing')}
`);
}

/** One request on its own connection (the kernel hands each connection to one worker). */
function send(g: CliReplica, token: string, path = '/orders/1'): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get(`${g.url}${path}`, { agent: false, headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    }).on('error', reject);
  });
}

const calls = () => relay.count(INTROSPECT);
const metric = (text: string, re: RegExp) => Number(re.exec(text)?.[1] ?? 0);

for (const workers of [1, 2]) {
  describe(`server.workers: ${workers}`, () => {
    let g: CliReplica;
    before(async () => {
      g = await gateway(workers);
    });
    after(async () => {
      await g?.stop();
    });

    test('at most one introspection call per token per worker; the cache and the calls are counted for the pod', { timeout: 60_000 }, async () => {
      const token = await idp.token({ resource: IDP_RESOURCES.opaque, scope: 'orders:read' });
      const before = calls();
      for (let i = 0; i < 6; i++) assert.equal(await send(g, token), 200, `sequential ${i}`);
      const sequentialCalls = calls() - before;
      assert.ok(sequentialCalls >= 1 && sequentialCalls <= workers, `six requests, ${workers} worker(s): ${sequentialCalls} calls`);

      const other = await idp.token({ resource: IDP_RESOURCES.opaque, scope: 'orders:read' });
      const mid = calls();
      const statuses = await Promise.all(Array.from({ length: 20 }, () => send(g, other)));
      assert.deepEqual(statuses, Array(20).fill(200));
      assert.ok(calls() - mid <= workers, `twenty concurrent requests: ${calls() - mid} calls`);

      const text = await (await fetch(`${g.adminUrl}/metrics`)).text();
      assert.equal(metric(text, /^tokengate_introspection_requests_total\{issuer="cached",result="active"\} (\d+)$/m), calls() - before, 'the metric counts the calls the IdP saw');
      const hits = metric(text, /^tokengate_cache_requests_total\{cache="introspection",result="hit"\} (\d+)$/m);
      const misses = metric(text, /^tokengate_cache_requests_total\{cache="introspection",result="miss"\} (\d+)$/m);
      assert.equal(hits + misses, 26, 'every lookup counted once, summed over the workers');
      assert.ok(hits >= 6 - workers, `a token used repeatedly shows hits (${hits})`);
    });

    test('a cached active answer never outlives the token\'s exp, whichever worker holds it', { timeout: 60_000 }, async () => {
      exp = Math.floor(Date.now() / 1000) + 3;
      const token = `opaque-with-exp-${workers}`;
      assert.deepEqual(await Promise.all(Array.from({ length: 6 }, () => send(g, token, '/exp/1'))), Array(6).fill(200));
      await new Promise((r) => setTimeout(r, exp * 1000 - Date.now() + 300));
      const afterExp = await Promise.all(Array.from({ length: 8 }, () => send(g, token, '/exp/1')));
      assert.deepEqual(afterExp, Array(8).fill(401), 'past exp: refused on every connection');
    });

    test('cacheTtlSec 0: a revocation is seen at once on every worker', { timeout: 60_000 }, async () => {
      const token = await idp.token({ resource: IDP_RESOURCES.opaque, scope: 'orders:read' });
      const before = calls();
      for (let i = 0; i < 4; i++) assert.equal(await send(g, token, '/live/1'), 200);
      assert.equal(calls() - before, 4, 'one call per request');
      await idp.revoke(token);
      for (let i = 0; i < 4; i++) assert.equal(await send(g, token, '/live/1'), 401);
    });

    test('a failing endpoint: 503 fail-closed, each call counted, never cached', { timeout: 60_000 }, async () => {
      const before = failing.requests.length;
      const token = `opaque-failing-${workers}`;
      const statuses = await Promise.all(Array.from({ length: 10 }, () => send(g, token, '/fail/1')));
      assert.deepEqual(statuses, Array(10).fill(503));
      const joined = failing.requests.length - before;
      assert.ok(joined >= 1 && joined <= workers, `concurrent requests joined per worker: ${joined} calls`);
      const text = await (await fetch(`${g.adminUrl}/metrics`)).text();
      assert.equal(metric(text, /^tokengate_introspection_requests_total\{issuer="failing",result="error"\} (\d+)$/m), joined);
      // Failures are never cached: the next request asks again.
      assert.equal(await send(g, token, '/fail/1'), 503);
      assert.equal(failing.requests.length - before, joined + 1);
    });
  });
}
