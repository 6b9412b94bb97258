/**
 * Upstream faults and event-loop stalls (issue 6 §4): an upstream that refuses
 * connections, resets before answering, answers with garbage, or resets in the middle
 * of a response body; and a gateway whose event loop is blocked while requests are in
 * flight. Before response headers the SPEC table applies (502 / 504, generic body, no
 * challenge); after them the only honest signal is an aborted response. The gateway
 * stays up throughout and serves the next request normally.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

let up: EchoUpstream;
let gw: TestGateway;
const servers: net.Server[] = [];
let closedPort = 0;
const logs: string[] = [];

async function listen(s: net.Server): Promise<string> {
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

before(async () => {
  up = await startUpstream();
  // A port nobody listens on: bind, read the port, close.
  const tmp = net.createServer();
  await new Promise<void>((r) => tmp.listen(0, '127.0.0.1', r));
  closedPort = (tmp.address() as AddressInfo).port;
  await new Promise<void>((r) => tmp.close(() => r()));

  const resetBefore = await listen(net.createServer((sock) => sock.once('data', () => sock.resetAndDestroy())));
  const garbage = await listen(net.createServer((sock) => sock.once('data', () => sock.end('SSH-2.0-OpenSSH\r\n\r\n'))));
  const resetMid = await listen(http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100000' });
    res.write('x'.repeat(1000));
    setTimeout(() => res.socket?.resetAndDestroy(), 30);
  }));
  const hang = await listen(net.createServer((sock) => sock.on('data', () => undefined)));
  gw = await startGateway(`
server: { upstreamTimeoutMs: 2000 }
routes:
  - { id: refused, match: { pathPrefix: /refused }, upstream: "http://127.0.0.1:${closedPort}", auth: { mode: none } }
  - { id: reset, match: { pathPrefix: /reset }, upstream: "${resetBefore}", auth: { mode: none } }
  - { id: garbage, match: { pathPrefix: /garbage }, upstream: "${garbage}", auth: { mode: none } }
  - { id: midway, match: { pathPrefix: /midway }, upstream: "${resetMid}", auth: { mode: none } }
  - { id: pub, match: { pathPrefix: /pub }, upstream: "${up.url}", auth: { mode: none } }
  - { id: tls, match: { pathPrefix: /tls }, upstream: "${up.url.replace('http:', 'https:')}", auth: { mode: none } }
  - { id: hang, match: { pathPrefix: /hang }, upstream: "${hang}", auth: { mode: none } }
  - { id: ws-refused, match: { pathPrefix: /ws-refused }, upstream: "http://127.0.0.1:${closedPort}", websocket: true, auth: { mode: none } }
  - { id: ws-hang, match: { pathPrefix: /ws-hang }, upstream: "${hang}", websocket: true, auth: { mode: none } }
`, { logs });
});
after(async () => {
  await gw?.close();
  for (const s of servers) await new Promise<void>((r) => { s.close(() => r()); (s as http.Server).closeAllConnections?.(); });
  await up?.close();
});

async function stillServing(): Promise<void> {
  const r = await fetch(`${gw.url}/pub/ok`);
  assert.equal(r.status, 200);
  await r.arrayBuffer();
  assert.equal((await fetch(`${gw.adminUrl}/healthz`)).status, 200);
}

for (const [path, what] of [['/refused/x', 'refused connection'], ['/reset/x', 'reset before the response'], ['/garbage/x', 'a non-HTTP answer']]) {
  test(`upstream ${what}: 502 bad_gateway, generic body`, async () => {
    const r = await fetch(gw.url + path);
    assert.equal(r.status, 502);
    assert.equal(r.headers.get('www-authenticate'), null);
    assert.deepEqual(await r.json(), { error: 'bad_gateway', error_description: 'The upstream service is unavailable' });
    await stillServing();
  });
}

test('each 502/504 logs its cause, the upstream and the error code; the client body stays generic', async () => {
  const cases: Array<[string, number, string, RegExp]> = [
    ['/refused/x', 502, 'refused', /^ECONNREFUSED$/],
    ['/reset/x', 502, 'reset', /^(ECONNRESET|UND_ERR_SOCKET)$/],
    ['/tls/x', 502, 'tls', /^ERR_SSL_/],
    ['/hang/x', 504, 'timeout', /^UND_ERR_HEADERS_TIMEOUT$/],
  ];
  for (const [path, status, cause, code] of cases) {
    logs.length = 0;
    const r = await fetch(gw.url + path);
    assert.equal(r.status, status, path);
    const body = await r.text();
    const line = logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'upstream failed');
    assert.ok(line, `${path}: no "upstream failed" line in ${logs.join('')}`);
    assert.equal(line.cause, cause, path);
    assert.match(String(line.code), code, path);
    assert.equal(line.status, status);
    assert.match(String(line.upstream), /^https?:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(line.level, 'warn');
    assert.ok(!body.includes(String(line.code)) && !body.includes('127.0.0.1'), `the body says nothing internal: ${body}`);
  }
});

test('a WebSocket upgrade whose upstream refuses or does not answer: 502/504, the cause logged', async () => {
  for (const [path, status, cause] of [['/ws-refused/x', 502, 'refused'], ['/ws-hang/x', 504, 'timeout']] as const) {
    logs.length = 0;
    const got = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${gw.url}${path}`, { headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } });
      req.on('response', (res) => { res.resume(); resolve(res.statusCode ?? 0); });
      req.on('upgrade', () => reject(new Error('upgraded')));
      req.on('error', reject);
      req.end();
    });
    assert.equal(got, status, path);
    const line = logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'upstream failed');
    assert.ok(line, `${path}: no "upstream failed" line`);
    assert.equal(line.cause, cause, path);
    assert.equal(line.status, status, path);
  }
});

test('upstream resets mid-response: the client sees an aborted body, never a complete one', async () => {
  const r = await fetch(`${gw.url}/midway/x`);
  assert.equal(r.status, 200);
  await assert.rejects(r.text(), 'a truncated body was delivered as complete');
  await stillServing();
});

test('event-loop stall with requests in flight: every answer is a table answer, then normal service', async () => {
  up.delayMs = 50;
  const inflight = Array.from({ length: 8 }, (_, i) => fetch(`${gw.url}/pub/stall-${i}`).then(async (r) => ({ status: r.status, body: await r.text() })));
  await new Promise((r) => setTimeout(r, 20));
  const until = Date.now() + 1200;
  while (Date.now() < until) { /* block the loop that runs the gateway */ }
  const results = await Promise.all(inflight);
  up.delayMs = 0;
  for (const { status, body } of results) {
    assert.ok(status === 200 || status === 504, `${status} ${body}`);
    if (status === 504) assert.equal(JSON.parse(body).error, 'gateway_timeout');
  }
  await stillServing();
});
