/**
 * Cache confusion across issuers: an introspection decision cached for one issuer must
 * never be reused for another, and one issuer's endpoint cannot vouch for another's tokens.
 * Issuer A is the real oidc-provider (behind a counting relay); issuer B is a programmable
 * introspection endpoint.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { IDP_CLIENT, IDP_RESOURCES, startIdp, type TestIdp } from '../helpers/idp.js';
import { startMockIntrospection, type MockIntrospection } from '../helpers/mock-introspection.js';
import { startRelay, type Relay } from '../helpers/relay.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

const ISS_B = 'https://b.example';
let idp: TestIdp; let relay: Relay; let b: MockIntrospection; let up: EchoUpstream; let gw: TestGateway;
before(async () => {
  idp = await startIdp();
  relay = await startRelay(idp.issuer);
  b = await startMockIntrospection();
  up = await startUpstream();
  gw = await startGateway(`
issuers:
  - id: a
    issuer: ${idp.issuer}
    introspection: { endpoint: "${relay.url}/token/introspection", clientId: ${IDP_CLIENT.clientId}, clientSecret: "${IDP_CLIENT.clientSecret}" }
  - id: b
    issuer: ${ISS_B}
    introspection: { endpoint: "${b.endpoint}", clientId: gw, clientSecret: s, negativeCacheTtlSec: 60 }
routes:
  - { id: only-a, match: { pathPrefix: /a }, upstream: "${up.url}", auth: { mode: introspection, issuers: [a] }, forward: { headers: { x-auth-issuer: iss } } }
  - { id: only-b, match: { pathPrefix: /b }, upstream: "${up.url}", auth: { mode: introspection, issuers: [b] }, forward: { headers: { x-auth-issuer: iss } } }
  - { id: b-then-a, match: { pathPrefix: /ba }, upstream: "${up.url}", auth: { mode: introspection, issuers: [b, a] }, forward: { headers: { x-auth-issuer: iss } } }
`);
});
after(async () => {
  await gw?.close(); await up?.close(); await b?.close(); await relay?.close(); await idp?.close();
});
const get = (path: string, token: string) => fetch(gw.url + path, { headers: { authorization: `Bearer ${token}` } });

test('an active answer cached for issuer A is not reused for issuer B', async () => {
  const token = await idp.token({ resource: IDP_RESOURCES.opaque });
  b.answer = () => ({ body: { active: false } });
  assert.equal((await get('/a', token)).status, 200);
  assert.equal(relay.count('/token/introspection'), 1);
  const r = await get('/b', token);
  assert.equal(r.status, 401, 'B decides for B, whatever A said');
  assert.equal(b.requests.length, 1, 'B was asked');

  // B's negative entry and A's positive one live side by side: [b, a] asks neither again.
  up.reset();
  assert.equal((await get('/ba', token)).status, 200);
  assert.equal(up.requests[0].headers['x-auth-issuer'], idp.issuer);
  assert.equal(b.requests.length, 1);
  assert.equal(relay.count('/token/introspection'), 1);
});

test("issuer B's endpoint cannot vouch for a token naming issuer A", async () => {
  b.answer = () => ({ body: { active: true, iss: idp.issuer, exp: Math.floor(Date.now() / 1000) + 300 } });
  const r = await get('/b', 'forged-by-b-0123456789');
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="tokengate", error="invalid_token", error_description="The token issuer is not accepted"');
});
