/**
 * Malformed HTTP/2 requests, sent frame by frame (node:http2's client refuses to send
 * most of them): connection-specific headers (RFC 9113 §8.2.2), uppercase names (§8.2),
 * pseudo-header faults (§8.3: missing, duplicated, after a regular field, unknown),
 * `:path` tricks (absolute-form, `*`, empty, no leading `/`), CONNECT (§8.5) and an
 * `:authority` that `host` contradicts (§8.3.1). Each is refused — a stream reset by
 * nghttp2 or an answer from the gateway's own checks — and none reaches the upstream;
 * the connection keeps serving. Routing uses `:authority` (a host-matched route).
 */
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { openRoute, startH2Fixture, type Fixture } from '../helpers/fixture.js';
import { ERR, FRAME, RawH2, get, headerBlock, headers, h2Request } from '../helpers/h2-frames.js';

let f: Fixture;
let port: number;
let authority: string;

before(async () => {
  ({ f, port, authority } = await startH2Fixture('', openRoute('tenant', { host: 'tenant.example' }) + openRoute('open')));
});
after(() => f?.close());
beforeEach(() => f.up.reset());

type Fields = Array<[string, string]>;
const pseudo = (path = '/open/x', method = 'GET', scheme = 'http'): Fields => [[':method', method], [':scheme', scheme], [':path', path], [':authority', authority]];

/** Requests no upstream may see, and whether nghttp2 resets them (PROTOCOL_ERROR) or the gateway answers them. */
const CASES: Array<{ name: string; fields: () => Fields; refusal: 'reset' | 'answer' }> = [
  { name: 'connection: close', fields: () => [...pseudo(), ['connection', 'close']], refusal: 'reset' },
  { name: 'transfer-encoding: chunked', fields: () => [...pseudo(), ['transfer-encoding', 'chunked']], refusal: 'reset' },
  { name: 'upgrade: websocket', fields: () => [...pseudo(), ['upgrade', 'websocket']], refusal: 'reset' },
  { name: 'keep-alive', fields: () => [...pseudo(), ['keep-alive', 'timeout=5']], refusal: 'reset' },
  { name: 'proxy-connection', fields: () => [...pseudo(), ['proxy-connection', 'keep-alive']], refusal: 'reset' },
  { name: 'te: gzip (only "trailers" is allowed)', fields: () => [...pseudo(), ['te', 'gzip']], refusal: 'reset' },
  { name: 'an uppercase header name', fields: () => [...pseudo(), ['X-Auth-Sub', 'admin']], refusal: 'reset' },
  { name: 'absolute-form :path', fields: () => pseudo('http://evil.example/open/x'), refusal: 'reset' },
  { name: ':path *', fields: () => pseudo('*'), refusal: 'reset' },
  { name: 'empty :path', fields: () => pseudo(''), refusal: 'reset' },
  { name: ':path without a leading /', fields: () => pseudo('open/x'), refusal: 'reset' },
  { name: 'no :path', fields: () => pseudo().filter(([n]) => n !== ':path'), refusal: 'reset' },
  { name: 'two :path', fields: () => [...pseudo('/open/a'), [':path', '/open/b']], refusal: 'reset' },
  { name: 'two :method', fields: () => [...pseudo(), [':method', 'POST']], refusal: 'reset' },
  { name: 'a pseudo-header after a regular one', fields: () => [[':method', 'GET'], [':scheme', 'http'], ['x-a', '1'], [':path', '/open/x'], [':authority', authority]], refusal: 'reset' },
  { name: 'an unknown pseudo-header', fields: () => [...pseudo(), [':evil', '1']], refusal: 'reset' },
  { name: 'extended CONNECT (:protocol, not enabled)', fields: () => [...pseudo('/open/x', 'CONNECT'), [':protocol', 'websocket']], refusal: 'reset' },
  { name: 'neither :authority nor host', fields: () => pseudo().filter(([n]) => n !== ':authority'), refusal: 'reset' },
  // nghttp2 checks :path only for http(s) schemes: with another, the gateway's own path rules refuse.
  { name: 'absolute-form :path with :scheme foo', fields: () => pseudo('http://evil.example/open/x', 'GET', 'foo'), refusal: 'answer' },
  { name: ':path without / with :scheme foo', fields: () => pseudo('open/x', 'GET', 'foo'), refusal: 'answer' },
  { name: 'OPTIONS *', fields: () => pseudo('*', 'OPTIONS'), refusal: 'answer' },
  { name: 'CONNECT', fields: () => [[':method', 'CONNECT'], [':authority', authority]], refusal: 'answer' },
  { name: ':authority and host disagreeing', fields: () => [...pseudo(), ['host', 'tenant.example']], refusal: 'answer' },
  { name: 'two host headers', fields: () => [...pseudo(), ['host', authority], ['host', authority]], refusal: 'reset' },
];

