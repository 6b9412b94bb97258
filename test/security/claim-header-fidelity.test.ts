/**
 * What the upstream reads from an identity header must be the verified claim, and two
 * different claims must never read as the same identity upstream. Values an HTTP
 * recipient would change on parsing are refused (401 invalid_token, unsafe_claim), never
 * forwarded:
 * - leading/trailing whitespace: a field value has none (RFC 9110 §5.5), so every parser
 *   strips it and `" admin"` reads as `admin`;
 * - an array element that contains the joiner (`,`): `["users,admin"]` is sent as
 *   `users,admin` and reads as the two groups `users` and `admin` (the same reason `scp`
 *   elements with a space are dropped from the scope header);
 * - an integer beyond 2^53: JSON parsing rounds it (`9007199254740993` → `…992`), so two
 *   different numeric ids would be forwarded as one.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertDenied, CHALLENGE, DESC, oneIssuer, signRaw, startFixture, type Fixture } from '../helpers/fixture.js';

let f: Fixture;
before(async () => {
  f = await startFixture((iss, up) => oneIssuer(iss, `
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt }
    forward:
      headers: { x-auth-subject: sub, x-auth-groups: groups, x-auth-uid: uid }
`));
});
after(() => f?.close());

const refused = (claims: Record<string, unknown>, what: string) => async () => {
  const t = await f.iss.sign({ claims });
  await assertDenied(await f.bearer('/api/x', t), f.up, 401, CHALLENGE.invalid(DESC.unsafe_claim), 'invalid_token', what);
};

test('a string claim with leading or trailing spaces is refused: upstream would read "admin" for " admin"', async () => {
  for (const sub of [' admin', 'admin ', ' admin ']) await refused({ sub }, JSON.stringify(sub))();
  for (const groups of [['users', ' admin'], ['admin ']]) await refused({ groups }, JSON.stringify(groups))();
});

test('an array element containing the joiner "," is refused: ["users,admin"] would read as two groups', async () => {
  await refused({ groups: ['users,admin'] }, 'groups with a comma')();
});

test('an integer claim beyond 2^53 is refused: it was rounded when parsed, upstream would get another id', async () => {
  const k = f.iss.keys[0]!;
  const now = Math.floor(Date.now() / 1000);
  const payload = `{"iss":"${f.iss.issuer}","aud":"api","sub":"u","uid":9007199254740993,"iat":${now},"exp":${now + 300},"scope":"orders:read"}`;
  const t = await signRaw(k, { alg: k.alg, kid: k.kid }, payload);
  await assertDenied(await f.bearer('/api/x', t), f.up, 401, CHALLENGE.invalid(DESC.unsafe_claim), 'invalid_token', 'uid 2^53+1');
});

test('still forwarded intact: inner spaces, a comma in a plain string, safe integers, non-ASCII', async () => {
  f.up.reset();
  const t = await f.iss.sign({ claims: { sub: 'Zoë de Vries, PhD', groups: ['a b', 'c'], uid: 9007199254740991 } });
  const r = await f.bearer('/api/x', t);
  assert.equal(r.status, 200);
  await r.text();
  const h = f.up.requests[0]!.headers;
  assert.equal(Buffer.from(h['x-auth-subject'] as string, 'latin1').toString('utf8'), 'Zoë de Vries, PhD');
  assert.equal(h['x-auth-groups'], 'a b,c');
  assert.equal(h['x-auth-uid'], '9007199254740991');
  f.up.reset();
});
