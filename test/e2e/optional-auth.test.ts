/**
 * `auth.optional: true` through every door: the proxy (jwt, introspection,
 * jwt_or_introspection), the decision listener, ext_authz (gRPC), WebSocket upgrades and
 * `explain`. A
 * request without an Authorization header passes as anonymous with no identity headers
 * (forged ones still removed), counted as `allowed`/`anonymous`; a request with any
 * credential is judged as on a route without `optional` — a bad token is a 401 and the
 * upstream receives nothing, never an anonymous request.
 */
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { PROTO_FILES, PROTO_OPTIONS, type CheckRequest, type CheckResponse } from '../../src/server/ext-authz-proto.js';
import { startMockIssuer, type MockIssuer } from '../helpers/mock-issuer.js';
import { startMockIntrospection, type MockIntrospection } from '../helpers/mock-introspection.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { httpCall } from '../helpers/http-call.js';
import { loadCompiled } from '../../src/config/index.js';
import { explain } from '../../src/explain.js';

let iss: MockIssuer; let intro: MockIntrospection; let up: EchoUpstream; let gw: TestGateway; let wss: WebSocketServer;
const logs: string[] = [];
const upgrades: http.IncomingMessage[] = [];
const INVALID = (d: string) => `Bearer realm="tokengate", error="invalid_token", error_description="${d}"`;

before(async () => {
  iss = await startMockIssuer({ algs: ['ES256'] });
  intro = await startMockIntrospection();
  intro.answer = (r) => (r.form.token === 'opaque-good'
    ? { body: { active: true, sub: 'op-1', exp: Math.floor(Date.now() / 1000) + 300 } }
    : { body: { active: false } });
  up = await startUpstream();
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => wss.once('listening', r));
  wss.on('connection', (ws, req) => {
    upgrades.push(req);
    ws.on('message', (d) => ws.send(`echo:${d.toString()}`));
  });
  const wsUp = `http://127.0.0.1:${(wss.address() as AddressInfo).port}`;
  gw = await startGateway(`
decision:
  trustedProxies: [127.0.0.1/32]
extAuthz: { trustedProxies: [127.0.0.1/32] }
issuers:
  - id: a
    issuer: ${iss.issuer}
    jwksUri: ${iss.jwksUri}
    audiences: [api]
  - id: b
    issuer: https://opaque.test
    introspection: { endpoint: ${intro.endpoint}, clientId: gw, clientSecret: s, cacheTtlSec: 0, negativeCacheTtlSec: 0 }
routes:
  - id: catalog
    match: { pathPrefix: /catalog }
    upstream: ${up.url}
    auth: { mode: jwt, issuers: [a], optional: true }
    forward: { headers: { x-auth-subject: sub }, claimsHeader: x-auth-claims }
  - id: opaque
    match: { pathPrefix: /opaque }
    upstream: ${up.url}
    auth: { mode: introspection, issuers: [b], optional: true }
    forward: { headers: { x-auth-subject: sub } }
  - id: mixed
    match: { pathPrefix: /mixed }
    upstream: ${up.url}
    auth: { mode: jwt_or_introspection, optional: true }
    forward: { headers: { x-auth-subject: sub } }
  - id: live
    match: { pathPrefix: /live }
    upstream: ${wsUp}
    websocket: true
    auth: { mode: jwt, issuers: [a], optional: true }
    forward: { headers: { x-auth-subject: sub } }
  - id: strict
    match: { pathPrefix: /strict }
    upstream: ${up.url}
    auth: { mode: jwt, issuers: [a] }
`, { logs });
  await gw.ready();
});
after(async () => {
  await gw?.close();
  for (const c of wss?.clients ?? []) c.terminate();
  await new Promise((r) => wss?.close(r));
  await Promise.all([up?.close(), intro?.close(), iss?.close()]);
});
beforeEach(() => {
  up.reset();
  upgrades.length = 0;
});

/** One request with exactly these headers (fetch would drop an empty Authorization). */
const call = (base: string, path: string, headers: Record<string, string> = {}, method = 'GET', body?: string) => httpCall(base + path, { method, headers, body });
const proxy = (path: string, headers?: Record<string, string>, method?: string, body?: string) => call(gw.url, path, headers, method, body);

const FORGED = { 'x-auth-subject': 'forged', X_Auth_Claims: 'forged', 'x-auth-role': 'admin' };

function accessLines(route: string): Array<Record<string, unknown>> {
  return logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'access' && l.route === route);
}

