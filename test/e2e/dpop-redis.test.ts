/**
 * The shared DPoP replay store on a real Redis (redis-server started here on a free
 * loopback port): two gateway replicas behind one public origin, one in this process and
 * one a real `tokengate` CLI process, share seen proof ids, so a proof used at one is
 * refused at the other; with Redis down DPoP requests get 503
 * (fail closed) while unbound bearer tokens keep working; when Redis is back, so is DPoP.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { IDP_RESOURCES, idpIssuerYaml, startIdp, type TestIdp } from '../helpers/idp.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { dpopClient, type DpopClient } from '../helpers/dpop.js';
import { redisAvailable, startRedis, type TestRedis } from '../helpers/redis.js';
import { startCliReplica, type Replica } from '../helpers/cli.js';

const skip = redisAvailable() ? false : 'redis-server is not installed (apt-get install redis-server; .ci/run does)';
const PUBLIC = 'https://api.example.com';

let idp: TestIdp; let up: EchoUpstream; let redis: TestRedis; let a: TestGateway; let b: Replica & { stop(): Promise<void> };
let client: DpopClient; let bound: string; let plain: string;

describe('replayStore: redis', { skip }, () => {
  before(async () => {
    [idp, up, redis, client] = await Promise.all([startIdp(), startUpstream(), startRedis(), dpopClient()]);
    const yaml = `
server:
  trustProxy: true
  shutdownGraceSec: 1
  dpop: { replayStore: redis }
  redis: { url: "${redis.url}", commandTimeoutMs: 300 }
issuers:
${idpIssuerYaml(idp)}
routes:
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt }
`;
    [a, b] = await Promise.all([startGateway(yaml), startCliReplica(yaml)]);
    await a.ready();
    bound = await idp.token({ resource: IDP_RESOURCES.es256, dpop: (htm, htu) => client.proof({ htm, htu }) });
    plain = await idp.token({ resource: IDP_RESOURCES.es256 });
    // Both replicas' Redis connections are up before the first DPoP request (for the
    // child process: a fresh proof passes there).
    const until = Date.now() + 10_000;
    while (a.gw.redis?.status !== 'ready' || (await send(b, await fresh())).status !== 200) {
      if (Date.now() > until) throw new Error('gateway redis connections not ready');
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  after(async () => {
    await a?.close();
    await b?.stop();
    await redis?.stop();
    await up?.close();
    await idp?.close();
  });

  // The replicas sit behind one public origin: the front proxy tells them scheme and host.
  const send = async (g: Replica, proof: string | null, token = bound, scheme = 'DPoP') => {
    const headers: Record<string, string> = { authorization: `${scheme} ${token}`, 'x-forwarded-proto': 'https', 'x-forwarded-host': 'api.example.com' };
    if (proof) headers.dpop = proof;
    const res = await fetch(g.url + '/api/orders', { headers });
    return { status: res.status, www: res.headers.get('www-authenticate'), retryAfter: res.headers.get('retry-after'), error: ((await res.json()) as { error: string }).error };
  };
  const fresh = () => client.proof({ htm: 'GET', htu: `${PUBLIC}/api/orders`, token: bound });

  test('a proof used at one replica is refused at the other (and at the first)', async () => {
    const proof = await fresh();
    assert.equal((await send(a, proof)).status, 200);
    const r = await send(b, proof);
    assert.deepEqual([r.status, r.error, r.www], [401, 'invalid_dpop_proof',
      'DPoP error="invalid_dpop_proof", algs="ES256 EdDSA RS256 PS256", error_description="The DPoP proof was already used"']);
    assert.equal((await send(a, proof)).status, 401);
    assert.equal((await send(b, await fresh())).status, 200, 'a fresh proof passes at the second replica');
  });

  test('entries expire with the proof window (SET NX PX)', async () => {
    const probe = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    try {
      await probe.connect();
      const keys = await probe.keys('tokengate:dpop:*');
      assert.ok(keys.length >= 2, `keys: ${keys.length}`);
      const ttl = await probe.pttl(keys[0]);
      assert.ok(ttl > 0 && ttl <= (60 + 2 * 5) * 1000 + 1000, `pttl ${ttl}`);
    } finally {
      probe.disconnect();
    }
  });

  test('Redis down: DPoP requests get 503 with Retry-After (fail closed); bearer tokens still pass; back up: DPoP passes again', async () => {
    await redis.stop();
    const r = await send(a, await fresh());
    assert.deepEqual([r.status, r.error, r.www], [503, 'temporarily_unavailable', null]);
    assert.ok(Number(r.retryAfter) >= 1);
    assert.equal((await send(b, await fresh())).status, 503);
    assert.equal((await send(a, null, plain, 'Bearer')).status, 200, 'an unbound bearer token does not need the store');
    const text = await (await fetch(a.adminUrl + '/metrics')).text();
    assert.match(text, /tokengate_dpop_replay_store_errors_total\{store="redis"\} [1-9]/);
    assert.match(text, /tokengate_requests_total\{route="api",outcome="denied",reason="replay_store_unavailable",status_class="5xx"\} [1-9]/);

    redis = await startRedis(redis.port);
    const until = Date.now() + 8000;
    let status = 0;
    while (Date.now() < until) {
      status = (await send(a, await fresh())).status;
      if (status === 200) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(status, 200, 'reconnected after Redis came back');
  });
});

describe('replayStore: redis with a password (requirepass, as deploy/redis runs it)', { skip }, () => {
  let r: TestRedis; let good: TestGateway; let bad: TestGateway; let i2: TestIdp; let c2: DpopClient; let t2: string; let up2: EchoUpstream;
  before(async () => {
    [i2, r, c2, up2] = await Promise.all([startIdp(), startRedis(undefined, { password: 's3cr3t-hex' }), dpopClient(), startUpstream()]);
    const yaml = (url: string) => `
server:
  dpop: { replayStore: redis }
  redis: { url: "${url}", commandTimeoutMs: 300 }
issuers:
  - { id: idp, issuer: ${i2.issuer}, jwksUri: ${i2.jwksUri}, audiences: [${IDP_RESOURCES.es256}] }
routes:
  - { id: api, match: { pathPrefix: /api }, upstream: ${up2.url}, auth: { mode: jwt } }
`;
    [good, bad] = await Promise.all([
      startGateway(yaml('${REDIS_URL}'), { env: { REDIS_URL: `redis://:s3cr3t-hex@127.0.0.1:${r.port}` } }),
      startGateway(yaml(`redis://:wrong@127.0.0.1:${r.port}`)),
    ]);
    t2 = await i2.token({ resource: IDP_RESOURCES.es256, dpop: (htm, htu) => c2.proof({ htm, htu }) });
    const until = Date.now() + 5000;
    while (good.gw.redis?.status !== 'ready') {
      if (Date.now() > until) throw new Error('redis connection not ready');
      await new Promise((res) => setTimeout(res, 20));
    }
  });
  after(async () => {
    await good?.close();
    await bad?.close();
    await r?.stop();
    await up2?.close();
    await i2?.close();
  });

  test('the right password from ${REDIS_URL} works; a wrong one fails closed (503)', async () => {
    const go = async (g: TestGateway) => (await fetch(`${g.url}/api/x`, {
      headers: { authorization: `DPoP ${t2}`, dpop: await c2.proof({ htm: 'GET', htu: `${g.url}/api/x`, token: t2 }) },
    })).status;
    assert.equal(await go(good), 200);
    assert.equal(await go(bad), 503);
  });
});
