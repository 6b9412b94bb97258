/**
 * Issuer confusion: two valid issuers, each route bound to one. A token from issuer B
 * (validly signed by B) is refused on issuer A's route, including after it was accepted
 * and cached on B's own route; a token claiming A's `iss` but signed with B's key (same
 * kid) fails the signature check against A's keys.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { assertDenied, CHALLENGE, DESC } from '../helpers/fixture.js';

let a: MockIssuer; let b: MockIssuer; let up: EchoUpstream; let gw: TestGateway;
before(async () => {
  [a, b, up] = await Promise.all([startMockIssuer(), startMockIssuer(), startUpstream()]);
  gw = await startGateway(`
issuers:
  - { id: a, issuer: ${a.issuer}, jwksUri: ${a.jwksUri}, audiences: [api] }
  - { id: b, issuer: ${b.issuer}, jwksUri: ${b.jwksUri}, audiences: [api] }
routes:
  - { id: ra, match: { pathPrefix: /a }, upstream: ${up.url}, auth: { mode: jwt, issuers: [a] } }
  - { id: rb, match: { pathPrefix: /b }, upstream: ${up.url}, auth: { mode: jwt, issuers: [b] } }
  - { id: both, match: { pathPrefix: /both }, upstream: ${up.url}, auth: { mode: jwt } }
`);
  await gw.ready();
});
after(async () => { await gw?.close(); await up?.close(); await a?.close(); await b?.close(); });

const get = (path: string, token: string) => fetch(gw.url + path, { headers: { authorization: `Bearer ${token}` } });

test('a token of issuer B is refused on issuer A route, before and after being cached on B route', async () => {
  const tb = await b.sign();
  await assertDenied(await get('/a/x', tb), up, 401, CHALLENGE.invalid(DESC.issuer), 'invalid_token', 'B on A, cold');
  const ok = await get('/b/x', tb);
  assert.equal(ok.status, 200);
  await ok.text();
  up.reset();
  await assertDenied(await get('/a/x', tb), up, 401, CHALLENGE.invalid(DESC.issuer), 'invalid_token', 'B on A, cached');
  const both = await get('/both/x', tb);
  assert.equal(both.status, 200, 'a route accepting both issuers takes it');
  await both.text();
  up.reset();
});

test('iss of A with a signature by B key (same kid): 401 bad_signature, never verified with B keys', async () => {
  const forged = await b.sign({ claims: { iss: a.issuer } });
  for (const path of ['/a/x', '/both/x']) {
    await assertDenied(await get(path, forged), up, 401, CHALLENGE.invalid(DESC.bad_signature), 'invalid_token', path);
  }
  await assertDenied(await get('/b/x', forged), up, 401, CHALLENGE.invalid(DESC.issuer), 'invalid_token', 'iss A on B route');
});