test('jwt, no credential: passes as anonymous, no identity header set, every forged one removed', async () => {
  logs.length = 0;
  const r = await proxy('/catalog/items?q=1', FORGED);
  assert.equal(r.status, 200, r.body);
  assert.equal(up.requests.length, 1);
  const h = up.requests[0].headers;
  assert.equal(up.requests[0].url, '/catalog/items?q=1');
  for (const name of ['x-auth-subject', 'x-auth-claims', 'x_auth_claims', 'x-auth-role', 'authorization']) assert.equal(h[name], undefined, name);
  const line = accessLines('catalog').at(-1);
  assert.equal(line?.outcome, 'allowed');
  assert.equal(line?.reason, 'anonymous');
  assert.equal(line?.sub, undefined);
  const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  assert.match(metrics, /tokengate_requests_total\{route="catalog",outcome="allowed",reason="anonymous",status_class="2xx"\} 1\n/);
});

test('jwt, a valid token: judged and forwarded with its identity, as without optional', async () => {
  logs.length = 0;
  const r = await proxy('/catalog/me', { ...FORGED, authorization: `Bearer ${await iss.sign()}` });
  assert.equal(r.status, 200);
  assert.equal(up.requests[0].headers['x-auth-subject'], 'user-1');
  assert.ok(up.requests[0].headers['x-auth-claims']);
  assert.equal(up.requests[0].headers['x-auth-role'], undefined);
  assert.equal(accessLines('catalog').at(-1)?.reason, 'ok');
});

test('jwt, a credential that fails is 401 (never anonymous) and reaches nothing', async () => {
  const now = Math.floor(Date.now() / 1000);
  const good = await iss.sign();
  const cases: Array<[string, Record<string, string>, number, string | undefined]> = [
    ['expired', { authorization: `Bearer ${await iss.sign({ claims: { exp: now - 600, iat: now - 900 } })}` }, 401, INVALID('The access token expired')],
    ['wrong audience', { authorization: `Bearer ${await iss.sign({ claims: { aud: 'other' } })}` }, 401, INVALID('The token audience is not accepted')],
    ['forged signature', { authorization: `Bearer ${good.slice(0, -6)}AAAAAA` }, 401, INVALID('The token signature is invalid')],
    ['garbage', { authorization: 'Bearer not-a-jwt' }, 401, INVALID('The access token is malformed')],
    ['another scheme', { authorization: 'Basic dXNlcjpwdw==' }, 401, 'Bearer realm="tokengate"'],
    ['empty Authorization', { authorization: '' }, 401, 'Bearer realm="tokengate"'],
    ['scheme without token', { authorization: 'Bearer' }, 400, 'Bearer realm="tokengate", error="invalid_request", error_description="The Authorization header is malformed"'],
    ['DPoP-bound token as Bearer', { authorization: `Bearer ${await iss.sign({ claims: { cnf: { jkt: 'x'.repeat(43) } } })}` }, 401, INVALID('A DPoP-bound access token must be sent with the DPoP scheme')],
  ];
  for (const [what, headers, status, challenge] of cases) {
    const r = await proxy('/catalog/x', headers);
    assert.equal(r.status, status, `${what}: ${r.body}`);
    assert.equal(r.headers['www-authenticate'], challenge, what);
    assert.equal(up.requests.length, 0, `${what}: upstream reached`);
  }
});

test('a token in the query string or a form body is refused (400) on an optional route, as everywhere', async () => {
  const q = await proxy('/catalog/x?access_token=abc');
  assert.equal(q.status, 400);
  assert.equal(JSON.parse(q.body).error, 'invalid_request');
  const f = await proxy('/catalog/x', { 'content-type': 'application/x-www-form-urlencoded' }, 'POST', 'a=1&access_token=abc');
  assert.equal(f.status, 400);
  assert.equal(JSON.parse(f.body).error_description, 'Access tokens are not accepted in the request body');
  assert.equal(up.requests.length, 0);
});

test('introspection and jwt_or_introspection: anonymous without a credential, 401 for an inactive one', async () => {
  for (const path of ['/opaque/x', '/mixed/x']) {
    up.reset();
    const anon = await proxy(path, FORGED);
    assert.equal(anon.status, 200, path);
    assert.equal(up.requests[0].headers['x-auth-subject'], undefined, path);
    const bad = await proxy(path, { authorization: 'Bearer opaque-revoked' });
    assert.equal(bad.status, 401, path);
    assert.equal(bad.headers['www-authenticate'], INVALID('The access token is not active'), path);
    const good = await proxy(path, { authorization: 'Bearer opaque-good' });
    assert.equal(good.status, 200, path);
    assert.equal(up.requests.at(-1)?.headers['x-auth-subject'], 'op-1', path);
    assert.equal(up.requests.length, 2, path);
  }
  // jwt_or_introspection: a JWT-shaped token is verified locally, and a bad one is 401.
  const jwtBad = await proxy('/mixed/x', { authorization: `Bearer ${await iss.sign({ claims: { aud: 'other' } })}` });
  assert.equal(jwtBad.status, 401);
});

