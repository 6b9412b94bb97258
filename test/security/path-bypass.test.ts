/**
 * Path bypasses: every spelling that could reach the protected `/admin` prefix through
 * the public catch-all route must either match `/admin` (401 here, no token) or be
 * refused with 400. With the catch-all present, a bypass would be a 200 and the upstream
 * would record it.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertDenied, CHALLENGE, oneIssuer, startFixture, type Fixture } from '../helpers/fixture.js';
import { rawRequest } from '../helpers/raw.js';

let f: Fixture;
before(async () => {
  f = await startFixture((iss, up) => oneIssuer(iss, `
  - id: admin
    match: { pathPrefix: /admin }
    upstream: ${up.url}
    auth: { mode: jwt }
  - id: public
    match: { pathPrefix: / }
    upstream: ${up.url}
    auth: { mode: none }
`));
});
after(() => f?.close());

const get = (target: string) => rawRequest(f.gw.url, `GET ${target} HTTP/1.1\nHost: gw.test\nConnection: close`);

test('spellings that resolve to /admin reach the admin route (401, nothing forwarded)', async () => {
  for (const t of [
    '/admin', '/admin/', '/admin/x', '/%61dmin', '/ad%6Din', '/%61%64%6d%69%6e/x', '/public/../admin', '/public/%2e%2e/admin',
    '/public/%2E%2E/admin', '/public/.%2e/admin', '/public/%2e./admin', '//admin', '///admin/x', '/./admin', '/%2e/admin',
    '/public//../admin', '/x/y/../../admin', '/admin/./x',
  ]) {
    await assertDenied(await get(t), f.up, 401, CHALLENGE.missing, 'missing_token', t);
  }
});

test('ambiguous or forbidden targets are refused with 400 before matching', async () => {
  for (const t of [
    '/public%2fadmin', '/public%2Fadmin', '/public/..%2fadmin', '/public%5cadmin', '/public%5C..%5Cadmin', '/public\\..\\admin',
    '/admin;x', '/public;/../admin', '/public/..;/admin', '/admin%00', '/public%00/../admin', '/..', '/../admin',
    '/public/../../admin', '/%', '/%zz/admin', '/%c0%af', '/%ff', '/%c0%ae%c0%ae/admin', '/public/%u002e%u002e/admin',
    '/public#/../admin', 'http://gw.test/admin', 'admin', '*', '/public/..foo', '/public/foo../x', '/é',
  ]) {
    const r = await get(t);
    assert.equal(r.status, 400, `${t}: ${r.body}`);
    assert.equal(r.headers['www-authenticate'], undefined, t);
    assert.equal((JSON.parse(r.body) as { error: string }).error, 'bad_request', `${t}: our body, not the framework's: ${r.body}`);
    assert.equal(f.up.requests.length, 0, t);
  }
});

test('OPTIONS * and CONNECT are refused with our 400', async () => {
  for (const line of ['OPTIONS * HTTP/1.1', 'CONNECT gw.test:443 HTTP/1.1']) {
    const r = await rawRequest(f.gw.url, `${line}\nHost: gw.test\nConnection: close`);
    assert.equal(r.status, 400, `${line}: ${r.text}`);
    assert.equal(f.up.requests.length, 0, line);
  }
});

test('matching is case-sensitive and nothing is case-folded: /ADMIN is another path, forwarded as /ADMIN', async () => {
  for (const t of ['/ADMIN', '/Admin/x', '/%41dmin']) {
    const r = await get(t);
    assert.equal(r.status, 200, t);
    assert.equal(f.up.requests.at(-1)?.url, t === '/%41dmin' ? '/Admin' : t, t);
    f.up.reset();
  }
});

test('what matched is what is forwarded: dot-segments resolved, escapes of unreserved decoded, others kept', async () => {
  const cases: Array<[string, string]> = [
    ['/public/%2e/x', '/public/x'],
    ['/public/x/..', '/public/'],
    ['/public//x', '/public/x'],
    ['/public/%7euser', '/public/~user'],
    ['/public/a%20b', '/public/a%20b'],
    ['/public/%c3%a9', '/public/%C3%A9'],
    ['/public/a%25b', '/public/a%25b'],
    ['/public/x?q=/../admin&a=%2F#', '/public/x?q=/../admin&a=%2F#'],
  ];
  for (const [sent, forwarded] of cases) {
    const r = await get(sent);
    if (sent.includes('#')) {
      assert.equal(r.status, 400, sent);
      continue;
    }
    assert.equal(r.status, 200, `${sent}: ${r.body}`);
    assert.equal(f.up.requests.at(-1)?.url, forwarded, sent);
    f.up.reset();
  }
});

test('a query string is never normalized or used for matching', async () => {
  const r = await get("/public/x?a=%2e%2e&b=..%2F&c='x'&d=%zz&e=a+b");
  assert.equal(r.status, 200);
  assert.equal(f.up.requests.at(-1)?.url, "/public/x?a=%2e%2e&b=..%2F&c='x'&d=%zz&e=a+b");
  f.up.reset();
});
