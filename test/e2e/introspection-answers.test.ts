/**
 * Introspection against a programmable endpoint: what goes on the wire (client
 * authentication, form fields), how each answer is judged, the positive TTL capped by the
 * token's `exp`, and every failure that must be 503 (fail closed) and never cached.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startMockIntrospection, type MockAnswer, type MockIntrospection } from '../helpers/mock-introspection.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

const ISS = 'https://idp.example/realms/corp';
let mock: MockIntrospection; let up: EchoUpstream;
const open: TestGateway[] = [];
before(async () => {
  mock = await startMockIntrospection();
  up = await startUpstream();
});
after(async () => {
  for (const g of open) await g.close();
  await up?.close(); await mock?.close();
});

const start = Date.now();
const c = { offset: 0, now: () => start + c.offset };
const nowSec = () => Math.floor(c.now() / 1000);

async function gateway(o: { clientId?: string; secret?: string; authMethod?: string; cacheTtlSec?: number; timeoutMs?: number } = {}) {
  const g = await startGateway(`
issuers:
  - id: corp
    issuer: ${ISS}
    audiences: [orders-api]
    introspection:
      endpoint: ${mock.endpoint}
      clientId: "${o.clientId ?? 'tokengate'}"
      clientSecret: \${SECRET}
      authMethod: ${o.authMethod ?? 'client_secret_basic'}
      cacheTtlSec: ${o.cacheTtlSec ?? 60}
      negativeCacheTtlSec: 5
      timeoutMs: ${o.timeoutMs ?? 3000}
routes:
  - id: orders
    match: { pathPrefix: /orders }
    upstream: ${up.url}
    auth: { mode: introspection }
    forward: { headers: { x-auth-subject: sub } }
`, { env: { SECRET: o.secret ?? 's3cret' }, now: c.now });
  open.push(g);
  return g;
}
const get = (g: TestGateway, token: string) => fetch(g.url + '/orders', { headers: { authorization: `Bearer ${token}` } });
let seq = 0;
const tok = () => `opaque-${++seq}-${Math.random().toString(36).slice(2)}`;
const good = (extra: Record<string, unknown> = {}) => ({ active: true, sub: 'user-1', iss: ISS, aud: 'orders-api', exp: nowSec() + 300, ...extra });

test('client_secret_basic: id and secret form-urlencoded before base64 (RFC 6749 §2.3.1)', async () => {
  const clientId = 'gate:way é';
  const secret = 'p@ss wörd+/=:%&!*~\'()';
  const g = await gateway({ clientId, secret });
  mock.answer = () => ({ body: good() });
  const token = tok();
  mock.requests.length = 0;
  assert.equal((await get(g, token)).status, 200);
  const r = mock.requests[0];
  assert.deepEqual(r.basic, { clientId, clientSecret: secret });
  const raw = Buffer.from(r.authorization!.slice(6), 'base64').toString('utf8');
  assert.equal(raw, 'gate%3Away+%C3%A9:p%40ss+w%C3%B6rd%2B%2F%3D%3A%25%26%21*%7E%27%28%29');
  assert.deepEqual(r.form, { token, token_type_hint: 'access_token' });
  assert.equal(r.contentType, 'application/x-www-form-urlencoded');
});

test('client_secret_post: credentials in the form body, no Authorization header', async () => {
  const g = await gateway({ authMethod: 'client_secret_post', clientId: 'gw', secret: 'a b+c' });
  mock.answer = () => ({ body: good() });
  const token = tok();
  mock.requests.length = 0;
  assert.equal((await get(g, token)).status, 200);
  const r = mock.requests[0];
  assert.equal(r.authorization, undefined);
  assert.deepEqual(r.form, { token, token_type_hint: 'access_token', client_id: 'gw', client_secret: 'a b+c' });
});

test('active answers are still checked', async () => {
  const g = await gateway();
  const cases: Array<[Record<string, unknown>, number, string]> = [
    [good(), 200, ''],
    [good({ exp: undefined }), 401, 'The access token has no valid expiry'],
    [good({ exp: nowSec() - 60 }), 401, 'The access token expired'],
    [good({ iss: 'https://evil.example' }), 401, 'The token issuer is not accepted'],
    [good({ aud: 'other-api' }), 401, 'The token audience is not accepted'],
    [good({ token_type: 'refresh_token' }), 401, 'The token type is not accepted'],
    [good({ nbf: nowSec() + 3600 }), 401, 'The access token is not yet valid'],
    [good({ sub: 'a\r\nx-injected: 1' }), 401, 'A forwarded claim contains characters not allowed in a header'],
    [good({ aud: undefined, iss: undefined }), 200, ''],
  ];
  for (const [body, status, description] of cases) {
    mock.answer = () => ({ body: JSON.parse(JSON.stringify(body)) });
    const r = await get(g, tok());
    assert.equal(r.status, status, JSON.stringify(body));
    if (status === 401) {
      assert.equal(r.headers.get('www-authenticate'), `Bearer realm="tokengate", error="invalid_token", error_description="${description}"`);
    }
    await r.arrayBuffer();
  }
});

test('a positive entry never outlives the token exp', async () => {
  const g = await gateway({ cacheTtlSec: 60 });
  const exp = nowSec() + 10;
  mock.answer = () => ({ body: good({ exp }) });
  const token = tok();
  mock.requests.length = 0;
  assert.equal((await get(g, token)).status, 200);
  c.offset += 9_000;
  assert.equal((await get(g, token)).status, 200);
  assert.equal(mock.requests.length, 1, 'served from the cache');
  c.offset += 1_000;
  // exp - now = 0: the cache entry is gone; the provider is asked and now says inactive.
  mock.answer = () => ({ body: { active: false } });
  assert.equal((await get(g, token)).status, 401);
  assert.equal(mock.requests.length, 2);
});

test('no usable answer: 503 + Retry-After, nothing cached, nothing leaked', async () => {
  const g = await gateway({ timeoutMs: 300 });
  const answers: Array<[string, () => MockAnswer]> = [
    ['500', () => ({ status: 500, body: { error: 'server_error' } })],
    ['401 invalid_client', () => ({ status: 401, body: { error: 'invalid_client' } })],
    ['non-JSON 200', () => ({ body: '<html>oops</html>', contentType: 'text/html' })],
    ['active as a string', () => ({ body: { active: 'true', exp: nowSec() + 60 } })],
    ['no active', () => ({ body: { exp: nowSec() + 60 } })],
    ['a JSON array', () => ({ body: [{ active: true }] })],
    ['JSON null', () => ({ body: 'null' })],
    ['a redirect (not followed)', () => ({ status: 302, headers: { location: `${mock.url}/elsewhere` }, body: '' })],
    ['too large', () => ({ body: JSON.stringify({ ...good(), pad: 'x'.repeat(300 * 1024) }) })],
    ['slower than timeoutMs', () => ({ body: good(), delayMs: 1_000 })],
  ];
  for (const [name, answer] of answers) {
    mock.answer = answer;
    const token = tok();
    mock.requests.length = 0;
    for (let i = 0; i < 2; i++) {
      const t0 = performance.now();
      const r = await get(g, token);
      assert.equal(r.status, 503, name);
      assert.equal(r.headers.get('retry-after'), '2', name);
      assert.equal(r.headers.get('www-authenticate'), null, name);
      const body = await r.text();
      assert.deepEqual(JSON.parse(body), { error: 'temporarily_unavailable', error_description: 'Token introspection is unavailable now' }, name);
      assert.ok(performance.now() - t0 < 900, `${name}: bounded by timeoutMs`);
    }
    assert.equal(mock.requests.filter((q) => q.form.token === token).length, 2, `${name}: failures are not cached`);
  }
  const metrics = await (await fetch(g.adminUrl + '/metrics')).text();
  assert.match(metrics, /tokengate_introspection_requests_total\{issuer="corp",result="error"\} 20\n/);
});
