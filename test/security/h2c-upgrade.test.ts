/**
 * `Upgrade: h2c` on an HTTP/1.1 request (the JDK's HttpClient offers it on every
 * cleartext call): RFC 9110 §7.8 lets a server ignore the offer, and the gateway does —
 * the request is judged and served as the HTTP/1.1 request it is, never with a 101,
 * never refused for the header, and the upgrade headers do not go upstream. The
 * connection stays usable (keep-alive), a body still arrives whole, and the token rules
 * hold as on any request. A gateway that refuses the upgrade fails every such client.
 */
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { head, rawExchange } from '../helpers/raw-http.js';
import { issuerYaml, startFixture, type Fixture } from '../helpers/fixture.js';

let f: Fixture;
let port: number;
const logs: string[] = [];

before(async () => {
  f = await startFixture((iss, up) => `
${issuerYaml(iss)}routes:
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt }
    forward: { headers: { x-auth-subject: sub } }
  - id: ws
    match: { pathPrefix: /ws }
    upstream: ${up.url}
    websocket: true
    auth: { mode: none }
`, { logs });
  port = Number(new URL(f.gw.url).port);
});
after(() => f?.close());
beforeEach(() => {
  f.up.reset();
  logs.length = 0;
});

const H2C = ['Connection: Upgrade, HTTP2-Settings', 'Upgrade: h2c', 'HTTP2-Settings: AAMAAABkAAQAAP__'];

test('an h2c offer is ignored: served over HTTP/1.1 with the identity headers, upgrade headers not forwarded', async () => {
  const token = await f.iss.sign({ claims: { sub: 'user-1' } });
  const ex = await rawExchange(port, [head('GET /api/x?q=1 HTTP/1.1', 'Host: 127.0.0.1', `Authorization: Bearer ${token}`, 'X-Auth-Subject: forged', ...H2C, 'Connection: close')], 10_000);
  assert.equal(ex.responses.length, 1, ex.raw.slice(0, 300));
  assert.equal(ex.responses[0].status, 200, 'never a 101, never refused for the header');
  assert.equal(f.up.requests.length, 1);
  const seen = f.up.requests[0];
  assert.equal(seen.url, '/api/x?q=1');
  assert.equal(seen.headers['x-auth-subject'], 'user-1', 'identity from the token, the forged one removed');
  assert.equal(seen.headers.upgrade, undefined);
  assert.equal(seen.headers['http2-settings'], undefined);
  assert.doesNotMatch(String(seen.headers.connection ?? ''), /upgrade|http2-settings/i);
});

test('an h2c offer does not get past the token check', async () => {
  const ex = await rawExchange(port, [head('GET /api/x HTTP/1.1', 'Host: 127.0.0.1', ...H2C)], 10_000);
  assert.equal(ex.responses[0]?.status, 401, ex.raw.slice(0, 300));
  assert.equal(ex.responses[0].headers['www-authenticate'], 'Bearer realm="tokengate"');
  assert.equal(f.up.requests.length, 0);
});

test('with an h2c offer, a body arrives whole and the connection keeps serving (keep-alive, pipelining)', async () => {
  const token = await f.iss.sign({});
  const body = 'x'.repeat(5000);
  const ex = await rawExchange(port, [
    head('POST /api/a HTTP/1.1', 'Host: 127.0.0.1', `Authorization: Bearer ${token}`, `Content-Length: ${body.length}`, ...H2C) + body +
    head('GET /api/b HTTP/1.1', 'Host: 127.0.0.1', `Authorization: Bearer ${token}`, ...H2C, 'Connection: close'),
  ], 10_000);
  assert.deepEqual(ex.responses.map((r) => r.status), [200, 200], ex.raw.slice(0, 300));
  assert.deepEqual(f.up.requests.map((r) => r.url), ['/api/a', '/api/b']);
  assert.equal(f.up.requests[0].body, body);
  await new Promise((r) => setTimeout(r, 50));
  const lines = logs.map((l) => JSON.parse(l)).filter((l) => l.msg === 'access');
  assert.deepEqual(lines.map((l) => [l.route, l.status]), [['api', 200], ['api', 200]], 'each recorded once');
});

test('an h2c offer on a WebSocket route is still a plain request (only `websocket` upgrades)', async () => {
  const ex = await rawExchange(port, [head('GET /ws/x HTTP/1.1', 'Host: 127.0.0.1', ...H2C, 'Connection: close')], 10_000);
  assert.equal(ex.responses[0]?.status, 200, ex.raw.slice(0, 300));
  assert.equal(f.up.requests[0]?.headers.upgrade, undefined);
});

test('one keep-alive connection offering h2c on every request stays served, without piling up listeners', async () => {
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
  process.on('warning', onWarning);
  const sock = net.connect(port, '127.0.0.1');
  try {
    let data = '';
    sock.on('data', (d) => (data += d));
    const served = () => (data.match(/HTTP\/1\.1 200 /g) ?? []).length;
    for (let i = 1; i <= 40; i++) {
      sock.write(head(`GET /ws/${i} HTTP/1.1`, 'Host: 127.0.0.1', ...H2C));
      const until = Date.now() + 3000;
      while (served() < i && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(served(), 40, 'every request answered on the one connection');
    assert.equal(f.up.requests.length, 40);
    assert.deepEqual(warnings.filter((w) => /MaxListeners/.test(w)), [], 'each re-parse takes over the connection cleanly');
  } finally {
    process.off('warning', onWarning);
    sock.destroy();
  }
});
