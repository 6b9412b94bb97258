/**
 * A CORS preflight is answered by the gateway without a token, so it must not become a
 * way in: its body (a preflight has none, Fetch §4.8) is never read as a next request,
 * the connection it came on stays in a clean state (the next request on it is judged on
 * its own), it never reaches the upstream even with a valid token, and preflight-shaped
 * requests that are not preflights (no `Access-Control-Request-Method`, lower-case
 * `options`) get no pass either. Raw sockets, so framing is exactly what is sent.
 */
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { head, rawExchange } from '../helpers/raw-http.js';
import { issuerYaml } from '../helpers/fixture.js';

const APP = 'https://app.example.com';
let iss: MockIssuer; let up: EchoUpstream; let gw: TestGateway; let port: number; let token: string;
const logs: string[] = [];

before(async () => {
  iss = await startMockIssuer({ algs: ['ES256'] });
  up = await startUpstream();
  gw = await startGateway(`
${issuerYaml(iss)}routes:
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt }
    cors: { allowOrigins: [${APP}] }
`, { logs });
  await gw.ready();
  port = Number(new URL(gw.url).port);
  token = await iss.sign();
});
after(async () => {
  await gw?.close();
  await up?.close();
  await iss?.close();
});
beforeEach(() => up.reset());

const SMUGGLED = 'GET /api/smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';
const PREFLIGHT = ['OPTIONS /api/orders HTTP/1.1', 'Host: 127.0.0.1', `Origin: ${APP}`, 'Access-Control-Request-Method: GET'];

async function upstreamUrls(): Promise<string[]> {
  await new Promise((r) => setTimeout(r, 50)); // let a forwarded request land, if any
  return up.requests.map((q) => `${q.method} ${q.url}`);
}

test('a preflight with a Content-Length body: one 204, the connection closed, the body never read as a request', async () => {
  const ex = await rawExchange(port, [head(...PREFLIGHT, `Content-Length: ${SMUGGLED.length}`) + SMUGGLED], 3000);
  assert.equal(ex.responses.length, 1, ex.raw);
  assert.equal(ex.responses[0].status, 204);
  assert.equal(ex.responses[0].headers.connection, 'close');
  assert.ok(ex.closed, 'connection left open after a preflight with a body');
  assert.deepEqual(await upstreamUrls(), []);
  // Recorded once, like any request (this one took the body-reading path).
  const lines = logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'access');
  assert.deepEqual(lines.map((l) => [l.route, l.status, l.reason]), [['api', 204, 'cors_preflight']]);
});

test('a preflight with a chunked body: the same', async () => {
  const body = `${SMUGGLED.length.toString(16)}\r\n${SMUGGLED}\r\n0\r\n\r\n`;
  const ex = await rawExchange(port, [head(...PREFLIGHT, 'Transfer-Encoding: chunked') + body + SMUGGLED], 3000);
  assert.equal(ex.responses.length, 1, ex.raw);
  assert.equal(ex.responses[0].status, 204);
  assert.ok(ex.closed);
  assert.deepEqual(await upstreamUrls(), []);
});

test('CL.TE and TE.CL framing on a preflight are refused before any CORS answer', async () => {
  const clte = head(...PREFLIGHT, `Content-Length: ${5 + SMUGGLED.length}`, 'Transfer-Encoding: chunked') + '0\r\n\r\n' + SMUGGLED;
  const tecl = head(...PREFLIGHT, 'Transfer-Encoding: chunked', 'Content-Length: 4') + `${(SMUGGLED.length + 2).toString(16)}\r\nxx${SMUGGLED}\r\n0\r\n\r\n`;
  for (const [what, req] of [['CL.TE', clte], ['TE.CL', tecl]]) {
    const ex = await rawExchange(port, [req], 3000);
    assert.equal(ex.responses.length, 1, `${what}: ${ex.raw}`);
    assert.equal(ex.responses[0].status, 400, what);
    assert.ok(ex.closed, what);
  }
  assert.deepEqual(await upstreamUrls(), []);
});

test('pipelined after a preflight, a request without a token is still refused; with one it is forwarded alone', async () => {
  const ex = await rawExchange(port, [
    head(...PREFLIGHT) + head('GET /api/orders HTTP/1.1', 'Host: 127.0.0.1', `Origin: ${APP}`) +
    head('GET /api/orders?2 HTTP/1.1', 'Host: 127.0.0.1', `Origin: ${APP}`, `Authorization: Bearer ${token}`, 'Connection: close'),
  ], 5000);
  assert.deepEqual(ex.responses.map((r) => r.status), [204, 401, 200], ex.raw);
  assert.equal(ex.responses[1].headers['access-control-allow-origin'], APP);
  assert.equal(ex.responses[2].headers['access-control-allow-origin'], APP);
  assert.deepEqual(await upstreamUrls(), ['GET /api/orders?2']);
});

test('a preflight carrying a valid token is still only answered, never forwarded', async () => {
  const ex = await rawExchange(port, [head(...PREFLIGHT, `Authorization: Bearer ${token}`, 'Connection: close')], 3000);
  assert.equal(ex.responses[0].status, 204);
  assert.deepEqual(await upstreamUrls(), []);
});

test('preflight look-alikes are ordinary requests and need a token', async () => {
  const cases = [
    ['no Access-Control-Request-Method', head('OPTIONS /api/orders HTTP/1.1', 'Host: 127.0.0.1', `Origin: ${APP}`, 'Connection: close')],
    ['no Origin', head('OPTIONS /api/orders HTTP/1.1', 'Host: 127.0.0.1', 'Access-Control-Request-Method: GET', 'Connection: close')],
    ['GET with the preflight headers', head('GET /api/orders HTTP/1.1', 'Host: 127.0.0.1', `Origin: ${APP}`, 'Access-Control-Request-Method: GET', 'Connection: close')],
  ];
  for (const [what, req] of cases) {
    const ex = await rawExchange(port, [req], 3000);
    assert.equal(ex.responses[0]?.status, 401, `${what}: ${ex.raw}`);
  }
  assert.deepEqual(await upstreamUrls(), []);
});

test('a preflight is judged on the normalized path: dot-segments cannot borrow a cors route\'s answer', async () => {
  const pf = (target: string) => rawExchange(port, [head(`OPTIONS ${target} HTTP/1.1`, 'Host: 127.0.0.1', `Origin: ${APP}`, 'Access-Control-Request-Method: GET', 'Connection: close')], 3000);
  assert.equal((await pf('/api/%2e%2e/admin')).responses[0]?.status, 404); // is /admin: no route, no CORS answer
  assert.equal((await pf('/api/../../etc')).responses[0]?.status, 400); // climbs above the root
  assert.equal((await pf('/api%2fx')).responses[0]?.status, 400); // encoded slash
  assert.equal((await pf('/api/./orders')).responses[0]?.status, 204); // is /api/orders
  assert.deepEqual(await upstreamUrls(), []);
});
