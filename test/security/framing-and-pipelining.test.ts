/**
 * HTTP/1.1 framing attacks over raw sockets (issue 6 §2; the basic cases of issue 2 live
 * in request-smuggling.test.ts): CL.TE, TE.CL, duplicate
 * Content-Length, obfuscated Transfer-Encoding, folded and malformed header lines,
 * absolute-form and asterisk targets, CONNECT, and pipelined requests with one bad
 * token in the middle. Each smuggling attempt hides a second request (to a protected
 * route, without a token, marked `smuggled`) in what the gateway should read as a body.
 *
 * Expected: a clean 400 and a closed connection, and the recording upstream never
 * receives the hidden request — nor any request from a refused exchange.
 */
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { head, rawExchange, type RawExchange } from '../helpers/raw-http.js';
import { issuerYaml } from '../helpers/fixture.js';

let iss: MockIssuer;
let up: EchoUpstream;
let gw: TestGateway;
let port: number;
let token: string;

before(async () => {
  iss = await startMockIssuer();
  up = await startUpstream();
  gw = await startGateway(`
${issuerYaml(iss)}routes:
  - id: orders
    match: { pathPrefix: /orders }
    upstream: ${up.url}
    auth: { mode: jwt }
  - id: pub
    match: { pathPrefix: /pub }
    upstream: ${up.url}
    auth: { mode: none }
`);
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

const SMUGGLED = 'GET /orders/smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';


/** A clean 400 (exactly one response) and the connection closed: nothing after it is read. */
function assertRefused(ex: RawExchange, what: string): void {
  assert.equal(ex.responses.length, 1, `${what}: expected exactly one response, got ${JSON.stringify(ex.raw.slice(0, 200))}`);
  assert.equal(ex.responses[0].status, 400, `${what}: got ${ex.responses[0].status}`);
  assert.equal(JSON.parse(ex.responses[0].body).error, 'bad_request', `${what}: ${ex.responses[0].body}`);
  assert.equal(ex.responses[0].headers['www-authenticate'], undefined);
  assert.ok(ex.closed, `${what}: connection left open after a framing error`);
}

async function assertNothingSmuggled(what: string): Promise<void> {
  await new Promise((r) => setTimeout(r, 30)); // let a forwarded request land, if any
  const urls = up.requests.map((q) => q.url);
  assert.ok(!urls.some((u) => u.includes('smuggled')), `${what}: upstream received ${JSON.stringify(urls)}`);
}

const framingAttacks: Array<[string, string]> = [
  ['CL.TE', head('POST /pub/x HTTP/1.1', 'Host: 127.0.0.1', `Content-Length: ${5 + SMUGGLED.length}`, 'Transfer-Encoding: chunked') + '0\r\n\r\n' + SMUGGLED],
  ['TE.CL', head('POST /pub/x HTTP/1.1', 'Host: 127.0.0.1', 'Transfer-Encoding: chunked', 'Content-Length: 4') + `${(SMUGGLED.length + 2).toString(16)}\r\nxx${SMUGGLED}\r\n0\r\n\r\n`],
  ['duplicate Content-Length (different)', head('POST /pub/x HTTP/1.1', 'Host: 127.0.0.1', 'Content-Length: 0', `Content-Length: ${SMUGGLED.length}`) + SMUGGLED],
  ['duplicate Content-Length (same)', head('POST /pub/x HTTP/1.1', 'Host: 127.0.0.1', 'Content-Length: 3', 'Content-Length: 3') + 'abc'],
  ['Content-Length list', head('POST /pub/x HTTP/1.1', 'Host: 127.0.0.1', `Content-Length: 0, ${SMUGGLED.length}`) + SMUGGLED],
  ['Content-Length with sign', head('POST /pub/x HTTP/1.1', 'Host: 127.0.0.1', `Content-Length: +${SMUGGLED.length}`) + SMUGGLED],
  ['Transfer-Encoding: xchunked', head('POST /pub/x HTTP/1.1', 'Host: 127.0.0.1', 'Transfer-Encoding: xchunked', `Content-Length: ${SMUGGLED.length}`) + SMUGGLED],
  ['Transfer-Encoding: chunked, identity', head('POST /pub/x HTTP/1.1', 'Host: 127.0.0.1', 'Transfer-Encoding: chunked, identity') + '0\r\n\r\n' + SMUGGLED],
  ['Transfer-Encoding: identity (no CL)', head('POST /pub/x HTTP/1.1', 'Host: 127.0.0.1', 'Transfer-Encoding: identity') + SMUGGLED],
  ['Transfer-Encoding twice', head('POST /pub/x HTTP/1.1', 'Host: 127.0.0.1', 'Transfer-Encoding: chunked', 'Transfer-Encoding: x') + '0\r\n\r\n' + SMUGGLED],
  ['space before colon', head('POST /pub/x HTTP/1.1', 'Host: 127.0.0.1', 'Transfer-Encoding : chunked', `Content-Length: ${5 + SMUGGLED.length}`) + '0\r\n\r\n' + SMUGGLED],
  ['tab-prefixed TE value with CL', head('POST /pub/x HTTP/1.1', 'Host: 127.0.0.1', 'Transfer-Encoding:\tchunked', `Content-Length: ${5 + SMUGGLED.length}`) + '0\r\n\r\n' + SMUGGLED],
  ['vertical tab in TE', head('POST /pub/x HTTP/1.1', 'Host: 127.0.0.1', 'Transfer-Encoding: \x0bchunked', `Content-Length: ${SMUGGLED.length}`) + SMUGGLED],
  ['obs-fold TE', head('POST /pub/x HTTP/1.1', 'Host: 127.0.0.1', 'Transfer-Encoding: identity', ' chunked', `Content-Length: ${5 + SMUGGLED.length}`) + '0\r\n\r\n' + SMUGGLED],
  ['bare LF line ends', `POST /pub/x HTTP/1.1\nHost: 127.0.0.1\nTransfer-Encoding: chunked\nContent-Length: ${5 + SMUGGLED.length}\n\n0\n\n${SMUGGLED}`],
  ['bare CR in a header', head('POST /pub/x HTTP/1.1', 'Host: 127.0.0.1', `X-A: a\rContent-Length: ${SMUGGLED.length}`) + SMUGGLED],
  ['bad chunk size', head('POST /pub/x HTTP/1.1', 'Host: 127.0.0.1', 'Transfer-Encoding: chunked') + `-1\r\n${SMUGGLED}\r\n0\r\n\r\n`],
  ['chunk size overflow', head('POST /pub/x HTTP/1.1', 'Host: 127.0.0.1', 'Transfer-Encoding: chunked') + `10000000000000000000001\r\nx\r\n0\r\n\r\n${SMUGGLED}`],
  ['NUL in the request line', `GET /pub/x\x00 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n` + SMUGGLED],
  ['HTTP/1.0 with TE chunked', head('POST /pub/x HTTP/1.0', 'Host: 127.0.0.1', 'Transfer-Encoding: chunked', `Content-Length: ${5 + SMUGGLED.length}`) + '0\r\n\r\n' + SMUGGLED],
];

for (const [name, payload] of framingAttacks) {
  test(`framing: ${name} is refused, nothing smuggled`, async () => {
    const ex = await rawExchange(port, [payload], 10_000);
    assertRefused(ex, name);
    await assertNothingSmuggled(name);
    if (ex.responses.length === 1) assert.equal(up.requests.length, 0, `${name}: the refused request reached the upstream`);
  });
}

test('a legitimate chunked body with extensions is forwarded intact, and only once', async () => {
  const ex = await rawExchange(port, [head('POST /pub/x HTTP/1.1', 'Host: 127.0.0.1', 'Transfer-Encoding: chunked', 'Connection: close') +
    '3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n']);
  assert.equal(ex.responses[0]?.status, 200, ex.raw.slice(0, 200));
  assert.equal(up.requests.length, 1);
  assert.equal(up.requests[0].body, 'abcde');
});

const targets: Array<[string, string]> = [
  ['absolute-form to another host', 'GET http://evil.example/orders/1 HTTP/1.1'],
  ['absolute-form to the gateway', 'GET http://127.0.0.1/pub/x HTTP/1.1'],
  ['absolute-form https', 'GET https://127.0.0.1/orders/1 HTTP/1.1'],
  ['asterisk-form', 'OPTIONS * HTTP/1.1'],
  ['authority-form outside CONNECT', 'GET 127.0.0.1:80 HTTP/1.1'],
  ['empty target', 'GET  HTTP/1.1'],
];
for (const [name, line] of targets) {
  test(`target: ${name} is refused with 400`, async () => {
    const ex = await rawExchange(port, [head(line, 'Host: 127.0.0.1', 'Connection: close')]);
    assertRefused(ex, name);
    assert.equal(up.requests.length, 0);
  });
}

test('CONNECT is never tunnelled', async () => {
  const ex = await rawExchange(port, [head('CONNECT 127.0.0.1:' + up.port + ' HTTP/1.1', 'Host: 127.0.0.1:' + up.port) + SMUGGLED], 10_000);
  assert.ok(ex.responses.length === 0 ? ex.closed : ex.responses[0].status >= 400, ex.raw.slice(0, 100));
  await assertNothingSmuggled('CONNECT');
  assert.equal(up.requests.length, 0);
});

test('pipelined requests with one bad token in the middle: each judged alone, in order', async () => {
  const bad = token.slice(0, -4) + (token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
  const req = (path: string, t: string, last = false) =>
    head(`GET ${path} HTTP/1.1`, 'Host: 127.0.0.1', `Authorization: Bearer ${t}`, ...(last ? ['Connection: close'] : []));
  const ex = await rawExchange(port, [
    req('/orders/1', token) + req('/orders/2-bad', bad) + head('GET /orders/3-none HTTP/1.1', 'Host: 127.0.0.1') +
    head('POST /pub/body HTTP/1.1', 'Host: 127.0.0.1', `Content-Length: ${SMUGGLED.length}`) + SMUGGLED + req('/orders/4', token, true),
  ], 10_000);
  assert.deepEqual(ex.responses.map((r) => r.status), [200, 401, 401, 200, 200], ex.raw.slice(0, 300));
  assert.match(ex.responses[1].headers['www-authenticate'], /^Bearer realm="tokengate", error="invalid_token"/);
  assert.equal(ex.responses[2].headers['www-authenticate'], 'Bearer realm="tokengate"');
  // Node handles pipelined requests concurrently (responses stay in order): compare as sets.
  assert.deepEqual(up.requests.map((q) => q.url).sort(), ['/orders/1', '/orders/4', '/pub/body']);
  assert.equal(up.requests.find((q) => q.url === '/pub/body')?.body, SMUGGLED, 'a body stays a body');
});

test('a request after a refused one on the same connection is not processed', async () => {
  const ex = await rawExchange(port, [
    head('POST /pub/x HTTP/1.1', 'Host: 127.0.0.1', 'Content-Length: 1', 'Content-Length: 2') + 'ab' + head('GET /pub/smuggled HTTP/1.1', 'Host: 127.0.0.1'),
  ], 10_000);
  assertRefused(ex, 'after refused');
  await assertNothingSmuggled('after refused');
});
