/**
 * The `extAuthz:` gRPC listener, asked by a real `@grpc/grpc-js` client the way Envoy's
 * ext_authz filter asks (envoy `check_request_utils`: header names lower-cased, pseudo
 * headers `:authority` `:method` `:path` among them, `path` with the query, `host` the
 * authority, `scheme` from `x-forwarded-proto`, the client certificate URL-encoded in
 * `source.certificate`), with tokens from a real oidc-provider. Pins the answer Envoy acts
 * on: status code, the headers it sets and removes upstream, the HTTP answer of a refusal.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { IDP_RESOURCES, idpIssuerYaml, startIdp, type TestIdp } from '../helpers/idp.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { dpopClient, type DpopClient } from '../helpers/dpop.js';
import { generateClientCert, type TestCert } from '../helpers/cert.js';
import { startMockIssuer } from '../helpers/mock-issuer.js';
import { peerAddress } from '../../src/server/ext-authz.js';
import { PROTO_FILES, PROTO_OPTIONS, type CheckRequest, type CheckResponse, type HeaderValueOption } from '../../src/server/ext-authz-proto.js';

const UPSTREAM = 'http://127.0.0.1:9'; // never called: the listener only decides
const ALGS = 'ES256 EdDSA RS256 PS256';

let idp: TestIdp; let gw: TestGateway; let down: TestGateway; let closed: TestGateway;
let client: DpopClient; let cert: TestCert;
let token: string; let noScope: string; let dpopBound: string; let mtlsBound: string;
const logs: string[] = [];
const clients: grpc.Client[] = [];

type Unary<Req, Res> = (req: Req, cb: (err: grpc.ServiceError | null, res: Res) => void) => void;
interface AuthzClient extends grpc.Client { Check: Unary<CheckRequest, CheckResponse> }
interface HealthClient extends grpc.Client { Check: Unary<{ service: string }, { status: number }> }

const pkg = grpc.loadPackageDefinition(loadSync(PROTO_FILES, PROTO_OPTIONS)) as unknown as {
  envoy: { service: { auth: { v3: { Authorization: new (a: string, c: grpc.ChannelCredentials) => AuthzClient } } } };
  grpc: { health: { v1: { Health: new (a: string, c: grpc.ChannelCredentials) => HealthClient } } };
};

function authz(address: string): AuthzClient {
  const c = new pkg.envoy.service.auth.v3.Authorization(address, grpc.credentials.createInsecure());
  clients.push(c);
  return c;
}

function call<Req, Res>(c: { Check: Unary<Req, Res> }, req: Req): Promise<Res> {
  return new Promise((resolve, reject) => c.Check.call(c, req, (err, res) => (err ? reject(err) : resolve(res))));
}

/**
 * A CheckRequest as Envoy's ext_authz filter builds it for an HTTP/1.1 request: `headers`
 * keyed by lower-case name (pseudo headers included), `scheme` from `x-forwarded-proto`.
 */
function envoyCheck(o: { method?: string; authority?: string; path: string; scheme?: string; headers?: Record<string, string>; certificate?: string; rawHeaders?: Array<[string, string]> }): CheckRequest {
  const method = o.method ?? 'GET';
  const authority = o.authority ?? 'api.example.com';
  const scheme = o.scheme ?? 'https';
  const headers: Record<string, string> = {
    ':authority': authority, ':method': method, ':path': o.path, ':scheme': scheme,
    'x-forwarded-proto': scheme, 'x-request-id': randomUUID(), 'user-agent': 'curl/8.5.0', accept: '*/*',
  };
  for (const [k, v] of Object.entries(o.headers ?? {})) headers[k.toLowerCase()] = v;
  const http = {
    id: headers['x-request-id'], method, path: o.path, host: authority, scheme, protocol: 'HTTP/1.1',
    ...(o.rawHeaders ? { header_map: { headers: o.rawHeaders.map(([key, v]) => ({ key, raw_value: Buffer.from(v) })) } } : { headers }),
  };
  return { attributes: { ...(o.certificate ? { source: { certificate: o.certificate } } : {}), request: { http } } };
}

