/**
 * `introspection.cacheStore: redis`: a cached answer may only be reused for the
 * introspection setup that produced it. The Redis key is SHA-256(issuer id, token): the
 * issuer id is a local config name, so
 *
 * - a reload that points issuer `corp` at another IdP / introspection client keeps
 *   accepting what the old one said (the memory store starts empty after such a reload:
 *   the issuer runtime is rebuilt), and
 * - two deployments sharing one Redis (the README suggests a managed Redis) whose configs
 *   both name their issuer `corp` read each other's answers: a token active at IdP A is
 *   accepted by the gateway of IdP B, which would have answered `active: false`.
 *
 * RFC 7662 makes `iss` and `aud` optional in answers, and tokengate checks them only when
 * present, so the answer itself cannot catch the mix-up. Fail closed: an answer counts
 * only for the issuer, endpoint and client that gave it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { reloadOnce } from '../../src/reload.js';
import { startMockIntrospection, type MockIntrospection } from '../helpers/mock-introspection.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { redisAvailable, startRedis, type TestRedis } from '../helpers/redis.js';

const skip = redisAvailable() ? false : 'redis-server is not installed';

let idpA: MockIntrospection; let idpB: MockIntrospection; let up: EchoUpstream; let redis: TestRedis;
const gws: TestGateway[] = [];

/** IdP A knows the token (no `iss`/`aud` in its answer, as RFC 7662 allows); IdP B does not. */
function yaml(endpoint: string, issuer: string, clientId: string, store: 'redis' | 'memory'): string {
  return `
server:
  redis: { url: "${redis.url}", commandTimeoutMs: 300 }
issuers:
  - id: corp
    issuer: ${issuer}
    introspection: { endpoint: "${endpoint}", clientId: ${clientId}, clientSecret: s, cacheTtlSec: 60, cacheStore: ${store} }
routes:
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: introspection }
    forward: { headers: { x-auth-subject: sub } }
`;
}

async function start(text: string): Promise<TestGateway> {
  const g = await startGateway(text);
  gws.push(g);
  const until = Date.now() + 5000;
  while (g.gw.redis && g.gw.redis.status !== 'ready') {
    if (Date.now() > until) throw new Error('gateway redis connection not ready');
    await new Promise((r) => setTimeout(r, 20));
  }
  return g;
}

const get = (g: TestGateway, token: string) => fetch(g.url + '/api/x', { headers: { authorization: `Bearer ${token}` } });

describe('introspection answers cached in Redis stay with the setup that obtained them', { skip }, () => {
  before(async () => {
    [idpA, idpB, up, redis] = await Promise.all([startMockIntrospection(), startMockIntrospection(), startUpstream(), startRedis()]);
    idpA.answer = () => ({ body: { active: true, sub: 'alice-at-A', exp: Math.floor(Date.now() / 1000) + 300 } });
    idpB.answer = () => ({ body: { active: false } });
  });
  after(async () => {
    for (const g of gws) await g.close();
    await redis?.stop();
    await Promise.all([idpA?.close(), idpB?.close(), up?.close()]);
  });

  // memory is the control: a store that never outlives the process always asked the new IdP.
  for (const store of ['memory', 'redis'] as const) {
    test(`${store}: a reload that points issuer corp at another IdP does not keep the old IdP's answers`, async () => {
      const g = await start(yaml(idpA.endpoint, 'https://a.example', 'gw-a', store));
      const token = `opaque-reload-${store}-0123456789abcdef`;
      assert.equal((await get(g, token)).status, 200);
      writeFileSync(g.file, yaml(idpB.endpoint, 'https://b.example', 'gw-b', store));
      assert.equal(await reloadOnce(g.gw, g.file), true);
      const before = idpB.requests.length;
      up.reset();
      const r = await get(g, token);
      assert.equal(r.status, 401, `IdP B must decide after the reload (got ${r.status}, upstream saw ${JSON.stringify(up.requests.map((q) => q.headers['x-auth-subject']))})`);
      assert.equal(idpB.requests.length - before, 1, 'IdP B was asked');
    });
  }

  test('redis: another deployment on the same Redis whose issuer is also called corp does not see IdP A\'s answers', async () => {
    const gA = await start(yaml(idpA.endpoint, 'https://a.example', 'gw-a', 'redis'));
    const gB = await start(yaml(idpB.endpoint, 'https://b.example', 'gw-b', 'redis'));
    const token = 'opaque-tenant-0123456789abcdef';
    assert.equal((await get(gA, token)).status, 200, 'tenant A accepts its own token');
    up.reset();
    const r = await get(gB, token);
    assert.equal(r.status, 401, `tenant B's gateway accepted a token only IdP A knows (upstream saw sub ${JSON.stringify(up.requests.map((q) => q.headers['x-auth-subject']))})`);
  });
});
