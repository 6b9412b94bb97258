/**
 * Path and method override headers: an upstream that honours `X-Original-URL`,
 * `X-Rewrite-URL`, `X-HTTP-Method-Override` or `X-Forwarded-Prefix` would route a request
 * the gateway authorized for one path or method to another (the Symfony/IIS
 * `X-Original-URL` bypass). None of them reaches the upstream, in any spelling, on public
 * and protected routes; X-Forwarded-* that the gateway does not set, and the client-address
 * headers (X-Real-IP, True-Client-IP, ...), are dropped unless `server.trustProxy` is on.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { oneIssuer, startFixture, type Fixture } from '../helpers/fixture.js';
import { rawRequest } from '../helpers/raw.js';

let f: Fixture;
let token: string;
before(async () => {
  f = await startFixture((iss, up) => oneIssuer(iss, `
  - id: read
    match: { pathPrefix: /api, methods: [GET] }
    upstream: ${up.url}
    auth: { mode: jwt, scopes: { allOf: [orders:read] } }
  - id: open
    match: { pathPrefix: /open }
    upstream: ${up.url}
    auth: { mode: none }
`));
  token = await f.iss.sign({ claims: { scope: 'orders:read' } });
});
after(() => f?.close());

const OVERRIDES = [
  'X-Original-URL: /admin', 'X-Rewrite-URL: /admin', 'x-original-uri: /admin', 'X_Original_URL: /admin',
  'X-HTTP-Method-Override: DELETE', 'X-HTTP-Method: DELETE', 'X-Method-Override: DELETE', 'X-Original-Method: DELETE',
  'X-Forwarded-Uri: /admin', 'X-Forwarded-Prefix: /admin', 'X-Forwarded-Path: /admin', 'X-Forwarded-Method: DELETE',
  'X-Forwarded-Port: 443', 'X-Forwarded-Server: evil',
  // client-address headers an upstream may trust for allow-lists or rate limits
  'X-Real-IP: 10.0.0.1', 'True-Client-IP: 10.0.0.1', 'X-Client-IP: 10.0.0.1', 'CF-Connecting-IP: 10.0.0.1',
  'Fastly-Client-IP: 10.0.0.1', 'X-Cluster-Client-IP: 10.0.0.1', 'X_Real_IP: 10.0.0.1',
];

for (const path of ['/api/orders', '/open/x']) {
  test(`override headers never reach the upstream (${path})`, async () => {
    f.up.reset();
    const auth = path.startsWith('/api') ? [`Authorization: Bearer ${token}`] : [];
    const r = await rawRequest(f.gw.url, [`GET ${path} HTTP/1.1`, 'Host: gw.test', ...auth, ...OVERRIDES, 'X-Kept: yes', 'Connection: close'].join('\n'));
    assert.equal(r.status, 200, r.body);
    assert.equal(f.up.requests.length, 1);
    const got = f.up.requests[0];
    assert.equal(got.url, path);
    assert.equal(got.method, 'GET');
    const names = new Set(got.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase().replace(/_/g, '-')));
    for (const line of OVERRIDES) {
      const name = line.slice(0, line.indexOf(':')).toLowerCase().replace(/_/g, '-');
      assert.ok(!names.has(name), `${name} reached the upstream`);
    }
    assert.equal(got.headers['x-kept'], 'yes'); // ordinary headers still pass
  });
}