/** The `headers` of an answer as a name → value map, each checked to overwrite the upstream request's value. */
function setHeaders(list: readonly HeaderValueOption[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of list) {
    assert.equal(h.append?.value, false, `${h.header.key}: append false`);
    assert.equal(h.append_action, 2, `${h.header.key}: OVERWRITE_IF_EXISTS_OR_ADD`);
    out[h.header.key!] = h.header.value!;
  }
  return out;
}

/** Asserts a refusal: gRPC code, HTTP status, exact `WWW-Authenticate` (null: none), body `error`. */
function assertDenied(res: CheckResponse, code: number, status: number, challenge: string | null, error: string): void {
  assert.equal(res.status.code, code, `gRPC code (${JSON.stringify(res)})`);
  assert.equal(res.ok_response, undefined);
  const d = res.denied_response!;
  assert.equal(d.status.code, status);
  const headers = setHeaders(d.headers);
  assert.equal(headers['www-authenticate'] ?? null, challenge);
  assert.equal(headers['content-type'], 'application/json; charset=utf-8');
  assert.equal(JSON.parse(d.body).error, error);
  assert.equal(typeof res.status.message, 'string');
  assert.ok(headers['x-request-id'], 'a refusal carries the request id');
}

const ROUTES = `
routes:
  - id: pub
    match: { pathPrefix: /pub }
    upstream: ${UPSTREAM}
    auth: { mode: none }
  - id: orders
    match: { host: api.example.com, pathPrefix: /orders, methods: [GET, HEAD] }
    upstream: ${UPSTREAM}
    auth: { mode: jwt, scopes: { allOf: [orders:read] } }
    forward: { headers: { x-auth-client: client_id, x-auth-scopes: scope, x-auth-tenant: tenant } }
  - id: pass
    match: { pathPrefix: /pass }
    upstream: ${UPSTREAM}
    auth: { mode: jwt }
    forward: { headers: { x-user: client_id }, authorization: pass }
  - id: dpop
    match: { pathPrefix: /dpop }
    upstream: ${UPSTREAM}
    auth: { mode: jwt, binding: require-dpop }
  - id: mtls
    match: { pathPrefix: /mtls }
    upstream: ${UPSTREAM}
    auth: { mode: jwt, binding: require-mtls, audiences: [${IDP_RESOURCES.rs256}] }
`;

before(async () => {
  [idp, client] = await Promise.all([startIdp(), dpopClient('ES256')]);
  cert = generateClientCert('client-a');
  gw = await startGateway(`
extAuthz: { trustedProxies: [127.0.0.1/32] }
issuers:
${idpIssuerYaml(idp).replace(/audiences: \[.*\]/, `audiences: [${IDP_RESOURCES.es256}, ${IDP_RESOURCES.rs256}]`)}
${ROUTES}`, { logs });
  // An issuer whose keys cannot be fetched: not ready, and requests on its routes are 503.
  down = await startGateway(`
extAuthz: {}
issuers:
  - { id: gone, issuer: ${idp.issuer}, audiences: [${IDP_RESOURCES.es256}], jwksUri: http://127.0.0.1:9/jwks, jwks: { timeoutMs: 200 } }
routes:
  - { id: r, match: { pathPrefix: / }, upstream: ${UPSTREAM}, auth: { mode: jwt } }
`);
  // Asked from 127.0.0.1, which this one does not trust.
  closed = await startGateway(`
extAuthz: { trustedProxies: [192.0.2.1/32] }
routes:
  - { id: open, match: { pathPrefix: / }, upstream: ${UPSTREAM}, auth: { mode: none } }
`);
  await gw.ready(15_000);
  [token, noScope, dpopBound, mtlsBound] = await Promise.all([
    idp.token({ resource: IDP_RESOURCES.es256, scope: 'orders:read' }),
    idp.token({ resource: IDP_RESOURCES.es256, scope: 'admin' }),
    idp.token({ resource: IDP_RESOURCES.es256, scope: 'orders:read', dpop: (htm, htu) => client.proof({ htm, htu }) }),
    idp.token({ resource: IDP_RESOURCES.rs256, clientCertPem: cert.pem }),
  ]);
});

