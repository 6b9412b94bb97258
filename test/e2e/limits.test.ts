/**
 * Limits and timeouts of the `server` block (issue 6 §5), each set small and observed
 * from outside: maxTokenBytes, maxHeaderBytes, bodyLimitBytes (form bodies), upstream
 * timeout, keep-alive timeout, and the upstreamConnections cap (requests beyond it
 * queue; the upstream never sees more concurrent connections). headersTimeoutMs and
 * requestTimeoutMs are exercised by test/security/resource-exhaustion.test.ts.
 */
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { rawExchange } from '../helpers/raw-http.js';
import { issuerYaml } from '../helpers/fixture.js';

let iss: MockIssuer;
let up: EchoUpstream;
/** An upstream that holds each request `holdMs` and tracks concurrent connections. */
let slow: http.Server;
let slowActive = 0;
let slowPeak = 0;
let slowSockets = 0;
let gw: TestGateway;

before(async () => {
  iss = await startMockIssuer();
  up = await startUpstream();
  slow = http.createServer((req, res) => {
    slowActive++;
    slowPeak = Math.max(slowPeak, slowActive);
    req.resume();
    setTimeout(() => {
      slowActive--;
      res.end('ok');
    }, 150);
  });
  slow.on('connection', () => { slowSockets++; });
  await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
  const slowUrl = `http://127.0.0.1:${(slow.address() as AddressInfo).port}`;
  gw = await startGateway(`
server:
  maxTokenBytes: 1024
  maxHeaderBytes: 4096
  bodyLimitBytes: 2048
  upstreamTimeoutMs: 400
  keepAliveTimeoutMs: 300
  upstreamConnections: 2
${issuerYaml(iss)}routes:
  - id: orders
    match: { pathPrefix: /orders }
    upstream: ${up.url}
    auth: { mode: jwt }
  - id: slow
    match: { pathPrefix: /slow }
    upstream: ${slowUrl}
    auth: { mode: none }
  - id: pub
    match: { pathPrefix: /pub }
    upstream: ${up.url}
    auth: { mode: none }
`);
  await gw.ready();
});
after(async () => {
  await gw?.close();
  await up?.close();
  await new Promise<void>((r) => { slow?.close(() => r()); slow?.closeAllConnections(); });
  await iss?.close();
});
beforeEach(() => {
  up.reset();
  up.delayMs = 0;
});

test('maxTokenBytes: a longer token is 401 token_too_large, never parsed; the limit itself is allowed', async () => {
  const long = 'a'.repeat(1025);
  let r = await fetch(`${gw.url}/orders/1`, { headers: { authorization: `Bearer ${long}` } });
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="tokengate", error="invalid_token", error_description="The access token is too large"');
  assert.equal((await r.json()).error, 'invalid_token');
  r = await fetch(`${gw.url}/orders/1`, { headers: { authorization: `Bearer ${'a'.repeat(1024)}` } });
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="tokengate", error="invalid_token", error_description="The access token is malformed"');
  assert.equal(up.requests.length, 0);
});

test('maxHeaderBytes: a larger header section is 431, nothing forwarded', async () => {
  const ex = await rawExchange(Number(new URL(gw.url).port), [`GET /pub/x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ${'p'.repeat(5000)}\r\n\r\n`]);
  assert.equal(ex.responses[0]?.status, 431);
  assert.ok(ex.closed);
  const ok = await fetch(`${gw.url}/pub/x`, { headers: { 'x-pad': 'p'.repeat(3000) } });
  assert.equal(ok.status, 200);
  assert.equal(up.requests.length, 1);
});

test('bodyLimitBytes: a larger form body is 413 (it would have to be read to look for access_token); other bodies stream', async () => {
  let r = await fetch(`${gw.url}/pub/form`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'a=' + 'b'.repeat(3000) });
  assert.equal(r.status, 413);
  const body = await r.json();
  assert.equal(typeof body.error, 'string');
  assert.equal(r.headers.get('www-authenticate'), null);
  assert.equal(up.requests.length, 0);
  r = await fetch(`${gw.url}/pub/json`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ a: 'b'.repeat(3000) }) });
  assert.equal(r.status, 200);
  assert.equal(up.requests.at(-1)?.body, JSON.stringify({ a: 'b'.repeat(3000) }));
});

test('upstreamTimeoutMs: no response headers in time is 504 gateway_timeout', async () => {
  up.delayMs = 3000; // a 504 (not the upstream's 200) shows the timeout fired first
  const r = await fetch(`${gw.url}/pub/slow`);
  assert.equal(r.status, 504);
  assert.deepEqual(await r.json(), { error: 'gateway_timeout', error_description: 'The upstream service did not answer in time' });
  assert.equal(r.headers.get('www-authenticate'), null);
});

test('keepAliveTimeoutMs: an idle client connection is closed after the timeout', async () => {
  const start = Date.now();
  const ex = await rawExchange(Number(new URL(gw.url).port), ['GET /pub/ka HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'], 8000);
  assert.equal(ex.responses[0]?.status, 200);
  assert.ok(ex.closed, 'idle connection kept open');
  const took = Date.now() - start;
  assert.ok(took >= 250 && took < 5000, `closed after ${took} ms (keepAliveTimeoutMs 300; Node adds up to 1 s)`);
});

test('upstreamConnections: at most N concurrent upstream connections; the rest queue and succeed', async () => {
  slowPeak = 0;
  slowSockets = 0;
  const results = await Promise.all(Array.from({ length: 6 }, (_, i) => fetch(`${gw.url}/slow/${i}`).then(async (r) => [r.status, await r.text()])));
  assert.deepEqual(results.map(([s]) => s), [200, 200, 200, 200, 200, 200]);
  assert.equal(slowPeak, 2, `upstream saw ${slowPeak} concurrent requests`);
  assert.ok(slowSockets <= 2, `upstream saw ${slowSockets} connections`);
});
