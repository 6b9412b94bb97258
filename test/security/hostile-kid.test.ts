/**
 * Hostile `kid` values: the kid is only ever compared with the JWKS's kids, never used as
 * a path, query or lookup key elsewhere. Strings are an unknown key (401), other types
 * a malformed token; none of them costs more than one JWKS fetch per cooldown.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertDenied, CHALLENGE, DESC, signRaw, startApiFixture, type Fixture } from '../helpers/fixture.js';

let f: Fixture;
before(async () => {
  f = await startApiFixture({ cooldownSec: 30 });
});
after(() => f?.close());

test('string kids (traversal, SQL, huge, unicode, control) are 401 unknown_kid; JWKS fetched at most once more', async () => {
  const key = f.iss.keys[0];
  const now = Math.floor(Date.now() / 1000);
  const claims = { iss: f.iss.issuer, aud: 'api', sub: 'u', exp: now + 300 };
  const before = f.iss.jwksFetches;
  const kids = [
    '../../../../etc/passwd', '..\\..\\windows\\win.ini', '/dev/zero', 'file:///etc/passwd', `${f.iss.issuer}/jwks`,
    "' OR '1'='1", '1; DROP TABLE keys; --', '${jndi:ldap://x}', '__proto__', 'constructor', 'hasOwnProperty',
    'k'.repeat(4000), '\u202ek1', 'k1\u0000', 'k1 ', ' k1', 'K1', '\ud83d\udd11', '', 'k1\r\nx-auth-subject: admin',
  ];
  for (const kid of kids) {
    const t = await signRaw(key, { alg: 'RS256', kid }, claims);
    await assertDenied(await f.bearer('/api/x', t), f.up, 401, CHALLENGE.invalid(DESC.unknown_kid), 'invalid_token', JSON.stringify(kid.slice(0, 40)));
  }
  assert.ok(f.iss.jwksFetches - before <= 1, `JWKS fetches: ${f.iss.jwksFetches - before}`);
});

test('non-string kids are 401 malformed, without any fetch', async () => {
  const key = f.iss.keys[0];
  const claims = { iss: f.iss.issuer, aud: 'api', exp: Math.floor(Date.now() / 1000) + 300 };
  const before = f.iss.jwksFetches;
  for (const kid of [1, 0, true, null, ['k1'], { kid: 'k1' }]) {
    const t = await signRaw(key, { alg: 'RS256', kid }, claims);
    await assertDenied(await f.bearer('/api/x', t), f.up, 401, CHALLENGE.invalid(DESC.malformed), 'invalid_token', JSON.stringify(kid));
  }
  assert.equal(f.iss.jwksFetches, before);
});
