/**
 * Opaque tokens by RFC 7662 introspection, against the real oidc-provider (opaque tokens
 * for urn:tokengate:opaque) with a counting relay between the gateway and the provider.
 * Cache lifetimes are crossed by advancing the gateway's injected clock, not by sleeping.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { IDP_CLIENT, IDP_CLIENT_POST, IDP_RESOURCES, startIdp, type TestIdp } from '../helpers/idp.js';
import { startRelay, type Relay } from '../helpers/relay.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

let idp: TestIdp; let relay: Relay; let up: EchoUpstream;
const open: TestGateway[] = [];
const INTROSPECT = '/token/introspection';
const env = { INTROSPECTION_SECRET: IDP_CLIENT.clientSecret };

before(async () => {
  idp = await startIdp();
  relay = await startRelay(idp.issuer);
  up = await startUpstream();
});
after(async () => {
  for (const g of open) await g.close();
  await up?.close(); await relay?.close(); await idp?.close();
});

/** A frozen clock for the gateway's `now`, moved only by `offset` (real time does not leak in). */
function clock() {
  const start = Date.now();
  const c = { offset: 0, now: () => start + c.offset };
  return c;
}

interface Opts {
  issuer?: string;
  cacheTtlSec?: number;
  negativeCacheTtlSec?: number;
  mode?: string;
  clientId?: string;
  authMethod?: string;
  now?: () => number;
  secret?: string;
}
function issuerYaml(o: Opts): string {
  return o.issuer ?? `
  - id: idp
    issuer: ${idp.issuer}
    introspection:
      endpoint: ${relay.url}${INTROSPECT}
      clientId: ${o.clientId ?? IDP_CLIENT.clientId}
      clientSecret: \${INTROSPECTION_SECRET}
      authMethod: ${o.authMethod ?? 'client_secret_basic'}
      cacheTtlSec: ${o.cacheTtlSec ?? 60}
      negativeCacheTtlSec: ${o.negativeCacheTtlSec ?? 5}`;
}
async function gateway(o: Opts = {}): Promise<TestGateway> {
  const g = await startGateway(`
issuers:${issuerYaml(o)}
routes:
  - id: orders
    match: { pathPrefix: /orders }
    upstream: ${up.url}
    auth: { mode: ${o.mode ?? 'introspection'}, audiences: [${IDP_RESOURCES.opaque}, ${IDP_RESOURCES.rs256}], scopes: { allOf: [orders:read] } }
    forward: { headers: { x-auth-client: client_id, x-auth-scopes: scope, x-auth-issuer: iss }, claimsHeader: x-auth-claims }
  - id: admin
    match: { pathPrefix: /admin }
    upstream: ${up.url}
    auth: { mode: introspection, scopes: { allOf: [admin] } }
`, { env: o.secret ? { INTROSPECTION_SECRET: o.secret } : env, now: o.now });
  open.push(g);
  return g;
}
const opaque = (scope = 'orders:read') => idp.token({ resource: IDP_RESOURCES.opaque, scope });
const get = (g: TestGateway, path: string, token?: string) =>
  fetch(g.url + path, { headers: token ? { authorization: `Bearer ${token}` } : {} });
const calls = () => relay.count(INTROSPECT);
const INACTIVE_CHALLENGE = 'Bearer realm="tokengate", error="invalid_token", error_description="The access token is not active"';

async function expectUnavailable(r: Response): Promise<void> {
  assert.equal(r.status, 503);
  assert.equal(r.headers.get('retry-after'), '2');
  assert.equal(r.headers.get('www-authenticate'), null);
  assert.equal((await r.json() as { error: string }).error, 'temporarily_unavailable');
}

test('happy path: an opaque token is introspected once and its identity forwarded', async () => {
  const g = await gateway();
  const token = await opaque('orders:read');
  const before = calls();
  up.reset();
  const r = await get(g, '/orders/1', token);
  assert.equal(r.status, 200, await r.clone().text());
  assert.equal(calls() - before, 1);
  const seen = up.requests.at(-1)!;
  assert.equal(seen.url, '/orders/1');
  assert.equal(seen.headers['x-auth-client'], 'app');
  assert.equal(seen.headers['x-auth-scopes'], 'orders:read');
  assert.equal(seen.headers['x-auth-issuer'], idp.issuer);
  assert.equal(seen.headers.authorization, undefined, 'the token is not forwarded (authorization: strip)');
  const claims = JSON.parse(Buffer.from(String(seen.headers['x-auth-claims']), 'base64url').toString('utf8'));
  assert.equal(claims.aud, IDP_RESOURCES.opaque);
  assert.equal(claims.active, true);

  // Same policy as JWTs: a missing scope is 403 insufficient_scope with the route's scopes.
  const f = await get(g, '/admin', token);
  assert.equal(f.status, 403);
  assert.equal(f.headers.get('www-authenticate'),
    'Bearer realm="tokengate", error="insufficient_scope", error_description="The access token lacks a required scope", scope="admin"');
  assert.equal(calls() - before, 1, 'the cached answer served the second route too');
});

