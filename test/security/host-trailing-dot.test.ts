/**
 * Host matching vs. the fully-qualified spelling of the same name (RFC 1034 §3.1): `admin.test.`
 * is the host `admin.test`. The gateway matches `match.host` on the Host header as sent,
 * so `Host: admin.test.` misses the protected host route and falls through to a host-less
 * open route, and the upstream receives `X-Forwarded-Host: admin.test.`, which Django's
 * `get_host()`, nginx `server_name` matching and other vhost routers read as `admin.test`.
 * Fail closed: the FQDN spelling is judged by the route of the host it names.
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

test('Host: admin.test. (trailing dots, with or without port) is judged by the admin.test route', async () => {
  for (const host of ['admin.test.', 'ADMIN.test.', 'admin.test.:8080', 'admin.test..', 'admin.test..:8080']) {
    f.up.reset();
    const r = await rawRequest(f.gw.url, `GET /settings HTTP/1.1\nHost: ${host}\nConnection: close`);
    assert.equal(f.up.requests.length, 0,
      `Host ${host}: forwarded without a token by route "open", upstream saw X-Forwarded-Host ${String(f.up.requests[0]?.headers['x-forwarded-host'])}`);
    assert.equal(r.status, 401, `Host ${host}: ${r.text.slice(0, 120)}`);
  }
});
