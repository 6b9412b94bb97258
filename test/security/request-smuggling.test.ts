/**
 * Request framing and Host ambiguity (RFC 9112 §6.3, §3.2): requests that a front proxy
 * and the gateway (or the gateway and the upstream) could read differently are refused
 * with our 400 and never reach the upstream.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { oneIssuer, startFixture, type Fixture } from '../helpers/fixture.js';
import { rawRequest } from '../helpers/raw.js';

let f: Fixture;
before(async () => {
  f = await startFixture((iss, up) => oneIssuer(iss, `
  - { id: admin, match: { host: admin.test, pathPrefix: / }, upstream: ${up.url}, auth: { mode: jwt } }
  - { id: open, match: { pathPrefix: / }, upstream: ${up.url}, auth: { mode: none } }
`));
});
after(() => f?.close());

test('ambiguous framing and Host headers: 400 with our body, nothing forwarded', async () => {
  const cases: Array<[string, string, string]> = [
    ['CL + TE', 'POST /x HTTP/1.1\nHost: gw\nContent-Length: 4\nTransfer-Encoding: chunked\nConnection: close', '0\r\n\r\n'],
    ['two Content-Length', 'POST /x HTTP/1.1\nHost: gw\nContent-Length: 1\nContent-Length: 2\nConnection: close', 'ab'],
    ['TE not chunked last', 'POST /x HTTP/1.1\nHost: gw\nTransfer-Encoding: chunked, identity\nConnection: close', '0\r\n\r\n'],
    ['obs-fold header', 'GET /x HTTP/1.1\nHost: gw\nX-A: 1\n  folded\nConnection: close', ''],
    ['space before colon', 'GET /x HTTP/1.1\nHost: gw\nX-Auth-Subject : evil\nConnection: close', ''],
    ['two Host headers', 'GET /x HTTP/1.1\nHost: gw\nHost: admin.test\nConnection: close', ''],
    ['no Host (HTTP/1.1)', 'GET /x HTTP/1.1\nConnection: close', ''],
    ['bad chunk size', 'POST /x HTTP/1.1\nHost: gw\nTransfer-Encoding: chunked\nConnection: close', 'zz\r\nabc\r\n0\r\n\r\n'],
  ];
  for (const [what, head, body] of cases) {
    const r = await rawRequest(f.gw.url, head, body);
    assert.equal(r.status, 400, `${what}: ${r.text.slice(0, 200)}`);
    assert.equal(r.body && JSON.parse(r.body).error, 'bad_request', `${what}: ${JSON.stringify(r.text)}`);
    assert.equal(f.up.requests.length, 0, what);
  }
});

test('absolute-form cannot pick another host: refused', async () => {
  const r = await rawRequest(f.gw.url, 'GET http://admin.test/x HTTP/1.1\nHost: gw\nConnection: close');
  assert.equal(r.status, 400);
  assert.equal(f.up.requests.length, 0);
});

test('HTTP/1.0 without Host is served by host-less routes only', async () => {
  const r = await rawRequest(f.gw.url, 'GET /x HTTP/1.0');
  assert.equal(r.status, 200);
  assert.equal(f.up.requests.length, 1);
  f.up.reset();
});

// RFC 1034 §3.1: `admin.test.` is the host admin.test, and upstream virtual hosts (nginx
// server_name, Django's get_host) read it so: it must not skip the admin.test route.
test('Host: admin.test. (trailing dots, with or without port) is judged by the admin.test route', async () => {
  for (const host of ['admin.test.', 'ADMIN.test.', 'admin.test.:8080', 'admin.test..', 'admin.test..:8080']) {
    f.up.reset();
    const r = await rawRequest(f.gw.url, `GET /settings HTTP/1.1\nHost: ${host}\nConnection: close`);
    assert.equal(f.up.requests.length, 0,
      `Host ${host}: forwarded without a token by route "open", upstream saw X-Forwarded-Host ${String(f.up.requests[0]?.headers['x-forwarded-host'])}`);
    assert.equal(r.status, 401, `Host ${host}: ${r.text.slice(0, 120)}`);
  }
});