test('client_secret_post works; a wrong client secret is 503, never 401', async () => {
  const g = await gateway({ clientId: IDP_CLIENT_POST.clientId, authMethod: 'client_secret_post' });
  const token = await opaque();
  assert.equal((await get(g, '/orders', token)).status, 200);
  // A wrong secret: the provider refuses the client (401 invalid_client): no answer, 503.
  const wrong = await gateway({ secret: 'not-the-secret' });
  const before = calls();
  await expectUnavailable(await get(wrong, '/orders', await opaque()));
  assert.equal(calls() - before, 1);
});

test('endpoint from discovery', async () => {
  const g = await gateway({ issuer: `
  - id: idp
    issuer: ${idp.issuer}
    discovery: true
    introspection:
      clientId: ${IDP_CLIENT.clientId}
      clientSecret: \${INTROSPECTION_SECRET}` });
  const before = idp.hits.get(INTROSPECT) ?? 0;
  assert.equal((await get(g, '/orders', await opaque())).status, 200);
  assert.equal((idp.hits.get(INTROSPECT) ?? 0) - before, 1);
});

test('inactive: 401 invalid_token, cached negatively for negativeCacheTtlSec and no longer', async () => {
  const c = clock();
  const g = await gateway({ now: c.now, negativeCacheTtlSec: 5 });
  const token = 'not-issued-by-anyone-0123456789abcdef';
  const before = calls();
  for (let i = 0; i < 3; i++) {
    const r = await get(g, '/orders', token);
    assert.equal(r.status, 401);
    assert.equal(r.headers.get('www-authenticate'), INACTIVE_CHALLENGE);
    assert.equal((await r.json() as { error: string }).error, 'invalid_token');
  }
  assert.equal(calls() - before, 1, 'answered from the negative cache');
  c.offset += 4_900;
  assert.equal((await get(g, '/orders', token)).status, 401);
  assert.equal(calls() - before, 1);
  c.offset += 100;
  assert.equal((await get(g, '/orders', token)).status, 401);
  assert.equal(calls() - before, 2, 'asked again once negativeCacheTtlSec passed');
  const metrics = await (await fetch(g.adminUrl + '/metrics')).text();
  assert.match(metrics, /tokengate_cache_requests_total\{cache="introspection",result="negative_hit"\} 3\n/);
  assert.match(metrics, /tokengate_cache_requests_total\{cache="introspection",result="miss"\} 2\n/);
  assert.match(metrics, /tokengate_introspection_requests_total\{issuer="idp",result="inactive"\} 2\n/);
  assert.match(metrics, /tokengate_requests_total\{route="orders",outcome="denied",reason="inactive",status_class="4xx"\} 5\n/);
});

test('caching: N requests make 1 call; 50 concurrent requests make 1 call (single-flight)', async () => {
  const g = await gateway();
  const token = await opaque();
  let before = calls();
  for (let i = 0; i < 10; i++) assert.equal((await get(g, '/orders', token)).status, 200);
  assert.equal(calls() - before, 1);

  const fresh = await opaque();
  before = calls();
  const all = await Promise.all(Array.from({ length: 50 }, () => get(g, '/orders', fresh)));
  assert.deepEqual([...new Set(all.map((r) => r.status))], [200]);
  await Promise.all(all.map((r) => r.arrayBuffer()));
  assert.equal(calls() - before, 1);

  const metrics = await (await fetch(g.adminUrl + '/metrics')).text();
  assert.match(metrics, /tokengate_introspection_requests_total\{issuer="idp",result="active"\} 2\n/);
  // Concurrent requests arriving after the call finished are hits; the others shared the call.
  const hits = Number(/tokengate_cache_requests_total\{cache="introspection",result="hit"\} (\d+)\n/.exec(metrics)?.[1]);
  const misses = Number(/tokengate_cache_requests_total\{cache="introspection",result="miss"\} (\d+)\n/.exec(metrics)?.[1]);
  assert.equal(hits + misses, 60);
  assert.ok(hits >= 9 && misses >= 2, `hits ${hits}, misses ${misses}`);
  assert.match(metrics, /tokengate_introspection_duration_seconds_count\{issuer="idp"\} 2\n/);
});

