/**
 * The shape of the `scope` claim (README, `routes[].auth.scopes`): scopes are read from
 * `scope` as a space-separated string or, only when the token has no `scope` member at
 * all, from `scp`; "a `scope` that is not a string grants none". A validly signed token
 * whose `scope` is a JSON array (not RFC 9068 / RFC 8693 §4.2 conformant) must not pass a
 * scope check through that array, nor through an `scp` next to it.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { scopesOf } from '../../src/pipeline/principal.js';
import { assertDenied, CHALLENGE, DESC, signRaw, startFixture, oneIssuer, type Fixture } from '../helpers/fixture.js';

let f: Fixture;
before(async () => {
  f = await startFixture((iss, up) => oneIssuer(iss, `
  - { id: admin, match: { pathPrefix: /admin }, upstream: ${up.url}, auth: { mode: jwt, scopes: { allOf: [admin] } } }
  - { id: any, match: { pathPrefix: /any }, upstream: ${up.url}, auth: { mode: jwt, scopes: { anyOf: [admin, root] } } }
`));
});
after(() => f?.close());

const now = () => Math.floor(Date.now() / 1000);
const base = () => ({ iss: f.iss.issuer, aud: 'api', sub: 'u', iat: now(), exp: now() + 300 });
const send = async (path: string, claims: Record<string, unknown>) =>
  f.bearer(path, await signRaw(f.iss.keys[0], { alg: 'RS256', kid: 'k1' }, claims));

test('scopesOf: a `scope` array grants nothing (and does not fall back to `scp`)', () => {
  assert.deepEqual(scopesOf({ scope: ['admin'] }), []);
  assert.deepEqual(scopesOf({ scope: ['admin'], scp: ['admin'] }), []);
  assert.deepEqual(scopesOf({ scope: [] , scp: 'admin' }), []);
});

test('a `scope` JSON array does not satisfy allOf / anyOf: 403 insufficient_scope', async () => {
  for (const [path, claims, required] of [
    ['/admin/x', { scope: ['admin'] }, 'admin'],
    ['/admin/x', { scope: ['admin'], scp: ['admin'] }, 'admin'],
    ['/any/x', { scope: ['root'] }, 'admin root'],
  ] as const) {
    await assertDenied(await send(path, { ...base(), ...claims }), f.up, 403, CHALLENGE.scope(DESC.scope, required), 'insufficient_scope', `${path} ${JSON.stringify(claims)}`);
  }
  // Control: the documented shapes still pass.
  for (const claims of [{ scope: 'x admin' }, { scp: ['admin'] }, { scp: 'admin' }]) {
    const r = await send('/admin/x', { ...base(), ...claims });
    await r.text();
    assert.equal(r.status, 200, JSON.stringify(claims));
    f.up.reset();
  }
});
