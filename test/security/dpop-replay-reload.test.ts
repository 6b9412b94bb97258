/**
 * RFC 9449 §11.1: a proof `jti` is accepted once while the proof could pass the `iat`
 * check. A config reload must not reset that memory: a proof captured just before a
 * reload stays refused after it. The gateway used to build a fresh in-memory replay store
 * when `dpop.replayCacheSize` changed, and another one when `replayStore` switched between
 * memory and redis, forgetting every id seen so far, so a proof used seconds before the
 * reload passed again after it (the attacker needs no key: the captured token and proof
 * are replayed byte for byte). A longer `proofMaxAgeSec` did the same once the ids stored
 * under the old window had expired.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { keepReplayProtection, reloadOnce } from '../../src/reload.js';
import { compileConfig } from '../../src/config/compile.js';
import { parseConfig } from '../../src/config/load.js';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { dpopClient, type DpopClient } from '../helpers/dpop.js';
import { redisAvailable, startRedis, type TestRedis } from '../helpers/redis.js';

let iss: MockIssuer; let up: EchoUpstream; let client: DpopClient; let redis: TestRedis | null = null;
const gws: TestGateway[] = [];

function yaml(dpop: string): string {
  return `
server:
  dpop: { ${dpop} }
  redis: { url: "${redis?.url ?? 'redis://127.0.0.1:6379'}", commandTimeoutMs: 300 }
issuers:
  - { id: a, issuer: ${iss.issuer}, jwksUri: ${iss.jwksUri}, audiences: [api], clockToleranceSec: 0 }
routes:
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt }
`;
}

before(async () => {
  [iss, up, client] = await Promise.all([startMockIssuer({ algs: ['ES256'] }), startUpstream(), dpopClient()]);
  if (redisAvailable()) redis = await startRedis();
});
after(async () => {
  for (const g of gws) await g.close();
  await redis?.stop();
  await up?.close();
  await iss?.close();
});

async function gateway(dpop: string): Promise<TestGateway> {
  const g = await startGateway(yaml(dpop));
  gws.push(g);
  await g.ready();
  return g;
}

/** Waits (bounded) until the gateway's Redis connection, if it has one, is ready. */
async function redisReady(g: TestGateway): Promise<void> {
  const until = Date.now() + 5000;
  while (g.gw.redis && g.gw.redis.status !== 'ready') {
    if (Date.now() > until) throw new Error('redis not ready');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function reloadTo(g: TestGateway, dpop: string): Promise<void> {
  writeFileSync(g.file, yaml(dpop));
  assert.equal(await reloadOnce(g.gw, g.file), true, 'reload taken');
  await redisReady(g);
}

/** Sends the same captured token + proof; returns status and error description. */
async function replay(g: TestGateway, token: string, proof: string) {
  const r = await fetch(g.url + '/api/x', { headers: { authorization: `DPoP ${token}`, dpop: proof } });
  const body = r.status === 200 ? null : (await r.json() as { error_description: string }).error_description;
  return { status: r.status, body };
}

const REPLAY = { status: 401, body: 'The DPoP proof was already used' };

test('changing replayCacheSize by a reload does not forget the proofs already seen', async () => {
  const g = await gateway('replayCacheSize: 1000');
  const token = await iss.sign({ claims: { cnf: { jkt: client.jkt } } });
  const proof = await client.proof({ htm: 'GET', htu: `${g.url}/api/x`, token });
  assert.equal((await replay(g, token, proof)).status, 200);
  assert.deepEqual(await replay(g, token, proof), REPLAY, 'control: replay refused before the reload');
  await reloadTo(g, 'replayCacheSize: 2000');
  up.reset();
  assert.deepEqual(await replay(g, token, proof), REPLAY, 'the same proof passed again after the reload');
  assert.equal(up.requests.length, 0);
});

describe('switching the replay store by a reload', { skip: redisAvailable() ? false : 'redis-server is not installed' }, () => {
  for (const [from, to] of [['memory', 'redis'], ['redis', 'memory']]) {
    test(`${from} → ${to}: a proof seen by the ${from} store is still refused`, async () => {
      const g = await gateway(`replayStore: ${from}`);
      await redisReady(g);
      const token = await iss.sign({ claims: { cnf: { jkt: client.jkt }, sub: `${from}-${to}` } });
      const proof = await client.proof({ htm: 'GET', htu: `${g.url}/api/x`, token });
      assert.equal((await replay(g, token, proof)).status, 200);
      await reloadTo(g, `replayStore: ${to}`);
      assert.deepEqual(await replay(g, token, proof), REPLAY);
    });
  }
});

test('a longer proofMaxAgeSec waits for a restart: a proof whose id has expired under the old window stays refused', async () => {
  // The gateway's clock: real time plus an offset the test advances (no sleeping).
  let offsetMs = 0;
  const g = await startGateway(yaml('proofMaxAgeSec: 5'), { now: () => Date.now() + offsetMs });
  gws.push(g);
  await g.ready();
  const token = await iss.sign({ claims: { cnf: { jkt: client.jkt }, sub: 'window' } });
  const proof = await client.proof({ htm: 'GET', htu: `${g.url}/api/x`, token });
  assert.equal((await replay(g, token, proof)).status, 200);
  // Its id is kept for 5 s + 2 × 0 s tolerance + 1 s; 8 s later only the iat check stands.
  offsetMs = 8000;
  await reloadTo(g, 'proofMaxAgeSec: 600');
  up.reset();
  const r = await replay(g, token, proof);
  assert.equal(r.status, 401, `the proof passed again under the longer window: ${JSON.stringify(r)}`);
  assert.equal(up.requests.length, 0);
  // A fresh proof still passes: the rest of the reload applied.
  const fresh = await client.proof({ htm: 'GET', htu: `${g.url}/api/x`, token, iat: Math.floor((Date.now() + offsetMs) / 1000) });
  assert.equal((await replay(g, token, fresh)).status, 200);
});

test('keepReplayProtection keeps the store, a longer window and the Redis holding the ids; a shorter window applies', () => {
  const cfg = (dpop: string, url = 'redis://127.0.0.1:6379') => compileConfig(parseConfig(`
server:
  dpop: { ${dpop} }
  redis: { url: "${url}" }
issuers:
  - { id: a, issuer: https://i.test/, jwksUri: https://i.test/jwks, audiences: [api] }
routes:
  - { id: api, match: { pathPrefix: /api }, upstream: http://127.0.0.1:1, auth: { mode: jwt } }
`, 'c.yaml', {}));
  let r = keepReplayProtection(cfg('replayStore: memory, proofMaxAgeSec: 60'), cfg('replayStore: redis, proofMaxAgeSec: 120'), new Map());
  assert.deepEqual(r.kept, ['server.dpop.replayStore', 'server.dpop.proofMaxAgeSec (longer)']);
  assert.equal(r.config.server.dpop.replayStore, 'memory');
  assert.equal(r.config.server.dpop.proofMaxAgeSec, 60);
  r = keepReplayProtection(cfg('replayStore: redis', 'redis://a:6379'), cfg('replayStore: redis, proofMaxAgeSec: 30, replayCacheSize: 5', 'redis://b:6379'), new Map());
  assert.deepEqual(r.kept, ['server.redis.url (it holds the DPoP replay ids)']);
  assert.equal(r.config.server.redis.url, 'redis://a:6379');
  assert.equal(r.config.server.dpop.proofMaxAgeSec, 30, 'a shorter window applies');
  assert.equal(r.config.server.dpop.replayCacheSize, 5);
  r = keepReplayProtection(cfg('replayStore: memory', 'redis://a:6379'), cfg('replayStore: memory', 'redis://b:6379'), new Map());
  assert.deepEqual(r.kept, [], 'with the memory store, the Redis URL applies');
  assert.equal(r.config.server.redis.url, 'redis://b:6379');
});