test('revocation with caching: served until cacheTtlSec, then refused', async () => {
  const c = clock();
  const g = await gateway({ now: c.now, cacheTtlSec: 30 });
  const token = await opaque();
  assert.equal((await get(g, '/orders', token)).status, 200);
  await idp.revoke(token);
  c.offset += 29_000;
  assert.equal((await get(g, '/orders', token)).status, 200, 'documented: a revoked token serves until its cache entry expires');
  c.offset += 1_000;
  const r = await get(g, '/orders', token);
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('www-authenticate'), INACTIVE_CHALLENGE);
});

test('revocation with cacheTtlSec: 0: refused at once', async () => {
  const g = await gateway({ cacheTtlSec: 0 });
  const token = await opaque();
  const before = calls();
  assert.equal((await get(g, '/orders', token)).status, 200);
  assert.equal((await get(g, '/orders', token)).status, 200);
  assert.equal(calls() - before, 2, 'every request asks the provider');
  await idp.revoke(token);
  assert.equal((await get(g, '/orders', token)).status, 401);
});

test('provider down: 503 + Retry-After; a cached active answer still serves; recovery is immediate', async () => {
  const g = await gateway();
  const cached = await opaque();
  const uncached = await opaque();
  assert.equal((await get(g, '/orders', cached)).status, 200);
  relay.down = true;
  try {
    await expectUnavailable(await get(g, '/orders', uncached));
    await expectUnavailable(await get(g, '/orders', uncached));
    assert.equal((await get(g, '/orders', cached)).status, 200);
    assert.equal((await get(g, '/orders', 'never-seen-token')).status, 503, 'not 401: the provider did not say inactive');
  } finally {
    relay.down = false;
  }
  assert.equal((await get(g, '/orders', uncached)).status, 200, 'failures are not cached');
  const metrics = await (await fetch(g.adminUrl + '/metrics')).text();
  assert.match(metrics, /tokengate_introspection_requests_total\{issuer="idp",result="error"\} 3\n/);
  assert.match(metrics, /tokengate_requests_total\{route="orders",outcome="denied",reason="introspection_unavailable",status_class="5xx"\} 3\n/);
});

test('jwt_or_introspection: a JWT is verified locally, an opaque token introspected', async () => {
  const g = await gateway({ mode: 'jwt_or_introspection', issuer: `
  - id: idp
    issuer: ${idp.issuer}
    jwksUri: ${idp.jwksUri}
    introspection:
      endpoint: ${relay.url}${INTROSPECT}
      clientId: ${IDP_CLIENT.clientId}
      clientSecret: \${INTROSPECTION_SECRET}` });
  await g.ready();
  const jwt = await idp.token({ resource: IDP_RESOURCES.rs256, scope: 'orders:read' });
  const before = calls();
  up.reset();
  assert.equal((await get(g, '/orders', jwt)).status, 200);
  assert.equal(up.requests.at(-1)!.headers['x-auth-client'], 'app');
  assert.equal(calls() - before, 0, 'no introspection call for a JWT');
  relay.down = true;
  try {
    assert.equal((await get(g, '/orders', jwt)).status, 200, 'JWTs do not depend on the introspection endpoint');
  } finally {
    relay.down = false;
  }
  assert.equal((await get(g, '/orders', await opaque())).status, 200);
  assert.equal(calls() - before, 1);
  // Three dot-separated parts whose header has no `alg` is not a JWT: it goes to introspection
  // (oidc-provider answers 400 for anything JWT-shaped, which is no answer: 503).
  const notJwt = `${Buffer.from('{"typ":"x"}').toString('base64url')}.e30.sig`;
  assert.equal((await get(g, '/orders', notJwt)).status, 503);
  assert.equal(calls() - before, 2);
});

test('readiness: an introspection-only issuer does not block /readyz, even when down', async () => {
  relay.down = true;
  try {
    const g = await gateway();
    const r = await fetch(g.adminUrl + '/readyz');
    assert.equal(r.status, 200);
  } finally {
    relay.down = false;
  }
});
