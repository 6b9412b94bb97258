/**
 * CORS at the gateway over real sockets (Fetch standard §3.2): preflights answered here
 * without a token and never forwarded (204 with the allow headers, or 403 with the reason
 * in the access line); every other answer to an allowed origin — forwarded ones and the
 * gateway's own 401/403/404/502/503/504 — carries the CORS headers and `Vary: Origin`,
 * with the upstream's own CORS headers replaced; a route without `cors` treats a
 * preflight as an ordinary request and leaves the upstream's headers alone.
 */
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startHandlerUpstream, type HandlerUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { httpCall, type HttpAnswer } from '../helpers/http-call.js';
import { loadCompiled } from '../../src/config/index.js';
import { explain } from '../../src/explain.js';

const APP = 'https://app.example.com';
let iss: MockIssuer; let up: HandlerUpstream; let gw: TestGateway;
const received: Array<{ method: string; url: string; origin?: string; requestId?: string }> = [];
const logs: string[] = [];

before(async () => {
  iss = await startMockIssuer({ algs: ['ES256'] });
  up = await startHandlerUpstream((req: IncomingMessage, res) => {
    received.push({ method: req.method ?? '', url: req.url ?? '', origin: req.headers.origin, requestId: req.headers['x-request-id'] as string });
    req.resume();
    req.on('end', () => {
      const send = () => {
        // An upstream with a CORS policy of its own, looser than the route's.
        res.writeHead(200, {
          'content-type': 'application/json',
          'access-control-allow-origin': '*',
          'access-control-allow-credentials': 'true',
          'access-control-expose-headers': 'set-cookie',
          'access-control-max-age': '86400',
          vary: 'Accept-Encoding',
          'x-request-id': 'req-1',
          'x-upstream': 'kept',
        });
        res.end(JSON.stringify({ items: [1, 2, 3] }));
      };
      if (req.url?.startsWith('/slow')) setTimeout(send, 1500);
      else send();
    });
  });
  const cors = `
    cors:
      allowOrigins: [${APP}, http://localhost:5173]
      allowMethods: [GET, POST, PUT]
      allowHeaders: [authorization, content-type, x-trace]
      exposeHeaders: [x-request-id]
      maxAgeSec: 300`;
  gw = await startGateway(`
server:
  upstreamTimeoutMs: 500
issuers:
  - id: a
    issuer: ${iss.issuer}
    jwksUri: ${iss.jwksUri}
    audiences: [api]
  - id: b
    issuer: https://opaque.test
    introspection: { endpoint: http://127.0.0.1:1/introspect, clientId: gw, clientSecret: s, timeoutMs: 300 }
routes:
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt, issuers: [a], scopes: { allOf: [orders:read] } }${cors}
  - id: getonly
    match: { pathPrefix: /getonly, methods: [GET] }
    upstream: ${up.url}
    auth: { mode: jwt, issuers: [a] }${cors}
  - id: admin
    match: { pathPrefix: /admin }
    upstream: ${up.url}
    auth: { mode: jwt, issuers: [a], scopes: { allOf: [admin] } }${cors}
  - id: down
    match: { pathPrefix: /down }
    upstream: http://127.0.0.1:1
    auth: { mode: none }${cors}
  - id: slow
    match: { pathPrefix: /slow }
    upstream: ${up.url}
    auth: { mode: none }${cors}
  - id: intro
    match: { pathPrefix: /intro }
    upstream: ${up.url}
    auth: { mode: introspection, issuers: [b] }${cors}
  - id: public
    match: { pathPrefix: /public }
    upstream: ${up.url}
    auth: { mode: none }
    cors: { allowOrigins: ["*"] }
  - id: plain
    match: { pathPrefix: /plain }
    upstream: ${up.url}
    auth: { mode: jwt, issuers: [a] }
`, { logs });
  await gw.ready();
});
after(async () => {
  await gw?.close();
  await up?.close();
  await iss?.close();
});
beforeEach(() => {
  received.length = 0;
  logs.length = 0;
});

const send = (path: string, method: string, headers: Record<string, string>) => httpCall(gw.url + path, { method, headers });
const preflight = (path: string, origin: string, method: string, requestHeaders?: string) =>
  send(path, 'OPTIONS', { origin, 'access-control-request-method': method, ...(requestHeaders ? { 'access-control-request-headers': requestHeaders } : {}) });

function lastAccess(): Record<string, unknown> {
  const lines = logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'access');
  return lines.at(-1) ?? {};
}

const ALLOWED = {
  'access-control-allow-origin': APP,
  'access-control-expose-headers': 'www-authenticate, dpop-nonce, retry-after, x-request-id',
  vary: 'Origin',
};

/** The CORS headers of an answer (and Vary). */
function corsOf(r: HttpAnswer): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(r.headers)) if (k.startsWith('access-control-') || k === 'vary') out[k] = String(v);
  return out;
}

