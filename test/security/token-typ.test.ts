/**
 * Token type confusion (RFC 9068 §4, RFC 8725 §3.11): on an issuer with
 * `requireTyp: at+jwt`, an ID token (`typ: JWT`), a token without `typ`, or any other
 * type is refused even though the signature, issuer and audience are valid.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertDenied, CHALLENGE, DESC, startApiFixture, type Fixture } from '../helpers/fixture.js';

let f: Fixture;
before(async () => {
  f = await startApiFixture({ issuerExtra: '\n    requireTyp: at+jwt' });
});
after(() => f?.close());

test('typ JWT, missing, id-token-like, dpop+jwt or non-string: 401 token_type', async () => {
  for (const typ of ['JWT', 'jwt', undefined, 'id_token+jwt', 'dpop+jwt', 'at+jwt ', 'at-jwt', 'application/jwt', 1, ['at+jwt']]) {
    const t = await f.iss.sign({ header: { typ }, claims: { nonce: 'n', auth_time: 1, azp: 'app' } });
    await assertDenied(await f.bearer('/api/x', t), f.up, 401, CHALLENGE.invalid(DESC.token_type), 'invalid_token', `typ ${JSON.stringify(typ)}`);
  }
});

test('at+jwt and application/at+jwt (any case) are accepted', async () => {
  for (const typ of ['at+jwt', 'application/at+jwt', 'AT+JWT']) {
    const r = await f.bearer('/api/x', await f.iss.sign({ header: { typ } }));
    assert.equal(r.status, 200, typ);
    await r.text();
  }
  f.up.reset();
});