after(async () => {
  for (const c of clients) c.close();
  await Promise.allSettled([gw?.close(), down?.close(), closed?.close()]);
  await idp?.close();
});

test('allowed: code 0, identity headers overwritten, every forged identity header removed, the token stripped', async () => {
  const check = envoyCheck({
    path: '/orders/1?q=a&b=c',
    headers: {
      authorization: `Bearer ${token}`,
      'x-auth-client': 'forged', // set by the answer: overwritten, not removed
      'x-auth-tenant': 'forged', // a header the route names but the token lacks: removed
      'x-auth-role': 'admin', // the prefix
      x_auth_client: 'forged', // `_` spellings
      'X_Auth_Groups': 'admins',
      'x-other': 'kept',
    },
  });
  const res = await call(authz(gw.extAuthzAddress!), check);
  assert.equal(res.status.code, 0, JSON.stringify(res));
  assert.equal(res.denied_response, undefined);
  const ok = res.ok_response!;
  // Envoy's request id is kept: to the upstream, and back to the client.
  const id = check.attributes!.request!.http!.id!;
  assert.deepEqual(setHeaders(ok.headers), { 'x-request-id': id, 'x-auth-client': 'app', 'x-auth-scopes': 'orders:read' });
  assert.deepEqual([...ok.headers_to_remove].sort(), ['authorization', 'x-auth-role', 'x-auth-tenant', 'x_auth_client', 'x_auth_groups'].sort());
  assert.equal(ok.headers_to_remove.includes('x-auth-client'), false, 'Envoy removes after it sets: never list a header the answer sets');
  assert.deepEqual(setHeaders(ok.response_headers_to_add ?? []), { 'x-request-id': id });
});

test('allowed with forward.authorization: pass keeps the token; mode none passes without one and still clears the namespace', async () => {
  const c = authz(gw.extAuthzAddress!);
  const pass = await call(c, envoyCheck({ path: '/pass', headers: { authorization: `Bearer ${token}`, 'x-user': 'forged', 'x-auth-a': '1' } }));
  assert.equal(pass.status.code, 0);
  assert.deepEqual(Object.keys(setHeaders(pass.ok_response!.headers)).sort(), ['x-request-id', 'x-user']);
  assert.equal(setHeaders(pass.ok_response!.headers)['x-user'], 'app');
  assert.deepEqual(pass.ok_response!.headers_to_remove, ['x-auth-a']);

  const pub = await call(c, envoyCheck({ path: '/pub/x', headers: { 'x-user': 'forged', 'x-auth-client': 'forged', 'x-auth-scopes': 'admin' } }));
  assert.equal(pub.status.code, 0);
  assert.deepEqual(Object.keys(setHeaders(pub.ok_response!.headers ?? [])), ['x-request-id']);
  assert.deepEqual([...pub.ok_response!.headers_to_remove].sort(), ['authorization', 'x-auth-client', 'x-auth-scopes', 'x-user']);
});

