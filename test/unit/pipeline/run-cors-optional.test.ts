/**
 * `decide()` with `cors` and `auth.optional`, with injected verifiers (no network): which
 * route a preflight is judged by, that it is answered before any credential is looked at
 * and only where the door answers preflights, which CORS headers the answer will carry,
 * and that `optional` admits exactly the requests without an Authorization header.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decide, newContext, type RequestFacts, type Verifiers } from '../../../src/pipeline/run.js';
import { GatewayError } from '../../../src/errors.js';
import { NO_CORS_HEADERS } from '../../../src/pipeline/cors.js';
import { compileYaml, ISSUER_A } from '../../helpers/config.js';

const config = compileYaml(`issuers:${ISSUER_A}
routes:
  - id: api
    match: { pathPrefix: /api, methods: [GET, POST] }
    upstream: http://u
    auth: { mode: jwt }
    forward: { headers: { x-auth-subject: sub } }
    cors: { allowOrigins: [https://app.example.com] }
  - id: api-options
    match: { pathPrefix: /api, methods: [OPTIONS] }
    upstream: http://u
    auth: { mode: none }
  - id: open
    match: { pathPrefix: /open }
    upstream: http://u
    auth: { mode: jwt, optional: true }
    forward: { headers: { x-auth-subject: sub } }
`);

const calls: string[] = [];
const verifiers: Verifiers = {
  jwt: {
    async verify(token) {
      calls.push(token);
      if (token !== 'good') throw new GatewayError('bad_signature');
      return { issuerId: 'a', claims: { sub: 'u1' }, scopes: [], source: 'jwt' };
    },
  },
};

async function run(facts: Partial<RequestFacts> & { target: string }) {
  const ctx = newContext();
  let err: GatewayError | null = null;
  try {
    await decide(config, { method: 'GET', host: 'x', rawHeaders: [], answersPreflight: true, ...facts }, verifiers, ctx);
  } catch (e) {
    err = e as GatewayError;
  }
  return { ctx, err };
}

const PF = ['Origin', 'https://app.example.com', 'Access-Control-Request-Method', 'POST'];

test('a preflight is answered by the cors route its requested method matches, before any credential', async () => {
  calls.length = 0;
  const { ctx, err } = await run({ method: 'OPTIONS', target: '/api/x', rawHeaders: [...PF, 'Authorization', 'Bearer bad'] });
  assert.equal(err, null);
  assert.equal(ctx.route?.id, 'api');
  assert.equal(ctx.preflight?.['access-control-allow-origin'], 'https://app.example.com');
  assert.equal(ctx.reason, 'cors_preflight');
  assert.deepEqual(ctx.headers, []);
  assert.deepEqual(calls, [], 'a preflight must not verify a token');
});

test('where the door does not answer preflights (decision listener), a preflight is an ordinary request', async () => {
  const { ctx, err } = await run({ method: 'OPTIONS', target: '/api/x', rawHeaders: PF, answersPreflight: undefined });
  assert.equal(err, null);
  assert.equal(ctx.route?.id, 'api-options'); // matched on OPTIONS, as any request
  assert.equal(ctx.preflight, null);
});

test('a refused preflight throws its reason; the answer carries no allow header', async () => {
  const { ctx, err } = await run({ method: 'OPTIONS', target: '/api/x', rawHeaders: ['Origin', 'https://evil.test', 'Access-Control-Request-Method', 'GET'] });
  assert.equal(err?.reason, 'cors_origin');
  assert.equal(err?.status, 403);
  assert.equal(ctx.cors, NO_CORS_HEADERS);
  // A method the cors route does not take: refused by that route, not passed to another.
  const put = await run({ method: 'OPTIONS', target: '/api/x', rawHeaders: ['Origin', 'https://app.example.com', 'Access-Control-Request-Method', 'PUT'] });
  assert.equal(put.err?.reason, 'cors_method');
  assert.equal(put.ctx.route?.id, 'api');
});

test('other requests on a cors route carry the origin\'s headers, refusals included', async () => {
  const { ctx, err } = await run({ target: '/api/x', rawHeaders: ['Origin', 'https://app.example.com'] });
  assert.equal(err?.reason, 'missing_token');
  assert.equal(ctx.cors?.['access-control-allow-origin'], 'https://app.example.com');
  const other = await run({ target: '/api/x', rawHeaders: ['Origin', 'https://evil.test'] });
  assert.equal(other.ctx.cors, NO_CORS_HEADERS);
  const off = await run({ target: '/open/x', rawHeaders: ['Origin', 'https://app.example.com'] });
  assert.equal(off.ctx.cors, null, 'a route without cors leaves answers alone');
  // 404 for a method the cors route does not take: still readable by its origins.
  const del = await run({ method: 'DELETE', target: '/api/x', rawHeaders: ['Origin', 'https://app.example.com'] });
  assert.equal(del.err?.reason, 'no_route');
  assert.equal(del.ctx.cors?.['access-control-allow-origin'], 'https://app.example.com');
});

test('optional: no Authorization header is anonymous; any Authorization header is judged', async () => {
  calls.length = 0;
  const anon = await run({ target: '/open/x', rawHeaders: ['X-Auth-Subject', 'forged'] });
  assert.equal(anon.err, null);
  assert.equal(anon.ctx.reason, 'anonymous');
  assert.deepEqual(anon.ctx.headers, []);
  assert.equal(anon.ctx.principal, null);
  assert.deepEqual(calls, []);
  const good = await run({ target: '/open/x', rawHeaders: ['Authorization', 'Bearer good'] });
  assert.equal(good.ctx.reason, 'ok');
  assert.deepEqual(good.ctx.headers, [['x-auth-subject', 'u1']]);
  for (const value of ['Bearer bad', 'Basic dTpw', '', 'bearer']) {
    const r = await run({ target: '/open/x', rawHeaders: ['authorization', value] });
    assert.ok(r.err, `${JSON.stringify(value)} passed`);
    assert.ok(r.err.status === 401 || r.err.status === 400, `${JSON.stringify(value)}: ${r.err.status}`);
    assert.equal(r.ctx.reason, 'ok');
  }
  assert.equal((await run({ target: '/open/x?access_token=t' })).err?.reason, 'token_in_query');
  assert.equal((await run({ method: 'POST', target: '/open/x', formBody: 'access_token=t' })).err?.reason, 'token_in_body');
});
