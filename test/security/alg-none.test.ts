/**
 * `alg: none` in every spelling (RFC 8725 §2.1, §3.1): unsigned tokens are refused
 * before any key lookup. Hand-built, since jose refuses to create them.
 */
import { after, before, test } from 'node:test';
import { assertDenied, CHALLENGE, DESC, handJwt, startApiFixture, type Fixture } from '../helpers/fixture.js';

let f: Fixture;
before(async () => {
  f = await startApiFixture();
});
after(() => f?.close());

test('alg none / None / NONE / nOnE, with empty, junk or a real signature, are 401 algorithm', async () => {
  const now = Math.floor(Date.now() / 1000);
  const claims = { iss: f.iss.issuer, aud: 'api', sub: 'attacker', iat: now, exp: now + 300 };
  const real = (await f.iss.sign()).split('.')[2];
  for (const alg of ['none', 'None', 'NONE', 'nOnE', 'none ', '']) {
    for (const sig of ['', 'AAAA', real]) {
      for (const header of [{ alg }, { alg, typ: 'JWT' }, { alg, kid: 'k1' }]) {
        const res = await f.bearer('/api/x', handJwt(header, claims, sig));
        // an empty signature makes the token end in '.', which is not a compact JWS of three non-empty parts
        const reason = sig === '' ? 'malformed' : 'algorithm';
        await assertDenied(res, f.up, 401, CHALLENGE.invalid(DESC[reason]), 'invalid_token', `alg ${JSON.stringify(alg)} sig ${sig.length}`);
      }
    }
  }
});

test('a missing or non-string alg is refused', async () => {
  const now = Math.floor(Date.now() / 1000);
  const claims = { iss: f.iss.issuer, aud: 'api', iat: now, exp: now + 300 };
  for (const header of [{}, { alg: null }, { alg: 1 }, { alg: ['RS256'] }, { alg: { x: 1 } }]) {
    const res = await f.bearer('/api/x', handJwt(header, claims, 'AAAA'));
    await assertDenied(res, f.up, 401, CHALLENGE.invalid(DESC.algorithm), 'invalid_token', JSON.stringify(header));
  }
});
