/**
 * End to end over real sockets: the real oidc-provider issues RS256, ES256 and EdDSA JWT
 * access tokens by client credentials with resource indicators; the gateway (discovery,
 * requireTyp at+jwt) forwards to a recording upstream. Pins what the upstream receives
 * (exact path and query, identity headers) and every denial's status, challenge and body.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { IDP_RESOURCES, startIdp, type TestIdp } from '../helpers/idp.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { assertDenied, CHALLENGE, DESC } from '../helpers/fixture.js';
import { rawRequest } from '../helpers/raw.js';

const EXTRA = { n: 42, flag: true, groups: ['g1', 'g2'], org: { name: 'Acme', id: 7 }, tenant: 'acme', 'https://x.test/roles': ['r1'] };
const RESOURCES = [IDP_RESOURCES.rs256, IDP_RESOURCES.es256, IDP_RESOURCES.eddsa];

let idp: TestIdp; let up: EchoUpstream; let slow: EchoUpstream; let gw: TestGateway; let closedPort: number;
const tokens = new Map<string, string>();

before(async () => {
  [idp, up, slow] = await Promise.all([startIdp({ extraClaims: EXTRA }), startUpstream(), startUpstream()]);
  slow.delayMs = 2000;
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  closedPort = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  gw = await startGateway(`
server: { upstreamTimeoutMs: 300 }
issuers:
  - id: idp
    issuer: ${idp.issuer}
    discovery: true
    algorithms: [RS256, ES256, EdDSA]
    audiences: [${RESOURCES.join(', ')}]
    requireTyp: at+jwt
routes:
  - id: hosted
    match: { host: API.example.test, pathPrefix: /hosted }
    upstream: ${up.url}
    auth: { mode: none }
  - id: first
    match: { pathPrefix: /first/a }
    upstream: ${up.url}/first-won
    auth: { mode: none }
  - id: second
    match: { pathPrefix: /first }
    upstream: ${up.url}/second-won
    auth: { mode: none }
  - id: ids
    match: { pathPrefix: /ids }
    upstream: ${up.url}
    auth: { mode: jwt, scopes: { allOf: [orders:read] } }
    forward:
      headers:
        x-auth-subject: sub
        x-auth-scopes: scope
        x-auth-client: client_id
        x-auth-num: n
        x-auth-flag: flag
        x-auth-groups: groups
        x-auth-org: org
        x-auth-org-name: org.name
        x-auth-roles: https://x.test/roles
        x-auth-absent: nope
      claimsHeader: x-auth-claims
  - id: pass
    match: { pathPrefix: /pass }
    upstream: ${up.url}
    auth: { mode: jwt }
    forward: { authorization: pass }
  - id: svc
    match: { pathPrefix: /svc/ }
    upstream: ${up.url}/base/
    stripPrefix: true
    auth: { mode: jwt }
  - id: based
    match: { pathPrefix: /based }
    upstream: ${up.url}/v1
    auth: { mode: jwt }
  - id: write
    match: { path: /orders, methods: [POST, PUT] }
    upstream: ${up.url}
    auth: { mode: jwt, scopes: { allOf: [orders:write, orders:read] } }
  - id: read
    match: { path: /orders, methods: [GET, HEAD] }
    upstream: ${up.url}
    auth: { mode: jwt, scopes: { allOf: [orders:read] } }
  - id: anyof
    match: { pathPrefix: /anyof }
    upstream: ${up.url}
    auth: { mode: jwt, scopes: { anyOf: [nothing, admin] } }
  - id: claims
    match: { pathPrefix: /claims }
    upstream: ${up.url}
    auth: { mode: jwt, claims: { tenant: acme, groups: g2, org.name: Acme } }
  - id: claims-no
    match: { pathPrefix: /claims-no }
    upstream: ${up.url}
    auth: { mode: jwt, claims: { groups: g3 } }
  - id: aud
    match: { pathPrefix: /aud }
    upstream: ${up.url}
    auth: { mode: jwt, audiences: [urn:tokengate:other] }
  - id: down
    match: { pathPrefix: /down }
    upstream: http://127.0.0.1:${closedPort}
    auth: { mode: none }
  - id: slow
    match: { pathPrefix: /slow }
    upstream: ${slow.url}
    auth: { mode: none }
`);
  await gw.ready();
  for (const r of RESOURCES) tokens.set(r, await idp.token({ resource: r, scope: 'orders:read admin' }));
});
after(async () => { await gw?.close(); await up?.close(); await slow?.close(); await idp?.close(); });

const req = (path: string, init: RequestInit & { token?: string } = {}) => {
  const headers = { ...(init.headers as Record<string, string>) };
  if (init.token) headers.authorization = `Bearer ${init.token}`;
  return fetch(gw.url + path, { ...init, headers });
};
async function ok(path: string, init: RequestInit & { token?: string } = {}) {
  up.reset();
  const r = await req(path, init);
  const body = await r.text();
  assert.equal(r.status, 200, `${path}: ${body}`);
  assert.equal(up.requests.length, 1);
  return up.requests[0];
}

test('RS256, ES256 and EdDSA access tokens from oidc-provider pass; exact path and untouched query forwarded', async () => {
  for (const r of RESOURCES) {
    const got = await ok('/ids/a/b?x=1&y=%2F&z=a+b&e=&%zz', { token: tokens.get(r) });
    assert.equal(got.url, '/ids/a/b?x=1&y=%2F&z=a+b&e=&%zz', r);
    assert.equal(got.method, 'GET');
  }
  // fetch() would encode the quotes itself: send them raw
  up.reset();
  const raw = await rawRequest(gw.url, `GET /ids/x?w='q'&v=|^\` HTTP/1.1\nHost: gw\nAuthorization: Bearer ${tokens.get(IDP_RESOURCES.rs256)}\nConnection: close`);
  assert.equal(raw.status, 200, raw.body);
  assert.equal(up.requests[0].url, "/ids/x?w='q'&v=|^`");
});

test('identity headers from claims: strings, numbers/booleans as JSON, arrays joined, scope space-joined, objects JSON, claimsHeader', async () => {
  const token = tokens.get(IDP_RESOURCES.es256) as string;
  const got = await ok('/ids/x', { token });
  const h = got.headers;
  assert.equal(h['x-auth-subject'], 'app');
  assert.equal(h['x-auth-client'], 'app');
  assert.equal(h['x-auth-scopes'], 'orders:read admin');
  assert.equal(h['x-auth-num'], '42');
  assert.equal(h['x-auth-flag'], 'true');
  assert.equal(h['x-auth-groups'], 'g1,g2');
  assert.equal(h['x-auth-org'], '{"name":"Acme","id":7}');
  assert.equal(h['x-auth-org-name'], 'Acme');
  assert.equal(h['x-auth-roles'], 'r1', 'a literal dotted key wins over the path');
  assert.equal(h['x-auth-absent'], undefined, 'a missing claim sets no header');
  const claims = JSON.parse(Buffer.from(h['x-auth-claims'] as string, 'base64url').toString('utf8')) as Record<string, unknown>;
  assert.equal(claims.iss, idp.issuer);
  assert.equal(claims.aud, IDP_RESOURCES.es256);
  assert.deepEqual(claims.groups, ['g1', 'g2']);
  assert.equal(h.authorization, undefined, 'authorization: strip is the default');
  assert.ok(!JSON.stringify(got.rawHeaders).includes(token));
});

test('authorization: pass forwards the bearer token unchanged', async () => {
  const token = tokens.get(IDP_RESOURCES.rs256) as string;
  const got = await ok('/pass/x', { token });
  assert.equal(got.headers.authorization, `Bearer ${token}`);
});

test('stripPrefix and the upstream base path', async () => {
  const token = tokens.get(IDP_RESOURCES.eddsa) as string;
  assert.equal((await ok('/svc/a/b?q=1', { token })).url, '/base/a/b?q=1');
  assert.equal((await ok('/svc', { token })).url, '/base/');
  assert.equal((await ok('/svc/', { token })).url, '/base/');
  assert.equal((await ok('/based/x?y', { token })).url, '/v1/based/x?y');
  assert.equal((await ok('/based', { token })).url, '/v1/based');
});

test('methods select the route; HEAD works; a method no route takes is 404', async () => {
  const rw = await idp.token({ resource: IDP_RESOURCES.rs256, scope: 'orders:read orders:write' });
  const ro = tokens.get(IDP_RESOURCES.rs256) as string;
  const posted = await ok('/orders', { token: rw, method: 'POST', body: '{"a":1}', headers: { 'content-type': 'application/json' } });
  assert.equal(posted.method, 'POST');
  assert.equal(posted.body, '{"a":1}');
  up.reset();
  await assertDenied(await req('/orders', { token: ro, method: 'PUT', body: 'x' }), up, 403, CHALLENGE.scope(DESC.scope, 'orders:write orders:read'), 'insufficient_scope', 'PUT read-only');
  const head = await req('/orders', { token: ro, method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(up.requests.at(-1)?.method, 'HEAD');
  up.reset();
  const del = await req('/orders', { token: rw, method: 'DELETE' });
  assert.equal(del.status, 404);
  assert.equal(((await del.json()) as { error: string }).error, 'not_found');
  assert.equal(del.headers.get('www-authenticate'), null);
  assert.equal(up.requests.length, 0);
});

test('host matching is exact, case-insensitive, port ignored; first match in file order wins', async () => {
  for (const host of ['api.example.test', 'API.EXAMPLE.TEST:8443', 'api.example.test:1']) {
    const r = await rawRequest(gw.url, `GET /hosted/x HTTP/1.1\nHost: ${host}\nConnection: close`);
    assert.equal(r.status, 200, host);
  }
  for (const host of ['other.test', 'api.example.test.evil', 'xapi.example.test']) {
    const r = await rawRequest(gw.url, `GET /hosted/x HTTP/1.1\nHost: ${host}\nConnection: close`);
    assert.equal(r.status, 404, host);
  }
  const dup = await rawRequest(gw.url, 'GET /hosted/x HTTP/1.1\nHost: other.test\nHost: api.example.test\nConnection: close');
  assert.equal(dup.status, 400, 'two Host headers (RFC 9112 §3.2)');
  up.reset();
  assert.equal((await ok('/first/a/x')).url, '/first-won/first/a/x');
  assert.equal((await ok('/first/ab')).url, '/second-won/first/ab', 'segment boundary: /first/ab is not under /first/a');
});

test('denials: exact status, challenge and body; the upstream receives nothing', async () => {
  const t = tokens.get(IDP_RESOURCES.rs256) as string;
  up.reset();
  await assertDenied(await req('/ids/x'), up, 401, CHALLENGE.missing, 'missing_token', 'no token');
  await assertDenied(await req('/ids/x', { token: `${t.slice(0, -6)}AAAAAA` }), up, 401, CHALLENGE.invalid(DESC.bad_signature), 'invalid_token', 'bad signature');
  await assertDenied(await req('/aud/x', { token: t }), up, 401, CHALLENGE.invalid(DESC.audience), 'invalid_token', 'route audience overrides');
  const noScope = await idp.token({ resource: IDP_RESOURCES.es256, scope: 'admin' });
  await assertDenied(await req('/ids/x', { token: noScope }), up, 403, CHALLENGE.scope(DESC.scope, 'orders:read'), 'insufficient_scope', 'scope');
  await assertDenied(await req('/anyof/x', { token: await idp.token({ resource: IDP_RESOURCES.es256, scope: 'orders:read' }) }), up, 403, CHALLENGE.scope(DESC.scope, 'nothing admin'), 'insufficient_scope', 'anyOf');
  assert.equal((await ok('/anyof/x', { token: noScope })).url, '/anyof/x');
  up.reset();
  assert.equal((await ok('/claims/x', { token: t })).url, '/claims/x');
  up.reset();
  const r = await req('/claims-no/x', { token: t });
  const body = await r.text();
  assert.equal(r.status, 403);
  assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="tokengate", error="insufficient_scope", error_description="The access token lacks a required claim"');
  assert.deepEqual(JSON.parse(body), { error: 'insufficient_scope', error_description: DESC.claim });
  assert.equal(up.requests.length, 0);
  const opaque = await idp.token({ resource: IDP_RESOURCES.opaque, scope: 'orders:read' });
  await assertDenied(await req('/ids/x', { token: opaque }), up, 401, CHALLENGE.invalid(DESC.malformed), 'invalid_token', 'opaque token on a jwt route');
  const nf = await req('/nowhere');
  assert.equal(nf.status, 404);
  assert.deepEqual(await nf.json(), { error: 'not_found', error_description: 'No route matches this request' });
});

test('upstream refused is 502, too slow is 504; generic bodies; then the gateway still serves', async () => {
  const refused = await req('/down/x');
  assert.equal(refused.status, 502);
  assert.deepEqual(await refused.json(), { error: 'bad_gateway', error_description: 'The upstream service is unavailable' });
  const started = Date.now();
  const slowRes = await req('/slow/x');
  assert.equal(slowRes.status, 504);
  assert.deepEqual(await slowRes.json(), { error: 'gateway_timeout', error_description: 'The upstream service did not answer in time' });
  assert.ok(Date.now() - started < 1900, 'answered at upstreamTimeoutMs, not when the upstream answered');
  assert.equal((await ok('/first/a')).url, '/first-won/first/a');
});

test('the admin endpoints are not served on the proxy port', async () => {
  for (const p of ['/healthz', '/readyz', '/metrics']) {
    const r = await req(p);
    assert.equal(r.status, 404, p);
    assert.equal(((await r.json()) as { error: string }).error, 'not_found');
  }
});

test('request bodies stream through unchanged (JSON, binary, form without a token, chunked)', async () => {
  up.reset();
  const t = tokens.get(IDP_RESOURCES.rs256) as string;
  const bin = new Uint8Array(70_000).map((_, i) => i % 251);
  let r = await req('/pass/up', { token: t, method: 'PUT', body: bin, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(r.status, 200);
  await r.text();
  assert.equal(Buffer.from(up.requests[0].body, 'utf8').length > 0, true);
  assert.equal(up.requests[0].headers['content-length'], '70000');
  r = await req('/pass/form', { token: t, method: 'POST', body: 'a=1&b=2', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  assert.equal(r.status, 200);
  await r.text();
  assert.equal(up.requests[1].body, 'a=1&b=2');
  const chunked = await rawRequest(gw.url, `POST /pass/c HTTP/1.1\nHost: gw\nAuthorization: Bearer ${t}\nTransfer-Encoding: chunked\nConnection: close`, '3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n');
  assert.equal(chunked.status, 200, chunked.body);
  assert.equal(up.requests[2].body, 'abcde');
});
