/**
 * `crit` (RFC 7515 §4.1.11): a token naming a critical extension the gateway does not
 * understand is refused even though its signature is valid.
 */
import { after, before, test } from 'node:test';
import { assertDenied, CHALLENGE, DESC, signRaw, startApiFixture, type Fixture } from '../helpers/fixture.js';

let f: Fixture;
before(async () => {
  f = await startApiFixture();
});
after(() => f?.close());

test('validly signed tokens with an unknown or malformed crit: 401 malformed', async () => {
  const key = f.iss.keys[0];
  const now = Math.floor(Date.now() / 1000);
  const claims = { iss: f.iss.issuer, aud: 'api', sub: 'u', iat: now, exp: now + 300 };
  const headers = [
    { alg: 'RS256', kid: key.kid, crit: ['http://evil/ext'], 'http://evil/ext': true },
    { alg: 'RS256', kid: key.kid, crit: ['exp'] },
    { alg: 'RS256', kid: key.kid, crit: ['b64'], b64: false },
    { alg: 'RS256', kid: key.kid, crit: [] },
    { alg: 'RS256', kid: key.kid, crit: 'x' },
    { alg: 'RS256', kid: key.kid, crit: ['missing-param'] },
  ];
  for (const header of headers) {
    const t = await signRaw(key, header, claims);
    await assertDenied(await f.bearer('/api/x', t), f.up, 401, CHALLENGE.invalid(DESC.malformed), 'invalid_token', JSON.stringify(header.crit));
  }
  // control: the same token without crit passes
  const ok = await f.bearer('/api/x', await signRaw(key, { alg: 'RS256', kid: key.kid }, claims));
  if (ok.status !== 200) throw new Error(`control token refused: ${ok.status}`);
  f.up.reset();
});
