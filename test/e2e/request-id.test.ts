/**
 * Request ids (SPEC "Tracing and request ids", issue 19): the client's `X-Request-Id` is
 * kept when it is a short token of safe characters and replaced otherwise; a request
 * without one gets a new id. The id reaches the upstream, comes back on every answer (the
 * upstream's, the gateway's refusals, a 502, a parser's 400, a preflight) and on the
 * access line, with the method, client address and user-agent, and never the query string.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startFixture, oneIssuer, type Fixture } from '../helpers/fixture.js';
import { rawExchange, head } from '../helpers/raw-http.js';
import { rawRequest } from '../helpers/raw.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import * as http from 'node:http';
import { listenLoopback } from '../helpers/ports.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

let f: Fixture;
let dec: TestGateway;
/** An upstream that answers with an x-request-id of its own. */
const own = http.createServer((_req, res) => {
  res.setHeader('x-request-id', 'upstream-own');
  res.end('ok');
});
const logs: string[] = [];
const decLogs: string[] = [];

/** Access lines written so far, parsed. */
function access(from: string[] = logs): Array<Record<string, unknown>> {
  return from.filter((l) => l.includes('"msg":"access"')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The access line of the request with id `id`. */
function lineOf(id: string, from: string[] = logs): Record<string, unknown> {
  const l = access(from).find((a) => a.request_id === id);
  assert.ok(l, `an access line with request_id ${id}`);
  return l;
}

before(async () => {
  const ownPort = await listenLoopback(own);
  f = await startFixture((iss, up) => oneIssuer(iss, `
  - id: own
    match: { pathPrefix: /own }
    upstream: http://127.0.0.1:${ownPort}
    auth: { mode: none }
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt }
  - id: pub
    match: { pathPrefix: /pub }
    upstream: ${up.url}
    auth: { mode: none }
    cors: { allowOrigins: [https://app.example.com] }
  - id: down
    match: { pathPrefix: /down }
    upstream: http://127.0.0.1:9
    auth: { mode: none }
`), { logs });
  dec = await startGateway(`
decision: { trustedProxies: [127.0.0.1/32] }
${oneIssuer(f.iss, `
  - id: api
    match: { pathPrefix: /api }
    upstream: http://127.0.0.1:9
    auth: { mode: jwt }
`)}`, { logs: decLogs });
  await dec.ready(15_000);
});

after(async () => {
  own.closeAllConnections();
  await Promise.allSettled([f?.close(), dec?.close(), new Promise((r) => own.close(r))]);
});

test('a safe client id is kept: the upstream receives it, the answer and the access line carry it', async () => {
  const id = 'client-Req.42:a_b';
  const token = await f.iss.sign({ claims: { sub: 'alice' } });
  const res = await f.bearer('/api/orders?secret=s3cr3t-query', token, { headers: { 'x-request-id': id, 'user-agent': 'probe/1.0' } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('x-request-id'), id);
  const seen = f.up.requests.at(-1)!;
  assert.equal(seen.headers['x-request-id'], id);
  const line = lineOf(id);
  assert.equal(line.method, 'GET');
  assert.equal(line.client, '127.0.0.1');
  assert.equal(line.user_agent, 'probe/1.0');
  assert.equal(line.route, 'api');
  assert.equal(line.sub, 'alice');
  const all = logs.join('\n');
  assert.equal(all.includes('s3cr3t-query'), false, 'no query string on any log line');
  assert.equal(all.includes(token), false, 'no token on any log line');
});

test('no id, a long one, an unsafe one or two of them: a new UUID, the same upstream, in the answer and on the line', async () => {
  const kept128 = 'a'.repeat(128);
  const ok = await f.get('/pub/x', { headers: { 'x-request-id': kept128 } });
  assert.equal(ok.headers.get('x-request-id'), kept128, '128 characters are kept');
  await ok.arrayBuffer();
  for (const sent of [undefined, 'a'.repeat(129), 'has space', 'quote"d', 'semi;colon', 'ünïcode']) {
    f.up.reset();
    const res = await f.get('/pub/x', { headers: sent === undefined ? {} : { 'x-request-id': sent } });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    const id = res.headers.get('x-request-id')!;
    assert.match(id, UUID, `replaced: ${sent}`);
    assert.equal(f.up.requests[0]!.headers['x-request-id'], id, 'the upstream gets the id the client gets');
    lineOf(id);
  }
  // Two X-Request-Id headers: neither can be the one the other hops logged.
  const two = await rawRequest(f.gw.url, head('GET /pub/x HTTP/1.1', 'Host: 127.0.0.1', 'X-Request-Id: one', 'X-Request-Id: two', 'Connection: close'));
  assert.equal(two.status, 200);
  assert.match(two.headers['x-request-id'] as string, UUID);
  // An `_` spelling (one variable to a CGI/WSGI upstream) next to an unsafe id: only the gateway's goes upstream.
  f.up.reset();
  const under = await rawRequest(f.gw.url, head('GET /pub/x HTTP/1.1', 'Host: 127.0.0.1', 'X-Request-Id: has space', 'X_Request_Id: chosen', 'Connection: close'));
  assert.equal(under.status, 200);
  const sentUp = f.up.requests[0]!.headers;
  assert.equal(sentUp['x-request-id'], under.headers['x-request-id']);
  assert.deepEqual(Object.keys(sentUp).filter((k) => k.replace(/_/g, '-') === 'x-request-id'), ['x-request-id']);
});

test('the upstream\'s own x-request-id is replaced by the request\'s', async () => {
  const res = await f.get('/own/x', { headers: { 'x-request-id': 'mine' } });
  assert.equal(await res.text(), 'ok');
  assert.equal(res.headers.get('x-request-id'), 'mine');
});

test('refusals carry the id: 401, 404, 400 bad path, 502, a preflight, a parser 400 (new id)', async () => {
  const cases: Array<[string, RequestInit, number]> = [
    ['/api/x', {}, 401],
    ['/nowhere', {}, 404],
    ['/down/x', {}, 502],
    ['/pub/x', { method: 'OPTIONS', headers: { origin: 'https://app.example.com', 'access-control-request-method': 'GET' } }, 204],
  ];
  for (const [path, init, status] of cases) {
    const id = `r-${status}`;
    const res = await f.get(path, { ...init, headers: { ...(init.headers as Record<string, string>), 'x-request-id': id } });
    assert.equal(res.status, status, path);
    assert.equal(res.headers.get('x-request-id'), id, `${status} carries the id`);
    await res.arrayBuffer();
    assert.equal(lineOf(id).status, status);
  }
  const bad = await rawRequest(f.gw.url, head('GET /pub/a%2fb HTTP/1.1', 'Host: 127.0.0.1', 'X-Request-Id: r-400', 'Connection: close'));
  assert.equal(bad.status, 400);
  assert.equal(bad.headers['x-request-id'], 'r-400');
  // Bytes the HTTP parser refuses: no header was read, so the id is new.
  const ex = await rawExchange(Number(new URL(f.gw.url).port), ['GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n']);
  assert.match(ex.raw, /^HTTP\/1\.1 400 /);
  const m = /\r\nx-request-id: ([^\r]+)\r\n/i.exec(ex.raw);
  assert.ok(m, ex.raw);
  assert.match(m[1]!, UUID);
  lineOf(m[1]!);
});

test('decision listener: the id on the 200 (with the identity headers) and on refusals, and on its access line', async () => {
  const token = await f.iss.sign();
  const ok = await fetch(dec.decisionUrl!, {
    headers: { 'x-forwarded-uri': '/api/x?q=secret-q', 'x-forwarded-method': 'POST', authorization: `Bearer ${token}`, 'x-request-id': 'nginx-1', 'x-forwarded-for': '198.51.100.7' },
  });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get('x-request-id'), 'nginx-1');
  const no = await fetch(dec.decisionUrl!, { headers: { 'x-forwarded-uri': '/api/x', 'x-request-id': 'nginx-2' } });
  assert.equal(no.status, 401);
  assert.equal(no.headers.get('x-request-id'), 'nginx-2');
  const line = lineOf('nginx-1', decLogs);
  assert.equal(line.method, 'POST', 'the described method');
  assert.equal(line.client, '198.51.100.7', 'the client the front proxy names');
  assert.equal(decLogs.join('\n').includes('secret-q'), false);
});
