/**
 * Token shapes that are not a compact JWS: JWE (5 parts), extra or missing segments,
 * empty parts, non-JSON or non-object parts, and oversized tokens (refused by size
 * before anything is decoded).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertDenied, b64u, CHALLENGE, DESC, startApiFixture, type Fixture } from '../helpers/fixture.js';

let f: Fixture;
before(async () => {
  f = await startApiFixture({ server: 'server: { maxTokenBytes: 2048 }\n' });
});
after(() => f?.close());

test('JWE-shaped, extra-segment and broken tokens: 401 malformed, no key fetch', async () => {
  const good = await f.iss.sign();
  const [h, p, s] = good.split('.');
  const before = f.iss.jwksFetches;
  const shapes: Array<[string, string]> = [
    ['JWE 5 parts', `${b64u({ alg: 'RSA-OAEP', enc: 'A256GCM', kid: 'k1' })}.${b64u('k')}.${b64u('iv')}.${b64u('ct')}.${b64u('tag')}`],
    ['JWE with the JWS parts', `${h}.${p}.${s}.${s}.${s}`],
    ['4 parts', `${h}.${p}.${s}.${s}`],
    ['trailing dot', `${h}.${p}.${s}.`],
    ['2 parts', `${h}.${p}`],
    ['1 part', h],
    ['empty payload', `${h}..${s}`],
    ['empty header', `.${p}.${s}`],
    ['header not JSON', `${b64u('not json')}.${p}.${s}`],
    ['header a JSON array', `${b64u([1])}.${p}.${s}`],
    ['payload not JSON', `${h}.${b64u('{"iss":')}.${s}`],
    ['payload a JSON string', `${h}.${b64u('"x"')}.${s}`],
    ['payload JSON null', `${h}.${b64u('null')}.${s}`],
    ['dots only', '...'],
  ];
  for (const [what, t] of shapes) {
    await assertDenied(await f.bearer('/api/x', t), f.up, 401, CHALLENGE.invalid(DESC.malformed), 'invalid_token', what);
  }
  assert.equal(f.iss.jwksFetches, before, 'no JWKS fetch for a malformed token');
});

test('an oversized token is 401 token_too_large, whatever it contains', async () => {
  for (const t of ['a'.repeat(2049), `${(await f.iss.sign()).slice(0, 20)}${'A'.repeat(4000)}`, '!'.repeat(3000)]) {
    await assertDenied(await f.bearer('/api/x', t), f.up, 401, CHALLENGE.invalid(DESC.token_too_large), 'invalid_token', `${t.length} bytes`);
  }
  // exactly at the limit is parsed (and is malformed here)
  await assertDenied(await f.bearer('/api/x', 'a'.repeat(2048)), f.up, 401, CHALLENGE.invalid(DESC.malformed), 'invalid_token', 'at limit');
});

test('characters outside RFC 6750 b64token are 400 invalid_request', async () => {
  for (const t of ['a b', 'a,b', 'abc"def', 'a=b', 'a;b']) {
    await assertDenied(await f.bearer('/api/x', t), f.up, 400, CHALLENGE.request(DESC.bad_scheme), 'invalid_request', t);
  }
});

test('a header section beyond server.maxHeaderBytes is 431 and nothing is forwarded', async () => {
  const r = await f.get('/api/x', { headers: { 'x-big': 'a'.repeat(20_000) } });
  assert.equal(r.status, 431);
  await r.text();
  assert.equal(f.up.requests.length, 0);
});
