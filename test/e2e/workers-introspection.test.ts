/**
 * `server.workers: 2` with introspection: connections are spread over the workers, each
 * with its own cache, but their introspection requests go through the primary, which
 * sends one per token and shares the answer while it may be cached. Against the real
 * oidc-provider (opaque tokens) behind a counting relay, with the real CLI.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { IDP_CLIENT, IDP_RESOURCES, startIdp, type TestIdp } from '../helpers/idp.js';
import { startRelay, type Relay } from '../helpers/relay.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startCliReplica, type Replica } from '../helpers/cli.js';
import { startMockIntrospection, type MockIntrospection } from '../helpers/mock-introspection.js';

const INTROSPECT = '/token/introspection';
let idp: TestIdp; let relay: Relay; let up: EchoUpstream;
const gateways: Array<Replica & { stop(): Promise<void> }> = [];

before(async () => {
  idp = await startIdp();
  relay = await startRelay(idp.issuer);
  up = await startUpstream();
});
after(async () => {
  for (const g of gateways) await g.stop();
  await up?.close(); await relay?.close(); await idp?.close();
});

async function gateway(cacheTtlSec: number, negativeCacheTtlSec: number, endpoint = `${relay.url}${INTROSPECT}`): Promise<Replica> {
  const g = await startCliReplica(`
server:
  workers: 2
  shutdownGraceSec: 1
issuers:
  - id: idp
    issuer: ${idp.issuer}
    introspection:
      endpoint: ${endpoint}
      clientId: ${IDP_CLIENT.clientId}
      clientSecret: "${IDP_CLIENT.clientSecret}"
      cacheTtlSec: ${cacheTtlSec}
      negativeCacheTtlSec: ${negativeCacheTtlSec}
routes:
  - id: orders
    match: { pathPrefix: /orders }
    upstream: ${up.url}
    auth: { mode: introspection, audiences: [${IDP_RESOURCES.opaque}] }
`);
  gateways.push(g);
  return g;
}

/** One request on its own connection (the cluster hands connections to the workers in turn). */
function send(g: Replica, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get(`${g.url}/orders/1`, { agent: false, headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    }).on('error', reject);
  });
}

const calls = () => relay.count(INTROSPECT);

test('one introspection call per token for the pod: sequential and concurrent requests on every worker', { timeout: 60_000 }, async () => {
  const g = await gateway(60, 30);
  const token = await idp.token({ resource: IDP_RESOURCES.opaque, scope: 'orders:read' });
  const before = calls();
  for (let i = 0; i < 6; i++) assert.equal(await send(g, token), 200, `sequential ${i}`);
  assert.equal(calls() - before, 1, 'six requests over two workers: one call');

  const other = await idp.token({ resource: IDP_RESOURCES.opaque, scope: 'orders:read' });
  const mid = calls();
  const statuses = await Promise.all(Array.from({ length: 20 }, () => send(g, other)));
  assert.deepEqual(statuses, Array(20).fill(200));
  assert.equal(calls() - mid, 1, 'twenty concurrent requests over two workers: one call');

  // The metric counts calls to the IdP, not answers shared between workers.
  const metrics = await (await fetch(`${g.adminUrl}/metrics`)).text();
  assert.match(metrics, /^tokengate_introspection_requests_total\{issuer="idp",result="active"\} 2$/m);
});

test('cacheTtlSec 0: nothing is shared after the fact (revocation is seen at once on every worker)', { timeout: 60_000 }, async () => {
  const g = await gateway(0, 0);
  const token = await idp.token({ resource: IDP_RESOURCES.opaque, scope: 'orders:read' });
  const before = calls();
  for (let i = 0; i < 4; i++) assert.equal(await send(g, token), 200);
  assert.equal(calls() - before, 4, 'one call per request');
  await idp.revoke(token);
  assert.equal(await send(g, token), 401);
  assert.equal(await send(g, token), 401);
});

test('a failing endpoint: one call for concurrent requests on both workers, counted once, never reused after', { timeout: 60_000 }, async () => {
  const mock: MockIntrospection = await startMockIntrospection();
  try {
    mock.answer = () => ({ status: 500, body: { error: 'boom' }, delayMs: 300 });
    const g = await gateway(60, 30, mock.endpoint);
    const statuses = await Promise.all(Array.from({ length: 10 }, () => send(g, 'opaque-token-1')));
    assert.deepEqual(statuses, Array(10).fill(503));
    assert.equal(mock.requests.length, 1, 'joined in flight across workers');
    const metrics = await (await fetch(`${g.adminUrl}/metrics`)).text();
    assert.match(metrics, /^tokengate_introspection_requests_total\{issuer="idp",result="error"\} 1$/m);
    // Failures are never cached or shared after the fact: the next request asks again.
    assert.equal(await send(g, 'opaque-token-1'), 503);
    assert.equal(mock.requests.length, 2);
  } finally {
    await mock.close();
  }
});
