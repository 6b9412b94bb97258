/**
 * Claim rules are "dotted claim path -> required value" (README, `routes[].auth.claims`).
 * The code also reads the whole path as one literal member name (for namespaced claims
 * such as `https://example.com/roles`). When a token carries both a literal member
 * `"realm_access.roles"` and the nested `realm_access.roles` and they disagree, the rule
 * must not be satisfied by the literal member alone: the README promises the dotted path,
 * and a doubt denies.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertDenied, signRaw, startFixture, oneIssuer, type Fixture } from '../helpers/fixture.js';

let f: Fixture;
before(async () => {
  f = await startFixture((iss, up) => oneIssuer(iss, `
  - id: admin
    match: { pathPrefix: /admin }
    upstream: ${up.url}
    auth: { mode: jwt, claims: { realm_access.roles: admin, "https://x.test/org": o1 } }
`));
});
after(() => f?.close());

const now = () => Math.floor(Date.now() / 1000);
const base = () => ({ iss: f.iss.issuer, aud: 'api', sub: 'u', iat: now(), exp: now() + 300, 'https://x.test/org': 'o1' });
const send = async (claims: Record<string, unknown>) =>
  f.bearer('/admin/x', await signRaw(f.iss.keys[0], { alg: 'RS256', kid: 'k1' }, claims));
const CLAIM_CHALLENGE = 'Bearer realm="tokengate", error="insufficient_scope", error_description="The access token lacks a required claim"';

test('controls: the nested path, and a namespaced literal claim, pass', async () => {
  const r = await send({ ...base(), realm_access: { roles: ['user', 'admin'] } });
  await r.text();
  assert.equal(r.status, 200);
  f.up.reset();
});

test('a literal "realm_access.roles" member cannot outvote the nested realm_access.roles: 403', async () => {
  await assertDenied(
    await send({ ...base(), 'realm_access.roles': 'admin', realm_access: { roles: ['user'] } }),
    f.up, 403, CLAIM_CHALLENGE, 'insufficient_scope', 'literal admin, nested user',
  );
});
