/**
 * DPoP-bound tokens end to end (RFC 9449): a real oidc-provider issues tokens bound to a
 * client key (`cnf.jkt`, obtained with a real proof at its token endpoint); the gateway
 * must accept them only with a fresh, matching proof on every request.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair } from 'jose';
import { IDP_RESOURCES, idpIssuerYaml, startIdp, type TestIdp } from '../helpers/idp.js';
import { startUpstream, type EchoUpstream } from '../helpers/upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { ath, dpopClient, type DpopClient } from '../helpers/dpop.js';

const ALGS = 'ES256 EdDSA RS256 PS256';
const proofChallenge = (desc: string) => `DPoP error="invalid_dpop_proof", algs="${ALGS}", error_description="${desc}"`;

let idp: TestIdp; let up: EchoUpstream; let gw: TestGateway; let gwNonce: TestGateway;
let client: DpopClient; let bound: string; let plain: string;

function gatewayYaml(extra = ''): string {
  return `
server:
  dpop: { proofMaxAgeSec: 60${extra} }
issuers:
${idpIssuerYaml(idp)}
routes:
  - id: strict
    match: { pathPrefix: /strict }
    upstream: ${up.url}
    auth: { mode: jwt, binding: require-dpop }
  - id: any
    match: { pathPrefix: /any }
    upstream: ${up.url}
    auth: { mode: jwt, binding: require-any }
  - id: mtls
    match: { pathPrefix: /mtls }
    upstream: ${up.url}
    auth: { mode: jwt, binding: require-mtls }
  - id: api
    match: { pathPrefix: /api }
    upstream: ${up.url}
    auth: { mode: jwt, scopes: { allOf: [orders:read] } }
    forward: { headers: { x-auth-subject: sub } }
`;
}

before(async () => {
  [idp, up, client] = await Promise.all([startIdp(), startUpstream(), dpopClient('ES256')]);
  gw = await startGateway(gatewayYaml());
  gwNonce = await startGateway(gatewayYaml(', nonce: true, nonceSecret: "0123456789abcdef0123456789abcdef-test"'));
  await Promise.all([gw.ready(), gwNonce.ready()]);
  bound = await idp.token({ resource: IDP_RESOURCES.es256, scope: 'orders:read', dpop: (htm, htu) => client.proof({ htm, htu }) });
  plain = await idp.token({ resource: IDP_RESOURCES.es256, scope: 'orders:read' });
});
after(async () => {
  await gw?.close();
  await gwNonce?.close();
  await up?.close();
  await idp?.close();
});

async function call(g: TestGateway, path: string, headers: Record<string, string>, method = 'GET') {
  const res = await fetch(g.url + path, { method, headers });
  return { status: res.status, www: res.headers.get('www-authenticate'), nonce: res.headers.get('dpop-nonce'), body: (await res.json()) as { error: string } };
}

function htu(g: TestGateway, path: string): string {
  return g.url + path;
}

describe('DPoP-bound tokens from oidc-provider', () => {
  test('the IdP bound the token to the client key', () => {
    const claims = JSON.parse(Buffer.from(bound.split('.')[1], 'base64url').toString()) as { cnf?: { jkt?: string } };
    assert.equal(claims.cnf?.jkt, client.jkt);
  });

  test('a good proof passes; upstream gets the identity, neither the token nor the proof', async () => {
    up.reset();
    const proof = await client.proof({ htm: 'GET', htu: htu(gw, '/api/orders'), token: bound });
    const r = await call(gw, '/api/orders?x=1#f', { authorization: `DPoP ${bound}`, dpop: proof });
    assert.equal(r.status, 200, JSON.stringify(r));
    const seen = up.requests.at(-1)!;
    assert.equal(seen.url, '/api/orders?x=1');
    assert.equal(seen.headers['x-auth-subject'], 'app');
    assert.equal(seen.headers.authorization, undefined);
    assert.equal(seen.headers.dpop, undefined);
  });

  test('the DPoP scheme is case-insensitive and htu is compared normalized (host case, default port, dot-segments)', async () => {
    const u = new URL(gw.url);
    const proof = await client.proof({ htm: 'POST', htu: `HTTP://${u.host.toUpperCase()}/x/../api/a/./%62`, token: bound });
    const r = await call(gw, '/api/a/b', { authorization: `dpop ${bound}`, dpop: proof }, 'POST');
    assert.equal(r.status, 200, JSON.stringify(r));
  });

  test('a replayed proof is refused', async () => {
    const proof = await client.proof({ htm: 'GET', htu: htu(gw, '/api/replay'), token: bound });
    assert.equal((await call(gw, '/api/replay', { authorization: `DPoP ${bound}`, dpop: proof })).status, 200);
    const again = await call(gw, '/api/replay', { authorization: `DPoP ${bound}`, dpop: proof });
    assert.deepEqual([again.status, again.www, again.body.error], [401, proofChallenge('The DPoP proof was already used'), 'invalid_dpop_proof']);
  });

  const bad: Array<[string, (path: string) => Promise<Record<string, string>>, string]> = [
    ['no DPoP header', async () => ({ authorization: `DPoP ${bound}` }), 'A DPoP proof is required'],
    ['two proofs joined in one DPoP header', async (p) => {
      const one = await client.proof({ htm: 'GET', htu: htu(gw, p), token: bound });
      return { authorization: `DPoP ${bound}`, dpop: `${one}, ${one}` };
    }, 'The DPoP proof is malformed'],
    ['proof for another method', async (p) => ({ authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'POST', htu: htu(gw, p), token: bound }) }), 'The DPoP proof is for another HTTP method'],
    ['proof for another URL', async (p) => ({ authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'GET', htu: htu(gw, p + '/other'), token: bound }) }), 'The DPoP proof is for another URI'],
    ['proof for another host', async (p) => ({ authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'GET', htu: `http://api.example.com${p}`, token: bound }) }), 'The DPoP proof is for another URI'],
    ['proof for https when the request was http', async (p) => ({ authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'GET', htu: htu(gw, p).replace('http:', 'https:'), token: bound }) }), 'The DPoP proof is for another URI'],
    ['stale proof', async (p) => ({ authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'GET', htu: htu(gw, p), token: bound, iat: Math.floor(Date.now() / 1000) - 70 }) }), 'The DPoP proof is too old or issued in the future'],
    ['proof from the future', async (p) => ({ authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'GET', htu: htu(gw, p), token: bound, iat: Math.floor(Date.now() / 1000) + 30 }) }), 'The DPoP proof is too old or issued in the future'],
    ['no ath', async (p) => ({ authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'GET', htu: htu(gw, p), token: bound, ath: null }) }), 'The DPoP proof ath does not match the access token'],
    ['wrong ath', async (p) => ({ authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'GET', htu: htu(gw, p), token: bound, ath: ath(plain) }) }), 'The DPoP proof ath does not match the access token'],
    ['signed by another key', async (p) => {
      const other = await generateKeyPair('ES256');
      return { authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'GET', htu: htu(gw, p), token: bound, signWith: other.privateKey }) };
    }, 'The DPoP proof signature is invalid'],
    ['another key, self-consistent proof', async (p) => {
      const other = await dpopClient('ES256');
      return { authorization: `DPoP ${bound}`, dpop: await other.proof({ htm: 'GET', htu: htu(gw, p), token: bound }) };
    }, 'The DPoP proof key is not the key the access token is bound to'],
    ['private key in jwk', async (p) => ({ authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'GET', htu: htu(gw, p), token: bound, jwk: client.privateJwk }) }), 'The DPoP proof jwk must be a public key'],
    ['typ JWT', async (p) => ({ authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'GET', htu: htu(gw, p), token: bound, typ: 'JWT' }) }), 'The DPoP proof typ must be dpop+jwt'],
  ];
  for (const [name, headers, desc] of bad) {
    test(`refused: ${name}`, async () => {
      up.reset();
      const r = await call(gw, '/api/x', await headers('/api/x'));
      assert.deepEqual([r.status, r.www, r.body.error], [401, proofChallenge(desc), 'invalid_dpop_proof']);
      assert.equal(up.requests.length, 0);
    });
  }

  test('two DPoP header lines are refused (RFC 9449 §4.3 step 1)', async () => {
    const { request } = await import('node:http');
    const p = '/api/two';
    const a = await client.proof({ htm: 'GET', htu: htu(gw, p), token: bound });
    const b = await client.proof({ htm: 'GET', htu: htu(gw, p), token: bound });
    const res = await new Promise<{ status: number; www: string | undefined }>((resolve, reject) => {
      const req = request(gw.url + p, { headers: { authorization: `DPoP ${bound}`, dpop: [a, b] } }, (r) => {
        r.resume();
        resolve({ status: r.statusCode!, www: r.headers['www-authenticate'] });
      });
      req.on('error', reject);
      req.end();
    });
    assert.deepEqual(res, { status: 401, www: proofChallenge('Exactly one DPoP header is allowed') });
  });

  test('a proof signed with HS256 (symmetric) is refused on its alg', async () => {
    const { SignJWT } = await import('jose');
    const secret = new Uint8Array(32).fill(7);
    const proof = await new SignJWT({ htm: 'GET', htu: htu(gw, '/api/x'), jti: 'h1', iat: Math.floor(Date.now() / 1000), ath: ath(bound) })
      .setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt', jwk: { kty: 'oct', k: Buffer.from(secret).toString('base64url') } as never }).sign(secret);
    const r = await call(gw, '/api/x', { authorization: `DPoP ${bound}`, dpop: proof });
    assert.deepEqual([r.status, r.www], [401, proofChallenge('The DPoP proof algorithm is not allowed')]);
  });

  test('Bearer misuse: a DPoP-bound token sent as a bearer token is 401 invalid_token, proof or not', async () => {
    for (const headers of [
      { authorization: `Bearer ${bound}` } as Record<string, string>,
      { authorization: `Bearer ${bound}`, dpop: await client.proof({ htm: 'GET', htu: htu(gw, '/api/x'), token: bound }) },
    ]) {
      const r = await call(gw, '/api/x', headers);
      assert.deepEqual([r.status, r.www, r.body.error], [401,
        'Bearer realm="tokengate", error="invalid_token", error_description="A DPoP-bound access token must be sent with the DPoP scheme"', 'invalid_token']);
    }
  });

  test('the DPoP scheme with an unbound token is 401 invalid_token (nothing to bind the proof to)', async () => {
    const r = await call(gw, '/api/x', { authorization: `DPoP ${plain}`, dpop: await client.proof({ htm: 'GET', htu: htu(gw, '/api/x'), token: plain }) });
    assert.deepEqual([r.status, r.www], [401, `DPoP error="invalid_token", algs="${ALGS}", error_description="The access token is not bound to a DPoP key"`]);
  });

  test('binding: require-dpop / require-any refuse an unbound bearer token and take a bound one; require-mtls refuses a DPoP-bound one', async () => {
    let r = await call(gw, '/strict/x', { authorization: `Bearer ${plain}` });
    assert.deepEqual([r.status, r.www], [401, `DPoP error="invalid_token", algs="${ALGS}", error_description="This resource requires a DPoP-bound access token"`]);
    r = await call(gw, '/any/x', { authorization: `Bearer ${plain}` });
    assert.deepEqual([r.status, r.www], [401, 'Bearer realm="tokengate", error="invalid_token", error_description="This resource requires a sender-constrained access token"']);
    r = await call(gw, '/mtls/x', { authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'GET', htu: htu(gw, '/mtls/x'), token: bound }) });
    assert.deepEqual([r.status, r.www], [401, `DPoP error="invalid_token", algs="${ALGS}", error_description="This resource requires a certificate-bound access token"`]);
    for (const p of ['/strict/x', '/any/x']) {
      r = await call(gw, p, { authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'GET', htu: htu(gw, p), token: bound }) });
      assert.equal(r.status, 200, p);
    }
    r = await call(gw, '/api/x', { authorization: `Bearer ${plain}` });
    assert.equal(r.status, 200, 'binding: allow takes unbound bearer tokens');
  });

  test('a reload switches the replay store (memory → redis → memory); an unreachable Redis fails closed', async () => {
    const { loadCompiled } = await import('../../src/config/index.js');
    const { writeFileSync } = await import('node:fs');
    const { freePort } = await import('../helpers/ports.js');
    const original = gw.gw.config;
    const port = await freePort(); // nothing listens there
    writeFileSync(gw.file, gatewayYaml(`, replayStore: redis }\n  redis: { url: "redis://127.0.0.1:${port}", commandTimeoutMs: 200`));
    const redisCfg = loadCompiled(gw.file, {});
    const go = async () => (await call(gw, '/api/reload', { authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'GET', htu: htu(gw, '/api/reload'), token: bound }) })).status;
    try {
      gw.gw.swap({ ...redisCfg, server: { ...redisCfg.server, host: original.server.host, port: original.server.port }, admin: original.admin });
      assert.ok(gw.gw.redis, 'a Redis connection is opened');
      assert.equal(await go(), 503);
      assert.equal((await call(gw, '/api/reload', { authorization: `Bearer ${plain}` })).status, 200, 'bearer tokens do not need the store');
    } finally {
      gw.gw.swap(original);
    }
    assert.equal(gw.gw.redis, null, 'the connection is closed when no store needs it');
    assert.equal(await go(), 200);
  });

  test('failures are counted per reason in tokengate_requests_total, with replay-store latency', async () => {
    const text = await (await fetch(gw.adminUrl + '/metrics')).text();
    for (const reason of ['dpop_proof_replay', 'dpop_proof_htm', 'dpop_proof_htu', 'dpop_proof_iat', 'dpop_proof_ath', 'dpop_proof_signature', 'dpop_key_mismatch', 'dpop_proof_jwk', 'dpop_bound_bearer']) {
      assert.match(text, new RegExp(`tokengate_requests_total\\{route="api",outcome="denied",reason="${reason}",status_class="\\dxx"\\} [1-9]`), reason);
    }
    assert.match(text, /tokengate_dpop_replay_store_duration_seconds_count\{store="memory"\} [1-9]/);
  });
});

describe('server nonces (RFC 9449 §8)', () => {
  test('no nonce: 401 use_dpop_nonce with a DPoP-Nonce; with it: 200', async () => {
    const p = '/api/n';
    let r = await call(gwNonce, p, { authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'GET', htu: htu(gwNonce, p), token: bound }) });
    assert.deepEqual([r.status, r.www, r.body.error], [401, `DPoP error="use_dpop_nonce", algs="${ALGS}", error_description="Resource server requires nonce in DPoP proof"`, 'use_dpop_nonce']);
    const nonce = r.nonce;
    assert.match(nonce ?? '', /^[A-Za-z0-9_-]{43}$/);
    r = await call(gwNonce, p, { authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'GET', htu: htu(gwNonce, p), token: bound, nonce: nonce! }) });
    assert.equal(r.status, 200, JSON.stringify(r));
    assert.equal(r.nonce, null, 'no rotation while the nonce is current');
    r = await call(gwNonce, p, { authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'GET', htu: htu(gwNonce, p), token: bound, nonce: 'A'.repeat(43) }) });
    assert.deepEqual([r.status, r.body.error, r.nonce], [401, 'use_dpop_nonce', nonce]);
  });
});

describe('nonce rotation on success (RFC 9449 §8.2)', () => {
  let gc: TestGateway;
  let offset = 0;
  let base = 0;
  before(async () => {
    base = Date.now(); // a frozen clock, moved only by `offset`: window boundaries are deterministic
    gc = await startGateway(gatewayYaml(', nonce: true, nonceSecret: "0123456789abcdef0123456789abcdef-test"'), { now: () => base + offset });
    await gc.ready();
  });
  after(async () => {
    await gc?.close();
  });

  test('a proof with the previous window\'s nonce passes and the response carries the current nonce', async () => {
    const p = '/api/rot';
    const at = () => Math.floor((base + offset) / 1000);
    const first = await call(gc, p, { authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'GET', htu: htu(gc, p), token: bound, iat: at() }) });
    const n1 = first.nonce!;
    assert.equal(first.status, 401);
    offset = 60_000; // next nonce window (windows are proofMaxAgeSec long)
    const r = await call(gc, p, { authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'GET', htu: htu(gc, p), token: bound, iat: at(), nonce: n1 }) });
    assert.equal(r.status, 200, JSON.stringify(r));
    assert.match(r.nonce ?? '', /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(r.nonce, n1);
    const n2 = r.nonce!;
    const again = await call(gc, p, { authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'GET', htu: htu(gc, p), token: bound, iat: at(), nonce: n2 }) });
    assert.deepEqual([again.status, again.nonce], [200, null]);
    offset = 120_000; // two windows later n1 is gone
    const stale = await call(gc, p, { authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'GET', htu: htu(gc, p), token: bound, iat: at(), nonce: n1 }) });
    assert.deepEqual([stale.status, stale.body.error], [401, 'use_dpop_nonce']);
  });
});

describe('DPoP on the decision listener (forward auth)', () => {
  let gd: TestGateway;
  before(async () => {
    gd = await startGateway(gatewayYaml().replace('issuers:', 'decision: { trustedProxies: [127.0.0.1/32] }\nissuers:'));
    await gd.ready();
  });
  after(async () => {
    await gd?.close();
  });

  const decideReq = (headers: Record<string, string>) => new Promise<{ status: number; headers: Record<string, string | string[] | undefined> }>((resolve, reject) => {
    // node:http, so that the Host header can be set like a front proxy would.
    void import('node:http').then(({ request }) => {
      const req = request(gd.decisionUrl! + '/auth', { headers }, (res) => {
        res.resume();
        resolve({ status: res.statusCode!, headers: res.headers });
      });
      req.on('error', reject);
      req.end();
    });
  });
  const fwd = { 'x-forwarded-method': 'GET', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'app.example.com', 'x-forwarded-uri': '/api/orders?page=2' };

  test('htu and htm come from the described request; a good proof gets 200 with identity headers, its replay 401', async () => {
    const proof = await client.proof({ htm: 'GET', htu: 'https://app.example.com/api/orders', token: bound });
    let r = await decideReq({ ...fwd, authorization: `DPoP ${bound}`, dpop: proof });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-auth-subject'], 'app');
    r = await decideReq({ ...fwd, authorization: `DPoP ${bound}`, dpop: proof });
    assert.deepEqual([r.status, r.headers['www-authenticate']], [401, proofChallenge('The DPoP proof was already used')]);
  });

  test('a proof for the decision endpoint itself, or for another method than the described one, is refused', async () => {
    let r = await decideReq({ ...fwd, authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'GET', htu: `${gd.decisionUrl}/auth`, token: bound }) });
    assert.deepEqual([r.status, r.headers['www-authenticate']], [401, proofChallenge('The DPoP proof is for another URI')]);
    r = await decideReq({ ...fwd, 'x-forwarded-method': 'DELETE', authorization: `DPoP ${bound}`, dpop: await client.proof({ htm: 'GET', htu: 'https://app.example.com/api/orders', token: bound }) });
    assert.deepEqual([r.status, r.headers['www-authenticate']], [401, proofChallenge('The DPoP proof is for another HTTP method')]);
  });

  test("nginx's X-Original-* set: scheme http unless X-Forwarded-Proto, host from Host", async () => {
    const headers = { host: 'shop.example.com', 'x-original-method': 'POST', 'x-original-uri': '/api/cart', authorization: `DPoP ${bound}` };
    let r = await decideReq({ ...headers, dpop: await client.proof({ htm: 'POST', htu: 'http://shop.example.com/api/cart', token: bound }) });
    assert.equal(r.status, 200);
    r = await decideReq({ ...headers, 'x-forwarded-proto': 'https', dpop: await client.proof({ htm: 'POST', htu: 'https://shop.example.com/api/cart', token: bound }) });
    assert.equal(r.status, 200);
  });
});