test('refused: 401 → UNAUTHENTICATED, 403 → PERMISSION_DENIED, 404 → UNIMPLEMENTED, 400 → INVALID_ARGUMENT, with the HTTP answer', async () => {
  const c = authz(gw.extAuthzAddress!);
  assertDenied(await call(c, envoyCheck({ path: '/orders/1' })), 16, 401, 'Bearer realm="tokengate"', 'missing_token');
  assertDenied(await call(c, envoyCheck({ path: '/orders/1', headers: { authorization: `Bearer ${token.split('.').slice(0, 2).join('.')}.${noScope.split('.')[2]}` } })), 16, 401,
    'Bearer realm="tokengate", error="invalid_token", error_description="The token signature is invalid"', 'invalid_token');
  assertDenied(await call(c, envoyCheck({ path: '/orders/1', headers: { authorization: `Bearer ${noScope}` } })), 7, 403,
    'Bearer realm="tokengate", error="insufficient_scope", error_description="The access token lacks a required scope", scope="orders:read"', 'insufficient_scope');
  // Same path, another host or method: no route.
  assertDenied(await call(c, envoyCheck({ path: '/orders/1', authority: 'evil.example.com', headers: { authorization: `Bearer ${token}` } })), 12, 404, null, 'not_found');
  assertDenied(await call(c, envoyCheck({ path: '/orders/1', method: 'DELETE', headers: { authorization: `Bearer ${token}` } })), 12, 404, null, 'not_found');
  // Path tricks, judged on the raw request target as the proxy judges it.
  assertDenied(await call(c, envoyCheck({ path: '/pub/a%2Fb' })), 3, 400, null, 'bad_request');
  assertDenied(await call(c, envoyCheck({ path: '/pub/../../orders/1' })), 3, 400, null, 'bad_request');
  assertDenied(await call(c, envoyCheck({ path: '/pub/%2e%2e/orders/1', headers: { 'x-auth-client': 'forged' } })), 16, 401, 'Bearer realm="tokengate"', 'missing_token');
  assertDenied(await call(c, envoyCheck({ path: `/orders/1?access_token=${token}` })), 3, 400,
    'Bearer realm="tokengate", error="invalid_request", error_description="Access tokens are not accepted in the query string"', 'invalid_request');
  // No described request at all.
  assertDenied(await call(c, { attributes: {} }), 3, 400, null, 'bad_request');
});

test('encode_raw_headers: two Authorization headers stay two, and the request is refused', async () => {
  const res = await call(authz(gw.extAuthzAddress!), envoyCheck({
    path: '/orders/1', rawHeaders: [[':authority', 'api.example.com'], ['authorization', `Bearer ${token}`], ['authorization', `Bearer ${noScope}`]],
  }));
  assertDenied(res, 3, 400, 'Bearer realm="tokengate", error="invalid_request", error_description="More than one access token was sent"', 'invalid_request');
  const one = await call(authz(gw.extAuthzAddress!), envoyCheck({
    path: '/orders/1', rawHeaders: [[':authority', 'api.example.com'], ['authorization', `Bearer ${token}`], ['X_Auth_Role', 'admin']],
  }));
  assert.equal(one.status.code, 0);
  assert.deepEqual(one.ok_response!.headers_to_remove, ['authorization', 'x_auth_role']);
});

test('DPoP: htu is the described request (scheme from x-forwarded-proto, host from :authority)', async () => {
  const c = authz(gw.extAuthzAddress!);
  const htu = 'https://api.example.com/dpop/x';
  const ok = await call(c, envoyCheck({ path: '/dpop/x?y=1', headers: { authorization: `DPoP ${dpopBound}`, dpop: await client.proof({ htm: 'GET', htu, token: dpopBound }) } }));
  assert.equal(ok.status.code, 0, JSON.stringify(ok));
  assert.ok(ok.ok_response!.headers_to_remove.includes('dpop') && ok.ok_response!.headers_to_remove.includes('authorization'));
  // The proof was made for https; Envoy saw the request over http.
  const wrongScheme = await call(c, envoyCheck({ path: '/dpop/x', scheme: 'http', headers: { authorization: `DPoP ${dpopBound}`, dpop: await client.proof({ htm: 'GET', htu, token: dpopBound }) } }));
  assertDenied(wrongScheme, 16, 401, `DPoP error="invalid_dpop_proof", algs="${ALGS}", error_description="The DPoP proof is for another URI"`, 'invalid_dpop_proof');
  // A replayed proof.
  const proof = await client.proof({ htm: 'GET', htu, token: dpopBound });
  assert.equal((await call(c, envoyCheck({ path: '/dpop/x', headers: { authorization: `DPoP ${dpopBound}`, dpop: proof } }))).status.code, 0);
  assertDenied(await call(c, envoyCheck({ path: '/dpop/x', headers: { authorization: `DPoP ${dpopBound}`, dpop: proof } })), 16, 401,
    `DPoP error="invalid_dpop_proof", algs="${ALGS}", error_description="The DPoP proof was already used"`, 'invalid_dpop_proof');
  // The bound token as a bearer token.
  assertDenied(await call(c, envoyCheck({ path: '/dpop/x', headers: { authorization: `Bearer ${dpopBound}` } })), 16, 401,
    'Bearer realm="tokengate", error="invalid_token", error_description="A DPoP-bound access token must be sent with the DPoP scheme"', 'invalid_token');
});

