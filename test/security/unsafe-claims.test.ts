/**
 * Header injection through claims: a forwarded claim whose value holds CR, LF, NUL, DEL,
 * C1 or other control characters refuses the request (401 invalid_token, reason
 * unsafe_claim); it is never forwarded. Only forwarded claims matter.
 *
 * Also refused: values an HTTP recipient would read as another value, so that two different
 * claims never read as the same identity upstream:
 * - leading/trailing whitespace: a field value has none (RFC 9110 §5.5), so every parser
 *   strips it and `" admin"` reads as `admin`;
 * - an array element that contains the joiner (`,`): `["users,admin"]` is sent as
 *   `users,admin` and reads as the two groups `users` and `admin`;
 * - an integer beyond 2^53: JSON parsing rounds it (`9007199254740993` → `…992`), so two
 *   different numeric ids would be forwarded as one.
 *
 * `claimsHeader` forwards every claim as JSON, so the same holds there for every claim: an
 * integer beyond 2^53 anywhere, or nesting past 32 levels, refuses the request.
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
      headers: { x-auth-subject: sub, x-auth-groups: groups, x-auth-scopes: scope, x-auth-org: org.name, x-auth-uid: uid }
  - id: all-claims
    match: { pathPrefix: /claims }
    upstream: ${up.url}
    auth: { mode: jwt }
    forward: { claimsHeader: x-auth-claims }
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

test('a forwarded claim nested past 32 levels is refused (401 unsafe_claim), never a 500; 32 levels pass', async () => {
  const k = f.iss.keys[0]!;
  const now = Math.floor(Date.now() / 1000);
  const nested = (d: number) => '['.repeat(d) + '"x"' + ']'.repeat(d);
  const token = (d: number) => signRaw(k, { alg: k.alg, kid: k.kid },
    `{"iss":"${f.iss.issuer}","aud":"api","sub":${nested(d)},"iat":${now},"exp":${now + 300},"scope":"orders:read"}`);
  // 2700 levels once ran JSON.stringify (with its replacer) out of stack: a 500.
  for (const d of [33, 2700]) {
    await assertDenied(await f.bearer('/api/x', await token(d)), f.up, 401, CHALLENGE.invalid(DESC.unsafe_claim), 'invalid_token', `sub nested ${d} deep`);
  }
  const r = await f.bearer('/api/x', await token(32));
  assert.equal(r.status, 200);
  await r.text();
  f.up.reset();
});

const rawToken = (claimsJson: string) => {
  const k = f.iss.keys[0]!;
  const now = Math.floor(Date.now() / 1000);
  return signRaw(k, { alg: k.alg, kid: k.kid },
    `{"iss":"${f.iss.issuer}","aud":"api","sub":"u","iat":${now},"exp":${now + 300},"scope":"orders:read",${claimsJson}}`);
};

test('claimsHeader: an integer beyond 2^53 in any claim is refused (the JSON would carry another number)', async () => {
  for (const c of ['"uid":9007199254740993', '"ids":[1,-9007199254740993]', '"meta":{"account":{"id":12345678901234567890}}']) {
    await assertDenied(await f.bearer('/claims/x', await rawToken(c)), f.up, 401, CHALLENGE.invalid(DESC.unsafe_claim), 'invalid_token', c);
  }
});

test('claimsHeader: claims nested past 32 levels are refused (401 unsafe_claim), never a 500', async () => {
  const nested = (d: number) => '['.repeat(d) + '"x"' + ']'.repeat(d);
  for (const d of [33, 2700]) {
    await assertDenied(await f.bearer('/claims/x', await rawToken(`"meta":${nested(d)}`)), f.up, 401, CHALLENGE.invalid(DESC.unsafe_claim), 'invalid_token', `meta nested ${d} deep`);
  }
});

test('claimsHeader: safe claims arrive exactly as verified, on every request of a cached token', async () => {
  f.up.reset();
  const t = await rawToken(`"uid":9007199254740991,"meta":${'['.repeat(31)}"x"${']'.repeat(31)},"name":"Zoë"`);
  for (let i = 0; i < 2; i++) {
    const r = await f.bearer('/claims/x', t);
    assert.equal(r.status, 200);
    await r.text();
  }
  assert.equal(f.up.requests.length, 2);
  for (const req of f.up.requests) {
    const claims = JSON.parse(Buffer.from(req.headers['x-auth-claims'] as string, 'base64url').toString('utf8')) as Record<string, unknown>;
    assert.equal(claims.uid, 9007199254740991);
    assert.equal(claims.name, 'Zoë');
    assert.equal(claims.sub, 'u');
    assert.equal(JSON.stringify(claims.meta), '['.repeat(31) + '"x"' + ']'.repeat(31));
  }
  f.up.reset();
});
