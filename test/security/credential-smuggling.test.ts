/**
 * Credential smuggling (RFC 6750 §2): one token, in the Authorization header only. Two
 * Authorization headers, a token in the query string or in a form body are 400
 * invalid_request and never used (on public `mode: none` routes too); the scheme is case-insensitive; another scheme is no
 * bearer credential at all.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertDenied, CHALLENGE, DESC, oneIssuer, startFixture, type Fixture } from '../helpers/fixture.js';
import { rawRequest } from '../helpers/raw.js';

let f: Fixture;
let token: string;
before(async () => {
  f = await startFixture((iss, up) => 'server: { bodyLimitBytes: 1024 }\n' + oneIssuer(iss, `
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt }
  - id: open
    match: { pathPrefix: /open }
    upstream: ${up.url}
    auth: { mode: none }
`));
  token = await f.iss.sign();
});
after(() => f?.close());

test('two Authorization headers (raw socket), even identical or differently cased: 400', async () => {
  for (const [h1, h2] of [
    [`Authorization: Bearer ${token}`, `Authorization: Bearer ${token}`],
    [`Authorization: Bearer ${token}`, 'authorization: Bearer x'],
    [`AUTHORIZATION: Bearer ${token}`, 'Authorization: Basic eDp5'],
  ]) {
    const r = await rawRequest(f.gw.url, `GET /api/x HTTP/1.1\nHost: gw\n${h1}\n${h2}\nConnection: close`);
    await assertDenied(r, f.up, 400, CHALLENGE.request(DESC.multiple_credentials), 'invalid_request', `${h1.slice(0, 20)} + ${h2.slice(0, 20)}`);
  }
});

test('access_token in the query string: 400 token_in_query; with a header too: multiple_credentials', async () => {
  for (const q of [`access_token=${token}`, `a=1&access_token=${token}`, `%61ccess_token=${token}`, 'access_token=', `access%5Ftoken=${token}`]) {
    await assertDenied(await f.get(`/api/x?${q}`), f.up, 400, CHALLENGE.request(DESC.token_in_query), 'invalid_request', q.slice(0, 20));
  }
  await assertDenied(await f.bearer(`/api/x?access_token=${token}`, token), f.up, 400, CHALLENGE.request(DESC.multiple_credentials), 'invalid_request', 'header + query');
});

test('on a mode: none route too, a token in the query or a form body is refused, never carried upstream', async () => {
  await assertDenied(await f.get(`/open/x?access_token=${token}`), f.up, 400, CHALLENGE.request(DESC.token_in_query), 'invalid_request', 'query, public route');
  const form = { 'content-type': 'application/x-www-form-urlencoded' };
  await assertDenied(await f.get('/open/x', { method: 'POST', headers: form, body: `access_token=${token}` }), f.up, 400, CHALLENGE.request(DESC.token_in_body), 'invalid_request', 'form, public route');
  const ok = await f.get('/open/x?a=1', { method: 'POST', headers: form, body: 'a=1' });
  assert.equal(ok.status, 200);
  await ok.text();
  f.up.reset();
});

test('access_token in a form body: 400 token_in_body (also with a header); a form without it passes', async () => {
  const form = { 'content-type': 'application/x-www-form-urlencoded' };
  await assertDenied(await f.get('/api/x', { method: 'POST', headers: form, body: `access_token=${token}` }), f.up, 400, CHALLENGE.request(DESC.token_in_body), 'invalid_request', 'body');
  await assertDenied(await f.get('/api/x', { method: 'POST', headers: { 'content-type': 'Application/X-WWW-Form-Urlencoded; charset=utf-8' }, body: `x=1&access_token=${token}` }), f.up, 400, CHALLENGE.request(DESC.token_in_body), 'invalid_request', 'body, odd case');
  await assertDenied(await f.bearer('/api/x', token, { method: 'POST', headers: form, body: 'access_token=abc' }), f.up, 400, CHALLENGE.request(DESC.multiple_credentials), 'invalid_request', 'header + body');
  const ok = await f.bearer('/api/x', token, { method: 'POST', headers: form, body: 'a=1&b=2' });
  assert.equal(ok.status, 200);
  await ok.text();
  assert.equal(f.up.requests.at(-1)?.body, 'a=1&b=2');
  f.up.reset();
});

test('a Content-Type the gateway cannot parse is 400 bad_request (not a 500), and the body never reaches the upstream', async () => {
  for (const ct of ['application/x-www-form-urlencoded, text/plain', 'application/x-www-form-urlencoded(comment)', 'text/plain, application/json']) {
    await assertDenied(await f.get('/open/x', { method: 'POST', headers: { 'content-type': ct }, body: `access_token=${token}` }), f.up, 400, null, 'bad_request', ct);
  }
});

test('the scheme is case-insensitive; other schemes count as no token; bad syntax is 400', async () => {
  for (const scheme of ['bearer', 'BEARER', 'BeArEr']) {
    const r = await f.get('/api/x', { headers: { authorization: `${scheme} ${token}` } });
    assert.equal(r.status, 200, scheme);
    await r.text();
  }
  f.up.reset();
  for (const v of ['Basic dXNlcjpwYXNz', 'Token abc', 'Bearertoken', `Bearer${token}`]) {
    await assertDenied(await f.get('/api/x', { headers: { authorization: v } }), f.up, 401, CHALLENGE.missing, 'missing_token', v.slice(0, 20));
  }
  for (const v of ['Bearer', 'Bearer ', `Bearer ${token} extra`, `Bearer ${token},${token}`]) {
    await assertDenied(await f.get('/api/x', { headers: { authorization: v } }), f.up, 400, CHALLENGE.request(DESC.bad_scheme), 'invalid_request', JSON.stringify(v.slice(0, 20)));
  }
});

test('tokens never appear in any response body or header', async () => {
  const bad = `${token.slice(0, -4)}AAAA`;
  for (const init of [{ headers: { authorization: `Bearer ${bad}` } }, { headers: { authorization: `Bearer ${bad} x` } }]) {
    const r = await f.get(`/api/x?access_token=${bad}`, init);
    const all = JSON.stringify([...r.headers]) + (await r.text());
    assert.ok(!all.includes(bad.slice(20, 60)), 'token echoed');
  }
  f.up.reset();
});

test('a form body too large to scan is refused (413), never forwarded unscanned; other bodies stream', async () => {
  const big = `${'a='.padEnd(2000, 'x')}&access_token=${token}`;
  for (const init of [{}, { headers: { authorization: `Bearer ${token}` } }]) {
    const r = await f.get('/api/x', { method: 'POST', body: big, headers: { ...init.headers, 'content-type': 'application/x-www-form-urlencoded' } });
    assert.equal(r.status, 413);
    assert.deepEqual(await r.json(), { error: 'payload_too_large', error_description: 'The form body is larger than server.bodyLimitBytes' });
    assert.equal(f.up.requests.length, 0);
  }
  const payload = JSON.stringify({ a: 'x'.repeat(5000) });
  const json = await f.bearer('/api/x', token, { method: 'POST', body: payload, headers: { 'content-type': 'application/json' } });
  assert.equal(json.status, 200);
  await json.text();
  assert.equal(f.up.requests[0].body, payload);
  f.up.reset();
});