test('an allowed preflight: 204 with the allow headers, no token needed, nothing forwarded', async () => {
  const r = await preflight('/api/orders', APP, 'POST', 'authorization,content-type,x-trace');
  assert.equal(r.status, 204);
  assert.equal(r.body, '');
  assert.deepEqual(corsOf(r), {
    'access-control-allow-origin': APP,
    'access-control-allow-methods': 'GET, POST, PUT',
    'access-control-allow-headers': 'authorization, content-type, x-trace',
    'access-control-max-age': '300',
    vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers',
  });
  assert.equal(r.headers['access-control-allow-credentials'], undefined);
  assert.equal(r.headers['www-authenticate'], undefined);
  assert.equal(received.length, 0, 'a preflight reached the upstream');
  const line = lastAccess();
  assert.deepEqual([line.route, line.status, line.outcome, line.reason], ['api', 204, 'allowed', 'cors_preflight']);
  const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  assert.match(metrics, /tokengate_requests_total\{route="api",outcome="allowed",reason="cors_preflight",status_class="2xx"\} \d+\n/);
});

test('a preflight not allowed is 403 without allow headers, its reason in the access line, nothing forwarded', async () => {
  const cases: Array<[string, () => Promise<HttpAnswer>, string]> = [
    ['other origin', () => preflight('/api/x', 'https://evil.test', 'GET'), 'cors_origin'],
    ['look-alike origin', () => preflight('/api/x', 'https://app.example.com.evil.test', 'GET'), 'cors_origin'],
    ['null origin', () => preflight('/api/x', 'null', 'GET'), 'cors_origin'],
    ['method', () => preflight('/api/x', APP, 'DELETE'), 'cors_method'],
    ['header', () => preflight('/api/x', APP, 'GET', 'authorization,x-admin'), 'cors_headers'],
    ['route method', () => preflight('/getonly/x', APP, 'PUT'), 'cors_method'],
  ];
  for (const [what, run, reason] of cases) {
    logs.length = 0;
    const r = await run();
    assert.equal(r.status, 403, what);
    assert.equal(JSON.parse(r.body).error, 'forbidden', what);
    assert.equal(r.headers['access-control-allow-origin'], undefined, what);
    assert.equal(r.headers['access-control-allow-methods'], undefined, what);
    assert.equal(r.headers['www-authenticate'], undefined, what);
    assert.equal(r.headers.vary, 'Origin', what);
    const line = lastAccess();
    assert.deepEqual([line.status, line.outcome, line.reason], [403, 'denied', reason], what);
  }
  assert.equal(received.length, 0);
});

test('a preflight on a method-restricted route is matched by the method it asks for (204, not 404)', async () => {
  const r = await preflight('/getonly/x', APP, 'GET', 'authorization');
  assert.equal(r.status, 204);
  assert.equal(r.headers['access-control-allow-origin'], APP);
  assert.equal(received.length, 0);
});

test('the gateway\'s own 401 carries the CORS headers, so a page can read the challenge', async () => {
  const r = await send('/api/orders', 'GET', { origin: APP });
  assert.equal(r.status, 401);
  assert.equal(r.headers['www-authenticate'], 'Bearer realm="tokengate"');
  assert.equal(JSON.parse(r.body).error, 'missing_token');
  assert.deepEqual(corsOf(r), ALLOWED);
  const bad = await send('/api/orders', 'GET', { origin: APP, authorization: 'Bearer x.y.z' });
  assert.equal(bad.status, 401);
  assert.deepEqual(corsOf(bad), ALLOWED);
  assert.equal(received.length, 0);
});

test('403, 404, 502, 503 and 504 from the gateway carry them too', async () => {
  const token = await iss.sign();
  const cases: Array<[string, string, string, Record<string, string>, number]> = [
    ['403 insufficient_scope', '/admin/x', 'GET', { authorization: `Bearer ${token}` }, 403],
    ['404 (a method the route does not take)', '/getonly/x', 'DELETE', { authorization: `Bearer ${token}` }, 404],
    ['502 upstream refused', '/down/x', 'GET', {}, 502],
    ['503 introspection unreachable', '/intro/x', 'GET', { authorization: 'Bearer opaque' }, 503],
    ['504 upstream too slow', '/slow/x', 'GET', {}, 504],
  ];
  for (const [what, path, method, headers, status] of cases) {
    const r = await send(path, method, { origin: APP, ...headers });
    assert.equal(r.status, status, `${what}: ${r.body}`);
    assert.deepEqual(corsOf(r), ALLOWED, what);
  }
});

