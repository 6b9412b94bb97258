/**
 * Attack family: WebSocket upgrade smuggling. A client abuses the upgrade path to open a
 * raw tunnel to the upstream, or to slip requests past the gateway's decision:
 *  - an upstream that answers the upgrade with a non-101 status must not leave a raw
 *    tunnel open (requests written after it would reach the upstream unchecked);
 *  - non-GET WebSocket upgrades and WebSocket upgrades on plain routes are refused (an h2c
 *    upgrade is ignored and served as HTTP/1.1: test/security/h2c-upgrade.test.ts);
 *  - a client's `Connection:` header cannot remove the identity headers the gateway sets;
 *  - two Authorization headers, or two Host headers, on an upgrade are refused like on any request.
 * Raw sockets on loopback; the upstream records every request it sees.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { issuerYaml } from '../helpers/fixture.js';

let iss: MockIssuer; let gw: TestGateway; let upstream: http.Server;
const seen: Array<{ url: string; headers: http.IncomingHttpHeaders }> = [];

before(async () => {
  iss = await startMockIssuer({ algs: ['ES256'] });
  // An upstream that never upgrades: it answers every request (upgrade or not) with 200.
  upstream = http.createServer((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    res.end('plain');
  });
  upstream.on('upgrade', (req, socket) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    socket.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nno');
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(upstream.address() as net.AddressInfo).port}`;
  gw = await startGateway(`
${issuerYaml(iss)}routes:
  - id: open-ws
    match: { pathPrefix: /open }
    upstream: ${url}
    websocket: true
    auth: { mode: none }
  - id: ws
    match: { pathPrefix: /ws }
    upstream: ${url}
    websocket: true
    auth: { mode: jwt, scopes: { allOf: [orders:read] } }
    forward: { headers: { x-auth-subject: sub } }
  - id: secret
    match: { pathPrefix: /secret }
    upstream: ${url}
    auth: { mode: jwt, scopes: { allOf: [orders:read] } }
`);
  await gw.ready();
});
after(async () => {
  await gw?.close();
  upstream?.closeAllConnections();
  await new Promise((r) => upstream?.close(r));
  await iss?.close();
});

/** Writes `raw` on a fresh connection to the gateway, returns everything read until it closes. */
function exchange(raw: string, ms = 3000): Promise<string> {
  const { port } = new URL(gw.url);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(port), '127.0.0.1');
    let out = '';
    const timer = setTimeout(() => { s.destroy(); resolve(out); }, ms);
    s.on('data', (c) => (out += c.toString('latin1')));
    s.on('close', () => { clearTimeout(timer); resolve(out); });
    s.on('error', reject);
    s.write(raw);
  });
}

const UPGRADE = 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';

test('an upstream refusing the upgrade (200) leaves no tunnel: a request smuggled after it never reaches the upstream', async () => {
  seen.length = 0;
  const out = await exchange(
    `GET /open/chat HTTP/1.1\r\nHost: x\r\n${UPGRADE}\r\n` +
    'GET /secret/data HTTP/1.1\r\nHost: x\r\n\r\n',
  );
  assert.match(out, /^HTTP\/1\.1 200 /);
  assert.match(out, /connection: close/i);
  assert.equal((out.match(/HTTP\/1\.1 /g) ?? []).length, 1, 'one response, then the connection is closed');
  assert.deepEqual(seen.map((r) => r.url), ['/open/chat'], 'the smuggled /secret request never reached the upstream');
});

test('non-GET and plain-route WebSocket upgrades are refused before the upstream', async () => {
  seen.length = 0;
  const post = await exchange(`POST /open/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n${UPGRADE}\r\n`);
  assert.match(post, /^HTTP\/1\.1 400 /);
  const token = await iss.sign({});
  const plain = await exchange(`GET /secret/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n${UPGRADE}\r\n`);
  assert.match(plain, /^HTTP\/1\.1 400 /);
  assert.deepEqual(seen, [], 'nothing reached the upstream');
});

test('Connection: cannot strip the identity headers; forged ones never pass; two tokens refused', async () => {
  seen.length = 0;
  const token = await iss.sign({});
  await exchange(`GET /ws/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nX-Auth-Subject: forged\r\nX_Auth_Subject: forged\r\n` +
    'Connection: Upgrade, x-auth-subject\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
  assert.equal(seen.length, 1);
  assert.equal(seen[0].headers['x-auth-subject'], 'user-1');
  assert.equal(seen[0].headers['x_auth_subject'], undefined);
  assert.equal(seen[0].headers.authorization, undefined);
  seen.length = 0;
  const two = await exchange(`GET /ws/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nAuthorization: Bearer ${token}\r\n${UPGRADE}\r\n`);
  assert.match(two, /^HTTP\/1\.1 400 /);
  assert.match(two, /error="invalid_request"/);
  assert.deepEqual(seen, []);
});

test('an upgrade with two Host headers is refused like any request (RFC 9112 §3.2)', async () => {
  seen.length = 0;
  const out = await exchange(`GET /open/x HTTP/1.1\r\nHost: x\r\nHost: y\r\n${UPGRADE}\r\n`);
  assert.match(out, /^HTTP\/1\.1 400 /);
  assert.match(out, /"bad_request"/);
  assert.deepEqual(seen, [], 'nothing reached the upstream');
});