test('malformed requests are refused on one connection, none forwarded, and the connection keeps serving', async () => {
  const c = await RawH2.connect(port);
  let id = 1;
  for (const k of CASES) {
    c.send(headers(id, headerBlock(k.fields())));
    const got = await c.waitFor((x) => x.streamId === id && (x.type === FRAME.RST_STREAM || x.type === FRAME.HEADERS), 5000);
    if (k.refusal === 'reset') assert.equal(got.type === FRAME.RST_STREAM && c.reset(id), ERR.PROTOCOL_ERROR, `${k.name}: stream reset PROTOCOL_ERROR`);
    else assert.equal(got.type, FRAME.HEADERS, `${k.name}: answered by the gateway`);
    assert.deepEqual(f.up.requests.map((r) => r.url), [], `${k.name}: not forwarded`);
    id += 2;
  }
  c.send(headers(id, headerBlock(get('/open/fine', authority))));
  await c.waitFor((x) => x.streamId === id && x.type === FRAME.HEADERS, 5000);
  assert.deepEqual(f.up.requests.map((r) => r.url), ['/open/fine'], 'the same connection still serves');
  assert.equal(c.goaway(), undefined);
  c.close();
});

test('CONNECT is answered 400 bad_request from the catalogue (nothing is tunnelled; it has no :path to route); a contradicting host is 400 bad_request', async () => {
  const client = http2.connect(f.gw.url);
  client.on('error', () => undefined);
  try {
    // The HTTP/2 server's 'connect' listener answers it (Fastify's router cannot: no :path).
    const connect = await h2Request(client, { ':method': 'CONNECT', ':authority': 'evil.example:443' });
    assert.equal(connect.status, 400);
    assert.equal(JSON.parse(connect.body).error, 'bad_request');
    const hosts = await h2Request(client, { ':path': '/open/x', ':authority': authority, host: 'tenant.example' });
    assert.equal(hosts.status, 400);
    assert.equal(JSON.parse(hosts.body).error, 'bad_request');
    assert.equal(f.up.requests.length, 0);
  } finally {
    client.close();
  }
});

test('routing matches on :authority: a host-matched route is reached through it only, and a host header agreeing with it changes nothing', async () => {
  const c = await RawH2.connect(port);
  c.send(headers(1, headerBlock([[':method', 'GET'], [':scheme', 'http'], [':path', '/tenant/t'], [':authority', 'Tenant.Example']])));
  c.send(headers(3, headerBlock([[':method', 'GET'], [':scheme', 'http'], [':path', '/tenant/u'], [':authority', 'tenant.example'], ['host', 'TENANT.example']])));
  c.send(headers(5, headerBlock(get('/tenant/v', authority)))); // another authority: no route (404)
  c.send(headers(7, headerBlock([[':method', 'GET'], [':scheme', 'http'], [':path', '/tenant/w'], ['host', 'tenant.example']]))); // host alone
  for (const id of [1, 3, 5, 7]) await c.waitFor((x) => x.streamId === id && x.type === FRAME.HEADERS, 5000);
  c.close();
  assert.deepEqual(f.up.requests.map((r) => r.url).sort(), ['/tenant/t', '/tenant/u', '/tenant/w']);
  const notFound = await h2Request(f.gw.url, { ':path': '/tenant/v' });
  assert.equal(notFound.status, 404);
});

test('header fields with characters HTTP forbids (CR, LF, NUL, space in a name) are dropped by nghttp2, never forwarded', async () => {
  const c = await RawH2.connect(port);
  c.send(headers(1, headerBlock([...pseudo('/open/chars'), ['x-cr', 'a\r\nx-injected: 1'], ['x-nul', 'a\0b'], ['x auth', 'x'], ['x-ok', 'fine']])));
  await c.waitFor((x) => x.streamId === 1 && (x.type === FRAME.HEADERS || x.type === FRAME.RST_STREAM), 5000);
  c.close();
  for (const r of f.up.requests) {
    assert.equal(r.headers['x-injected'], undefined);
    assert.equal(r.headers['x-cr'], undefined);
    assert.equal(r.headers['x-nul'], undefined);
    assert.ok(!r.rawHeaders.some((h) => /[\r\n\0]/.test(h)), 'no control character upstream');
  }
});
