/**
 * A DPoP proof whose `jwk.kty` names an Object.prototype member (`__proto__`,
 * `constructor`, `toString`) must be refused like any unknown key type (401
 * invalid_dpop_proof), not crash the proof check into a 500: the thumbprint table is a
 * plain object literal, so `THUMBPRINT_MEMBERS[kty]` finds the prototype's members.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { dpopClient, type DpopClient } from '../helpers/dpop.js';

let iss: MockIssuer; let up: EchoUpstream; let gw: TestGateway; let client: DpopClient;

before(async () => {
  [iss, up, client] = await Promise.all([startMockIssuer({ algs: ['ES256'] }), startUpstream(), dpopClient()]);
  gw = await startGateway(`
issuers:
  - { id: a, issuer: ${iss.issuer}, jwksUri: ${iss.jwksUri}, audiences: [api] }
routes:
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt }
`);
  await gw.ready();
});
after(async () => {
  await gw?.close();
  await up?.close();
  await iss?.close();
});

test('a proof jwk with kty __proto__ / constructor / toString is 401 invalid_dpop_proof, never 5xx', async () => {
  const token = await iss.sign({ claims: { cnf: { jkt: client.jkt } } });
  for (const kty of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
    const proof = await client.proof({ htm: 'GET', htu: `${gw.url}/api/x`, token, jwk: { ...client.publicJwk, kty } as never });
    const r = await fetch(gw.url + '/api/x', { headers: { authorization: `DPoP ${token}`, dpop: proof } });
    const body = await r.json() as { error: string };
    assert.deepEqual([r.status, body.error], [401, 'invalid_dpop_proof'], `kty ${kty}`);
  }
  assert.equal(up.requests.length, 0);
});