test('mTLS: the client certificate is source.certificate; a header the client wrote is not a certificate', async () => {
  const c = authz(gw.extAuthzAddress!);
  const ok = await call(c, envoyCheck({ path: '/mtls', headers: { authorization: `Bearer ${mtlsBound}` }, certificate: encodeURIComponent(cert.pem) }));
  assert.equal(ok.status.code, 0, JSON.stringify(ok));
  const forged = await call(c, envoyCheck({ path: '/mtls', headers: { authorization: `Bearer ${mtlsBound}`, 'x-forwarded-client-cert': encodeURIComponent(cert.pem) } }));
  assertDenied(forged, 16, 401, 'Bearer realm="tokengate", error="invalid_token", error_description="The access token is bound to a client certificate that was not presented"', 'invalid_token');
  const other = generateClientCert('client-b');
  const mismatch = await call(c, envoyCheck({ path: '/mtls', headers: { authorization: `Bearer ${mtlsBound}` }, certificate: encodeURIComponent(other.pem) }));
  assertDenied(mismatch, 16, 401, 'Bearer realm="tokengate", error="invalid_token", error_description="The access token is bound to another client certificate"', 'invalid_token');
});

test('a peer outside trustedProxies gets PERMISSION_DENIED, whatever it asks', async () => {
  const res = await call(authz(closed.extAuthzAddress!), envoyCheck({ path: '/anything' }));
  assertDenied(res, 7, 403, null, 'forbidden');
});

test('keys unobtainable: 503 → UNAVAILABLE with Retry-After; health NOT_SERVING until ready', async () => {
  const t = await idp.token({ resource: IDP_RESOURCES.es256 });
  const res = await call(authz(down.extAuthzAddress!), envoyCheck({ path: '/x', headers: { authorization: `Bearer ${t}` } }));
  assert.equal(res.status.code, 14);
  assert.equal(res.denied_response!.status.code, 503);
  assert.ok(setHeaders(res.denied_response!.headers)['retry-after']);

  const health = new pkg.grpc.health.v1.Health(down.extAuthzAddress!, grpc.credentials.createInsecure());
  clients.push(health);
  assert.deepEqual(await call(health, { service: '' }), { status: 2 }, 'NOT_SERVING');
});

