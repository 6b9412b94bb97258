import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

let iss: MockIssuer; let up: EchoUpstream; let gw: TestGateway;
before(async () => {
  iss = await startMockIssuer({ algs: ['RS256', 'ES256', 'EdDSA'] });
  up = await startUpstream();
  gw = await startGateway(`
issuers:
  - id: a
    issuer: ${iss.issuer}
    jwksUri: ${iss.jwksUri}
    audiences: [api]
    jwks: { cooldownSec: 1 }
routes:
  - id: pub
    match: { pathPrefix: /pub }
    upstream: ${up.url}
    auth: { mode: none }
  - id: orders
    match: { pathPrefix: /orders }
    upstream: ${up.url}
    auth: { mode: jwt, scopes: { allOf: [orders:read] } }
    forward: { headers: { x-auth-subject: sub, x-auth-scopes: scope } }
`);
  await gw.ready();
});
after(async () => { await gw?.close(); await up?.close(); await iss?.close(); });

test('smoke', async () => {
  for (const key of iss.keys) {
    const t = await iss.sign({ key });
    const r = await fetch(gw.url + '/orders/1?q=a%2Fb', { headers: { authorization: `Bearer ${t}`, 'x-auth-subject': 'evil', 'X_Auth_Scopes': 'x' } });
    assert.equal(r.status, 200, key.alg + ' ' + await r.text());
  }
  const last = up.requests.at(-1)!;
  assert.equal(last.url, '/orders/1?q=a%2Fb');
  assert.equal(last.headers['x-auth-subject'], 'user-1');
  assert.equal(last.headers['x-auth-scopes'], 'orders:read');
  assert.equal(last.headers['x_auth_scopes'], undefined);
  const cases: Array<[string, RequestInit, number]> = [
    ['/orders/1', {}, 401],
    ['/orders/1', { headers: { authorization: 'Bearer ' + await iss.sign({ claims: { exp: Math.floor(Date.now()/1000) - 100 } }) } }, 401],
    ['/orders/1', { headers: { authorization: 'Bearer ' + await iss.sign({ claims: { aud: 'other' } }) } }, 401],
    ['/orders/1', { headers: { authorization: 'Bearer ' + await iss.sign({ claims: { scope: 'x' } }) } }, 403],
    ['/orders/1', { headers: { authorization: 'Bearer ' + await iss.sign({ header: { kid: 'nope' } }) } }, 401],
    ['/pub/%2e%2e/orders/1', {}, 401],
    ['/pub/x', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":1}' }, 200],
    ['/orders/1', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'access_token=abc' }, 400],
  ];
  for (const [path, init, status] of cases) {
    const r = await fetch(gw.url + path, init);
    const body = await r.text();
    assert.equal(r.status, status, `${path} ${body} ${r.headers.get('www-authenticate')}`);
  }
  console.log(up.requests.at(-1));
});
test('bodies', async () => {
  up.reset();
  let r = await fetch(gw.url + '/pub/x', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":1}' });
  assert.equal(r.status, 200);
  assert.equal(up.requests.at(-1)!.body, '{"a":1}');
  r = await fetch(gw.url + '/pub/x', { method: 'PUT', body: new Uint8Array([1,2,3]) });
  assert.equal(r.status, 200, await r.text());
  assert.equal(up.requests.at(-1)!.body.length, 3);
  r = await fetch(gw.url + '/pub/x', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'a=1&b=2' });
  assert.equal(r.status, 200, await r.text());
  assert.equal(up.requests.at(-1)!.body, 'a=1&b=2');
  console.log(up.requests.map(q => [q.headers['content-type'], q.headers['content-length'], q.headers['transfer-encoding']]));
});
