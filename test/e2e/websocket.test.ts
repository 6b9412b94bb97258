/**
 * WebSocket upgrades through the proxy, with a real `ws` client and server on loopback:
 * authenticated and authorized like any request (a refused upgrade never reaches the
 * upstream), identity headers set and forged ones stripped on the upstream upgrade
 * request, path rules identical, non-websocket routes refuse upgrades.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { issuerYaml } from '../helpers/fixture.js';

let iss: MockIssuer; let wss: WebSocketServer; let gw: TestGateway; let wsBase = '';
const upgrades: IncomingMessage[] = [];

before(async () => {
  iss = await startMockIssuer({ algs: ['ES256'] });
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => wss.once('listening', r));
  wss.on('connection', (ws, req) => {
    upgrades.push(req);
    ws.on('message', (data, isBinary) => ws.send(isBinary ? data : `echo:${data.toString()}`, { binary: isBinary }));
  });
  const upstream = `http://127.0.0.1:${(wss.address() as AddressInfo).port}`;
  gw = await startGateway(`
${issuerYaml(iss)}routes:
  - id: chat
    match: { pathPrefix: /chat }
    upstream: ${upstream}
    websocket: true
    auth: { mode: jwt, scopes: { allOf: [orders:read] } }
    forward: { headers: { x-auth-subject: sub, x-auth-scopes: scope } }
  - id: plain
    match: { pathPrefix: /plain }
    upstream: ${upstream}
    auth: { mode: none }
  - id: open-ws
    match: { pathPrefix: /open }
    upstream: ${upstream}
    websocket: true
    auth: { mode: none }
`);
  await gw.ready();
  wsBase = gw.url.replace('http://', 'ws://');
});
after(async () => {
  await gw?.close();
  for (const c of wss?.clients ?? []) c.terminate();
  await new Promise((r) => wss?.close(r));
  await iss?.close();
});

/** Opens a WebSocket; resolves with it, or with the refusal's status, headers and body. */
function open(path: string, headers: Record<string, string> = {}): Promise<{ ws?: WebSocket; status?: number; headers?: Record<string, string | string[] | undefined>; body?: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsBase + path, { headers, handshakeTimeout: 5000 });
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    ws.once('error', reject);
  });
}

function next(ws: WebSocket): Promise<{ data: string; binary: boolean }> {
  return new Promise((resolve) => ws.once('message', (d, binary) => resolve({ data: binary ? Buffer.from(d as Buffer).toString('hex') : d.toString(), binary })));
}

test('valid token: upgrade proxied, identity headers set, forged ones and the token stripped', async () => {
  upgrades.length = 0;
  const token = await iss.sign({});
  const { ws } = await open('/chat/room?x=1', { authorization: `Bearer ${token}`, 'x-auth-subject': 'forged', 'X_Auth_Scopes': 'admin', 'x-auth-extra': 'forged' });
  assert.ok(ws, 'upgraded');
  try {
    ws.send('hello');
    assert.deepEqual(await next(ws), { data: 'echo:hello', binary: false });
    ws.send(Buffer.from([1, 2, 3]));
    assert.deepEqual(await next(ws), { data: '010203', binary: true });
    assert.equal(upgrades.length, 1);
    const h = upgrades[0].headers;
    assert.equal(upgrades[0].url, '/chat/room?x=1');
    assert.equal(h['x-auth-subject'], 'user-1');
    assert.equal(h['x-auth-scopes'], 'orders:read');
    assert.equal(h['x_auth_scopes'], undefined);
    assert.equal(h['x-auth-extra'], undefined);
    assert.equal(h.authorization, undefined);
    assert.equal(h.upgrade, 'websocket');
  } finally {
    ws.close();
  }
  // A clean close from the client reaches the upstream and back.
  await new Promise((r) => ws.once('close', r));
});

test('missing, bad or under-scoped token: refused with the error table, never reaches the upstream', async () => {
  upgrades.length = 0;
  const missing = await open('/chat/room');
  assert.equal(missing.status, 401);
  assert.equal(missing.headers!['www-authenticate'], 'Bearer realm="tokengate"');
  assert.equal(JSON.parse(missing.body!).error, 'missing_token');
  const bad = await open('/chat/room', { authorization: 'Bearer ' + await iss.sign({ claims: { aud: 'nope' } }) });
  assert.equal(bad.status, 401);
  assert.equal(bad.headers!['www-authenticate'], 'Bearer realm="tokengate", error="invalid_token", error_description="The token audience is not accepted"');
  const scope = await open('/chat/room', { authorization: 'Bearer ' + await iss.sign({ claims: { scope: 'x' } }) });
  assert.equal(scope.status, 403);
  assert.match(String(scope.headers!['www-authenticate']), /error="insufficient_scope", error_description="[^"]+", scope="orders:read"/);
  const query = await open('/chat/room?access_token=abc');
  assert.equal(query.status, 400);
  assert.equal(upgrades.length, 0, 'no refused upgrade reached the upstream');
});

test('path rules are identical: climbing into a protected route needs its token; encoded slash refused', async () => {
  upgrades.length = 0;
  const climb = await open('/open/%2e%2e/chat/room');
  assert.equal(climb.status, 401, 'normalized to /chat/room');
  const slash = await open('/open/a%2Fb');
  assert.equal(slash.status, 400);
  assert.equal(JSON.parse(slash.body!).error, 'bad_request');
  const none = await open('/nowhere');
  assert.equal(none.status, 404);
  assert.equal(upgrades.length, 0);
  const { ws } = await open('/open/%2e/x');
  assert.ok(ws);
  ws.terminate();
  assert.equal(upgrades.at(-1)!.url, '/open/x', 'the upstream gets the normalized path that matched');
});

test('a route without websocket: true refuses upgrades', async () => {
  upgrades.length = 0;
  const r = await open('/plain/x');
  assert.equal(r.status, 400);
  assert.deepEqual(JSON.parse(r.body!), { error: 'bad_request', error_description: 'This route does not accept a WebSocket upgrade' });
  assert.equal(upgrades.length, 0);
  // Plain HTTP on the same route still works.
  const plain = await fetch(gw.url + '/plain/x');
  assert.equal(plain.status, 426, 'the ws upstream itself answers plain HTTP with 426');
});

test('upgrades are counted per route', async () => {
  const text = await (await fetch(gw.adminUrl + '/metrics')).text();
  assert.match(text, /tokengate_requests_total\{route="chat",outcome="allowed",reason="ok",status_class="1xx"\} [1-9]/);
  assert.match(text, /tokengate_requests_total\{route="plain",outcome="denied",reason="upgrade_refused",status_class="4xx"\} 1/);
});

test('the upstream upgrade request carries the path and query exactly as the client sent them', async () => {
  upgrades.length = 0;
  const target = "/open/x?q='a'&r=%27&s=~!*()";
  const { connect } = await import('node:net');
  const sock = connect(Number(new URL(gw.url).port), '127.0.0.1');
  try {
    sock.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    let got = '';
    await new Promise<void>((resolve, reject) => {
      sock.on('data', (c: Buffer) => {
        got += c.toString('latin1');
        if (got.includes('\r\n\r\n')) resolve();
      });
      sock.once('error', reject);
    });
    assert.match(got, /^HTTP\/1\.1 101 /);
    assert.equal(upgrades.length, 1);
    assert.equal(upgrades[0].url, target); // not re-encoded: ' stays ', %27 stays %27
  } finally {
    sock.destroy();
  }
});