test('health: SERVING when ready, for "" and the Authorization service; unknown service NOT_FOUND', async () => {
  const health = new pkg.grpc.health.v1.Health(gw.extAuthzAddress!, grpc.credentials.createInsecure());
  clients.push(health);
  assert.deepEqual(await call(health, { service: '' }), { status: 1 });
  assert.deepEqual(await call(health, { service: 'envoy.service.auth.v3.Authorization' }), { status: 1 });
  await assert.rejects(call(health, { service: 'nope' }), (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND);
});

test('metrics and access lines: counted by route, the listener named, never the token', async () => {
  const text = await (await fetch(gw.adminUrl + '/metrics')).text();
  assert.match(text, /tokengate_requests_total\{route="orders",outcome="allowed",reason="ok",status_class="2xx"\} [1-9]/);
  assert.match(text, /tokengate_requests_total\{route="orders",outcome="denied",reason="scope",status_class="4xx"\} [1-9]/);
  const lines = logs.filter((l) => l.includes('"msg":"access"'));
  assert.ok(lines.length >= 10, `${lines.length} access lines`);
  for (const l of lines) assert.equal(JSON.parse(l).listener, 'ext_authz');
  const all = logs.join('\n');
  for (const secret of [token, dpopBound, mtlsBound]) assert.equal(all.includes(secret), false, 'no token in any log line');
});

test('request id: Envoy\'s x-request-id is kept on allowed and refused answers and on the access line; an unsafe one is replaced', async () => {
  const c = authz(gw.extAuthzAddress!);
  const id = `envoy-${randomUUID()}`;
  const ok = await call(c, envoyCheck({ path: '/pub/x', headers: { 'x-request-id': id, 'x-forwarded-for': '203.0.113.9, 10.0.0.1' } }));
  assert.equal(setHeaders(ok.ok_response!.headers)['x-request-id'], id);
  assert.equal(setHeaders(ok.ok_response!.response_headers_to_add)['x-request-id'], id);
  const denied = await call(c, envoyCheck({ path: '/orders/1', headers: { 'x-request-id': `${id}-2` } }));
  assert.equal(setHeaders(denied.denied_response!.headers)['x-request-id'], `${id}-2`);
  const unsafe = await call(c, envoyCheck({ path: '/pub/x', headers: { 'x-request-id': 'a b"c' } }));
  const fresh = setHeaders(unsafe.ok_response!.headers)['x-request-id'];
  assert.match(fresh, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  const lines = logs.filter((l) => l.includes('"msg":"access"')).map((l) => JSON.parse(l) as Record<string, unknown>);
  const line = lines.find((l) => l.request_id === id);
  assert.ok(line, 'the access line carries the id');
  assert.equal(line.method, 'GET');
  assert.equal(line.client, '203.0.113.9', 'the client Envoy names, not Envoy');
  assert.equal(line.user_agent, 'curl/8.5.0');
  assert.ok(lines.some((l) => l.request_id === `${id}-2` && l.status === 401));
  assert.ok(lines.some((l) => l.request_id === fresh));
});

test('peer addresses from grpc-js getPeer(): IPv4 and unbracketed IPv6 with a port; anything else matches no trustedProxies entry', () => {
  assert.equal(peerAddress('127.0.0.1:50123'), '127.0.0.1');
  assert.equal(peerAddress('::1:50123'), '::1');
  assert.equal(peerAddress('::ffff:10.1.2.3:443'), '::ffff:10.1.2.3');
  assert.equal(peerAddress('10.0.0.7'), '10.0.0.7');
  assert.equal(peerAddress('unix:/run/x.sock'), undefined);
  assert.equal(peerAddress('unknown'), undefined);
});

test('shutdown: a Check in flight is answered, a new one is refused, close waits for neither longer than the grace', async () => {
  const iss = await startMockIssuer({ algs: ['ES256'] });
  iss.mode = 'hang'; // the key fetch hangs until its timeout: a Check that needs keys stays in flight that long
  const slow = await startGateway(`
extAuthz: {}
issuers:
  - { id: a, issuer: ${iss.issuer}, jwksUri: ${iss.jwksUri}, audiences: [api], jwks: { timeoutMs: 1500 } }
routes:
  - { id: r, match: { pathPrefix: / }, upstream: ${UPSTREAM}, auth: { mode: jwt } }
`);
  try {
    const c = authz(slow.extAuthzAddress!);
    const token = await iss.sign({});
    const inFlight = call(c, envoyCheck({ path: '/x', headers: { authorization: `Bearer ${token}` } }));
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    const closed = slow.gw.close(10);
    // Draining: the listener takes no new call (a fresh channel cannot even connect).
    const late = authz(slow.extAuthzAddress!);
    await assert.rejects(call(late, envoyCheck({ path: '/x' })), (e: grpc.ServiceError) => e.code === grpc.status.UNAVAILABLE);
    const answer = await inFlight;
    assert.equal(answer.status.code, 14, 'the call in flight got its answer (keys unobtainable: UNAVAILABLE)');
    await closed;
    assert.ok(Date.now() - t0 < 9000, `close returned once the call was answered, well before the 10 s grace (${Date.now() - t0} ms)`);
  } finally {
    await iss.close();
  }
});
