/**
 * `introspection.cacheStore: redis` on a real Redis: two gateway replicas share
 * introspection answers (one call to the IdP, counted by a relay, serves both), inactive
 * answers too; entries carry the cache TTL; an opaque DPoP-bound token (its introspection
 * answer has `cnf.jkt`) needs a proof like a JWT one; with Redis down the replicas fall
 * back to calling the IdP (a cache outage never decides).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { IDP_CLIENT, IDP_RESOURCES, startIdp, type TestIdp } from '../helpers/idp.js';
import { startRelay, type Relay } from '../helpers/relay.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { dpopClient, type DpopClient } from '../helpers/dpop.js';
import { redisAvailable, startRedis, type TestRedis } from '../helpers/redis.js';

const skip = redisAvailable() ? false : 'redis-server is not installed (apt-get install redis-server; .ci/run does)';
const INTROSPECT = '/token/introspection';

let idp: TestIdp; let relay: Relay; let up: EchoUpstream; let redis: TestRedis; let a: TestGateway; let b: TestGateway;
let client: DpopClient;

describe('introspection.cacheStore: redis', { skip }, () => {
  before(async () => {
    [idp, up, redis, client] = await Promise.all([startIdp(), startUpstream(), startRedis(), dpopClient()]);
    relay = await startRelay(idp.issuer);
    const yaml = `
server:
  redis: { url: "${redis.url}", commandTimeoutMs: 300 }
issuers:
  - id: idp
    issuer: ${idp.issuer}
    introspection:
      endpoint: ${relay.url}${INTROSPECT}
      clientId: ${IDP_CLIENT.clientId}
      clientSecret: \${INTROSPECTION_SECRET}
      cacheTtlSec: 30
      negativeCacheTtlSec: 5
      cacheStore: redis
routes:
  - id: orders
    match: { pathPrefix: /orders }
    upstream: ${up.url}
    auth: { mode: introspection, audiences: [${IDP_RESOURCES.opaque}] }
    forward: { headers: { x-auth-client: client_id } }
`;
    const env = { INTROSPECTION_SECRET: IDP_CLIENT.clientSecret };
    [a, b] = await Promise.all([startGateway(yaml, { env }), startGateway(yaml, { env })]);
    const until = Date.now() + 5000;
    while (a.gw.redis?.status !== 'ready' || b.gw.redis?.status !== 'ready') {
      if (Date.now() > until) throw new Error('gateway redis connections not ready');
      await new Promise((r) => setTimeout(r, 20));
    }
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await redis?.stop();
    await relay?.close();
    await up?.close();
    await idp?.close();
  });

  const get = async (g: TestGateway, headers: Record<string, string>) => {
    const r = await fetch(g.url + '/orders/1', { headers });
    return { status: r.status, www: r.headers.get('www-authenticate'), body: await r.text() };
  };
  const calls = () => relay.count(INTROSPECT);

  test('an answer obtained by one replica serves the other; the entry is keyed by a hash and expires with the cache TTL', async () => {
    const token = await idp.token({ resource: IDP_RESOURCES.opaque });
    const c0 = calls();
    assert.equal((await get(a, { authorization: `Bearer ${token}` })).status, 200);
    assert.equal(calls() - c0, 1);
    assert.equal((await get(b, { authorization: `Bearer ${token}` })).status, 200);
    assert.equal((await get(a, { authorization: `Bearer ${token}` })).status, 200);
    assert.equal(calls() - c0, 1, 'one introspection call for both replicas');

    const probe = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    try {
      await probe.connect();
      const keys = await probe.keys('tokengate:introspection:*');
      assert.equal(keys.length, 1);
      assert.ok(!keys[0].includes(token) && /^tokengate:introspection:[A-Za-z0-9_-]{43}$/.test(keys[0]));
      const ttl = await probe.pttl(keys[0]);
      assert.ok(ttl > 25_000 && ttl <= 30_000, `pttl ${ttl}`);
      const stored = JSON.parse((await probe.get(keys[0]))!) as { active: boolean; client_id: string };
      assert.deepEqual([stored.active, stored.client_id], [true, 'app']);
    } finally {
      probe.disconnect();
    }
  });

  test('an inactive answer is shared too (negative cache)', async () => {
    const c0 = calls();
    const bogus = 'x'.repeat(43);
    assert.equal((await get(a, { authorization: `Bearer ${bogus}` })).status, 401);
    assert.equal((await get(b, { authorization: `Bearer ${bogus}` })).status, 401);
    assert.equal(calls() - c0, 1);
  });

  test('an introspected DPoP-bound token (cnf.jkt in the answer) needs its proof', async () => {
    const token = await idp.token({ resource: IDP_RESOURCES.opaque, dpop: (htm, htu) => client.proof({ htm, htu }) });
    let r = await get(a, { authorization: `Bearer ${token}` });
    assert.deepEqual([r.status, r.www], [401, 'Bearer realm="tokengate", error="invalid_token", error_description="A DPoP-bound access token must be sent with the DPoP scheme"']);
    r = await get(b, { authorization: `DPoP ${token}`, dpop: await client.proof({ htm: 'GET', htu: `${b.url}/orders/1`, token }) });
    assert.equal(r.status, 200, r.body);
    r = await get(b, { authorization: `DPoP ${token}`, dpop: await client.proof({ htm: 'GET', htu: `${b.url}/orders/2`, token }) });
    assert.equal(r.status, 401);
  });

  test('Redis down: the replicas introspect instead of using the cache (no decision from a failed store)', async () => {
    const token = await idp.token({ resource: IDP_RESOURCES.opaque });
    await redis.stop();
    const c0 = calls();
    assert.equal((await get(a, { authorization: `Bearer ${token}` })).status, 200);
    assert.equal((await get(b, { authorization: `Bearer ${token}` })).status, 200);
    assert.equal(calls() - c0, 2);
  });
});
