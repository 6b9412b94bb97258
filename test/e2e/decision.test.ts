/**
 * The decision (forward-auth) listener, called directly: the described request is judged
 * by the same routes, path rules and policies as the proxy; trusted peers only; no
 * `decision:` block, no listener; requests counted in metrics by route id.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { describedRequest } from '../../src/server/decision.js';
import { addressMatcher as peerMatcher } from '../../src/config/address-matcher.js';
import { issuerYaml } from '../helpers/fixture.js';

let iss: MockIssuer; let up: EchoUpstream; let gw: TestGateway;
const SCOPE_CHALLENGE = 'Bearer realm="tokengate", error="insufficient_scope", error_description="The access token lacks a required scope", scope="orders:read"';

before(async () => {
  iss = await startMockIssuer({ algs: ['ES256'] });
  up = await startUpstream();
  gw = await startGateway(`
decision:
  trustedProxies: [127.0.0.1/32, "::1"]
${issuerYaml(iss)}routes:
  - id: pub
    match: { pathPrefix: /pub }
    upstream: ${up.url}
    auth: { mode: none }
  - id: hosted
    match: { host: api.example.com, pathPrefix: /hosted }
    upstream: ${up.url}
    auth: { mode: none }
  - id: greeter
    match: { pathPrefix: /helloworld.Greeter/, methods: [POST] }
    upstream: ${up.url}
    upstreamProtocol: h2
    auth: { mode: jwt, scopes: { allOf: [orders:read] } }
    forward: { headers: { x-auth-subject: sub } }
  - id: orders
    match: { pathPrefix: /orders, methods: [GET, HEAD] }
    upstream: ${up.url}
    auth: { mode: jwt, scopes: { allOf: [orders:read] } }
    forward: { headers: { x-auth-subject: sub, x-auth-scopes: scope } }
`);
  await gw.ready();
});
after(async () => { await gw?.close(); await up?.close(); await iss?.close(); });

interface Answer { status: number; headers: http.IncomingHttpHeaders; body: string }

/** One call to the decision listener, from `localAddress` (default 127.0.0.1). */
function ask(headers: Record<string, string>, opts: { localAddress?: string; method?: string; path?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(gw.decisionUrl! + (opts.path ?? '/'), { method: opts.method ?? 'GET', headers, localAddress: opts.localAddress, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('200 with the identity headers the proxy would forward', async () => {
  const token = await iss.sign({});
  const a = await ask({ 'x-forwarded-method': 'GET', 'x-forwarded-host': 'shop.example', 'x-forwarded-uri': '/orders/1?x=1', authorization: `Bearer ${token}`, 'x-auth-subject': 'forged' });
  assert.equal(a.status, 200, a.body);
  assert.equal(a.headers['x-auth-subject'], 'user-1');
  assert.equal(a.headers['x-auth-scopes'], 'orders:read');
  assert.equal(a.body, '');
  assert.equal(up.requests.length, 0, 'the decision listener never calls the upstream');
});

test('errors: status, challenge and body of the proxy error table', async () => {
  const missing = await ask({ 'x-forwarded-uri': '/orders/1' });
  assert.equal(missing.status, 401);
  assert.equal(missing.headers['www-authenticate'], 'Bearer realm="tokengate"');
  assert.equal(JSON.parse(missing.body).error, 'missing_token');

  const bad = await ask({ 'x-forwarded-uri': '/orders/1', authorization: 'Bearer ' + await iss.sign({ claims: { aud: 'other' } }) });
  assert.equal(bad.status, 401);
  assert.equal(bad.headers['www-authenticate'], 'Bearer realm="tokengate", error="invalid_token", error_description="The token audience is not accepted"');

  const scope = await ask({ 'x-forwarded-uri': '/orders/1', authorization: 'Bearer ' + await iss.sign({ claims: { scope: 'other' } }) });
  assert.equal(scope.status, 403);
  assert.equal(scope.headers['www-authenticate'], SCOPE_CHALLENGE);
  assert.equal(JSON.parse(scope.body).error, 'insufficient_scope');

  const inQuery = await ask({ 'x-forwarded-uri': '/orders/1?access_token=abc' });
  assert.equal(inQuery.status, 400);
  assert.match(String(inQuery.headers['www-authenticate']), /error="invalid_request"/);

  const none = await ask({ 'x-forwarded-uri': '/nothing/here' });
  assert.equal(none.status, 404);
  assert.equal(JSON.parse(none.body).error, 'not_found');

  const noUri = await ask({ 'x-forwarded-method': 'GET', authorization: 'Bearer ' + await iss.sign({}) });
  assert.equal(noUri.status, 400);
  assert.deepEqual(JSON.parse(noUri.body), { error: 'bad_request', error_description: 'X-Forwarded-Uri or X-Original-URI is required' });
});

test('path rules are exactly the proxy ones', async () => {
  // Dot-segments resolve before matching: /pub/%2e%2e/orders is /orders, which needs a token.
  const climb = await ask({ 'x-forwarded-uri': '/pub/%2e%2e/orders/1' });
  assert.equal(climb.status, 401);
  for (const uri of ['/pub/a%2Fb', '/pub/a%5cb', '/pub/a\\b', '/../pub', '/pub/%00']) {
    const r = await ask({ 'x-forwarded-uri': uri });
    assert.equal(r.status, 400, uri);
    assert.equal(JSON.parse(r.body).error, 'bad_request', uri);
  }
  const absolute = await ask({ 'x-forwarded-uri': 'http://evil/pub' });
  assert.equal(absolute.status, 400);
  assert.equal((await ask({ 'x-forwarded-uri': '/pub/ok' })).status, 200);
});

test('method and host come from the described request', async () => {
  const token = await iss.sign({});
  const post = await ask({ 'x-forwarded-method': 'POST', 'x-forwarded-uri': '/orders/1', authorization: `Bearer ${token}` });
  assert.equal(post.status, 404, 'orders only takes GET/HEAD');
  // Without a forwarded method, the decision request's own method (Envoy keeps the original).
  assert.equal((await ask({ 'x-forwarded-uri': '/orders/1', authorization: `Bearer ${token}` }, { method: 'DELETE' })).status, 404);
  assert.equal((await ask({ 'x-forwarded-uri': '/hosted/a', 'x-forwarded-host': 'API.example.com:443' })).status, 200);
  assert.equal((await ask({ 'x-forwarded-uri': '/hosted/a', 'x-forwarded-host': 'other.example' })).status, 404);
});

test('nginx X-Original-* set works; the X-Forwarded-* set wins when both are present', async () => {
  const token = await iss.sign({});
  const nginx = await ask({ 'x-original-method': 'GET', 'x-original-uri': '/orders/1', authorization: `Bearer ${token}` });
  assert.equal(nginx.status, 200);
  assert.equal(nginx.headers['x-auth-subject'], 'user-1');
  assert.equal((await ask({ 'x-original-method': 'POST', 'x-original-uri': '/orders/1', authorization: `Bearer ${token}` })).status, 404);
  // Both sets: X-Forwarded-Uri (/orders, needs a token) wins over X-Original-URI (/pub, open).
  const both = await ask({ 'x-forwarded-uri': '/orders/1', 'x-original-uri': '/pub/x' });
  assert.equal(both.status, 401);
  // ... and its method is never taken from the other set.
  const mixed = await ask({ 'x-forwarded-uri': '/orders/1', 'x-original-method': 'POST', authorization: `Bearer ${token}` });
  assert.equal(mixed.status, 200);
});

test('a peer outside trustedProxies gets 403 whatever it sends', async () => {
  const token = await iss.sign({});
  const r = await ask({ 'x-forwarded-uri': '/orders/1', authorization: `Bearer ${token}` }, { localAddress: '127.0.0.2' });
  assert.equal(r.status, 403);
  assert.deepEqual(JSON.parse(r.body), { error: 'forbidden', error_description: 'This peer may not use the decision endpoint' });
  assert.equal(r.headers['x-auth-subject'], undefined);
  assert.equal(r.headers['www-authenticate'], undefined);
  const open = await ask({ 'x-forwarded-uri': '/pub/x' }, { localAddress: '127.0.0.2' });
  assert.equal(open.status, 403, 'even for an open route');
});

test('decision requests count in metrics with the route id', async () => {
  const token = await iss.sign({});
  await ask({ 'x-forwarded-uri': '/orders/9', authorization: `Bearer ${token}` });
  const text = await (await fetch(gw.adminUrl + '/metrics')).text();
  assert.match(text, /tokengate_requests_total\{route="orders",outcome="allowed",reason="ok",status_class="2xx"\} [1-9]/);
  assert.match(text, /tokengate_requests_total\{route="orders",outcome="denied",reason="missing_token",status_class="4xx"\} [1-9]/);
  assert.match(text, /tokengate_requests_total\{route="\(none\)",outcome="denied",reason="untrusted_peer",status_class="4xx"\} [1-9]/);
});

test('no decision: block, no decision listener', async () => {
  const plain = await startGateway(`
routes:
  - id: pub
    match: { pathPrefix: /pub }
    upstream: ${up.url}
    auth: { mode: none }
`);
  try {
    assert.equal(plain.decisionUrl, undefined);
    assert.equal(plain.gw.decision, null);
  } finally {
    await plain.close();
  }
});

test('units: peer matcher (IPv4, IPv6, mapped) and described request', () => {
  const m = peerMatcher(['10.0.0.0/8', '127.0.0.1', 'fd00::/8']);
  assert.equal(m('10.1.2.3'), true);
  assert.equal(m('::ffff:10.1.2.3'), true);
  assert.equal(m('11.0.0.1'), false);
  assert.equal(m('127.0.0.2'), false);
  assert.equal(m('fd12::1'), true);
  assert.equal(m('fe80::1'), false);
  assert.equal(m(undefined), false);
  assert.deepEqual(describedRequest('GET', 'h', ['X-Forwarded-Uri', '/a', 'X-Forwarded-Method', 'post']), { method: 'POST', target: '/a', host: 'h' });
  assert.throws(() => describedRequest('GET', 'h', ['X-Forwarded-Uri', '/a', 'x-forwarded-uri', '/b']), /X-Forwarded-Uri or X-Original-URI is required/);
  // Two Host headers and no X-Forwarded-Host: which host was meant is ambiguous (RFC 9112 §3.2).
  assert.throws(() => describedRequest('GET', 'a', ['Host', 'a', 'X-Forwarded-Uri', '/a', 'Host', 'b']), /The request is malformed/);
  assert.deepEqual(describedRequest('GET', 'a', ['Host', 'a', 'X-Forwarded-Uri', '/a', 'Host', 'b', 'X-Forwarded-Host', 'c']).host, 'c');
});

test('gRPC paths (/package.Service/Method) are judged like any other path', async () => {
  const token = await iss.sign({});
  const call = (extra: Record<string, string>) => ask({ 'x-forwarded-method': 'POST', 'x-forwarded-uri': '/helloworld.Greeter/SayHello', ...extra });
  const ok = await call({ authorization: `Bearer ${token}` });
  assert.equal(ok.status, 200, ok.body);
  assert.equal(ok.headers['x-auth-subject'], 'user-1');
  assert.equal((await call({})).status, 401);
  assert.equal((await call({ authorization: 'Bearer ' + await iss.sign({ claims: { scope: 'other' } }) })).status, 403);
  // Another method of another service matches no route.
  assert.equal((await ask({ 'x-forwarded-method': 'POST', 'x-forwarded-uri': '/helloworld.Other/SayHello', authorization: `Bearer ${token}` })).status, 404);
});

// A front proxy's auth subrequest carries the client's headers (nginx auth_request, Traefik
// ForwardAuth): a gRPC call's `content-type: application/grpc` among them. The decision
// listener must answer with the real status — a 200 carrying `grpc-status: 16` would read
// as "allow" to the front proxy, and the call would reach its upstream without a token.
test('a refused gRPC call described to the decision listener is a 401 / 403, never a 200 in gRPC form', async () => {
  const grpc = { 'x-forwarded-method': 'POST', 'x-forwarded-uri': '/helloworld.Greeter/SayHello', 'content-type': 'application/grpc', te: 'trailers' };
  const missing = await ask(grpc);
  assert.equal(missing.status, 401);
  assert.equal(missing.headers['grpc-status'], undefined);
  const scope = await ask({ ...grpc, authorization: 'Bearer ' + await iss.sign({ claims: { scope: 'other' } }) });
  assert.equal(scope.status, 403);
  const ok = await ask({ ...grpc, authorization: `Bearer ${await iss.sign({})}` });
  assert.equal(ok.status, 200);
});
