/**
 * Header injection through claims: a forwarded claim whose value holds CR, LF, NUL, DEL,
 * C1 or other control characters refuses the request (401 invalid_token, reason
 * unsafe_claim); it is never forwarded. Only forwarded claims matter.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertDenied, CHALLENGE, DESC, oneIssuer, startFixture, type Fixture } from '../helpers/fixture.js';

let f: Fixture;
before(async () => {
  f = await startFixture((iss, up) => oneIssuer(iss, `
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt }
    forward:
      headers: { x-auth-subject: sub, x-auth-groups: groups, x-auth-scopes: scope, x-auth-org: org.name }
`));
});
after(() => f?.close());

test('CR/LF/control characters in any forwarded claim: 401 unsafe_claim, nothing forwarded', async () => {
  const evil = ['a\r\nx-auth-admin: true', 'a\nb', 'a\rb', 'a\u0000b', 'a\u0007b', 'a\tb', 'a\u007fb', 'a\u0085b', 'a\u009bb'];
  for (const v of evil) {
    for (const claims of [{ sub: v }, { groups: ['ok', v] }, { scope: `orders:read ${v}` }, { org: { name: v } }]) {
      const t = await f.iss.sign({ claims });
      await assertDenied(await f.bearer('/api/x', t), f.up, 401, CHALLENGE.invalid(DESC.unsafe_claim), 'invalid_token', `${JSON.stringify(claims)}`);
    }
  }
});

test('a control character in a claim that is not forwarded does not matter', async () => {
  const r = await f.bearer('/api/x', await f.iss.sign({ claims: { other: 'a\r\nb' } }));
  assert.equal(r.status, 200);
  await r.text();
  f.up.reset();
});

test('non-ASCII claim values are forwarded as UTF-8 bytes, intact', async () => {
  const r = await f.bearer('/api/x', await f.iss.sign({ claims: { sub: 'Zoë 李' } }));
  assert.equal(r.status, 200);
  await r.text();
  const raw = f.up.requests[0].rawHeaders;
  const v = raw[raw.findIndex((n) => n.toLowerCase() === 'x-auth-subject') + 1];
  assert.equal(Buffer.from(v, 'latin1').toString('utf8'), 'Zoë 李');
  f.up.reset();
});