test('a route without optional still needs a token (control)', async () => {
  const r = await proxy('/strict/x');
  assert.equal(r.status, 401);
  assert.equal(up.requests.length, 0);
});

test('decision listener: anonymous is 200 with no identity headers; a bad token is 401', async () => {
  const anon = await call(gw.decisionUrl!, '/', { 'x-forwarded-uri': '/catalog/x', 'x-forwarded-method': 'GET', ...FORGED });
  assert.equal(anon.status, 200);
  assert.equal(anon.headers['x-auth-subject'], undefined);
  assert.equal(anon.headers['x-auth-claims'], undefined);
  const good = await call(gw.decisionUrl!, '/', { 'x-forwarded-uri': '/catalog/x', authorization: `Bearer ${await iss.sign()}` });
  assert.equal(good.headers['x-auth-subject'], 'user-1');
  const bad = await call(gw.decisionUrl!, '/', { 'x-forwarded-uri': '/catalog/x', authorization: 'Bearer x.y.z' });
  assert.equal(bad.status, 401);
  assert.equal(bad.headers['x-auth-subject'], undefined);
});

/** Opens a WebSocket; resolves with it or with the refusal's status. */
function openWs(path: string, headers: Record<string, string>): Promise<{ ws?: WebSocket; status?: number }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(gw.url.replace('http://', 'ws://') + path, { headers, handshakeTimeout: 5000 });
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      resolve({ status: res.statusCode });
    });
    ws.once('error', reject);
  });
}

test('WebSocket upgrade: anonymous without a credential (forged identity removed), refused with a bad one', async () => {
  const { ws } = await openWs('/live/feed', FORGED);
  assert.ok(ws, 'anonymous upgrade refused');
  try {
    assert.equal(upgrades.length, 1);
    assert.equal(upgrades[0].headers['x-auth-subject'], undefined);
    assert.equal(upgrades[0].headers['x-auth-role'], undefined);
  } finally {
    ws.terminate();
  }
  upgrades.length = 0;
  const refused = await openWs('/live/feed', { authorization: 'Bearer x.y.z' });
  assert.equal(refused.status, 401);
  assert.equal(upgrades.length, 0);
});

test('explain says anonymous for no credential and deny for a bad one', async () => {
  const config = loadCompiled(gw.file);
  const anon = await explain(config, { method: 'GET', url: '/catalog/x' });
  assert.equal(anon.allowed, true);
  assert.ok(anon.lines.some((l) => l.includes('credential: none: auth.optional, passes as anonymous')), anon.lines.join('\n'));
  assert.ok(anon.lines.some((l) => l.startsWith('decision: allow (anonymous) -> GET ')), anon.lines.join('\n'));
  const bad = await explain(config, { method: 'GET', url: '/catalog/x', token: 'x.y.z' });
  assert.equal(bad.allowed, false);
  assert.equal(bad.status, 401);
});

type Unary<Req, Res> = (req: Req, cb: (err: grpc.ServiceError | null, res: Res) => void) => void;
interface AuthzClient extends grpc.Client { Check: Unary<CheckRequest, CheckResponse> }

test('ext_authz: anonymous is OK with no identity headers set and the forged ones removed; a bad token is UNAUTHENTICATED', async () => {
  const pkg = grpc.loadPackageDefinition(loadSync(PROTO_FILES, PROTO_OPTIONS)) as unknown as {
    envoy: { service: { auth: { v3: { Authorization: new (a: string, c: grpc.ChannelCredentials) => AuthzClient } } } };
  };
  const client = new pkg.envoy.service.auth.v3.Authorization(gw.extAuthzAddress!, grpc.credentials.createInsecure());
  const check = (headers: Record<string, string>) => new Promise<CheckResponse>((resolve, reject) => client.Check({
    attributes: { request: { http: { method: 'GET', path: '/catalog/x', host: 'api.example.com', scheme: 'https', protocol: 'HTTP/1.1', headers: { ':path': '/catalog/x', ':method': 'GET', ':authority': 'api.example.com', ...headers } } } },
  }, (err, res) => (err ? reject(err) : resolve(res))));
  try {
    const anon = await check({ 'x-auth-subject': 'forged' });
    assert.equal(anon.status.code, 0, JSON.stringify(anon));
    // No identity header is set: the only header ext_authz adds is the request id.
    assert.deepEqual((anon.ok_response?.headers ?? []).map((h) => h.header.key), ['x-request-id']);
    assert.ok(anon.ok_response?.headers_to_remove.includes('x-auth-subject'), JSON.stringify(anon.ok_response));
    const bad = await check({ authorization: 'Bearer x.y.z' });
    assert.equal(bad.status.code, 16, JSON.stringify(bad));
    assert.equal(bad.denied_response?.status.code, 401);
  } finally {
    client.close();
  }
});