test('a forwarded answer: the upstream\'s CORS headers are replaced by the route\'s, Vary keeps its own', async () => {
  const token = await iss.sign();
  const r = await send('/api/orders', 'GET', { origin: 'http://localhost:5173', authorization: `Bearer ${token}` });
  assert.equal(r.status, 200);
  assert.deepEqual(JSON.parse(r.body), { items: [1, 2, 3] });
  assert.deepEqual(corsOf(r), {
    'access-control-allow-origin': 'http://localhost:5173',
    'access-control-expose-headers': 'www-authenticate, dpop-nonce, retry-after, x-request-id',
    vary: 'Accept-Encoding, Origin',
  });
  assert.equal(r.headers['x-upstream'], 'kept', 'other headers of the upstream pass');
  // The upstream's own request id gives way to the request's (the one on the access line).
  assert.notEqual(r.headers['x-request-id'], 'req-1');
  assert.equal(r.headers['x-request-id'], received[0].requestId);
  // The Origin header itself goes upstream as sent (it is a request header like any other).
  assert.equal(received[0].origin, 'http://localhost:5173');
});

test('an origin not allowed gets no CORS headers at all, not even the upstream\'s', async () => {
  const token = await iss.sign();
  for (const origin of ['https://evil.test', 'https://app.example.com.evil.test', 'https://evil.test/https://app.example.com', 'null']) {
    const r = await send('/api/orders', 'GET', { origin, authorization: `Bearer ${token}` });
    assert.equal(r.status, 200, origin);
    assert.deepEqual(corsOf(r), { vary: 'Accept-Encoding, Origin' }, origin);
  }
  const noOrigin = await send('/api/orders', 'GET', { authorization: `Bearer ${token}` });
  assert.deepEqual(corsOf(noOrigin), { vary: 'Accept-Encoding, Origin' });
  const refused = await send('/api/orders', 'GET', { origin: 'https://evil.test' });
  assert.equal(refused.status, 401);
  assert.deepEqual(corsOf(refused), { vary: 'Origin' });
});

test('"*": any origin reads the answer, null does not', async () => {
  const r = await send('/public/x', 'GET', { origin: 'https://anyone.test' });
  assert.equal(r.status, 200);
  assert.equal(r.headers['access-control-allow-origin'], '*');
  assert.equal(r.headers['access-control-allow-credentials'], undefined);
  const n = await send('/public/x', 'GET', { origin: 'null' });
  assert.equal(n.headers['access-control-allow-origin'], undefined);
  assert.equal((await preflight('/public/x', 'null', 'GET')).status, 403);
  const pf = await preflight('/public/x', 'https://anyone.test', 'GET', 'authorization');
  assert.equal(pf.status, 204);
  assert.equal(pf.headers['access-control-allow-origin'], '*');
});

test('a route without cors: a preflight is an ordinary request, the upstream\'s headers pass untouched', async () => {
  const r = await preflight('/plain/x', APP, 'GET');
  assert.equal(r.status, 401);
  assert.equal(r.headers['access-control-allow-origin'], undefined);
  assert.equal(r.headers.vary, undefined);
  assert.equal(received.length, 0);
  const token = await iss.sign();
  const withToken = await send('/plain/x', 'OPTIONS', { origin: APP, 'access-control-request-method': 'GET', authorization: `Bearer ${token}` });
  assert.equal(withToken.status, 200);
  assert.equal(received.length, 1);
  assert.equal(received[0].method, 'OPTIONS');
  assert.equal(withToken.headers['access-control-allow-origin'], '*');
  assert.equal(withToken.headers['access-control-allow-credentials'], 'true');
  assert.equal(withToken.headers.vary, 'Accept-Encoding');
});

test('an OPTIONS without Access-Control-Request-Method on a cors route is an ordinary request (needs a token)', async () => {
  const r = await send('/api/x', 'OPTIONS', { origin: APP });
  assert.equal(r.status, 401);
  assert.equal(r.headers['access-control-allow-origin'], APP);
  assert.equal(received.length, 0);
});

test('explain shows the preflight answered by the gateway', async () => {
  const config = loadCompiled(gw.file);
  const e = await explain(config, { method: 'OPTIONS', url: '/api/x', headers: [`Origin: ${APP}`, 'Access-Control-Request-Method: GET'] });
  assert.equal(e.allowed, true);
  assert.equal(e.status, 204);
  assert.ok(e.lines.includes('decision: answered by the gateway: 204 (CORS preflight), nothing forwarded'), e.lines.join('\n'));
  assert.ok(e.lines.includes(`  access-control-allow-origin: ${APP}`));
  const refused = await explain(config, { method: 'OPTIONS', url: '/api/x', headers: ['Origin: https://evil.test', 'Access-Control-Request-Method: GET'] });
  assert.equal(refused.status, 403);
  assert.ok(refused.lines.includes('decision: deny 403 (reason cors_origin)'), refused.lines.join('\n'));
});
